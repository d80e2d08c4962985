"""Losses against numpy re-computations of the official definitions (spec/bgmv2.md 2.5)."""
import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

from utils.losses import LossWeights, base_loss, laplacian_loss, laplacian_pyramid, refine_loss, sobel

RNG = np.random.default_rng(0)


def t(*shape):
    x = paddle.to_tensor(RNG.random(shape, dtype=np.float32))
    x.stop_gradient = False
    return x


def sobel_numpy(x, eps=1e-6):
    p = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), mode='edge')            # replicate border
    c = lambda dy, dx: p[..., 1 + dy:p.shape[2] - 1 + dy, 1 + dx:p.shape[3] - 1 + dx]   # noqa: E731
    gx = (c(-1, 1) + 2 * c(0, 1) + c(1, 1) - c(-1, -1) - 2 * c(0, -1) - c(1, -1)) / 8
    gy = (c(1, -1) + 2 * c(1, 0) + c(1, 1) - c(-1, -1) - 2 * c(-1, 0) - c(-1, 1)) / 8
    return np.sqrt(gx ** 2 + gy ** 2 + eps)


def test_sobel_matches_kornia():
    x = RNG.random((2, 3, 9, 11), dtype=np.float32)
    assert np.allclose(sobel(paddle.to_tensor(x)).numpy(), sobel_numpy(x), atol=1e-6)
    flat = sobel(paddle.full([1, 1, 5, 5], 0.3)).numpy()
    assert np.allclose(flat, 1e-3)                                          # sqrt(eps) on a flat image


def test_base_loss_matches_the_official_sum():
    pha, err, true_pha = t(2, 1, 16, 16), t(2, 1, 16, 16), t(2, 1, 16, 16)
    fgr, true_fgr = t(2, 3, 16, 16), t(2, 3, 16, 16)
    true_pha_np = true_pha.numpy()
    true_pha_np[:, :, :4] = 0
    true_pha = paddle.to_tensor(true_pha_np)
    total, terms = base_loss(pha, fgr, err, true_pha, true_fgr, LossWeights(laplacian=0))
    p, f, e, tp, tf = (x.numpy() for x in (pha, fgr, err, true_pha, true_fgr))
    mask = tp != 0
    expected = (np.abs(p - tp).mean() + np.abs(sobel_numpy(p) - sobel_numpy(tp)).mean()
                + np.abs(f * mask - tf * mask).mean() + ((e - np.abs(p - tp)) ** 2).mean())
    assert set(terms) == {'pha', 'sobel', 'fgr', 'err'}
    assert float(total) == pytest.approx(expected, rel=1e-5)
    total.backward()
    assert pha.grad is not None and err.grad is not None


def test_foreground_term_gradient_is_the_masked_l1s():
    only_fgr = LossWeights(pha=0, sobel=0, err=0, laplacian=0)
    pha, err, fgr, true_fgr = t(2, 1, 8, 8), t(2, 1, 8, 8), t(2, 3, 8, 8), t(2, 3, 8, 8)
    true_pha = paddle.to_tensor((RNG.random((2, 1, 8, 8)) > 0.5).astype(np.float32))
    base_loss(pha, fgr, err, true_pha, true_fgr, only_fgr)[0].backward()
    f, tf, mask = fgr.numpy(), true_fgr.numpy(), true_pha.numpy() > 0
    np.testing.assert_allclose(fgr.grad.numpy(), np.sign(f - tf) * mask / f.size, rtol=1e-6, atol=1e-9)


def test_error_target_detached_in_base_not_in_refine():
    only_err = LossWeights(pha=0, sobel=0, fgr=0, laplacian=0)
    pha, err, true_pha, fgr = t(1, 1, 16, 16), t(1, 1, 16, 16), t(1, 1, 16, 16), t(1, 3, 16, 16)
    base_loss(pha, fgr, err, true_pha, fgr, only_err)[0].backward()
    assert pha.grad is None or float(pha.grad.abs().sum()) == 0
    pha_sm, err_sm, fgr_sm = t(1, 1, 4, 4), t(1, 1, 4, 4), t(1, 3, 4, 4)
    total, terms = refine_loss(pha, fgr, pha_sm, fgr_sm, err_sm, true_pha, fgr, only_err)
    total.backward()
    assert float(pha_sm.grad.abs().sum()) > 0
    assert sorted(terms) == ['err', 'fgr', 'fgr_sm', 'pha', 'pha_sm']


def test_refine_loss_has_every_term_and_weights_scale_them():
    args = (t(1, 1, 32, 32), t(1, 3, 32, 32), t(1, 1, 8, 8), t(1, 3, 8, 8), t(1, 1, 8, 8),
            t(1, 1, 32, 32), t(1, 3, 32, 32))
    total, terms = refine_loss(*args)
    assert sorted(terms) == ['err', 'fgr', 'fgr_sm', 'laplacian', 'laplacian_sm', 'pha', 'pha_sm', 'sobel', 'sobel_sm']
    doubled = refine_loss(*args, w=LossWeights(laplacian=2))[1]
    assert float(doubled['laplacian_sm']) == pytest.approx(2 * float(terms['laplacian_sm']), rel=1e-5)
    assert float(total) == pytest.approx(sum(float(v) for v in terms.values()), rel=1e-5)


def pyramid_numpy(x, levels):
    """RVM's train_loss.py pyramid in numpy: 5 x 5 Gaussian with reflect padding, every second pixel; up again by
    zero insertion times 4 and the same Gaussian; each band the level minus its down-and-up."""
    g = np.array([1, 4, 6, 4, 1]) / 16
    kernel = np.outer(g, g)

    def blur(a):
        p = np.pad(a, ((0, 0), (0, 0), (2, 2), (2, 2)), mode='reflect')
        return sum(kernel[i, j] * p[..., i:i + a.shape[2], j:j + a.shape[3]] for i in range(5) for j in range(5))
    bands = []
    for _ in range(levels):
        a = x[..., :x.shape[2] // 2 * 2, :x.shape[3] // 2 * 2]
        down = blur(a)[..., ::2, ::2]
        up = np.zeros_like(a)
        up[..., ::2, ::2] = 4 * down
        bands.append(a - blur(up))
        x = down
    return bands


@pytest.mark.parametrize('shape', [(2, 1, 64, 48), (1, 2, 37, 50), (1, 1, 9, 12)])
def test_laplacian_pyramid_is_rvms_and_its_gradient_the_adjoint(shape):
    x = t(*shape)
    levels = 4 if min(shape[2:]) >= 32 else 2
    bands = laplacian_pyramid(x, levels)
    for band, expected in zip(bands, pyramid_numpy(x.numpy().astype(np.float64), levels)):
        np.testing.assert_allclose(band.numpy(), expected, atol=1e-6)
    # the pyramid is linear: <L x, r> = <x, L^T r>, and L^T r is the gradient of <L x, r>
    r = [paddle.to_tensor(RNG.standard_normal(b.shape).astype(np.float32)) for b in bands]
    grad, = paddle.grad(sum((b * q).sum() for b, q in zip(bands, r)), x)
    lhs = sum(float((b * q).sum()) for b, q in zip(bands, r))
    assert float((x * grad).sum()) == pytest.approx(lhs, rel=1e-4)


def test_sobel_gradient_matches_finite_differences():
    x = t(1, 2, 6, 7)
    grad, = paddle.grad(sobel(x).sum(), x)
    x64, step = x.numpy().astype(np.float64), 1e-4
    for index in [(0, 0, 0, 0), (0, 1, 2, 3), (0, 0, 5, 6), (0, 1, 0, 6)]:
        plus, minus = x64.copy(), x64.copy()
        plus[index] += step
        minus[index] -= step
        numeric = (sobel_numpy(plus).sum() - sobel_numpy(minus).sum()) / (2 * step)
        assert float(grad.numpy()[index]) == pytest.approx(numeric, rel=1e-3, abs=1e-4)


def test_laplacian_loss():
    a, b = t(2, 1, 64, 48), t(2, 1, 64, 48)
    assert float(laplacian_loss(a, a)) == 0
    assert float(laplacian_loss(a, b)) > 0
    two_pyramids = sum(2 ** i * float(F.l1_loss(p, q)) for i, (p, q) in          # 4 levels fit 64 x 48
                       enumerate(zip(laplacian_pyramid(a, 4), laplacian_pyramid(b, 4)))) / 5
    assert float(laplacian_loss(a, b)) == pytest.approx(two_pyramids, rel=1e-5)        # the pyramid is linear
    # a constant offset has no band-pass content away from the border: far smaller than real differences
    assert float(laplacian_loss(a, a + 0.2)) < 0.2 * float(laplacian_loss(a, b))
    # fine detail (level 0) counts less than coarse structure of the same amplitude (weights 2^level)
    yy, xx = np.mgrid[:64, :48]
    fine = paddle.to_tensor((0.1 * ((xx + yy) % 2))[None, None].astype(np.float32))
    coarse = paddle.to_tensor((0.1 * ((xx // 8 + yy // 8) % 2))[None, None].astype(np.float32))
    zero = paddle.zeros([1, 1, 64, 48])
    assert float(laplacian_loss(fine, zero)) < float(laplacian_loss(coarse, zero))
    small = laplacian_loss(t(1, 1, 6, 6), t(1, 1, 6, 6))                   # tiny maps: fewer levels, no error
    assert np.isfinite(float(small))
    laplacian_loss(a, b).backward()
    assert float(a.grad.abs().sum()) > 0
