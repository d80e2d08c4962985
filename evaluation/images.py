"""The image protocol: BGMv2's evaluation on PhotoMatte85-style test sets with the Deep Image Matting metrics.
eval.py's docstring states the protocol; the columns below their scaling."""
import dataclasses
import os

import cv2
import numpy as np

from dataset.augmentation import eval_composite, perturb_plate
from dataset.folders import find_pairs, image_files, pair_stem, read_pair
from utils.io import ImageReadError, read_alpha_u8, read_image, resize_cover, to_uint8, write_image
from utils.metrics import dim_metrics, foreground_metrics
from utils.pairing import by_stem

from .baseline import BLUR_SIGMA, DifferenceMatte, ThresholdSearch
from .report import save_thumbnails, write_report
from .results import column_means, score_cases, start_output, table, write_json

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


def ground_truth(cfg, pair):
    """(fgr float H x W x 3, alpha uint8, trimap uint8, trimap_was_derived) of one test image."""
    fgr_path, pha_path, trimap_path = pair
    fgr, pha = read_pair(fgr_path, pha_path)
    trimap = read_alpha_u8(trimap_path) if trimap_path else None
    if trimap is not None and trimap.shape != pha.shape:
        raise ValueError(f"{trimap_path} is {trimap.shape[1]}x{trimap.shape[0]} but its alpha "
                         f"{pha.shape[1]}x{pha.shape[0]}")
    if cfg.resolution:
        fgr, pha = (resize_long_side(a, cfg.resolution, cv2.INTER_AREA) for a in (fgr, pha))
        trimap = None if trimap is None else resize_long_side(trimap, cfg.resolution, cv2.INTER_NEAREST)
    alpha = to_uint8(pha)
    return fgr, alpha, (derive_trimap(alpha, cfg.trimap_radius) if trimap is None else trimap), trimap is None


# ---------------------------------------------------------------- predictions

class ModelPredictor:
    """Composites test image i over its background and runs the model on it -> (pred, fgr, the composite)."""

    def __init__(self, runner, cfg):
        self.backgrounds = image_files(cfg.bgr_dir)
        self.matting, self.cfg = runner, cfg

    def composite(self, index, fgr, alpha):
        """Test image `index` over its background, with cfg's augmentation and plate perturbation -> (photo,
        plate)."""
        h, w = alpha.shape
        bgr = resize_cover(read_image(self.backgrounds[index % len(self.backgrounds)]), h, w)
        rng = np.random.default_rng([self.cfg.seed, index])
        src, bgr = eval_composite(fgr, alpha / np.float32(255), bgr, rng, self.cfg.augment == 'official')
        return src, perturb_plate(bgr, rng, self.cfg.plate_shift, self.cfg.plate_noise)

    def __call__(self, index, name, fgr, alpha):
        src, bgr = self.composite(index, fgr, alpha)
        out = self.matting(src[None], bgr[None])
        return to_uint8(out['pha'][0]), to_uint8(out['fgr'][0]), src


class FolderPredictor:
    """Reads `<pred-dir>/pha/<name>.*` (or `<pred-dir>/<name>.*`) and `<pred-dir>/fgr/<name>.*` if any ->
    (pred, fgr or None, the true foreground to show)."""

    def __init__(self, pred_dir):
        if not os.path.isdir(pred_dir):
            raise ValueError(f"{pred_dir}: prediction folder not found")
        pha_dir = os.path.join(pred_dir, 'pha')
        self.pha_dir = pha_dir if os.path.isdir(pha_dir) else pred_dir
        self.pha = by_stem(self.pha_dir)
        fgr_dir = os.path.join(pred_dir, 'fgr')
        self.fgr = by_stem(fgr_dir) if os.path.isdir(fgr_dir) else {}
        if not self.pha:
            raise ValueError(f"{self.pha_dir}: no predicted mattes found")

    def __call__(self, index, name, fgr, alpha):
        if name not in self.pha:
            raise ImageReadError(f"{os.path.join(self.pha_dir, name)}.*: no predicted matte for this image")
        fgr_pred = read_image(self.fgr[name]) if name in self.fgr else None
        return read_alpha_u8(self.pha[name]), fgr_pred, fgr


# ---------------------------------------------------------------- scoring

def score_image(name, pred, alpha, trimap, fgr_pred, fgr):
    """One CSV row."""
    unknown = int(np.count_nonzero(trimap == 128))
    row = {'name': name, 'height': alpha.shape[0], 'width': alpha.shape[1], 'unknown_pixels': unknown,
           **dim_metrics(pred, alpha, trimap)}
    row['FG_MSE'] = '' if fgr_pred is None else foreground_metrics(fgr_pred, fgr, alpha)['MSE']
    row['old_SAD_x2'] = 2 * row['SAD']
    row['old_MSE_x2e3'] = 2000 * row['MSE'] * unknown / (unknown + 1) if unknown else 0.0
    return row


def evaluate(cfg, settings, make_runner=None, plates=True):
    """Score every test image of cfg.data_dir not yet in <cfg.output_dir>/metrics.csv; write the result files.
    `make_runner(frames)` gives the model's runner (None: score cfg.pred_dir), fed composites over cfg.bgr_dir
    with those backgrounds as plates; cfg.baseline adds the difference matte on the same composites, scored into
    <output_dir>/baseline_difference/. -> (summary, console table, result file names)."""
    summary = score_all(cfg, settings, make_runner)
    head = (f"{summary['scored']} of {summary['images']} images scored ({summary['failed']} failed); DIM metrics "
            f"over the trimap's unknown region; 'old repro': the scale of the earlier Paddle reproduction")
    files, others = ['metrics.csv', 'summary.json', 'report.html'], []
    if cfg.baseline:
        threshold = cfg.baseline_threshold or difference_threshold(cfg)
        folder = os.path.join(cfg.output_dir, 'baseline_difference')
        base = score_all(dataclasses.replace(cfg, output_dir=folder, save_pred=False),
                         {**{k: v for k, v in settings.items() if k in ('protocol', 'data_dir', 'trimap_radius',
                                                                         'resolution', 'bgr_dir', 'seed', 'augment',
                                                                         'plate_shift', 'plate_noise')},
                          'mode': 'baseline', 'baseline': 'difference', 'threshold': threshold,
                          'blur_sigma': BLUR_SIGMA}, lambda count: DifferenceMatte(threshold))
        summary['baseline'] = {'method': 'difference', 'threshold': threshold, 'mean': base['mean'],
                               'failed': base['failed']}
        write_json(os.path.join(cfg.output_dir, 'summary.json'), summary)
        others = [(f'diff t={threshold:.3g}', base['mean'])]
        files.append(os.path.join('baseline_difference', 'metrics.csv'))
    return summary, table(head, IMAGE_TABLE, summary['mean'], others), files


def difference_threshold(cfg):
    """The difference matte's t of the smallest mean alpha error over the evaluated composites."""
    search, composites = ThresholdSearch(), ModelPredictor(None, cfg)
    pairs = find_pairs(cfg.data_dir)
    by_name = {pair_stem(cfg.data_dir, pair[0]): pair for pair in pairs}
    for index, name in enumerate(by_name):
        try:
            fgr, alpha, _, _ = ground_truth(cfg, by_name[name])
        except ValueError:              # unreadable: reported when it is scored
            continue
        src, bgr = composites.composite(index, fgr, alpha)
        search.add(src, bgr, alpha / np.float32(255))
    return search.best()


def score_all(cfg, settings, make_runner):
    """The image protocol's scoring loop and result files (metrics.csv, summary.json, report.html) -> summary."""
    pairs = find_pairs(cfg.data_dir)
    settings = start_output(cfg.output_dir, settings)
    by_name = {pair_stem(cfg.data_dir, pair[0]): pair for pair in pairs}

    def make_scorer(count):
        predict = FolderPredictor(cfg.pred_dir) if cfg.pred_dir else ModelPredictor(make_runner(count), cfg)

        def score(index, name):
            fgr, alpha, trimap, derived = ground_truth(cfg, by_name[name])
            pred, fgr_pred, shown = predict(index, name, fgr, alpha)
            row = score_image(name, pred, alpha, trimap, fgr_pred, fgr)
            save_image_outputs(cfg, name, trimap if derived else None, pred, fgr_pred)
            save_thumbnails(cfg.output_dir, name, shown, pred, alpha)
            return row
        return score

    ordered, failed = score_cases(cfg.output_dir, IMAGE_FIELDS, list(by_name), make_scorer)
    summary = {'protocol': 'image', 'images': len(pairs), 'scored': len(ordered), 'failed': len(failed),
               'failures': failed, 'mean': column_means(ordered, IMAGE_COLUMNS), 'columns': IMAGE_COLUMNS,
               'settings': settings,
               'trimap': 'from the test set' if pairs[0][2] else f'derived from the 8-bit ground-truth alpha, '
                                                                 f'L1 radius {cfg.trimap_radius} (saved in trimap/)'}
    write_json(os.path.join(cfg.output_dir, 'summary.json'), summary)
    write_report(cfg.output_dir, summary, ordered, IMAGE_COLUMNS, title=f'image protocol: {cfg.data_dir}')
    return summary


def save_image_outputs(cfg, name, trimap, pred, fgr_pred):
    if trimap is not None:
        write_image(os.path.join(cfg.output_dir, 'trimap', name + '.png'), trimap)
    if cfg.save_pred and not cfg.pred_dir:
        write_image(os.path.join(cfg.output_dir, 'pred', 'pha', name + '.png'), pred)
        write_image(os.path.join(cfg.output_dir, 'pred', 'fgr', name + '.png'), fgr_pred)
