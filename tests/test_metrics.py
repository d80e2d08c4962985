"""utils.metrics against the golden values of the reference implementations (tests/data/metrics, copied from
shared/golden/metrics: DIM MATLAB code run in Octave, RVM's evaluate_lr/evaluate_hr classes) and against a
literal pixel-loop transcription of the connectivity rule on tiny mattes."""
import json
import os
from collections import deque

import numpy as np
import pytest

from conftest import DATA
from utils.metrics import (_DERIV, _SMOOTH, dim_metrics, foreground_metrics, rvm_metrics,
                           video_matte_metrics)

GOLDEN = os.path.join(DATA, 'metrics')
DIM = np.load(os.path.join(GOLDEN, 'dim_metrics.npz'))
RVM = np.load(os.path.join(GOLDEN, 'rvm_metrics.npz'))
RTOL = 1e-5


def _read_only(*arrays):
    """Copies that raise on any in-place write, so a metric that mutates its input fails loudly."""
    out = [np.array(a) for a in arrays]
    for a in out:
        a.setflags(write=False)
    return out


def test_gradient_filter_is_the_reference_kernel():
    np.testing.assert_allclose(np.outer(_SMOOTH, _DERIV), DIM['gaussgradient_hx'], atol=1e-15)
    np.testing.assert_allclose(np.outer(_SMOOTH, _DERIV), RVM['grad_filter_x'], atol=1e-15)


@pytest.mark.parametrize('case', range(6))
def test_dim_metrics_match_matlab(case):
    pred, gt, trimap = _read_only(DIM['pred'][case], DIM['gt'][case], DIM['trimap'][case])
    got = dim_metrics(pred, gt, trimap)
    assert set(got) == {'SAD', 'MSE', 'Grad', 'Conn'}
    for key in got:
        np.testing.assert_allclose(got[key], DIM['matlab_' + key.lower()][case], rtol=RTOL, err_msg=key)
    # float mattes in [0, 1] (and a float trimap) are the same numbers
    as_float = dim_metrics(pred / np.float32(255), gt.astype(np.float64) / 255, trimap / 255)
    for key in got:
        np.testing.assert_allclose(as_float[key], got[key], rtol=1e-6, err_msg=key)


@pytest.mark.parametrize('pair', range(8))
@pytest.mark.parametrize('hr', [False, True])
def test_video_matte_metrics_match_rvm_evaluators(pair, hr):
    pred, true = _read_only(RVM['pairs_pred'][pair], RVM['pairs_true'][pair])
    got = video_matte_metrics(pred, true, hr=hr)
    keys = ['MAD', 'MSE', 'Grad'] if hr else ['MAD', 'MSE', 'Grad', 'Conn']
    assert sorted(got) == sorted(keys)              # no Conn in HR, no dtSSD without previous frames
    for key in keys:
        want = RVM[('hr_' if hr else 'lr_') + key.lower()][pair]
        np.testing.assert_allclose(got[key], want, rtol=RTOL, atol=1e-6, err_msg=key)


def test_grad_differs_between_lr_and_hr_only_by_the_minmax_stretch():
    pred, true = RVM['pairs_pred'][3], RVM['pairs_true'][3]    # true all zero, pred peaks at 0.6
    assert video_matte_metrics(pred, true)['Grad'] > 2 * video_matte_metrics(pred, true, hr=True)['Grad']


@pytest.mark.parametrize('hr', [False, True])
def test_sequence_metrics_and_dtssd(hr):
    prefix = 'seq_hr_' if hr else 'seq_lr_'
    pred, true = _read_only(RVM['seq_pred'], RVM['seq_true'])
    frames = [video_matte_metrics(pred[0], true[0], hr=hr)]
    frames += [rvm_metrics(pred[t], true[t], pred[t - 1], true[t - 1], hr=hr) for t in range(1, len(pred))]
    assert 'dtSSD' not in frames[0] and all('dtSSD' in f for f in frames[1:])
    frames[0]['dtSSD'] = 0.0                         # the evaluator's convention for a clip's first frame
    averages = json.load(open(os.path.join(GOLDEN, 'rvm_metrics.json')))['seq_clip_average']
    for key in frames[1]:
        per_frame = [f[key] for f in frames]
        np.testing.assert_allclose(per_frame, RVM[prefix + key.lower()], rtol=RTOL, atol=1e-6, err_msg=key)
        if prefix + key.lower() in averages:
            np.testing.assert_allclose(np.mean(per_frame), averages[prefix + key.lower()], rtol=RTOL)


def test_foreground_metrics_over_true_alpha_above_zero():
    pred, true, alpha = _read_only(RVM['fgr_pred'], RVM['fgr_true'], RVM['fgr_mask_alpha'])
    got = foreground_metrics(pred, true, alpha)
    np.testing.assert_allclose(got['MSE'], RVM['fgr_lr_mse'], rtol=RTOL)
    np.testing.assert_allclose(got['MAD'], RVM['fgr_lr_mad'], rtol=RTOL)
    assert np.isnan(foreground_metrics(pred, true, np.zeros_like(alpha))['MSE'])


# ---- the connectivity rule, checked against a pixel-by-pixel transcription of both reference loops ----

def _components(mask, order):
    """4-connected components of `mask`, listed in the order their first pixel appears in `order`."""
    seen, found = np.zeros_like(mask), []
    for start in order:
        if mask[start] and not seen[start]:
            seen[start], queue, comp = True, deque([start]), []
            while queue:
                y, x = queue.popleft()
                comp.append((y, x))
                for n in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                    if 0 <= n[0] < mask.shape[0] and 0 <= n[1] < mask.shape[1] and mask[n] and not seen[n]:
                        seen[n] = True
                        queue.append(n)
            found.append(comp)
    return found


def _naive_conn(p, g, region, matlab, column_major=None):
    """MATLAB: bwconncomp (column-major labels), empty threshold skipped. RVM: raster labels, not skipped."""
    h, w = p.shape
    column_major = matlab if column_major is None else column_major
    order = [(y, x) for y in range(h) for x in range(w)]
    if column_major:
        order.sort(key=lambda yx: (yx[1], yx[0]))
    steps = np.arange(0, 1.1, 0.1)
    l = -np.ones(p.shape, np.float32)
    for k in range(1, len(steps)):
        comps = _components((p >= steps[k]) & (g >= steps[k]), order)
        if not comps and matlab:
            continue
        omega = np.zeros(p.shape, bool)
        for y, x in (max(comps, key=len) if comps else []):        # max() keeps the first of equal sizes
            omega[y, x] = True
        l[(l == -1) & ~omega] = steps[k - 1]
    l[l == -1] = 1

    def phi(a):
        d = a - l
        return 1 - d * (d >= 0.15)
    return np.abs(phi(p) - phi(g))[region].sum() / 1000


def _tiny_cases(n=12, levels=np.array([0, 51, 102, 140, 153, 204, 230], np.uint8)):
    """Blocky random mattes on levels that sit exactly on thresholds: many equal-size components (ties),
    empty high thresholds, and component orders that differ between raster and column-major scans."""
    rng = np.random.default_rng(7)
    for _ in range(n):
        blocks = rng.integers(0, len(levels), size=(2, 5, 6))
        p, g = np.kron(levels[blocks], np.ones((3, 2), np.uint8))
        trimap = np.where(rng.random(p.shape) < 0.8, 128, 0).astype(np.uint8)
        yield p, g, trimap


def test_dim_conn_matches_the_matlab_loop_on_tiny_mattes():
    differs_by_order = 0
    for p, g, trimap in _tiny_cases():
        pf, gf = p / np.float32(255), g / np.float32(255)
        want = _naive_conn(pf, gf, trimap == 128, matlab=True)
        np.testing.assert_allclose(dim_metrics(p, g, trimap)['Conn'], want, rtol=1e-6, atol=1e-9)
        differs_by_order += not np.isclose(want, _naive_conn(pf, gf, trimap == 128, True, column_major=False))
    assert differs_by_order      # the cases do exercise the column-major tie rule


def test_rvm_conn_matches_the_evaluator_loop_on_tiny_mattes():
    for p, g, _ in _tiny_cases():
        pf, gf = p / np.float32(255), g / np.float32(255)
        want = _naive_conn(pf, gf, np.ones(p.shape, bool), matlab=False)
        np.testing.assert_allclose(video_matte_metrics(pf, gf)['Conn'], want, rtol=1e-6, atol=1e-9)
    # float32 mattes holding the float32 roundings of thresholds: float32(0.7) < 0.7 must count as below it
    for p, g, _ in _tiny_cases(levels=np.float32([0, 0.1, 0.3, 0.7, 0.8, 0.9, 1])):
        want = _naive_conn(p, g, np.ones(p.shape, bool), matlab=False)      # numpy 2: float64 comparisons
        np.testing.assert_allclose(video_matte_metrics(p, g)['Conn'], want, rtol=1e-6, atol=1e-9)


# ---- bad input ----

@pytest.mark.parametrize('args, message', [
    ((np.zeros((4, 5), np.uint8), np.zeros((4, 6), np.uint8), np.zeros((4, 5), np.uint8)), 'shapes differ'),
    ((np.zeros((4, 5, 3), np.uint8), np.zeros((4, 5), np.uint8), np.zeros((4, 5), np.uint8)), 'H x W matte'),
    ((np.zeros((4, 5), np.int32), np.zeros((4, 5), np.uint8), np.zeros((4, 5), np.uint8)), 'dtype int32'),
    ((np.full((4, 5), 200.0), np.zeros((4, 5), np.uint8), np.zeros((4, 5), np.uint8)), 'not in \\[0, 1\\]'),
    ((np.full((4, 5), np.nan), np.zeros((4, 5), np.uint8), np.zeros((4, 5), np.uint8)), 'not in \\[0, 1\\]'),
    ((np.zeros((4, 5), np.uint8), np.zeros((4, 5), np.uint8), np.zeros((5, 4), np.uint8)), 'shapes differ'),
    ((np.zeros((0, 5), np.uint8), np.zeros((0, 5), np.uint8), np.zeros((0, 5), np.uint8)), 'H x W matte'),
])
def test_dim_metrics_reject_bad_input(args, message):
    with pytest.raises(ValueError, match=message):
        dim_metrics(*args)


def test_video_and_foreground_metrics_reject_bad_input():
    a = np.zeros((4, 5), np.float32)
    with pytest.raises(ValueError, match='both prev_pred and prev_true'):
        video_matte_metrics(a, a, prev_pred=a)
    with pytest.raises(ValueError, match='shapes differ'):
        video_matte_metrics(a, a, np.zeros((5, 4), np.float32), np.zeros((5, 4), np.float32))
    with pytest.raises(ValueError, match='H x W x 3 image'):
        foreground_metrics(a, a, a)
    with pytest.raises(ValueError, match='shapes differ'):
        foreground_metrics(np.zeros((4, 5, 3)), np.zeros((4, 5, 3)), np.zeros((4, 6)))
