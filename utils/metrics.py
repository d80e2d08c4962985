"""Alpha-matting error measures, in two families that must not be mixed up.

`dim_metrics` - the Deep Image Matting definitions (Xu et al. 2017), as the official MATLAB evaluation code
computes them and `hleval.m` scales them: SAD, MSE, Grad and Conn summed over the unknown trimap region
(trimap == 128). These are the numbers of trimap-based matting papers and of BGMv2's `benchmark.m`.

`video_matte_metrics` - the trimap-free definitions of Robust Video Matting's evaluators (`evaluate_lr.py`,
`evaluate_hr.py`): MAD, MSE, Grad, Conn over the whole image, dtSSD between frames, and `foreground_metrics`.

`indexnet_python_metrics` - the Python metrics IndexNet's training script and its MindSpore port print (not the
MATLAB ones): every metric on min-max-stretched mattes, Grad with a true Gaussian derivative and a factor of 10.

Both families share the same two building blocks (the 9x9 Gaussian-gradient filter and the connectivity
rule); they differ in region, scaling, normalisation and in what happens at an empty threshold.
Mattes are uint8 (as read from 8-bit files) or float in [0, 1]; inputs are never modified.
"""
import cv2
import numpy as np

# Connectivity thresholds 0, 0.1, ..., 1 (RVM's np.arange). For 8-bit alphas every comparison with them gives
# the same answer as MATLAB's 0:0.1:1, because float32(v/255) is never strictly between the two roundings.
_THRESHOLDS = np.arange(0, 1.1, 0.1)
# float32 x >= t  <=>  x >= (smallest float32 >= t): the exact float64 comparison of the references, done in
# float32 so that numpy 1.x (which would round t to the nearest float32) and 2.x agree
_THRESHOLDS32 = np.array([np.float32(t) if np.float32(t) >= t else np.nextafter(np.float32(t), np.float32(2))
                          for t in _THRESHOLDS], np.float32)
_THETA = 0.15


def _gauss_gradient_filters(sigma=1.4, epsilon=1e-2):
    """The DIM/RVM derivative filter hx = G(row) * G'(col) / ||.||_2 (9x9 for sigma 1.4), returned as its
    two 1-D factors: the L2 norm of an outer product is the product of the factors' norms."""
    half = int(np.ceil(sigma * np.sqrt(-2 * np.log(np.sqrt(2 * np.pi) * sigma * epsilon))))
    x = np.arange(-half, half + 1, dtype=np.float64)
    g = np.exp(-x ** 2 / (2 * sigma ** 2)) / (sigma * np.sqrt(2 * np.pi))
    dg = -x * g / sigma ** 2
    return g / np.linalg.norm(g), dg / np.linalg.norm(dg)


_SMOOTH, _DERIV = _gauss_gradient_filters()


def _as_float(a, name, ndim):
    """uint8 0..255 or float [0, 1] -> a new float32 array in [0, 1] (a copy, so the caller's stays intact)."""
    a = np.asarray(a)
    if a.ndim != ndim or a.size == 0 or (ndim == 3 and a.shape[2] != 3):
        want = 'an H x W matte' if ndim == 2 else 'an H x W x 3 image'
        raise ValueError(f"{name} must be {want}, got shape {a.shape}")
    if a.dtype == np.uint8:
        return a.astype(np.float32) / np.float32(255)
    if a.dtype.kind != 'f':
        raise ValueError(f"{name} must be uint8 (0..255) or float in [0, 1], got dtype {a.dtype}")
    out = a.astype(np.float32)
    lo, hi = out.min(), out.max()
    if not (lo >= 0 and hi <= 1):          # also rejects NaN
        raise ValueError(f"{name} is float but not in [0, 1] (min {lo}, max {hi}); pass uint8 for 0..255 data")
    return out


def _same_shape(**arrays):
    shapes = {name: a.shape[:2] for name, a in arrays.items()}
    if len(set(shapes.values())) > 1:
        raise ValueError("shapes differ: " + ", ".join(f"{n} {s}" for n, s in shapes.items()))


def _unknown_region(trimap):
    """trimap == 128; a float trimap in [0, 1] is rounded to 0..255 first (so 0.5 counts as 128)."""
    t = np.asarray(trimap)
    if t.dtype != np.uint8:
        t = np.rint(_as_float(t, 'trimap', 2) * 255)
    elif t.ndim != 2:
        raise ValueError(f"trimap must be an H x W array, got shape {t.shape}")
    return t == 128


def _gradient_magnitude(a, region):
    """|grad a| (at `region` if given) with the Gaussian-derivative filters and replicated borders. Correlation
    instead of MATLAB's convolution only flips the sign of each component, not the magnitude."""
    gx = cv2.sepFilter2D(a, cv2.CV_64F, _DERIV, _SMOOTH, borderType=cv2.BORDER_REPLICATE)
    gy = cv2.sepFilter2D(a, cv2.CV_64F, _SMOOTH, _DERIV, borderType=cv2.BORDER_REPLICATE)
    if region is not None:
        gx, gy = gx[region], gy[region]
    return np.sqrt(gx * gx + gy * gy).astype(np.float32)     # float32 as in both references


def _gradient_error(p, g, normalise, region=None):
    """Sum of (|grad p| - |grad g|)^2 over `region` (default: every pixel), after a whole-image min-max
    stretch of each matte if `normalise` (MATLAB mat2gray, OpenCV NORM_MINMAX; a constant map becomes 0)."""
    def prepare(a):
        if normalise:
            return cv2.normalize(a, None, 1.0, 0.0, cv2.NORM_MINMAX, dtype=cv2.CV_64F)
        return a.astype(np.float64)
    diff = _gradient_magnitude(prepare(p), region) - _gradient_magnitude(prepare(g), region)
    return np.square(diff, dtype=np.float64).sum()


def _round_down_levels(p, g, skip_empty):
    """The connectivity rule's per-pixel level l (float32 mattes of the same shape).

    At each threshold t_k (k = 1..10) the source region is the largest 4-connected component of
    (p >= t_k) & (g >= t_k), the first one in OpenCV's raster label order on ties; every pixel not yet
    assigned and outside it gets l = t_{k-1}; pixels never excluded get l = 1. An empty intersection is
    skipped by MATLAB (`skip_empty`) and excludes every remaining pixel in RVM/PaddleSeg. The intersections
    shrink as k grows, so the first empty one ends the loop either way.
    """
    both = np.minimum(p, g)                               # (p >= t) & (g >= t)  <=>  min(p, g) >= t
    never = len(_THRESHOLDS)
    first_out = np.full(p.shape, never, np.uint8)         # first k whose source region excludes the pixel
    for k in range(1, len(_THRESHOLDS)):
        mask = np.greater_equal(both, _THRESHOLDS32[k]).view(np.uint8)
        count, labels = cv2.connectedComponents(mask, connectivity=4, ltype=cv2.CV_32S)
        if count == 1:                                    # only the background label: nothing reaches t_k
            if not skip_empty:
                first_out[first_out == never] = k
            break
        largest = 1 + np.argmax(np.bincount(labels.ravel(), minlength=count)[1:])  # label 0 = background
        np.putmask(first_out, (first_out == never) & (labels != largest), k)
    # l = t_{k-1} where first_out = k, 1 where the pixel was never excluded; float32 as in both references
    return np.concatenate([[np.nan], _THRESHOLDS[:-1], [1.0]]).astype(np.float32)[first_out]


def _connectivity_error(p, g, levels):
    """Sum of |phi(p) - phi(g)| with phi(a) = 1 - d [d >= 0.15], d = a - l."""
    def phi(a):
        d = a - levels
        return 1 - d * (d >= _THETA)
    return np.abs(phi(p) - phi(g)).sum(dtype=np.float64)


def dim_metrics(pred, gt, trimap):
    """Deep Image Matting errors of one predicted matte, scaled as the reference `hleval.m` reports them.

    pred, gt: H x W uint8 (as read from 8-bit PNGs) or float in [0, 1]; trimap: H x W, unknown = 128 (uint8)
    or 0.5 (float). Over the unknown pixels U, with alpha in [0, 1]:
      SAD  = sum |p - g| / 1000
      MSE  = mean (p - g)^2                       (no factor; NaN when U is empty, as in MATLAB)
      Grad = sum (|grad p| - |grad g|)^2 / 1000   (whole-image mat2gray, 9x9 L2-normalised filter)
      Conn = sum |phi(p) - phi(g)| / 1000         (step 0.1, theta 0.15, empty thresholds skipped)
    Grad and Conn look at the whole image, so pred's values outside U matter; it is scored as given.
    """
    p, g = _as_float(pred, 'pred', 2), _as_float(gt, 'gt', 2)
    unknown = _unknown_region(trimap)
    _same_shape(pred=p, gt=g, trimap=unknown)
    diff = (p - g)[unknown]
    sad = np.abs(diff).sum(dtype=np.float64) / 1000
    mse = np.square(diff, dtype=np.float64).mean() if diff.size else float('nan')
    grad = _gradient_error(p, g, normalise=True, region=unknown) / 1000
    # MATLAB labels components in column-major order: OpenCV's raster order on the transposed mattes
    levels = _round_down_levels(cv2.transpose(p), cv2.transpose(g), skip_empty=True).T
    conn = _connectivity_error(p[unknown], g[unknown], levels[unknown]) / 1000
    return {'SAD': float(sad), 'MSE': float(mse), 'Grad': float(grad), 'Conn': float(conn)}


def video_matte_metrics(pred, true, prev_pred=None, prev_true=None, hr=False):
    """Robust Video Matting's trimap-free errors of one frame, over the whole image.

    pred, true: H x W float in [0, 1] (uint8 accepted). MAD = mean |p - t| x 1e3, MSE = mean (p - t)^2 x 1e3,
    Grad = sum (|grad t| - |grad p|)^2 / 1000 after a min-max stretch of each matte, Conn = connectivity error
    / 1000 (an empty threshold excludes all remaining pixels). With the previous frames, also
    dtSSD = sqrt(mean ((p - p_prev) - (t - t_prev))^2) x 100 (the evaluator scores a clip's first frame as 0).
    hr=True is the high-resolution evaluator: no min-max stretch in Grad and no Conn.
    Keys that are not computed are absent.
    """
    if (prev_pred is None) != (prev_true is None):
        raise ValueError("dtSSD needs both prev_pred and prev_true (or neither)")
    p, t = _as_float(pred, 'pred', 2), _as_float(true, 'true', 2)
    _same_shape(pred=p, true=t)
    diff = p - t
    out = {'MAD': np.abs(diff).mean(dtype=np.float64) * 1e3,
           'MSE': np.square(diff, dtype=np.float64).mean() * 1e3,
           'Grad': _gradient_error(p, t, normalise=not hr) / 1000}
    if not hr:
        out['Conn'] = _connectivity_error(p, t, _round_down_levels(p, t, skip_empty=False)) / 1000
    if prev_pred is not None:
        pp, pt = _as_float(prev_pred, 'prev_pred', 2), _as_float(prev_true, 'prev_true', 2)
        _same_shape(pred=p, prev_pred=pp, prev_true=pt)
        out['dtSSD'] = np.sqrt(np.square((p - pp) - (t - pt), dtype=np.float64).mean()) * 100
    return {k: float(v) for k, v in out.items()}


rvm_metrics = video_matte_metrics   # the name of the golden reference files


def foreground_metrics(pred_fgr, true_fgr, true_pha):
    """RVM/BGMv2 foreground errors: MSE and MAD (x 1e3) over all three channels of the pixels where the true
    alpha > 0 (colour is undefined where alpha is 0). fgr: H x W x 3 uint8 or float in [0, 1]; NaN if no pixel."""
    pf, tf = _as_float(pred_fgr, 'pred_fgr', 3), _as_float(true_fgr, 'true_fgr', 3)
    a = _as_float(true_pha, 'true_pha', 2)
    _same_shape(pred_fgr=pf, true_fgr=tf, true_pha=a)
    diff = (pf - tf)[a > 0]
    if not diff.size:
        return {'MSE': float('nan'), 'MAD': float('nan')}
    return {'MSE': float(np.square(diff, dtype=np.float64).mean() * 1e3),
            'MAD': float(np.abs(diff).mean(dtype=np.float64) * 1e3)}


def _gaussian_derivative(sigma=1.4, truncate=4.0):
    """1-D Gaussian and its derivative sampled to 4 sigma (scipy.ndimage.gaussian_filter's kernels), reversed for
    correlation (gaussian_filter convolves)."""
    radius = int(truncate * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    g = np.exp(-0.5 * x * x / sigma ** 2)
    g /= g.sum()
    return g[::-1], (-x / sigma ** 2 * g)[::-1]


_PY_SMOOTH, _PY_DERIV = _gaussian_derivative()


def indexnet_python_metrics(pred, gt, trimap):
    """IndexNet's Python metrics (scripts/utils.py, identical in the MindSpore port), the scale of its printed
    validation numbers (MindSpore README: SAD 21.51, MSE 0.0096, Grad 13.43, Conn 20.43). pred and gt are each
    min-max stretched to [0, 255] first (OpenCV NORM_MINMAX; a matte without both 0 and 255 changes), then over
    the unknown pixels U: SAD = sum |p - g| / 255 / 1000; MSE = mean ((p - g) / 255)^2; Grad = sum (|grad p| -
    |grad g|)^2 / 10 on p/255 with scipy's Gaussian derivative (sigma 1.4, reflected borders); Conn as in
    dim_metrics. Same arguments as dim_metrics."""
    unknown = _unknown_region(trimap)
    # stretched to 0..255 and divided by 255 in float32, as the reference (the threshold comparisons see it)
    stretch = lambda a, name: cv2.normalize(_as_float(a, name, 2) * np.float32(255), None, 0, 255,  # noqa: E731
                                            cv2.NORM_MINMAX) / np.float32(255)
    p, g = stretch(pred, 'pred'), stretch(gt, 'gt')
    _same_shape(pred=p, gt=g, trimap=unknown)
    diff = (p - g)[unknown].astype(np.float64)
    magnitude = lambda a: np.sqrt(  # noqa: E731
        cv2.sepFilter2D(a, cv2.CV_64F, _PY_DERIV, _PY_SMOOTH, borderType=cv2.BORDER_REFLECT) ** 2 +
        cv2.sepFilter2D(a, cv2.CV_64F, _PY_SMOOTH, _PY_DERIV, borderType=cv2.BORDER_REFLECT) ** 2)
    grad = np.square(magnitude(p.astype(np.float64)) - magnitude(g.astype(np.float64)))[unknown].sum() / 10
    levels = _round_down_levels(cv2.transpose(p), cv2.transpose(g), skip_empty=True).T
    return {'SAD': float(np.abs(diff).sum() / 1000), 'MSE': float(np.square(diff).mean()) if diff.size else
            float('nan'), 'Grad': float(grad), 'Conn': float(_connectivity_error(p[unknown], g[unknown],
                                                                                 levels[unknown]) / 1000)}
