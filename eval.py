"""Evaluate a matting model, or existing predictions, on a PhotoMatte85-style test set with the reference
Deep Image Matting metrics (SAD, MSE, Grad, Conn over the trimap's unknown region, scaled as the official
MATLAB evaluation reports them) plus the foreground MSE.

    python3 eval.py                                    # demo model on PhotoMatte85 + validation backgrounds
    python3 eval.py --model-backbone resnet50 --model-checkpoint pytorch_resnet50.pth
    python3 eval.py --pred-dir other_method/           # score existing mattes, no model

Protocol (model mode). Test set: `fgr/ pha/ [trimap/]` or a folder of RGBA images. Image i (in sorted name
order) is composited at its native size over background i mod N of --bgr-dir (resized to cover it and
centre-cropped, aspect kept) with the BGMv2 evaluation augmentation (shadow, noise, background colour
jitter, background misalignment), drawn from numpy's generator seeded by (--seed, i): every run, resumed or
not, sees the same composites. The predicted matte is quantised to 8 bits (as a saved PNG) and scored as
is (not pasted with the trimap). Prediction mode scores `<pred-dir>/pha/<name>.*` (or `<pred-dir>/<name>.*`)
against the same ground truth, and `<pred-dir>/fgr/<name>.*` if present.

Trimaps: the test set's own if it has them; otherwise derived from the ground-truth alpha (8-bit) with
the rule of the earlier Paddle reproduction: 255 where the alpha is 255 at every pixel within L1 distance
--trimap-radius (10; a 3x3 cross eroded that many times), 0 where it is 0 at all of them, 128 elsewhere.
Derived trimaps are saved in <output-dir>/trimap/.

Output (<output-dir>): per-image `metrics.csv`, `summary.json` (means, protocol, failures), `settings.json`
(a rerun with the same settings skips images already in the CSV; other settings need another directory),
`trimap/`, and with --save-pred `pred/pha/` + `pred/fgr/` (which --pred-dir accepts). Exit status 1 if any
image could not be scored (each one is reported by name and listed in summary.json).
"""
import argparse
import csv
import json
import math
import os
import sys

import cv2
import numpy as np
from tqdm import tqdm

from dataset import config
from dataset.augmentation import eval_composite
from dataset.folders import FGR_NAMES, find_pairs, image_files
from dataset.matting import read_pair
from utils.io import resize_cover
from utils.runner import create_runner
from utils.io import ImageReadError, atomic_path, list_images, read_alpha_u8, read_image, to_uint8, write_image
from utils.metrics import dim_metrics, foreground_metrics
from utils.options import ROOT, add_model_args, checkpoint_path, model_options

# CSV column -> what it is; the console table shows the same scaling in its headers
COLUMNS = {
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
TABLE = [('SAD', 'sum/1e3', 3), ('MSE', 'mean', 6), ('Grad', 'sum/1e3', 3), ('Conn', 'sum/1e3', 3),
         ('FG_MSE', 'mean x1e3', 3), ('old_SAD_x2', 'old repro x2', 3), ('old_MSE_x2e3', 'old repro x2e3', 3)]
FIELDS = ['name', 'height', 'width', 'unknown_pixels'] + list(COLUMNS)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--data-dir', default=None,
                   help='test set: fgr/ pha/ [trimap/] or RGBA images (default: photomatte85 of configs/datasets.json, '
                        'data/PhotoMatte85)')
    p.add_argument('--bgr-dir', default=None,
                   help='backgrounds to composite onto (default: the validation split of "backgrounds" in '
                        'configs/datasets.json, data/Backgrounds/valid)')
    p.add_argument('--pred-dir', default=None, help='score the mattes in this folder instead of running a model')
    p.add_argument('--output-dir', default=os.path.join(ROOT, 'output', 'eval'),
                   help='results folder (default output/eval)')
    p.add_argument('--seed', type=int, default=0, help='seed of the evaluation composites (default 0)')
    p.add_argument('--trimap-radius', type=int, default=10,
                   help='unknown band of derived trimaps: L1 distance in pixels (default 10)')
    p.add_argument('--resolution', type=int, default=None,
                   help='resize every test image so that its longer side has this many pixels before compositing '
                        'and scoring (default: native size; SAD, Grad and Conn are sums and scale with the size)')
    p.add_argument('--save-pred', action='store_true', help='also write the predicted mattes and foregrounds')
    add_model_args(p)
    p.set_defaults(precision='fp32')      # predict's model runner reads it; evaluation runs in float32
    args = p.parse_args(argv)
    if args.model_type not in ('mattingbase', 'mattingrefine') and not args.pred_dir:
        p.error(f'--model-type {args.model_type}: eval.py evaluates the background-matting models '
                f'(mattingbase, mattingrefine); score other predictions with --pred-dir')
    if args.resolution is not None and args.resolution < 4:
        p.error('--resolution must be at least 4')
    if args.trimap_radius < 1:
        p.error('--trimap-radius must be at least 1')
    return args


def settings_of(args, data_dir, bgr_dir):
    """What the numbers depend on; a rerun into the same --output-dir must match it to resume."""
    common = {'data_dir': data_dir, 'trimap_radius': args.trimap_radius, 'resolution': args.resolution}
    if args.pred_dir:
        return {'mode': 'pred', 'pred_dir': os.path.abspath(args.pred_dir), **common}
    options = model_options(args)           # first: it also fills in the default backbone
    checkpoint = os.path.abspath(checkpoint_path(args))
    return {'mode': 'model', 'bgr_dir': bgr_dir, 'seed': args.seed, 'checkpoint': checkpoint,
            'checkpoint_mtime_ns': os.stat(checkpoint).st_mtime_ns, **options, **common}


# ---------------------------------------------------------------- ground truth

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


# ---------------------------------------------------------------- predictions

class ModelPredictor:
    """Composites test image i over its background and runs the model on it."""

    def __init__(self, args, bgr_dir):
        self.backgrounds = image_files(bgr_dir)
        self.matting = create_runner(args)
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


# ---------------------------------------------------------------- scoring and results

def score(name, pred, alpha, trimap, fgr_pred, fgr):
    """One CSV row."""
    unknown = int(np.count_nonzero(trimap == 128))
    row = {'name': name, 'height': alpha.shape[0], 'width': alpha.shape[1], 'unknown_pixels': unknown,
           **dim_metrics(pred, alpha, trimap)}
    row['FG_MSE'] = '' if fgr_pred is None else foreground_metrics(fgr_pred, fgr, alpha)['MSE']
    row['old_SAD_x2'] = 2 * row['SAD']
    row['old_MSE_x2e3'] = 2000 * row['MSE'] * unknown / (unknown + 1) if unknown else 0.0
    return row


def read_rows(path):
    """Rows already scored (numbers as floats, '' for absent values)."""
    if not os.path.isfile(path):
        return {}
    with open(path, newline='') as f:
        rows = list(csv.DictReader(f))
    if rows and set(rows[0]) != set(FIELDS):
        raise ValueError(f"{path}: not a metrics file of this version of eval.py (columns {sorted(rows[0])})")
    parse = {'name': str, 'height': int, 'width': int, 'unknown_pixels': int}
    return {r['name']: {k: v if v == '' else parse.get(k, float)(v) for k, v in r.items()} for r in rows}


def write_rows(path, rows):
    """All rows, sorted by name, replacing the file atomically."""
    with atomic_path(path) as tmp, open(tmp, 'w', newline='') as f:
        writer = csv.DictWriter(f, FIELDS, lineterminator='\n')
        writer.writeheader()
        writer.writerows(rows[name] for name in sorted(rows))


def write_json(path, obj):
    with atomic_path(path) as tmp, open(tmp, 'w') as f:
        json.dump(obj, f, indent=1, allow_nan=True)
        f.write('\n')


def check_settings(output_dir, settings):
    path = os.path.join(output_dir, 'settings.json')
    if os.path.isfile(path):
        with open(path) as f:
            old = json.load(f)
        changed = sorted(k for k in settings.keys() | old.keys() if settings.get(k) != old.get(k))
        if changed:
            raise ValueError(f"{output_dir} holds results of other settings ({', '.join(changed)} differ); "
                             f"use another --output-dir or delete it")
    write_json(path, settings)


def means(rows):
    """Plain mean over images (as hleval.m) of each column; NaN/absent values are left out and counted."""
    out = {}
    for column in COLUMNS:
        values = [rows[n][column] for n in sorted(rows) if rows[n][column] != '' and not math.isnan(rows[n][column])]
        out[column] = {'mean': sum(values) / len(values) if values else None, 'images': len(values)}
    return out


def table(summary):
    """The console table: one header line of names, one of scalings, one of means."""
    cells = [(name, scale, '-' if summary['mean'][name]['mean'] is None else f"{summary['mean'][name]['mean']:.{d}f}")
             for name, scale, d in TABLE]
    widths = [max(len(c) for c in cell) + 2 for cell in cells]
    lines = [''.join(c[i].rjust(w) for c, w in zip(cells, widths)) for i in range(3)]
    head = (f"{summary['scored']} of {summary['images']} images scored ({summary['failed']} failed); DIM metrics "
            f"over the trimap's unknown region; 'old repro': the scale of the earlier Paddle reproduction")
    return '\n'.join([head] + [label.ljust(6) + line for label, line in zip(['', 'scale', 'mean'], lines)])


def configured_dir(name, option):
    """The validation folder of a dataset of configs/datasets.json, for an option left at its default."""
    try:
        return config.split_dir(config.load_roots(), name, 'valid')
    except ValueError as e:
        raise ValueError(f"no {option} given and the default is missing: {e}. Pass {option}, e.g. "
                         f"--data-dir dataset/demo/valid --bgr-dir dataset/demo/backgrounds/valid") from None


def resolve_dirs(args):
    data_dir = args.data_dir or configured_dir('photomatte85', '--data-dir')
    bgr_dir = None if args.pred_dir else (args.bgr_dir or configured_dir('backgrounds', '--bgr-dir'))
    return os.path.abspath(data_dir), bgr_dir and os.path.abspath(bgr_dir)


def evaluate(args):
    data_dir, bgr_dir = resolve_dirs(args)
    pairs = find_pairs(data_dir)
    settings = settings_of(args, data_dir, bgr_dir)
    os.makedirs(args.output_dir, exist_ok=True)
    check_settings(args.output_dir, settings)
    csv_path = os.path.join(args.output_dir, 'metrics.csv')
    rows = read_rows(csv_path)
    todo = [(i, pair, pair_name(data_dir, pair[0])) for i, pair in enumerate(pairs)]
    todo = [t for t in todo if t[2] not in rows]
    if todo:        # a finished run only reprints its results: no model needed
        predict = FolderPredictor(args.pred_dir) if args.pred_dir else ModelPredictor(args, bgr_dir)
    failed = []
    with tqdm(total=len(pairs), initial=len(pairs) - len(todo), unit='image', desc='eval', dynamic_ncols=True) as bar:
        for index, pair, name in todo:
            try:
                fgr, alpha, trimap, derived = ground_truth(args, pair)
                pred, fgr_pred = predict(index, name, fgr, alpha)
                rows[name] = score(name, pred, alpha, trimap, fgr_pred, fgr)
            except ValueError as e:         # unreadable/missing file or mismatched sizes: count, go on
                failed.append({'name': name, 'error': str(e)})
                tqdm.write(f"failed: {name}: {e}", file=sys.stderr)
            else:
                save_outputs(args, name, trimap if derived else None, pred, fgr_pred)
                write_rows(csv_path, rows)  # after every image, so an interrupted run resumes here
            bar.update()
    summary = {'images': len(pairs), 'scored': len(rows), 'failed': len(failed), 'failures': failed,
               'mean': means(rows), 'columns': COLUMNS, 'settings': settings,
               'trimap': 'from the test set' if pairs[0][2] else f'derived from the 8-bit ground-truth alpha, '
                                                                 f'L1 radius {args.trimap_radius} (saved in trimap/)'}
    write_rows(csv_path, rows)
    write_json(os.path.join(args.output_dir, 'summary.json'), summary)
    return summary


def save_outputs(args, name, trimap, pred, fgr_pred):
    if trimap is not None:
        write_image(os.path.join(args.output_dir, 'trimap', name + '.png'), trimap)
    if args.save_pred and not args.pred_dir:
        write_image(os.path.join(args.output_dir, 'pred', 'pha', name + '.png'), pred)
        write_image(os.path.join(args.output_dir, 'pred', 'fgr', name + '.png'), fgr_pred)


def main(argv=None):
    args = parse_args(argv)
    try:
        summary = evaluate(args)
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")
    print(table(summary))
    print(f"per image: {os.path.join(args.output_dir, 'metrics.csv')}; summary: "
          f"{os.path.join(args.output_dir, 'summary.json')}")
    return 1 if summary['failed'] else 0


if __name__ == '__main__':
    sys.exit(main())
