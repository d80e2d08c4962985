"""Training losses of BGMv2 (spec/bgmv2.md 2.5) plus RVM's Laplacian-pyramid alpha loss, RVM's matting and
segmentation losses (spec/rvm.md 2.3) and IndexNet's weighted alpha + composition loss (spec/indexnet.md 2).

Official losses: L1 alpha, L1 of Sobel gradient magnitudes, L1 of the foreground where the true alpha is
non-zero, MSE of the predicted error map; the refine stage adds the same terms at the coarse scale.
Every term has a weight (`LossWeights`; train.py's --loss-* flags, declared in training/bgmv2.py); with laplacian=0 the sum is the
official loss. Each function returns (total, {name: term}) so the terms can be logged.
"""
from dataclasses import dataclass

import paddle
import paddle.nn.functional as F


@dataclass
class LossWeights:
    pha: float = 1.0          # L1 alpha
    sobel: float = 1.0        # L1 of alpha gradient magnitudes
    fgr: float = 1.0          # L1 foreground where the true alpha > 0
    err: float = 1.0          # MSE of the error prediction
    laplacian: float = 1.0    # Laplacian-pyramid alpha loss (not in the official code; speeds convergence)


def _filters(x, kernels, stride=1):
    """Each 2-D kernel of `kernels` on each channel, no padding: len(kernels) output channels per input channel,
    in that order (one convolution for all of them)."""
    c = x.shape[1]
    weight = paddle.to_tensor(kernels, dtype='float32').unsqueeze(1).tile([c, 1, 1, 1])
    return F.conv2d(x, weight, stride=stride, groups=c)


def _pad(x, border):
    """x padded on both spatial axes with its own rows and columns, concatenated: border(n) gives the indices
    along an axis of length n to put before and after it. Paddle's reflect and replicate pad ops cost 3-5x more
    with their gradient at 4 x 1 x 256 x 256."""
    for axis in (2, 3):
        before, after = border(x.shape[axis])
        edge = [paddle.slice(x, [axis], [i], [i + 1]) for i in before + after]
        x = paddle.concat(edge[:len(before)] + [x] + edge[len(before):], axis=axis)
    return x


def _replicate1(n):
    return [0], [n - 1]


def _reflect2(n):
    return [2, 1], [n - 2, n - 3]


def _reflect1_replicate1(n):
    return [1], [n - 1]


SOBEL_X = [[-1 / 8, 0, 1 / 8], [-2 / 8, 0, 2 / 8], [-1 / 8, 0, 1 / 8]]
SOBEL_Y = [list(r) for r in zip(*SOBEL_X)]


def sobel(x, eps=1e-6):
    """kornia.filters.sobel: per-channel 3x3 Sobel normalised by its L1 sum (1/8), replicate padding,
    magnitude sqrt(gx^2 + gy^2 + eps)."""
    b, c, h, w = x.shape
    g = _filters(_pad(x, _replicate1), [SOBEL_X, SOBEL_Y])                    # b x 2c x h x w
    return paddle.sqrt((g * g).reshape([b, c, 2, h, w]).sum(axis=2) + eps)


GAUSS = [1 / 16, 4 / 16, 6 / 16, 4 / 16, 1 / 16]
# zero-insertion x2 (x4 to keep the mean) then the Gaussian, by output phase: an even output pixel takes
# (1, 6, 1) / 8 of its three nearest inputs along an axis, an odd one (1, 1) / 2 of its two
_EVEN, _ODD = [1 / 8, 6 / 8, 1 / 8], [0, 1 / 2, 1 / 2]
UP = [[[a * b for b in col] for a in row] for row in (_EVEN, _ODD) for col in (_EVEN, _ODD)]


def _downsample(x):
    """RVM's: the 5 x 5 Gaussian with reflect padding, every second pixel; only the kept pixels are computed, by a
    row filter on every second column, then a column filter on every second row (1.7x faster than 5 x 5)."""
    rows = _filters(_pad(x, _reflect2), [[GAUSS]], stride=(1, 2))
    return _filters(rows, [[[g] for g in GAUSS]], stride=(2, 1))


def _upsample(x):
    """RVM's: zero-insertion x2 (times 4), then the Gaussian with reflect padding of the inserted map, computed
    per output phase on x. The inserted map's reflection is x's reflection at the top and left, x's last row
    and column repeated at the bottom and right."""
    return F.pixel_shuffle(_filters(_pad(x, _reflect1_replicate1), UP), 2)   # phases: b x 4c x h x w


def laplacian_pyramid(x, levels):
    pyramid = []
    for _ in range(levels):
        h, w = x.shape[2] // 2 * 2, x.shape[3] // 2 * 2
        if (h, w) != tuple(x.shape[2:]):
            x = x[:, :, :h, :w]                   # even size: down and up again give the same size
        down = _downsample(x)
        pyramid.append(x - _upsample(down))
        x = down
    return pyramid


def laplacian_loss(pred, true, max_levels=5):
    """RVM's loss: L1 between Laplacian pyramids, level l weighted 2^l, divided by the number of levels.
    Maps too small for 5 levels (reflect padding needs > 2 px) use fewer. The pyramid is linear (pads, filters,
    strides), so the difference of two pyramids is the pyramid of the difference: one pyramid, not two."""
    levels = max_levels
    while levels > 1 and min(pred.shape[2:]) >> (levels - 1) < 4:
        levels -= 1
    bands = laplacian_pyramid(pred - true, levels)
    return sum(2 ** i * band.abs().mean() for i, band in enumerate(bands)) / max_levels


def _alpha_terms(pha, true_pha, w, suffix=''):
    terms = {'pha' + suffix: w.pha * F.l1_loss(pha, true_pha)}
    if w.sobel:
        terms['sobel' + suffix] = w.sobel * F.l1_loss(sobel(pha), sobel(true_pha))
    if w.laplacian:
        terms['laplacian' + suffix] = w.laplacian * laplacian_loss(pha, true_pha)
    return terms


def _fgr_term(fgr, true_fgr, true_pha, w):
    """L1 of fgr * mask against true_fgr * mask (mask: true alpha > 0), summed over the colours before the mask
    multiply: the same value without Paddle's slow broadcast of the mask over 3 channels (66 -> 18 ms with the
    gradient at 4 x 256 x 256)."""
    mask = (true_pha > 0).astype(fgr.dtype)
    return w.fgr * (paddle.abs(fgr - true_fgr).sum(axis=1, keepdim=True) * mask).mean() / fgr.shape[1]


def _resize(x, size):
    return F.interpolate(x, size=size, mode='bilinear', align_corners=False)


def base_loss(pha, fgr, err, true_pha, true_fgr, w=LossWeights()):
    """MattingBase: outputs and truth at one resolution; the error target uses the detached alpha."""
    terms = _alpha_terms(pha, true_pha, w)
    terms['fgr'] = _fgr_term(fgr, true_fgr, true_pha, w)
    terms['err'] = w.err * F.mse_loss(err, (pha.detach() - true_pha).abs())
    return sum(terms.values()), terms


def refine_loss(pha, fgr, pha_sm, fgr_sm, err_sm, true_pha, true_fgr, w=LossWeights()):
    """MattingRefine: full-resolution and coarse terms; the truth is resized to the coarse size.
    As in the official code the coarse alpha is *not* detached in the error target."""
    size = pha_sm.shape[2:]
    true_pha_sm, true_fgr_sm = _resize(true_pha, size), _resize(true_fgr, size)
    terms = {**_alpha_terms(pha, true_pha, w), **_alpha_terms(pha_sm, true_pha_sm, w, '_sm')}
    terms['fgr'] = _fgr_term(fgr, true_fgr, true_pha, w)
    terms['fgr_sm'] = _fgr_term(fgr_sm, true_fgr_sm, true_pha_sm, w)
    full = true_pha.shape[2:]
    terms['err'] = w.err * F.mse_loss(_resize(err_sm, full), (_resize(pha_sm, full) - true_pha).abs())
    return sum(terms.values()), terms


def indexnet_loss(pred, alpha, fg, bg, merged, mask, wl=0.5, eps=1e-6):
    """IndexNet's loss on the raw network output -> (total, alpha term, composition term).

    pred, alpha, mask (unknown region, 0/1): B x 1 x H x W; fg, bg, merged: B x 3 x H x W, all in [0, 1]. Per
    sample, the sums of sqrt(((.) * mask)^2 + eps^2) over the pixels (and the 3 channels: their sum, not mean, for
    the composition) divided by the mask's pixel count, then averaged over the batch; eps counts at every pixel,
    masked-out ones too, as in the official code. total = wl * alpha + (1 - wl) * composition."""
    def charbonnier(x):
        return paddle.sqrt(x * x + eps * eps).sum(axis=[1, 2, 3])
    area = mask.sum(axis=[1, 2, 3])
    alpha_term = (charbonnier((pred - alpha) * mask) / area).mean()
    composite = pred * fg + (1 - pred) * bg
    comp_term = (charbonnier((composite - merged) * mask) / area).mean()
    return wl * alpha_term + (1 - wl) * comp_term, alpha_term, comp_term


def _coherence(pred, true):
    """5 x MSE of the temporal differences (B, T, ...) : the official coherence term (MSE, not an L2 norm)."""
    return 5 * F.mse_loss(pred[:, 1:] - pred[:, :-1], true[:, 1:] - true[:, :-1])


def rvm_matting_loss(fgr, pha, true_fgr, true_pha):
    """RVM's matting loss on (B, T, C, H, W) clips (T >= 2 for the coherence terms): L1 and 5-level Laplacian
    alpha, alpha coherence, L1 and coherence of the foreground masked by true alpha > 0; unit weights
    -> (total, {term: value})."""
    mask = (true_pha > 0).astype(fgr.dtype)
    fgr, true_fgr = fgr * mask, true_fgr * mask
    terms = {'pha_l1': F.l1_loss(pha, true_pha),
             'pha_laplacian': laplacian_loss(pha.flatten(0, 1), true_pha.flatten(0, 1)),   # frames
             'pha_coherence': _coherence(pha, true_pha),
             'fgr_l1': F.l1_loss(fgr, true_fgr),
             'fgr_coherence': _coherence(fgr, true_fgr)}
    return sum(terms.values()), terms


def rvm_segmentation_loss(seg, true_seg):
    """Binary cross-entropy of the segmentation logits -> (total, {'bce': value})."""
    bce = F.binary_cross_entropy_with_logits(seg, true_seg)
    return bce, {'bce': bce}
