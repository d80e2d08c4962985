"""Evaluate a matting model, or existing predictions, with the reference metrics of one of two protocols.

    python3 eval.py                                    # demo model on PhotoMatte85 + validation backgrounds
    python3 eval.py --model-backbone resnet50 --model-checkpoint pytorch_resnet50.pth
    python3 eval.py --pred-dir other_method/           # score existing mattes, no model
    python3 eval.py --model-type rvm --model-checkpoint rvm_mobilenetv3.pth --data-dir videomatte_512x288
    python3 eval.py --data-dir videomatte_1920x1080 --pred-dir rvm_hd/ --hr

IMAGE PROTOCOL (BGMv2, PhotoMatte85): the Deep Image Matting metrics (SAD, MSE, Grad, Conn over the
trimap's unknown region, scaled as the official MATLAB evaluation reports them) plus the foreground MSE.
Test set: `fgr/ pha/ [trimap/]` or a folder of RGBA images. Image i (in sorted name order) is composited at
its native size over background i mod N of --bgr-dir (resized to cover it and centre-cropped, aspect kept)
with the BGMv2 evaluation augmentation (shadow, noise, background colour jitter, background misalignment),
drawn from numpy's generator seeded by (--seed, i): every run, resumed or not, sees the same composites. The
predicted matte is quantised to 8 bits (as a saved PNG) and scored as is (not pasted with the trimap).
Prediction mode scores `<pred-dir>/pha/<name>.*` (or `<pred-dir>/<name>.*`) against the same ground truth,
and `<pred-dir>/fgr/<name>.*` if present.
Trimaps: the test set's own if it has them; otherwise derived from the ground-truth alpha (8-bit) with
the rule of the earlier Paddle reproduction: 255 where the alpha is 255 at every pixel within L1 distance
--trimap-radius (10; a 3x3 cross eroded that many times), 0 where it is 0 at all of them, 128 elsewhere.
Derived trimaps are saved in <output-dir>/trimap/.
Output (<output-dir>): per-image `metrics.csv`, `summary.json` (means over images, protocol, failures),
`trimap/`, and with --save-pred `pred/pha/` + `pred/fgr/` (which --pred-dir accepts).

VIDEO PROTOCOL (Robust Video Matting, VideoMatte240K composited test sets): the trimap-free metrics of the
official evaluators (MAD, MSE, Grad, Conn, dtSSD on the alpha, MSE and MAD on the foreground), over whole
frames. Chosen by --protocol video, or automatically for --model-type rvm and for a --data-dir holding
clips with composites. Test set: `<data-dir>/[<set>/]<clip>/{com,fgr,pha,bgr}/<frame>.png` as the official
generators write it (videomatte_512x288 or videomatte_1920x1080, whose static/ and motion/ clips are pooled
as the official evaluator pools everything under its folder). Model mode runs the network over each clip's
com/ frames in name order, --seq-chunk frames per call, from a zero recurrent state per clip (RVM) or with
the clip's bgr/ frames as plates (BGMv2), at --downsample-ratio (default min(512 / max(H, W), 1), the
official automatic rule: 1 for 512x288; the paper's HD numbers use 0.25); the predicted alpha and
foreground are quantised to 8 bits by rounding (the official PNG writer truncates). Prediction mode reads
`<pred-dir>/<clip>/pha/<frame>.*` and, if the folder exists, `<pred-dir>/<clip>/fgr/<frame>.*` for every
ground-truth frame, paired by clip path and frame name without extension (the layout --save-pred writes);
a clip with a missing or unreadable file is not scored. Every frame is scored in name order; dtSSD is 0
for a clip's first frame, as the evaluator writes it. Averaging as the official spreadsheet: each metric is
averaged over the clips at each frame position, then over the positions (the grand mean over frames when
clips are equally long, leading dtSSD zeros included); NaN values (FG of a frame without foreground) are
left out. --hr: the definitions of evaluate_hr.py (Grad without the min-max stretch, no Conn), which the
paper reports for 1920x1080.
Output (<output-dir>): per-frame `frames.csv`, per-clip means `clips.csv`, `summary.json`, and with
--save-pred `pred/<clip>/pha/` + `pred/<clip>/fgr/` (which --pred-dir accepts).

Both: `settings.json` records what the numbers depend on; a rerun with the same settings skips the images or
clips already scored (other settings need another --output-dir). Exit status 1 if any image or clip could
not be scored (each is reported with the file at fault and listed in summary.json).
"""
import argparse
import os
import sys
import textwrap

import cv2
import numpy as np

from dataset import config
from dataset.augmentation import eval_composite
from dataset.folders import FGR_NAMES, find_pairs, image_files
from dataset.matting import read_pair
from dataset.videomatte_eval import is_composited_layout
from utils.eval_results import mean, present, progress, read_rows, report_failure, start_output, table, write_json, \
    write_rows
from utils.eval_video import VIDEO_COLUMNS, evaluate_clips
from utils.io import ImageReadError, list_images, read_alpha_u8, read_image, resize_cover, to_uint8, write_image
from utils.metrics import dim_metrics, foreground_metrics
from utils.options import ROOT, add_backend_args, add_model_args, checkpoint_path, model_options
from utils.runner import create_runner

# CSV column -> what it is; the console table shows the same scaling in its headers
IMAGE_COLUMNS = {
    'SAD': 'sum over unknown pixels of |pred - gt|, alpha in [0, 1], / 1000 (DIM hleval.m)',
    'MSE': 'mean over unknown pixels of (pred - gt)^2, no factor (DIM hleval.m)',
    'Grad': 'sum over unknown pixels of (|grad pred| - |grad gt|)^2 / 1000; 9x9 Gaussian-derivative filter, '
            'sigma 1.4, L2-normalised, after whole-image mat2gray (DIM hleval.m)',
    'Conn': 'sum over unknown pixels of |phi(pred) - phi(gt)| / 1000; step 0.1, theta 0.15, 4-connected '
            'largest component, empty thresholds skipped (DIM hleval.m)',
    'FG_MSE': 'mean over pixels with gt alpha > 0 and all 3 channels of (pred_fgr - gt_fgr)^2 x 1000 '
              '(empty when no foreground prediction)',
    'old_SAD_x2': '2 x SAD: the scale of the earlier Paddle reproduction (its README: 7.58; target 8.65)',
    'old_MSE_x2e3': '2000 x sum over unknown pixels of (pred - gt)^2 / (unknown pixels + 1): the earlier '
                    'reproduction\'s MSE (its README: 9.49; target 9.57)',
}
IMAGE_TABLE = [('SAD', 'sum/1e3', 3), ('MSE', 'mean', 6), ('Grad', 'sum/1e3', 3), ('Conn', 'sum/1e3', 3),
               ('FG_MSE', 'mean x1e3', 3), ('old_SAD_x2', 'old repro x2', 3), ('old_MSE_x2e3', 'old repro x2e3', 3)]
IMAGE_FIELDS = ['name', 'height', 'width', 'unknown_pixels'] + list(IMAGE_COLUMNS)



def columns_help():
    """The --help epilog: every number of both protocols with its scaling."""
    item = lambda name, text: textwrap.fill(f'{name}: {text}', 116, initial_indent='  ', subsequent_indent='      ')
    return '\n'.join(['columns of the image protocol (metrics.csv; the summary averages over images):']
                     + [item(*kv) for kv in IMAGE_COLUMNS.items()]
                     + ['columns of the video protocol (frames.csv per frame, clips.csv per clip; the summary '
                        'averages over the clips at each', 'frame position, then over the positions, as the '
                        'official evaluator):']
                     + [item(*kv) for kv in VIDEO_COLUMNS.items()])


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, epilog=columns_help(),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--data-dir', default=None,
                   help='test set. Image protocol: fgr/ pha/ [trimap/] or RGBA images (default: photomatte85 of '
                        'configs/datasets.json, data/PhotoMatte85); video protocol (required): the composited '
                        'clips <clip>/{com,fgr,pha,bgr}/')
    p.add_argument('--protocol', choices=['auto', 'image', 'video'], default='auto',
                   help='image: BGMv2 composites + DIM metrics; video: RVM clips + video metrics; auto (default): '
                        'video for --model-type rvm or a --data-dir with <clip>/com/ folders, else image')
    p.add_argument('--bgr-dir', default=None,
                   help='image protocol: backgrounds to composite onto (default: the validation split of '
                        '"backgrounds" in configs/datasets.json, data/Backgrounds/valid)')
    p.add_argument('--pred-dir', default=None, help='score the predictions in this folder instead of running a model')
    p.add_argument('--output-dir', default=os.path.join(ROOT, 'output', 'eval'),
                   help='results folder (default output/eval)')
    p.add_argument('--seed', type=int, default=0, help='image protocol: seed of the evaluation composites (default 0)')
    p.add_argument('--trimap-radius', type=int, default=10,
                   help='image protocol: unknown band of derived trimaps: L1 distance in pixels (default 10)')
    p.add_argument('--resolution', type=int, default=None,
                   help='image protocol: resize every test image so that its longer side has this many pixels '
                        'before compositing and scoring (default: native size; SAD, Grad and Conn are sums and '
                        'scale with the size)')
    p.add_argument('--hr', action='store_true',
                   help='video protocol: the high-resolution evaluator\'s definitions (evaluate_hr.py: Grad without '
                        'min-max stretch, no Conn), as the paper reports 1920x1080')
    p.add_argument('--downsample-ratio', type=float, default=None,
                   help='video protocol, rvm: scale of the recurrent network, in (0, 1]; default min(512 / max(H, W), '
                        '1), the official automatic rule (the paper uses 0.25 at 1920x1080)')
    p.add_argument('--seq-chunk', type=int, default=1, help='video protocol: frames per model call (default 1)')
    p.add_argument('--save-pred', action='store_true', help='also write the predicted mattes and foregrounds')
    add_model_args(p)
    add_backend_args(p)
    args = p.parse_args(argv)
    if args.resolution is not None and args.resolution < 4:
        p.error('--resolution must be at least 4')
    if args.trimap_radius < 1:
        p.error('--trimap-radius must be at least 1')
    if args.downsample_ratio is not None and not 0 < args.downsample_ratio <= 1:
        p.error('--downsample-ratio must be in (0, 1]')
    if args.seq_chunk < 1:
        p.error('--seq-chunk must be at least 1')
    return args


def choose_protocol(args):
    """'image' or 'video' (the --protocol rule), with clear errors for options of the other one."""
    protocol = args.protocol
    if protocol == 'auto':
        rvm_model = args.model_type == 'rvm' and not args.pred_dir
        protocol = 'video' if rvm_model or (args.data_dir and is_composited_layout(args.data_dir)) else 'image'
    if protocol == 'image':
        if args.model_type == 'rvm' and not args.pred_dir:
            raise ValueError("--model-type rvm is evaluated with the video protocol on composited clips "
                             "(--data-dir <clip>/{com,fgr,pha,bgr}/)")
        wrong = [flag for flag, value in [('--hr', args.hr), ('--downsample-ratio', args.downsample_ratio)] if value]
    else:
        if not args.data_dir:
            raise ValueError("the video protocol needs --data-dir: the composited test set "
                             "(<clip>/{com,fgr,pha,bgr}/, e.g. videomatte_512x288)")
        wrong = [flag for flag, value in [('--bgr-dir', args.bgr_dir), ('--resolution', args.resolution)] if value]
    if wrong:
        raise ValueError(f"{', '.join(wrong)}: not an option of the {protocol} protocol")
    return protocol


def model_settings(args):
    options = model_options(args)           # first: it also fills in the default backbone
    checkpoint = os.path.abspath(checkpoint_path(args))
    return {'mode': 'model', 'checkpoint': checkpoint, 'checkpoint_mtime_ns': os.stat(checkpoint).st_mtime_ns,
            **options}


def settings_of(args, protocol, data_dir, bgr_dir):
    """What the numbers depend on; a rerun into the same --output-dir must match it to resume."""
    common = {'protocol': protocol, 'data_dir': data_dir}
    if protocol == 'image':
        common.update(trimap_radius=args.trimap_radius, resolution=args.resolution)
    else:
        common.update(hr=args.hr)
    if args.pred_dir:
        return {'mode': 'pred', 'pred_dir': os.path.abspath(args.pred_dir), **common}
    if protocol == 'image':
        return {**model_settings(args), 'bgr_dir': bgr_dir, 'seed': args.seed, **common}
    return {**model_settings(args), 'downsample_ratio': args.downsample_ratio, 'seq_chunk': args.seq_chunk, **common}


# ---------------------------------------------------------------- image protocol: ground truth

def pair_name(root, fgr_path):
    """Relative path without extension, without the foreground folder: fgr/0001.png -> 0001."""
    parts = os.path.splitext(os.path.relpath(fgr_path, root))[0].split(os.sep)
    fgr_dir = next((i for i, part in enumerate(parts[:-1]) if part.lower() in FGR_NAMES), None)
    return '/'.join(parts[:fgr_dir] + parts[fgr_dir + 1:] if fgr_dir is not None else parts)


def derive_trimap(alpha, radius):
    """uint8 trimap from a uint8 alpha (the module docstring states the rule)."""
    cross = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
    opaque = cv2.erode(alpha, cross, iterations=radius) == 255
    clear = cv2.dilate(alpha, cross, iterations=radius) == 0
    return np.where(opaque, 255, np.where(clear, 0, 128)).astype(np.uint8)


def resize_long_side(image, side, interpolation):
    h, w = image.shape[:2]
    s = side / max(h, w)
    return cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=interpolation)


def ground_truth(args, pair):
    """(fgr float H x W x 3, alpha uint8, trimap uint8, trimap_was_derived) of one test image."""
    fgr_path, pha_path, trimap_path = pair
    fgr, pha = read_pair(fgr_path, pha_path)
    trimap = read_alpha_u8(trimap_path) if trimap_path else None
    if trimap is not None and trimap.shape != pha.shape:
        raise ValueError(f"{trimap_path} is {trimap.shape[1]}x{trimap.shape[0]} but its alpha "
                         f"{pha.shape[1]}x{pha.shape[0]}")
    if args.resolution:
        fgr, pha = (resize_long_side(a, args.resolution, cv2.INTER_AREA) for a in (fgr, pha))
        trimap = None if trimap is None else resize_long_side(trimap, args.resolution, cv2.INTER_NEAREST)
    alpha = to_uint8(pha)
    return fgr, alpha, (derive_trimap(alpha, args.trimap_radius) if trimap is None else trimap), trimap is None


# ---------------------------------------------------------------- image protocol: predictions

class ModelPredictor:
    """Composites test image i over its background and runs the model on it."""

    def __init__(self, args, bgr_dir, frames):
        self.backgrounds = image_files(bgr_dir)
        self.matting = create_runner(args, frames)
        self.seed = args.seed

    def __call__(self, index, name, fgr, alpha):
        h, w = alpha.shape
        bgr = resize_cover(read_image(self.backgrounds[index % len(self.backgrounds)]), h, w)
        rng = np.random.default_rng([self.seed, index])
        src, bgr = eval_composite(fgr, alpha / np.float32(255), bgr, rng)
        out = self.matting(src[None], bgr[None])
        return to_uint8(out['pha'][0]), to_uint8(out['fgr'][0])


class FolderPredictor:
    """Reads `<pred-dir>/pha/<name>.*` (or `<pred-dir>/<name>.*`) and `<pred-dir>/fgr/<name>.*` if any."""

    def __init__(self, pred_dir):
        pha_dir = os.path.join(pred_dir, 'pha')
        self.pha_dir = pha_dir if os.path.isdir(pha_dir) else pred_dir
        self.pha = self._by_name(self.pha_dir)
        fgr_dir = os.path.join(pred_dir, 'fgr')
        self.fgr = self._by_name(fgr_dir) if os.path.isdir(fgr_dir) else {}
        if not self.pha:
            raise ValueError(f"{self.pha_dir}: no predicted mattes found")

    @staticmethod
    def _by_name(directory):
        return {os.path.splitext(os.path.relpath(p, directory))[0].replace(os.sep, '/'): p
                for p in list_images(directory)}

    def __call__(self, index, name, fgr, alpha):
        if name not in self.pha:
            raise ImageReadError(f"{os.path.join(self.pha_dir, name)}.*: no predicted matte for this image")
        fgr_pred = read_image(self.fgr[name]) if name in self.fgr else None
        return read_alpha_u8(self.pha[name]), fgr_pred


# ---------------------------------------------------------------- image protocol: scoring

def score_image(name, pred, alpha, trimap, fgr_pred, fgr):
    """One CSV row."""
    unknown = int(np.count_nonzero(trimap == 128))
    row = {'name': name, 'height': alpha.shape[0], 'width': alpha.shape[1], 'unknown_pixels': unknown,
           **dim_metrics(pred, alpha, trimap)}
    row['FG_MSE'] = '' if fgr_pred is None else foreground_metrics(fgr_pred, fgr, alpha)['MSE']
    row['old_SAD_x2'] = 2 * row['SAD']
    row['old_MSE_x2e3'] = 2000 * row['MSE'] * unknown / (unknown + 1) if unknown else 0.0
    return row


def image_means(rows):
    """Plain mean over images (as hleval.m) of each column; NaN/absent values are left out and counted."""
    out = {}
    for column in IMAGE_COLUMNS:
        values = [v for v in (r[column] for r in rows) if present(v)]
        out[column] = {'mean': mean(values), 'images': len(values)}
    return out


def configured_dir(name, option):
    """The validation folder of a dataset of configs/datasets.json, for an option left at its default."""
    try:
        return config.split_dir(config.load_roots(), name, 'valid')
    except ValueError as e:
        raise ValueError(f"no {option} given and the default is missing: {e}. Pass {option}, e.g. "
                         f"--data-dir dataset/demo/valid --bgr-dir dataset/demo/backgrounds/valid") from None


def evaluate_images(args):
    data_dir = os.path.abspath(args.data_dir or configured_dir('photomatte85', '--data-dir'))
    bgr_dir = None if args.pred_dir else os.path.abspath(args.bgr_dir or configured_dir('backgrounds', '--bgr-dir'))
    pairs = find_pairs(data_dir)
    settings = start_output(args.output_dir, settings_of(args, 'image', data_dir, bgr_dir))
    csv_path = os.path.join(args.output_dir, 'metrics.csv')
    rows = {r['name']: r for r in read_rows(csv_path, IMAGE_FIELDS)}
    todo = [(i, pair, pair_name(data_dir, pair[0])) for i, pair in enumerate(pairs)]
    todo = [t for t in todo if t[2] not in rows]
    if todo:        # a finished run only reprints its results: no model needed
        predict = FolderPredictor(args.pred_dir) if args.pred_dir else ModelPredictor(args, bgr_dir, len(todo))
    failed = []
    with progress(len(pairs), len(pairs) - len(todo), 'image') as bar:
        for index, pair, name in todo:
            try:
                fgr, alpha, trimap, derived = ground_truth(args, pair)
                pred, fgr_pred = predict(index, name, fgr, alpha)
                rows[name] = score_image(name, pred, alpha, trimap, fgr_pred, fgr)
            except ValueError as e:         # unreadable/missing file or mismatched sizes: count, go on
                failed.append(report_failure('name', name, e))
            else:
                save_image_outputs(args, name, trimap if derived else None, pred, fgr_pred)
                write_rows(csv_path, IMAGE_FIELDS, [rows[n] for n in sorted(rows)])  # an interrupted run resumes here
            bar.update()
    ordered = [rows[n] for n in sorted(rows)]
    write_rows(csv_path, IMAGE_FIELDS, ordered)
    summary = {'protocol': 'image', 'images': len(pairs), 'scored': len(rows), 'failed': len(failed),
               'failures': failed, 'mean': image_means(ordered), 'columns': IMAGE_COLUMNS, 'settings': settings,
               'trimap': 'from the test set' if pairs[0][2] else f'derived from the 8-bit ground-truth alpha, '
                                                                 f'L1 radius {args.trimap_radius} (saved in trimap/)'}
    write_json(os.path.join(args.output_dir, 'summary.json'), summary)
    head = (f"{summary['scored']} of {summary['images']} images scored ({summary['failed']} failed); DIM metrics "
            f"over the trimap's unknown region; 'old repro': the scale of the earlier Paddle reproduction")
    return summary, table(head, IMAGE_TABLE, summary['mean']), ['metrics.csv', 'summary.json']


def save_image_outputs(args, name, trimap, pred, fgr_pred):
    if trimap is not None:
        write_image(os.path.join(args.output_dir, 'trimap', name + '.png'), trimap)
    if args.save_pred and not args.pred_dir:
        write_image(os.path.join(args.output_dir, 'pred', 'pha', name + '.png'), pred)
        write_image(os.path.join(args.output_dir, 'pred', 'fgr', name + '.png'), fgr_pred)


def evaluate(args):
    """-> (summary, console table, result file names) of the protocol the options choose."""
    protocol = choose_protocol(args)
    if protocol == 'image':
        return evaluate_images(args)
    data_dir = os.path.abspath(args.data_dir)
    return evaluate_clips(args, data_dir, settings_of(args, 'video', data_dir, None))


def main(argv=None):
    args = parse_args(argv)
    try:
        summary, text, files = evaluate(args)
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")
    print(text)
    print('results: ' + ', '.join(os.path.join(args.output_dir, f) for f in files))
    return 1 if summary['failed'] else 0


if __name__ == '__main__':
    sys.exit(main())
