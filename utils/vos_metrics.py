"""Video object segmentation measures of the DAVIS 2017 toolkit (`davisvideochallenge/davis2017-evaluation`,
`davis2017/metrics.py`, `utils.py`, `evaluation.py`), reproduced number for number without scipy/skimage
(golden values: tests/data/vos/davis_metrics.*, spec: shared/golden/vos/README.md "DAVIS J&F").

* J, region similarity (`db_eval_iou`): |A and S| / |A or S| over the pixels that are not void; 1 when the
  union is empty.
* F, boundary accuracy (`db_eval_boundary`): the one-pixel boundary maps of `seg2bmap`, each dilated by
  `disk(r)` with r = bound_th if bound_th >= 1 else ceil(bound_th * image diagonal) (8 px at 480x854);
  precision = predicted boundary pixels within r of the true boundary, recall the converse, F = 2PR / (P + R).
  An empty boundary on one side gives P, R = (1, 0) or (0, 1), on both sides P = R = 1 (so an empty mask
  against a full one has F = 1: a full mask has no boundary).
* Statistics (`db_statistics`): mean, recall (fraction of frames > 0.5) and decay (mean of the first quarter of
  the frames minus the last quarter, with the toolkit's bin edges: see the function).
* A sequence (`evaluate_sequence`, semi-supervised): GT void (255) counts as background, the objects are the
  labels 1..N of GT frame 0, the first and the last frame are not scored, and a result label above N is an error.
  The dataset numbers (`summarize`) are plain means over all objects of all sequences; J&F = (J + F) / 2.
Masks are any array where nonzero = object (bool, uint8, float); inputs are never modified.
"""
import math

import cv2
import numpy as np

MEASURES = ('J&F-Mean', 'J-Mean', 'J-Recall', 'J-Decay', 'F-Mean', 'F-Recall', 'F-Decay')
VOID = 255


def _check_shapes(annotation, segmentation, void_pixels):
    if annotation.shape != segmentation.shape:
        raise ValueError(f"annotation {annotation.shape} and segmentation {segmentation.shape} differ in shape")
    if void_pixels is not None and void_pixels.shape != annotation.shape:
        raise ValueError(f"void_pixels {void_pixels.shape} and annotation {annotation.shape} differ in shape")
    if annotation.ndim not in (2, 3):
        raise ValueError(f"masks must be H x W or T x H x W, got shape {annotation.shape}")


def db_eval_iou(annotation, segmentation, void_pixels=None):
    """J of an H x W pair (a float) or of each frame of a T x H x W stack (a length-T float array)."""
    a, s = np.asarray(annotation).astype(bool), np.asarray(segmentation).astype(bool)
    void = None if void_pixels is None else np.asarray(void_pixels).astype(bool)
    _check_shapes(a, s, void)
    inter, union = a & s, a | s
    if void is not None:
        keep = ~void
        inter &= keep
        union &= keep
    inter = np.count_nonzero(inter, axis=(-2, -1))
    union = np.count_nonzero(union, axis=(-2, -1))
    j = np.where(union == 0, 1.0, inter / np.maximum(union, 1))
    return float(j) if j.ndim == 0 else j


def disk(radius):
    """skimage.morphology.disk: the uint8 (2r+1) x (2r+1) mask of x^2 + y^2 <= r^2 on the grid -r, -r+1, ..."""
    grid = np.arange(-radius, radius + 1)
    return (grid[None, :] ** 2 + grid[:, None] ** 2 <= radius ** 2).astype(np.uint8)


def seg2bmap(seg):
    """The toolkit's one-pixel boundary map (bool, same shape; also for ... x H x W stacks): a pixel is boundary
    if it differs from its east, south or south-east neighbour. The last row compares only with the east
    neighbour, the last column only with the south one, and the bottom-right pixel is never boundary (so an
    all-ones mask has no boundary, an object touching the bottom or right edge has none along that edge)."""
    m = np.asarray(seg).astype(bool)
    b = np.zeros_like(m)
    core = m[..., :-1, :-1]
    b[..., :-1, :-1] = (core ^ m[..., :-1, 1:]) | (core ^ m[..., 1:, :-1]) | (core ^ m[..., 1:, 1:])
    b[..., -1, :-1] = m[..., -1, :-1] ^ m[..., -1, 1:]      # last row: east only
    b[..., :-1, -1] = m[..., :-1, -1] ^ m[..., 1:, -1]      # last column: south only
    return b


def bound_radius(shape, bound_th=0.008):
    """The dilation radius in pixels for an H x W mask: bound_th itself if >= 1, else ceil(bound_th x diagonal)."""
    return bound_th if bound_th >= 1 else math.ceil(bound_th * math.hypot(shape[-2], shape[-1]))


def _matched(boundary, other, kernel):
    """Pixels of `boundary` within the disk of a pixel of `other`, i.e. |boundary and dilate(other)|. The
    dilation is computed on the bounding box of both maps only: a pixel's dilated value depends only on the
    `other` pixels within the kernel, all of which are inside that box (cv2.dilate ignores the outside)."""
    rows = np.flatnonzero(boundary.any(axis=1) | other.any(axis=1))
    cols = np.flatnonzero(boundary.any(axis=0) | other.any(axis=0))
    box = np.s_[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    dilated = cv2.dilate(np.ascontiguousarray(other[box]).view(np.uint8), kernel)
    return int(np.count_nonzero(dilated[boundary[box]]))


def _f_measure(gt_boundary, fg_boundary, kernel):
    n_fg, n_gt = int(np.count_nonzero(fg_boundary)), int(np.count_nonzero(gt_boundary))
    if n_fg == 0 or n_gt == 0:
        precision, recall = (1.0 if n_fg == 0 else 0.0), (1.0 if n_gt == 0 else 0.0)
    else:
        precision = _matched(fg_boundary, gt_boundary, kernel) / n_fg
        recall = _matched(gt_boundary, fg_boundary, kernel) / n_gt
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def db_eval_boundary(annotation, segmentation, void_pixels=None, bound_th=0.008):
    """F of an H x W pair (a float) or of each frame of a T x H x W stack (a length-T float array). Void pixels
    are cleared from both masks before their boundaries are taken (bound_th: see the module docstring)."""
    a, s = np.asarray(annotation).astype(bool), np.asarray(segmentation).astype(bool)
    void = None if void_pixels is None else np.asarray(void_pixels).astype(bool)
    _check_shapes(a, s, void)
    if void is not None:
        a, s = a & ~void, s & ~void
    kernel = disk(bound_radius(a.shape, bound_th))
    gt_b, fg_b = seg2bmap(a), seg2bmap(s)
    if a.ndim == 2:
        return _f_measure(gt_b, fg_b, kernel)
    return np.array([_f_measure(g, f, kernel) for g, f in zip(gt_b, fg_b)], np.float64)


def _nanmean(values):
    values = np.asarray(values, np.float64)
    kept = values[~np.isnan(values)]
    return float(kept.mean()) if kept.size else float('nan')


def db_statistics(per_frame_values):
    """(M, R, D) of one object's per-frame values: M = nanmean(v), R = mean(v > 0.5) (NaN counts as not > 0.5),
    D = nanmean(v[i0:i1 + 1]) - nanmean(v[i3:i4 + 1]) with i = round(linspace(1, n, 5) + 1e-10) - 1 cast to
    uint8, as the toolkit: the 1e-10 rounds 4.5 up, and the cast wraps for n > 256 (D is then usually NaN)."""
    v = np.asarray(per_frame_values, np.float64).ravel()
    edges = (np.round(np.linspace(1, len(v), 5) + 1e-10) - 1).astype(np.int64) % 256
    bins = [v[edges[i]:edges[i + 1] + 1] for i in range(4)]
    return _nanmean(v), _nanmean(v > 0.5), _nanmean(bins[0]) - _nanmean(bins[3])


def evaluate_sequence(gt_labels, res_labels):
    """The semi-supervised scores of one sequence from its T x H x W label maps (GT and result, T >= 3).

    -> {'J', 'F': N x (T-2) per-frame arrays (frames 1..T-2), 'J_M', 'J_R', 'J_D', 'F_M', 'F_R', 'F_D': lists
    of N per-object statistics}, N = the largest label of GT frame 0 (void 255 read as background). The result's
    first and last frames are not read; a label above N in the others is a ValueError."""
    gt, res = np.asarray(gt_labels), np.asarray(res_labels)
    if gt.ndim != 3 or gt.shape != res.shape:
        raise ValueError(f"gt_labels {gt.shape} and res_labels {res.shape} must be T x H x W of one shape")
    if gt.shape[0] < 3:
        raise ValueError(f"a sequence needs at least 3 frames (the first and last are not scored), got {gt.shape[0]}")
    gt = np.where(gt == VOID, 0, gt)
    n = int(gt[0].max())
    gt, res = gt[1:-1], res[1:-1]
    found = int(res.max()) if res.size else 0
    if found > n:
        frame = 1 + int(np.flatnonzero((res > n).any(axis=(1, 2)))[0])
        raise ValueError(f"the result holds object label {found} (first in frame {frame}) but the ground truth's "
                         f"first frame has only {n} object(s)")
    out = {'J': np.zeros((n, len(gt))), 'F': np.zeros((n, len(gt)))}
    for k in range(1, n + 1):
        a, s = gt == k, res == k
        out['J'][k - 1] = db_eval_iou(a, s)
        out['F'][k - 1] = db_eval_boundary(a, s)
    for measure in ('J', 'F'):
        stats = [db_statistics(values) for values in out[measure]]
        for i, suffix in enumerate('MRD'):
            out[f'{measure}_{suffix}'] = [s[i] for s in stats]
    return out


def summarize(sequences):
    """The dataset row from {sequence name: evaluate_sequence(...)} (or a list of such dicts): J-Mean, -Recall,
    -Decay and the F ones are plain means over all objects of all sequences (NaN propagates, as np.mean in the
    toolkit), J&F-Mean = (J-Mean + F-Mean) / 2. -> {measure: float} in MEASURES order."""
    results = list(sequences.values()) if isinstance(sequences, dict) else list(sequences)
    pooled = {key: [v for r in results for v in r[key]] for key in ('J_M', 'J_R', 'J_D', 'F_M', 'F_R', 'F_D')}
    if not pooled['J_M']:
        raise ValueError("no objects to summarize (every sequence's first ground-truth frame is empty)")
    m = {key: float(np.mean(values)) for key, values in pooled.items()}
    return {'J&F-Mean': (m['J_M'] + m['F_M']) / 2, 'J-Mean': m['J_M'], 'J-Recall': m['J_R'], 'J-Decay': m['J_D'],
            'F-Mean': m['F_M'], 'F-Recall': m['F_R'], 'F-Decay': m['F_D']}
