"""The full-resolution ends of Robust Video Matting's refiner in numpy/OpenCV, for the fast backends, which run
the rest as a graph (model/rvm.py MattingNetworkCoefficients): the bilinear downsample of a frame before the
graph and the guided upsample of the graph's coefficients after it. They sample as the network's resizes do
(half-pixel centres, edges clamped), so the mattes equal the dygraph network's within float rounding
(tests/test_rvm_fast.py), and they spare the graph the full-size input and output copies and its slow
full-size resizes (ONNX Runtime spends about 110 ms of 260 on them for a 1080p frame)."""
import math

import cv2
import numpy as np

from model.static_ops import whole_size

THIRD = np.full((1, 3), 1 / 3, np.float32)      # cv2.transform weights: the channel mean of the guide


def sample_axis(x, n, scale, axis):
    """n bilinear samples along `axis` at (i + 0.5) * scale - 0.5, clamped to the edges; the positions in
    float32, as the network's (and torch's) kernels compute them."""
    pos = np.maximum((np.arange(n, dtype=np.float32) + np.float32(0.5)) * np.float32(scale) - np.float32(0.5), 0)
    last = x.shape[axis] - 1
    i0 = np.minimum(np.floor(pos).astype(np.int64), last)
    shape = [1] * x.ndim
    shape[axis] = n
    lam = (pos - i0).astype(np.float32).reshape(shape)
    return np.take(x, i0, axis) * (1 - lam) + np.take(x, np.minimum(i0 + 1, last), axis) * lam


def downsample(frame, ratio):
    """H x W x C float32 frame -> floor(H * ratio) x floor(W * ratio) x C, as model.static_ops.downsample: an
    explicit size when both products are whole (OpenCV samples exactly so), else torch's scale_factor sampling
    at (dst + 0.5) / ratio - 0.5."""
    h, w = frame.shape[:2]
    size = whole_size([h, w], ratio)
    if size is not None:
        return cv2.resize(frame, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    rows = sample_axis(frame, math.floor(h * ratio), 1 / ratio, 0)
    return sample_axis(rows, math.floor(w * ratio), 1 / ratio, 1)


def guided_upsample(src, a, b):
    """src H x W x 3 frame, a and b the h x w x 4 coefficients (channels last) -> (fgr H x W x 3, pha H x W):
    A, B = a, b resized to H x W; out = A * (src, mean(src)) + B; fgr = clip(src + out[:3]), pha = clip(out[3]).
    The fgr channels compute (A + 1) * src + B. Each product is accumulated into the resized B in one pass
    (cv2.accumulateProduct): 32 instead of 47 CPU-ms for an HD frame, no full-size product map."""
    h, w = src.shape[:2]

    def up(x):
        x = np.ascontiguousarray(x)
        return x if x.shape[:2] == (h, w) else cv2.resize(x, (w, h), interpolation=cv2.INTER_LINEAR)

    fgr, pha = up(b[..., :3]), up(b[..., 3])        # new arrays: a channel slice is never contiguous
    cv2.accumulateProduct(up(a[..., :3] + 1), src, fgr)
    cv2.accumulateProduct(up(a[..., 3]), cv2.transform(src, THIRD), pha)
    return np.clip(fgr, 0, 1, out=fgr), np.clip(pha, 0, 1, out=pha)
