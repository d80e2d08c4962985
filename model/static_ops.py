"""Paddle static-graph and export workarounds, named and tested once (tests/test_static_ops.py).

Each function gives the same numbers in dygraph, under `paddle.jit.to_static`, in Paddle Inference (legacy and
PIR graphs, oneDNN) and in ONNX Runtime, where the plain formulation fails in one of them:
- resizes take an explicit size: Paddle's `scale_factor` samples differently from torch's and paddle2onnx 2.1
  rejects it; torch's floor(H * s) output size is computed for ints and for static-shape tensors alike;
- no op sees an empty tensor and no branch depends on a data-dependent count (exported graphs and oneDNN fail
  on empty batches; a Python branch on a tensor value would not export): top-k is padded, the patch list gets a
  dummy entry that is written nowhere;
- patches are gathered and scattered functionally on flat tensors: index assignment into a transposed view
  writes the wrong elements in Paddle 3.3 dygraph, and unfold/copies of whole maps are slow;
- zero padding is concatenated: paddle2onnx 2.1 writes an uninitialised fill value into the ONNX Pad it makes
  of F.pad (a random number where zeros belong, different in every export);
- sigmoid, tanh, sqrt and gelu append their op directly when tracing a legacy (.pdmodel) graph: Paddle 3.3's functions
  accept only PIR values there (TypeError "must be Value, but got Variable"), and the legacy graph is the one
  oneDNN runs.
In dygraph on CPU, after utils.onednn.accelerate(), bilinear resizes and convolutions of concatenations run on
oneDNN (4-6x faster backward; no concatenated copy).
"""
import math

import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddle.framework import in_dynamic_or_pir_mode

from utils import onednn


def elementwise(op, x):
    """paddle.<op>(x) for an elementwise activation, also inside a legacy static graph (see above)."""
    if in_dynamic_or_pir_mode():
        return {'sigmoid': F.sigmoid, 'tanh': paddle.tanh, 'sqrt': paddle.sqrt,       # 2.6: no paddle.sigmoid
                'gelu': F.gelu}[op](x)
    helper = paddle.base.layer_helper.LayerHelper(op)
    out = helper.create_variable_for_type_inference(x.dtype)
    helper.append_op(type=op, inputs={'X': x}, outputs={'Out': out})
    return out


def sigmoid(x):
    return elementwise('sigmoid', x)


def tanh(x):
    return elementwise('tanh', x)


def sqrt(x):
    return elementwise('sqrt', x)


def gelu(x):
    """The exact (erf) GELU, as nn.GELU() and torch's default."""
    return elementwise('gelu', x)


class Sigmoid(nn.Layer):
    def forward(self, x):
        return sigmoid(x)


class Tanh(nn.Layer):
    def forward(self, x):
        return tanh(x)


class GELU(nn.Layer):
    def forward(self, x):
        return gelu(x)


def resize(x, size, mode='bilinear'):
    """Resize to an explicit [h, w] (bilinear with align_corners=False, or nearest)."""
    if mode == 'nearest':
        return F.interpolate(x, size=size, mode='nearest')
    if onednn.routes(x):
        return onednn.resample(x, size)
    return F.interpolate(x, size=size, mode='bilinear', align_corners=False)


def scaled_size(h, w, scale):
    """[floor(h * scale), floor(w * scale)], torch's recompute_scale_factor=True size, for ints and for the
    shape tensors of a graph with dynamic height and width (cast to int truncates, which is floor here)."""
    if isinstance(h, int):
        return [math.floor(h * scale), math.floor(w * scale)]
    return [(h * scale).astype('int32'), (w * scale).astype('int32')]


def zero_pad(x, pad):
    """F.pad(x, [pad] * 4) of a B x C x H x W map, by concatenating zero rows and columns (see above)."""
    if pad == 0:
        return x
    rows = paddle.zeros_like(x[:, :, :1]).tile([1, 1, pad, 1])
    x = paddle.concat([rows, x, rows], axis=2)
    columns = paddle.zeros_like(x[:, :, :, :1]).tile([1, 1, 1, pad])
    return paddle.concat([columns, x, columns], axis=3)


def conv_of_concat(conv, inputs):
    """conv(concatenation of inputs along the channels), for an nn.Conv2D without groups. On oneDNN (dygraph on CPU)
    one convolution per input over its slice of the weight, summed: no concatenated copy and no gradient for an
    input that needs none (the decoder's plate and photo), no input channels padded up to oneDNN's blocks of 16
    (54 -> 48 + 6). MattingBase 256 x 4: decoder.conv4 with its gradient 285 -> 240 ms, concat included.
    In a PIR export (the source of the ONNX files), features followed by fewer than 16 channels (the photo and
    plate beside them) are convolved apart from those, padded to whole blocks of 16 (exported_conv_of_concat):
    ONNX Runtime runs only whole blocks in its fast blocked layout, so RVM's output convolution of 32 + 3
    channels at 270 x 480 took 13.6 ms, and 7.6 split."""
    padding = onednn.routable_padding(conv) if isinstance(conv, nn.Conv2D) else None    # other layers: concatenated
    if padding is None or conv._groups != 1:
        return conv(paddle.concat(inputs, axis=1))
    if not paddle.in_dynamic_mode():
        return exported_conv_of_concat(conv, inputs)
    if not onednn.routes(inputs[0]):
        return conv(paddle.concat(inputs, axis=1))
    weights = paddle.split(conv.weight, [x.shape[1] for x in inputs], axis=1)
    out = onednn.conv2d(inputs[0], weights[0], conv.bias, conv._stride, padding, conv._dilation)
    for x, weight in zip(inputs[1:], weights[1:]):
        out = out + onednn.conv2d(x, weight, None, conv._stride, padding, conv._dilation)
    return out


def onnx_bound():
    """Whether a PIR static graph is being traced: the source of the ONNX exports, where layouts that suit ONNX
    Runtime pay (whole blocks of 16 channels, pixel-major upsampling). Dygraph and the legacy graphs that Paddle
    Inference's oneDNN runs keep their own: there weights computed in the graph (padded or split) run on Paddle's
    slow native convolution (BGMv2 mobilenetv2 HD 484 -> 616 ms)."""
    return not paddle.in_dynamic_mode() and in_dynamic_or_pir_mode()


@paddle.jit.not_to_static
def exported_conv_of_concat(conv, inputs):
    """conv_of_concat in a static graph (plain Python: the channel counts are known when it is traced). In PIR
    graphs only, which the ONNX exports convert, the features (16 channels or more) are convolved apart from
    fewer than 16 that follow them (the photo), zero-padded to whole blocks of 16 when they are not (RVM's
    upsampling blocks: 40 + 16 features and 3 of the photo at 144 x 256, 10.2 ms unblocked). Paddle
    Inference's oneDNN runs the legacy graphs, and there the split's weight slices are no parameters: BGMv2
    mobilenetv2 HD took 484 ms instead of 392."""
    channels = [x.shape[1] for x in inputs]
    total = sum(channels)
    ends = [sum(channels[:k]) for k in range(1, len(inputs))]     # channels before each later input
    fits = [k + 1 for k, lead in enumerate(ends) if lead >= 16 and total - lead < 16]   # photo: under 16 channels
    split = ([k for k in fits if ends[k - 1] % 16 == 0] or fits or [None])[-1]       # best a lead of whole blocks
    if split is None or min(channels) <= 0 or not onnx_bound():              # unknown counts; a legacy graph
        return conv(paddle.concat(inputs, axis=1))
    lead = ends[split - 1]
    joined = [xs[0] if len(xs) == 1 else paddle.concat(xs, axis=1) for xs in (padded_to_blocks(inputs[:split]),
                                                                              inputs[split:])]
    return conv_of_padded(conv, joined, [lead, total - lead])


def resize_pooled(pooled, size):
    """A B x C x 1 x 1 pooled map spread over `size`: a bilinear resize (torchvision's ASPP does this), since
    Tensor.expand_as has no legacy static kernel in Paddle 3.3 and expand with a shape tensor breaks 2.6."""
    return resize(pooled, size)


@paddle.jit.not_to_static
def whole_size(shape, ratio):
    """[floor(H*ratio), floor(W*ratio)] when the sizes are known and both products whole numbers, else None."""
    if not all(isinstance(s, int) and s > 0 for s in shape):
        return None
    size = [math.floor(s * ratio) for s in shape]
    return size if all(s * ratio - f < 1e-6 for s, f in zip(shape, size)) else None


def downsample(x, ratio):
    """torch's interpolate(scale_factor=ratio, recompute_scale_factor=False): output floor(H*ratio), sampled at
    (dst + 0.5) / ratio - 0.5 (Paddle's scale_factor does the same; a rounded size would resample). When H*ratio
    and W*ratio are whole, as for the usual ratios and resolutions, an explicit size samples identically, so a
    static-shape export carries no scale_factor (which paddle2onnx rejects)."""
    size = whole_size(x.shape[-2:], ratio)
    if size is not None:
        return resize(x, size)
    return F.interpolate(x, scale_factor=ratio, mode='bilinear', align_corners=False)


def topk_mask(flat, k):
    """B x N scores -> B x N float 0/1 marking each row's k largest. k may exceed N (small images, where the
    official code fails): k values of -1 are appended, picked only once every entry is, then cut off. k > 0."""
    b = flat.shape[0]
    padded = paddle.concat([flat, paddle.full([b, k], -1., flat.dtype)], axis=1)
    idx = paddle.topk(padded, k, axis=1, sorted=False)[1]
    ones = paddle.ones_like(idx, dtype=flat.dtype)
    return paddle.put_along_axis(paddle.zeros_like(padded), idx, ones, axis=1)[:, :-k]


def with_dummy(idx):
    """P x 3 patch positions (b, y, x) -> P+1 rows: a dummy (0, 0, 0) appended, so the patch batch is never
    empty; `scatter_patches` writes the last row nowhere."""
    return paddle.concat([idx, paddle.zeros([1, 3], idx.dtype)])


def pixels(x):
    """B x C x H x W -> B x H x W x C: a patch gather then copies whole pixels (C floats each), which Paddle and
    ONNX Runtime do 2-3x faster than gathering every channel's floats one by one."""
    return x.transpose([0, 2, 3, 1])


def window(idx, size, padding):
    """Rows and columns (P x K each, K = size + 2 * padding) of the windows at stride `size` around each
    (b, y, x) of idx."""
    offsets = paddle.arange(size + 2 * padding, dtype=idx.dtype) - padding
    return idx[:, 1:2] * size + offsets, idx[:, 2:3] * size + offsets


def window_inside(idx, size, padding, H, W):
    """window's rows and columns, and P x K x K ones where the pixel is inside an H x W image (zeros outside)."""
    ys, xs = window(idx, size, padding)
    inside_y = (ys >= 0).astype(idx.dtype) * (ys < H).astype(idx.dtype)
    inside_x = (xs >= 0).astype(idx.dtype) * (xs < W).astype(idx.dtype)
    return ys, xs, inside_y.unsqueeze(2) * inside_x.unsqueeze(1)


def gather_patches(x, idx, size, padding):
    """Patches of K = size + 2 * padding pixels at stride `size` around each (b, y, x) of idx, zero outside
    the image: x B x H x W x C (pixel-major, see pixels) -> P x C x K x K.

    One gather of pixel rows: no unfold or padded copy of the whole map. Pixels outside the image read a zero
    row appended to the flat map (no mask multiply over the patches: it took longer than the gather), except in
    ONNX-bound graphs, where the appending copies the map (BGMv2's 48 upsampled channels at half of HD: 8 ms)
    and the mask multiply is cheaper (BGMv2 mobilenetv2 HD in ONNX Runtime 2-2.5 % faster, the same outputs).
    P must not be 0 (with_dummy).
    """
    B, H, W, C = x.shape
    k = size + 2 * padding
    ys, xs, inside = window_inside(idx, size, padding, H, W)
    pixel = (idx[:, 0:1] * (H * W) + ys * W).unsqueeze(2) + xs.unsqueeze(1)                  # P x K x K
    if onnx_bound():
        patches = paddle.gather(x.reshape([-1, C]), (pixel * inside).reshape([-1]), axis=0).reshape([-1, k, k, C])
        return (patches * inside.unsqueeze(3).astype(x.dtype)).transpose([0, 3, 1, 2])
    outside = B * H * W                                                                       # the zero row
    pixel = pixel * inside + outside * (1 - inside)
    flat = paddle.concat([x.reshape([-1, C]), paddle.zeros([1, C], x.dtype)])
    patches = paddle.gather(flat, pixel.reshape([-1]), axis=0).reshape([-1, k, k, C])
    return patches.transpose([0, 3, 1, 2])


def gather_planes(x, idx, size, padding):
    """gather_patches of a B x C x H x W map as it is: one gather of single floats at flat positions, zero
    outside the image by a mask. For a few channels at full resolution, where a pixel-major copy of the whole map
    (an HD photo and plate: 22 ms in ONNX Runtime) costs more than the gather itself."""
    B, C, H, W = x.shape
    k = size + 2 * padding
    ys, xs, inside = window_inside(idx, size, padding, H, W)                                  # P x K (x K)
    pixel = ((idx[:, 0:1] * (C * H * W) + ys * W).unsqueeze(2) + xs.unsqueeze(1)) * inside   # outside: 0
    positions = pixel.unsqueeze(1) + (paddle.arange(C, dtype=idx.dtype) * (H * W)).reshape([1, -1, 1, 1])
    # take_along_axis: ONNX GatherElements, 2.5x faster than Gather on single floats in ONNX Runtime
    patches = paddle.take_along_axis(x.reshape([-1]), positions.reshape([-1]), axis=0).reshape([-1, C, k, k])
    return patches * inside.unsqueeze(1).astype(x.dtype)


def upsampled_pixels(x, size):
    """pixels(resize(x, size)) of an upsampling. The ONNX export moves the transpose before the resize
    (backends.transpose_before_resize), where the map is smaller and ONNX Runtime resizes pixel-major maps 2-4x
    faster: so use this for upsampling only."""
    return pixels(resize(x, size))


def padded_to_blocks(inputs):
    """inputs (B x C_i x H x W each), followed by all-zero channels up to a whole number of 16-channel blocks."""
    short = -sum(x.shape[1] for x in inputs) % 16
    return inputs + [paddle.zeros_like(inputs[0][:, :1]).tile([1, short, 1, 1])] if short else inputs


def conv_of_padded(conv, inputs, channels):
    """conv(concatenation of the first channels[i] channels of each input) for an nn.Conv2D without groups, where
    an input may carry all-zero channels after those (padding it to whole blocks of 16: ONNX Runtime runs other
    counts several times slower). One convolution per input over its slice of the weight (zero for the padding),
    summed. For ONNX-bound graphs (onnx_bound): elsewhere computed weights run on slow kernels."""
    weights = paddle.split(conv.weight, channels, axis=1)
    out = None
    for x, weight in zip(inputs, weights):
        zeros = x.shape[1] - weight.shape[1]
        if zeros:
            weight = paddle.concat([weight, paddle.zeros([weight.shape[0], zeros] + weight.shape[2:], weight.dtype)],
                                   axis=1)
        y = F.conv2d(x, weight, conv.bias if out is None else None, conv._stride, conv._padding, conv._dilation)
        out = y if out is None else out + y
    return out


def repeat_pixels(x, factor):
    """Nearest upsampling by an integer factor (B x C x h x w -> B x C x fh x fw) as two stacks of copies: Paddle's
    CPU nearest resize took 6x longer on the refiner's thousands of 4x4 patches, and a broadcast (expand) 130 ms of
    an HD frame in Paddle Inference."""
    b, c, h, w = x.shape
    if onednn.routes(x):                       # dygraph on CPU: its backward 4x faster than the stacks'
        return onednn.resample(x, [h * factor, w * factor], 'nearest')
    x = paddle.stack([x] * factor, axis=-1).reshape([b, c, h, w * factor])             # each pixel f times
    return paddle.stack([x] * factor, axis=3).reshape([b, c, h * factor, w * factor])  # each row f times


def scatter_patches(x, patches, idx):
    """Overwrite the 4x4 blocks of x (B x C x H x W) at each (b, y, x) of idx with patches (P x C x 4 x 4).

    One functional scatter into the flat tensor. The last row of idx is the dummy of `with_dummy`: its patch
    goes to a spare block appended to the flat tensor and cut off after, so it touches nothing.
    """
    B, C, H, W = x.shape
    ys, xs = window(idx, 4, 0)
    pixel = (idx[:, 0:1] * (C * H * W) + ys * W).unsqueeze(2) + xs.unsqueeze(1)          # P x 4 x 4
    positions = pixel.unsqueeze(1) + (paddle.arange(C, dtype=idx.dtype) * (H * W)).reshape([1, -1, 1, 1])
    spare = B * C * H * W + paddle.arange(C * 16, dtype=idx.dtype).reshape([1, C, 4, 4])
    dummy = (paddle.arange(idx.shape[0]) == idx.shape[0] - 1).astype(idx.dtype).reshape([-1, 1, 1, 1])
    positions = positions + dummy * (spare - positions)         # arithmetic, not a slice: P may be 0
    flat = paddle.concat([x.reshape([-1]), paddle.zeros([C * 16], x.dtype)])
    flat = paddle.scatter(flat, positions.reshape([-1]), patches.reshape([-1]), overwrite=True)
    return paddle.split(flat, [B * C * H * W, C * 16])[0].reshape([B, C, H, W])   # a split's gradient: a concat
