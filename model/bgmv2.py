"""BackgroundMattingV2 (Lin et al., CVPR 2021): MattingBase and MattingRefine.

The same network as the official PyTorch model, layer for layer and name for name, so the released
`pytorch_<backbone>.pth` checkpoints convert by renaming BatchNorm statistics only.
"""
import collections

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from . import static_ops as ops
from .backbones import MobileNetV2Encoder, ResNetEncoder
from .backbones.resnet import batch_norm

BACKBONES = ('resnet50', 'resnet101', 'mobilenetv2')
REFINE_MODES = ('full', 'sampling', 'thresholding')

# the official tuple orders, with names (a static graph returns the plain tuple in the same order)
BaseOutput = collections.namedtuple('BaseOutput', 'pha fgr err hid')
RefineOutput = collections.namedtuple('RefineOutput', 'pha fgr pha_sm fgr_sm err_sm ref_sm')


class ASPP(nn.Layer):
    """torchvision's DeepLabV3 ASPP: 1x1, three dilated 3x3 and an image-pooling branch."""

    def __init__(self, in_channels, rates=(3, 6, 9), out_channels=256):
        super().__init__()
        def branch(kernel_size, rate=1):
            return nn.Sequential(
                nn.Conv2D(in_channels, out_channels, kernel_size, padding=rate if kernel_size == 3 else 0,
                          dilation=rate, bias_attr=False),
                batch_norm(out_channels), nn.ReLU())
        pooling = nn.Sequential(nn.AdaptiveAvgPool2D(1), *branch(1))
        self.convs = nn.LayerList([branch(1)] + [branch(3, r) for r in rates] + [pooling])
        self.project = nn.Sequential(
            nn.Conv2D(out_channels * (len(rates) + 2), out_channels, 1, bias_attr=False),
            batch_norm(out_channels), nn.ReLU(), nn.Dropout(0.5))

    def forward(self, x):
        branches = [conv(x) for conv in self.convs[:-1]]
        pooled = self.convs[-1](x)                         # B x 256 x 1 x 1
        branches.append(ops.resize_pooled(pooled, branches[0].shape[2:]))
        return self.project(paddle.concat(branches, axis=1))


class Decoder(nn.Layer):
    """Four upsample-concat-conv stages back to the input resolution: 256-128-64-48-out."""

    def __init__(self, channels, feature_channels):
        super().__init__()
        self.conv1 = nn.Conv2D(feature_channels[0] + channels[0], channels[1], 3, padding=1, bias_attr=False)
        self.bn1 = batch_norm(channels[1])
        self.conv2 = nn.Conv2D(feature_channels[1] + channels[1], channels[2], 3, padding=1, bias_attr=False)
        self.bn2 = batch_norm(channels[2])
        self.conv3 = nn.Conv2D(feature_channels[2] + channels[2], channels[3], 3, padding=1, bias_attr=False)
        self.bn3 = batch_norm(channels[3])
        self.conv4 = nn.Conv2D(feature_channels[3] + channels[3], channels[4], 3, padding=1)
        self.relu = nn.ReLU()

    def forward(self, x4, x3, x2, x1, x0):
        x = self.relu(self.bn1(ops.conv_of_concat(self.conv1, [ops.resize(x4, x3.shape[2:]), x3])))
        x = self.relu(self.bn2(ops.conv_of_concat(self.conv2, [ops.resize(x, x2.shape[2:]), x2])))
        x = self.relu(self.bn3(ops.conv_of_concat(self.conv3, [ops.resize(x, x1.shape[2:]), x1])))
        return ops.conv_of_concat(self.conv4, [ops.resize(x, x0.shape[2:]), x0])


class Base(nn.Layer):
    """Backbone -> ASPP -> decoder; a map of `out_channels` at the input resolution."""

    def __init__(self, backbone, in_channels, out_channels):
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {backbone!r}; expected one of {', '.join(BACKBONES)}")
        if backbone == 'mobilenetv2':
            self.backbone = MobileNetV2Encoder(in_channels)
            self.aspp = ASPP(320)
            self.decoder = Decoder([256, 128, 64, 48, out_channels], [32, 24, 16, in_channels])
        else:
            self.backbone = ResNetEncoder(in_channels, backbone)
            self.aspp = ASPP(2048)
            self.decoder = Decoder([256, 128, 64, 48, out_channels], [512, 256, 64, in_channels])

    def forward(self, x):
        x4, x3, x2, x1, x0 = self.backbone(x)
        return self.decoder(self.aspp(x4), x3, x2, x1, x0)


def check_pair(src, bgr, multiple=1):
    """Clear errors for inputs the network cannot take (dygraph only: static shapes may be -1)."""
    if not paddle.in_dynamic_mode():
        return
    if src.ndim != 4 or src.shape[1] != 3:
        raise ValueError(f"src must be B x 3 x H x W (RGB), got shape {list(src.shape)}")
    if list(src.shape) != list(bgr.shape):
        raise ValueError(f"src and bgr must have the same shape, got {list(src.shape)} and {list(bgr.shape)}")
    h, w = src.shape[2:]
    if h % multiple or w % multiple:
        raise ValueError(f"height and width must be divisible by {multiple}, got {h} x {w} "
                         f"(pad the input, as predict.py does)")


def split_channels(x):
    """The base network's 37 channels: alpha, foreground residual, error, hidden (B x 1/3/1/32 x H x W). One split,
    whose gradient is one concatenation, not a zero-filled map per slice."""
    return paddle.split(x, [1, 3, 1, 32], axis=1)


class MattingBase(Base):
    """Coarse network at the input resolution.

    forward(src, bgr) -> BaseOutput(pha, fgr, err, hid): B x {1, 3, 1, 32} x H x W.
    """

    def __init__(self, backbone):
        super().__init__(backbone, in_channels=6, out_channels=37)

    def forward(self, src, bgr):
        check_pair(src, bgr)
        x = super().forward(paddle.concat([src, bgr], axis=1))
        pha, fgr, err, hid = split_channels(x)
        return BaseOutput(paddle.clip(pha, 0., 1.), paddle.clip(fgr + src, 0., 1.), paddle.clip(err, 0., 1.),
                          F.relu(hid))


class Refiner(nn.Layer):
    """Re-predicts 4x4 full-resolution patches where the coarse error is largest.

    Modes: 'full' refines everything densely, 'sampling' the top `sample_pixels / 16` patches,
    'thresholding' the patches whose error exceeds `threshold`.
    """

    def __init__(self, mode, sample_pixels, threshold, kernel_size=3, prevent_oversampling=True):
        super().__init__()
        if mode not in REFINE_MODES:
            raise ValueError(f"unknown refine mode {mode!r}; expected one of {', '.join(REFINE_MODES)}")
        if kernel_size not in (1, 3):
            raise ValueError(f"refine kernel size must be 1 or 3, got {kernel_size}")
        self.mode = mode
        self.sample_pixels = sample_pixels
        self.threshold = threshold
        self.kernel_size = kernel_size
        self.prevent_oversampling = prevent_oversampling
        channels = [32, 24, 16, 12, 4]
        self.conv1 = nn.Conv2D(channels[0] + 6 + 4, channels[1], kernel_size, bias_attr=False)
        self.bn1 = batch_norm(channels[1])
        self.conv2 = nn.Conv2D(channels[1], channels[2], kernel_size, bias_attr=False)
        self.bn2 = batch_norm(channels[2])
        self.conv3 = nn.Conv2D(channels[2] + 6, channels[3], kernel_size, bias_attr=False)
        self.bn3 = batch_norm(channels[3])
        self.conv4 = nn.Conv2D(channels[3], channels[4], kernel_size)
        self.relu = nn.ReLU()

    def forward(self, src, bgr, pha, fgr, err, hid):
        """pha, err: B x 1 x h x w coarse; fgr: coarse residual (unclamped); hid: B x 32 x h x w.

        Returns (pha, fgr_residual, ref): full-resolution, before clamping, and the
        B x 1 x H/4 x W/4 map of refined patches.
        """
        H, W = src.shape[2], src.shape[3]
        coarse = paddle.concat([hid, pha, fgr], axis=1)                # B x 36 x h x w
        if self.mode == 'full':
            return self.refine_full(paddle.concat([src, bgr], axis=1), coarse)
        ref = self.select_refinement_regions(ops.resize(err, [H // 4, W // 4]))
        idx = ops.with_dummy(paddle.nonzero(ref[:, 0]))                # P+1 x 3 rows of (b, y, x)
        out = ops.resize(paddle.concat([pha, fgr], axis=1), [H, W])
        patches = self.refine_patches(src, bgr, coarse, idx)           # P+1 x 4 x 4 x 4
        pha, fgr = paddle.split(ops.scatter_patches(out, patches, idx), [1, 3], axis=1)   # split: see split_channels
        return pha, fgr, ref

    def select_refinement_regions(self, err):
        """err: B x 1 x H/4 x W/4 -> 0/1 map of the patches to refine."""
        if self.mode == 'thresholding':
            return (err > self.threshold).astype(err.dtype)
        b, _, h, w = err.shape
        flat = err.reshape([b, -1])
        k = self.sample_pixels // 16
        ref = ops.topk_mask(flat, k) if k > 0 else paddle.zeros_like(flat)
        if self.prevent_oversampling:
            ref = ref * (flat > 0).astype(flat.dtype)
        return ref.reshape([b, 1, h, w])

    def refine_patches(self, src, bgr, coarse, idx):
        H, W = src.shape[2], src.shape[3]
        # kernel 3: 2x2 half-res cores with 3 px of context, 4x4 full-res cores with 2 px
        half_pad, full_pad = (3, 2) if self.kernel_size == 3 else (0, 0)
        half = [H // 2, W // 2]
        photo = [ops.resize(src, half), ops.resize(bgr, half)]
        if ops.onnx_bound():
            # whole blocks of 16 channels (conv_of_padded): the coarse maps with 12 zero channels, upsampled
            # pixel-major; the photo and plate (6) apart
            x = paddle.concat(ops.padded_to_blocks([coarse]), axis=1)                    # B x 48 x h x w
            x = ops.gather_patches(ops.upsampled_pixels(x, half), idx, 2, half_pad)      # P x 48 x 8 x 8
            y = ops.gather_planes(paddle.concat(photo, axis=1), idx, 2, half_pad)        # P x 6 x 8 x 8
            x = ops.conv_of_padded(self.conv1, [x, y], [36, 6])
        else:           # one crop, its channels in the convolution's order (coarse, src, bgr)
            x = paddle.concat([ops.resize(coarse, half)] + photo, axis=1)               # B x 42 x H/2 x W/2
            x = self.conv1(ops.gather_patches(ops.pixels(x), idx, 2, half_pad))         # of P x 42 x 8 x 8
        x = self.relu(self.bn1(x))
        x = self.relu(self.bn2(self.conv2(x)))                                      # P x 16 x 4 x 4
        x = ops.repeat_pixels(x, 2)                                # P x 16 x 8 x 8 (4 x 4 with kernel size 1)
        y = [ops.gather_planes(m, idx, 4, full_pad) for m in (src, bgr)]           # P x 3 x 8 x 8 each
        x = self.relu(self.bn3(ops.conv_of_concat(self.conv3, [x] + y)))
        return self.conv4(x)                                                        # P x 4 x 4 x 4

    def refine_full(self, src_bgr, coarse):
        B, H, W = src_bgr.shape[0], src_bgr.shape[2], src_bgr.shape[3]
        pad = 3 if self.kernel_size == 3 else 0
        x = ops.zero_pad(ops.resize(coarse, [H // 2, W // 2]), pad)
        y = ops.zero_pad(ops.resize(src_bgr, [H // 2, W // 2]), pad)
        x = self.relu(self.bn1(ops.conv_of_concat(self.conv1, [x, y])))
        x = self.relu(self.bn2(self.conv2(x)))
        pad = 2 if self.kernel_size == 3 else 0
        x = ops.resize(x, [H + 2 * pad, W + 2 * pad], 'nearest')
        y = ops.zero_pad(src_bgr, pad)
        x = self.relu(self.bn3(ops.conv_of_concat(self.conv3, [x, y])))
        x = self.conv4(x)
        ref = paddle.ones([B, 1, H // 4, W // 4], dtype=x.dtype)
        return x[:, :1], x[:, 1:], ref


class MattingRefine(MattingBase):
    """Base network at `backbone_scale`, refiner at full resolution.

    forward(src, bgr) -> RefineOutput(pha, fgr, pha_sm, fgr_sm, err_sm, ref_sm), as the official model.
    H and W must be divisible by 4.
    """

    def __init__(self, backbone, backbone_scale=1 / 4, refine_mode='sampling', refine_sample_pixels=80_000,
                 refine_threshold=0.1, refine_kernel_size=3, refine_prevent_oversampling=True):
        if not 0 < backbone_scale <= 1 / 2:
            raise ValueError(f"backbone_scale must be in (0, 0.5], got {backbone_scale}")
        super().__init__(backbone)
        self.backbone_scale = backbone_scale
        self.refiner = Refiner(refine_mode, refine_sample_pixels, refine_threshold, refine_kernel_size,
                               refine_prevent_oversampling)

    def forward(self, src, bgr):
        check_pair(src, bgr, multiple=4)
        size = ops.scaled_size(src.shape[2], src.shape[3], self.backbone_scale)
        src_sm, bgr_sm = ops.resize(src, size), ops.resize(bgr, size)
        # Base.forward; an unbound call would escape static-graph conversion
        x = super(MattingBase, self).forward(paddle.concat([src_sm, bgr_sm], axis=1))
        pha_sm, fgr_sm, err_sm, hid_sm = split_channels(x)   # the foreground residual unclamped for the refiner
        pha_sm, err_sm, hid_sm = paddle.clip(pha_sm, 0., 1.), paddle.clip(err_sm, 0., 1.), F.relu(hid_sm)
        pha, fgr, ref_sm = self.refiner(src, bgr, pha_sm, fgr_sm, err_sm, hid_sm)
        pha = paddle.clip(pha, 0., 1.)
        fgr = paddle.clip(fgr + src, 0., 1.)
        fgr_sm = paddle.clip(src_sm + fgr_sm, 0., 1.)
        return RefineOutput(pha, fgr, pha_sm, fgr_sm, err_sm, ref_sm)
