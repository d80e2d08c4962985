"""Robust Video Matting (Lin et al., WACV 2022): MattingNetwork.

The same network as the official PyTorch model (PeterL1n/RobustVideoMatting), layer for layer and name for
name, so `rvm_mobilenetv3.pth` / `rvm_resnet50.pth` convert by renaming BatchNorm statistics only. The
'unireplknet' variant is LKM (lvhonglong/LKM): a UniRepLKNet-A backbone, a Haar-wavelet image skip and a
large-kernel decode1, in its training form or its folded deploy form (`deploy=True`, `rep_model.pth`).
Every layer except the ConvGRUs sees frames: a (B, T, C, H, W) chunk is folded to (B*T, C, H, W) around it.
"""
import collections

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from .backbones.mobilenetv3 import MobileNetV3LargeEncoder
from .backbones.resnet import ResNetEncoder, batch_norm
from .backbones.unireplknet import DilatedReparamBlockk, UniRepLKNetEncoder
from .static_ops import Sigmoid, Tanh, conv_of_concat, downsample, resize

VARIANTS = ('mobilenetv3', 'resnet50', 'unireplknet')
REFINERS = ('deep_guided_filter', 'fast_guided_filter')

# the official list orders, with names (a static graph returns the plain tuple in the same order)
MattingOutput = collections.namedtuple('MattingOutput', 'fgr pha r1 r2 r3 r4')
SegmentationOutput = collections.namedtuple('SegmentationOutput', 'seg r1 r2 r3 r4')
# the fast backends' graph: guided-filter coefficients at the downsampled resolution (MattingNetworkCoefficients)
CoefficientOutput = collections.namedtuple('CoefficientOutput', 'a b r1 r2 r3 r4')


def fold(layer, *tensors):
    """Run a per-frame layer on 4-D tensors, or on 5-D ones with time folded into the batch."""
    if tensors[0].ndim == 4:
        return layer(*tensors)
    batch, time = tensors[0].shape[:2]
    out = layer(*[t.flatten(0, 1) for t in tensors])
    unfold = lambda t: t.reshape([batch, time] + t.shape[1:])
    return [unfold(t) for t in out] if isinstance(out, (list, tuple)) else unfold(out)


def upsample2_crop(x, like):
    """x2 upsample, then crop to `like`'s size (encoder sizes use ceil division, so 2*h may exceed it)."""
    x = resize(x, [x.shape[2] * 2, x.shape[3] * 2])
    return x[:, :, :like.shape[2], :like.shape[3]]


class ResNet50Encoder(ResNetEncoder):
    """The ResNet-50 taps (f1, f2, f3, f4): 64@1/2, 256@1/4, 512@1/8, 2048@1/16.

    Unlike MobileNetV3 it does not normalise its input: the released weights were trained on [0, 1] RGB."""

    def __init__(self):
        super().__init__(3, 'resnet50')

    def forward(self, x):
        f4, f3, f2, f1, _ = super().forward(x)
        return f1, f2, f3, f4


class LRASPP(nn.Layer):
    """Lite R-ASPP: a 1x1 conv branch gated by a globally pooled sigmoid branch."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.aspp1 = nn.Sequential(nn.Conv2D(in_channels, out_channels, 1, bias_attr=False),
                                   batch_norm(out_channels), nn.ReLU())
        self.aspp2 = nn.Sequential(nn.AdaptiveAvgPool2D(1), nn.Conv2D(in_channels, out_channels, 1, bias_attr=False),
                                   Sigmoid())

    def forward(self, x):
        return self.aspp1(x) * self.aspp2(x)


class ConvGRU(nn.Layer):
    """Convolutional GRU over the frames of a 5-D input (or one step for 4-D).

    The state `h` is None (zeros) or anything broadcastable to one frame, e.g. a [1, 1, 1, 1] zero tensor as an
    exported model's first input. Gate channels [0:C] are the reset gate, [C:2C] the update gate."""

    def __init__(self, channels, kernel_size=3, padding=1):
        super().__init__()
        self.ih = nn.Sequential(nn.Conv2D(channels * 2, channels * 2, kernel_size, padding=padding), Sigmoid())
        self.hh = nn.Sequential(nn.Conv2D(channels * 2, channels, kernel_size, padding=padding), Tanh())

    def step(self, x, h):
        r, z = self.ih(paddle.concat([x, h], axis=1)).chunk(2, axis=1)
        c = self.hh(paddle.concat([x, r * h], axis=1))
        return (1 - z) * h + z * c

    def forward(self, x, h):
        frames = x.unbind(1) if x.ndim == 5 else [x]
        zeros = paddle.zeros_like(frames[0])
        h = zeros if h is None else h + zeros        # broadcasts a [1, 1, 1, 1] state (expand_as: no legacy graph)
        outputs = []
        for frame in frames:
            h = self.step(frame, h)
            outputs.append(h)
        return (paddle.stack(outputs, axis=1) if x.ndim == 5 else h), h


def recur_second_half(gru, x, r):
    """Only the second half of the channels is recurrent; the first half passes through."""
    a, b = x.chunk(2, axis=-3)
    b, r = gru(b, r)
    return paddle.concat([a, b], axis=-3), r


class BottleneckBlock(nn.Layer):
    def __init__(self, channels):
        super().__init__()
        self.gru = ConvGRU(channels // 2)

    def forward(self, x, r):
        return recur_second_half(self.gru, x, r)


def conv_bn_relu(in_channels, out_channels):
    return [nn.Conv2D(in_channels, out_channels, 3, padding=1, bias_attr=False), batch_norm(out_channels), nn.ReLU()]


class UpsamplingBlock(nn.Layer):
    """Upsample, concat the encoder skip and the image at that scale (LKM's decode3/decode2: no image,
    src_channels 0), conv, half-recurrent GRU. forward(x, f, [s,] r); the upsampled x is cropped to the last."""

    def __init__(self, in_channels, skip_channels, src_channels, out_channels):
        super().__init__()
        self.conv = nn.Sequential(*self.layers(in_channels + skip_channels + src_channels, out_channels))
        self.gru = ConvGRU(out_channels // 2)

    def layers(self, in_channels, out_channels):
        return conv_bn_relu(in_channels, out_channels)

    def fuse(self, x, *skips):
        return self.conv[1:](conv_of_concat(self.conv[0], [upsample2_crop(x, skips[-1]), *skips]))

    def forward(self, x, *skips_and_state):
        *skips, r = skips_and_state
        return recur_second_half(self.gru, fold(self.fuse, x, *skips), r)


class UpsamplingBlock_lk(UpsamplingBlock):  # noqa: N801 (the official name)
    """LKM's decode1: the 3x3 conv is a DilatedReparamBlockk (dense 9x9 + dilated branches), then BN, ReLU."""

    def __init__(self, in_channels, skip_channels, src_channels, out_channels, deploy=False):
        self.deploy = deploy
        super().__init__(in_channels, skip_channels, src_channels, out_channels)

    def layers(self, in_channels, out_channels):
        return [DilatedReparamBlockk(in_channels, out_channels, 9, self.deploy), batch_norm(out_channels), nn.ReLU()]

    def reparameterize(self):
        self.conv[0].merge_dilated_branches()


class OutputBlock(nn.Layer):
    def __init__(self, in_channels, src_channels, out_channels):
        super().__init__()
        self.conv = nn.Sequential(*conv_bn_relu(in_channels + src_channels, out_channels),
                                  *conv_bn_relu(out_channels, out_channels))

    def fuse(self, x, s):
        return self.conv[1:](conv_of_concat(self.conv[0], [upsample2_crop(x, s), s]))

    def forward(self, x, s):
        return fold(self.fuse, x, s)


def image_pyramid(s0):
    """s1, s2, s3: ceil-mode 2x2 average pools; partial windows average their valid pixels only."""
    s1 = F.avg_pool2d(s0, 2, 2, ceil_mode=True)
    s2 = F.avg_pool2d(s1, 2, 2, ceil_mode=True)
    return s1, s2, F.avg_pool2d(s2, 2, 2, ceil_mode=True)


class RecurrentDecoder(nn.Layer):
    def __init__(self, feature_channels, decoder_channels):
        super().__init__()
        self.decode4 = BottleneckBlock(feature_channels[3])
        self.decode3 = UpsamplingBlock(feature_channels[3], feature_channels[2], 3, decoder_channels[0])
        self.decode2 = UpsamplingBlock(decoder_channels[0], feature_channels[1], 3, decoder_channels[1])
        self.decode1 = UpsamplingBlock(decoder_channels[1], feature_channels[0], 3, decoder_channels[2])
        self.decode0 = OutputBlock(decoder_channels[2], 3, decoder_channels[3])

    def forward(self, s0, f1, f2, f3, f4, r1, r2, r3, r4):
        s1, s2, s3 = fold(image_pyramid, s0)
        x4, r4 = self.decode4(f4, r4)
        x3, r3 = self.decode3(x4, f3, s3, r3)
        x2, r2 = self.decode2(x3, f2, s2, r2)
        x1, r1 = self.decode1(x2, f1, s1, r1)
        return self.decode0(x1, s0), r1, r2, r3, r4


class HaarDWT(nn.Layer):
    """One level of the 2-D Haar wavelet transform, pytorch_wavelets' DWTForward(J=1, wave='haar', mode='zero'):
    B x C x H x W -> B x 4C x ceil(H/2) x ceil(W/2) = [LL, band0, band1, band2] (C channels each). Per 2x2 block
    [a b; c d]: (a+b+c+d)/2, (a+b-c-d)/2, (a-b+c-d)/2, (a-b-c+d)/2; odd sizes get a zero row / column at the
    bottom / right. One stride-2 2x2 conv whose kernels are outer products of the official filter buffers
    (kept: they are in every checkpoint), static-shape friendly (no size-dependent padding)."""

    def __init__(self):
        super().__init__()
        lo, hi = [2 ** -0.5, 2 ** -0.5], [2 ** -0.5, -2 ** -0.5]
        for name, taps, shape in (('h0_col', lo, [1, 1, 2, 1]), ('h1_col', hi, [1, 1, 2, 1]),
                                  ('h0_row', lo, [1, 1, 1, 2]), ('h1_row', hi, [1, 1, 1, 2])):
            self.register_buffer(name, paddle.to_tensor(taps, 'float32').reshape(shape))

    def forward(self, x):
        channels = x.shape[1]
        bands = [(self.h0_col, self.h0_row), (self.h1_col, self.h0_row), (self.h0_col, self.h1_row),
                 (self.h1_col, self.h1_row)]
        kernels = paddle.concat([col.reshape([2, 1]) * row.reshape([1, 2]) for col, row in bands])   # 8 x 2
        eye = paddle.eye(channels, dtype=x.dtype).reshape([1, channels, channels, 1, 1])
        weight = (kernels.reshape([4, 1, 1, 2, 2]) * eye).reshape([4 * channels, channels, 2, 2])
        return F.conv2d(x, weight, stride=2, padding=[0, 1, 0, 1])


class Down_wt(nn.Layer):  # noqa: N801 (the official name)
    """LKM's image skip s1 at 1/2: Haar DWT (12 channels) -> 1x1 conv (+bias) -> BN -> ReLU, 3 channels."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.wt = HaarDWT()
        self.conv_bn_relu = nn.Sequential(nn.Conv2D(in_channels * 4, out_channels, 1), batch_norm(out_channels),
                                          nn.ReLU())

    def forward(self, x):
        return fold(lambda s: self.conv_bn_relu(self.wt(s)), x)


class LargeKernelDecoder(nn.Layer):
    """LKM's RecurrentDecoder: s1 from Down_wt instead of the pooled pyramid, no image skips in decode3 and
    decode2, decode1 a large-kernel block fed with (x2, f1, s1)."""

    def __init__(self, feature_channels, decoder_channels, deploy=False):
        super().__init__()
        self.down = Down_wt(3, 3)
        self.decode4 = BottleneckBlock(feature_channels[3])
        self.decode3 = UpsamplingBlock(feature_channels[3], feature_channels[2], 0, decoder_channels[0])
        self.decode2 = UpsamplingBlock(decoder_channels[0], feature_channels[1], 0, decoder_channels[1])
        self.decode1 = UpsamplingBlock_lk(decoder_channels[1], feature_channels[0], 3, decoder_channels[2], deploy)
        self.decode0 = OutputBlock(decoder_channels[2], 3, decoder_channels[3])

    def forward(self, s0, f1, f2, f3, f4, r1, r2, r3, r4):
        s1 = self.down(s0)                          # .. x 3 x ceil(h/2) x ceil(w/2)
        x4, r4 = self.decode4(f4, r4)               # 128 @ 1/16
        x3, r3 = self.decode3(x4, f3, r3)           # 80 @ 1/8
        x2, r2 = self.decode2(x3, f2, r2)           # 40 @ 1/4
        x1, r1 = self.decode1(x2, f1, s1, r1)       # 32 @ 1/2
        return self.decode0(x1, s0), r1, r2, r3, r4


class Projection(nn.Layer):
    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv = nn.Conv2D(in_channels, out_channels, 1)

    def forward(self, x):
        return self.conv(x)


def guides(src):
    """Guided-filter guide: RGB plus its channel mean."""
    return paddle.concat([src, src.mean(axis=1, keepdim=True)], axis=1)


def linear_coefficients(box_filter, base_x, base_y):
    """Local means and (co)variances of the low-resolution guide x and target y."""
    mean_x, mean_y = box_filter(base_x), box_filter(base_y)
    cov_xy = box_filter(base_x * base_y) - mean_x * mean_y
    var_x = box_filter(base_x * base_x) - mean_x * mean_x
    return mean_x, mean_y, cov_xy, var_x


def apply_upsampled(a, b, fine_x):
    """out = A * fine_x + b with A, b resized to full resolution; split into fgr residual and alpha."""
    size = fine_x.shape[2:]
    return (resize(a, size) * fine_x + resize(b, size)).split([3, 1], axis=1)


class DeepGuidedFilterRefiner(nn.Layer):
    """Guided filter whose A comes from a 1x1-conv MLP on (cov, var, hidden features); the 3x3 box filter is a
    trained depthwise conv (zero padding, no border renormalisation), only initialised to 1/9."""

    def __init__(self, hid_channels=16):
        super().__init__()
        self.box_filter = nn.Conv2D(4, 4, 3, padding=1, groups=4, bias_attr=False,
                                    weight_attr=nn.initializer.Constant(1 / 9))
        self.conv = nn.Sequential(
            nn.Conv2D(4 * 2 + hid_channels, hid_channels, 1, bias_attr=False), batch_norm(hid_channels), nn.ReLU(),
            nn.Conv2D(hid_channels, hid_channels, 1, bias_attr=False), batch_norm(hid_channels), nn.ReLU(),
            nn.Conv2D(hid_channels, 4, 1))

    def forward(self, fine_src, base_src, base_fgr, base_pha, base_hid):
        return apply_upsampled(*self.coefficients(base_src, base_fgr, base_pha, base_hid), guides(fine_src))

    def coefficients(self, base_src, base_fgr, base_pha, base_hid):
        """The low-resolution A and b (B, 4, h, w) of out = A * guides + b."""
        base_x = guides(base_src)
        mean_x, mean_y, cov_xy, var_x = linear_coefficients(self.box_filter, base_x,
                                                            paddle.concat([base_fgr, base_pha], axis=1))
        a = self.conv(paddle.concat([cov_xy, var_x, base_hid], axis=1))
        return a, mean_y - a * mean_x


def box_filter3(x):
    """Separable 3x3 mean with zero padding (no border renormalisation), as the official FGF box filter."""
    channels = x.shape[1]
    x = F.conv2d(x, paddle.full([channels, 1, 1, 3], 1 / 3, x.dtype), padding=[0, 1], groups=channels)
    return F.conv2d(x, paddle.full([channels, 1, 3, 1], 1 / 3, x.dtype), padding=[1, 0], groups=channels)


class FastGuidedFilterRefiner(nn.Layer):
    """Classic fast guided filter, radius 1, eps 1e-5, on the same 4-channel guides; no parameters."""

    def __init__(self, eps=1e-5):
        super().__init__()
        self.eps = eps

    def forward(self, fine_src, base_src, base_fgr, base_pha, base_hid=None):
        return apply_upsampled(*self.coefficients(base_src, base_fgr, base_pha, base_hid), guides(fine_src))

    def coefficients(self, base_src, base_fgr, base_pha, base_hid=None):
        base_x = guides(base_src)
        mean_x, mean_y, cov_xy, var_x = linear_coefficients(box_filter3, base_x,
                                                            paddle.concat([base_fgr, base_pha], axis=1))
        a = cov_xy / (var_x + self.eps)
        return a, mean_y - a * mean_x


class MattingNetwork(nn.Layer):
    """forward(src, r1..r4, downsample_ratio, segmentation_pass) -> MattingOutput(fgr, pha, r1..r4) or
    SegmentationOutput(seg, r1..r4), the official lists with names.

    src is RGB in [0, 1], (B, C, H, W) or (B, T, C, H, W); states are 4-D (the state after the last frame),
    None meaning zeros. fgr and pha are clamped to [0, 1]; seg is a logit at the downsampled resolution.
    variant 'unireplknet' (LKM) takes deploy=True for its folded form (the official rep_model.pth)."""

    def __init__(self, variant='mobilenetv3', refiner='deep_guided_filter', deploy=False):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown RVM variant {variant!r}; expected one of {', '.join(VARIANTS)}")
        if refiner not in REFINERS:
            raise ValueError(f"unknown RVM refiner {refiner!r}; expected one of {', '.join(REFINERS)}")
        if deploy and variant != 'unireplknet':
            raise ValueError(f"deploy=True is the folded form of the unireplknet variant; {variant} has none")
        if variant == 'mobilenetv3':
            self.backbone = MobileNetV3LargeEncoder()
            self.aspp = LRASPP(960, 128)
            self.decoder = RecurrentDecoder([16, 24, 40, 128], [80, 40, 32, 16])
        elif variant == 'unireplknet':
            self.backbone = UniRepLKNetEncoder(deploy)
            self.aspp = LRASPP(320, 128)
            self.decoder = LargeKernelDecoder([40, 80, 160, 128], [80, 40, 32, 16], deploy)
        else:
            self.backbone = ResNet50Encoder()
            self.aspp = LRASPP(2048, 256)
            self.decoder = RecurrentDecoder([64, 256, 512, 256], [128, 64, 32, 16])
        self.project_mat = Projection(16, 4)
        self.project_seg = Projection(16, 1)
        self.refiner = DeepGuidedFilterRefiner() if refiner == 'deep_guided_filter' else FastGuidedFilterRefiner()

    def reparameterize(self):
        """unireplknet: fold the training form into the deploy form in place (the official rep_param.py loop);
        afterwards the network equals MattingNetwork('unireplknet', refiner, deploy=True) with these weights
        (same state_dict names, shapes and order). Idempotent; nothing to do for the other variants."""
        for layer in self.sublayers():
            if hasattr(layer, 'reparameterize'):
                layer.reparameterize()
        return self

    def forward(self, src, r1=None, r2=None, r3=None, r4=None, downsample_ratio=1, segmentation_pass=False):
        if not 0 < downsample_ratio <= 1:
            raise ValueError(f"downsample_ratio must be in (0, 1], got {downsample_ratio}")
        src_sm = src if downsample_ratio == 1 else fold(lambda x: downsample(x, downsample_ratio), src)
        hid, rec = self.features(src_sm, r1, r2, r3, r4)
        if segmentation_pass:
            return SegmentationOutput(fold(self.project_seg, hid), *rec)
        fgr_residual, pha = fold(self.project_mat, hid).split([3, 1], axis=-3)
        if downsample_ratio != 1:
            fgr_residual, pha = fold(self.refiner, src, src_sm, fgr_residual, pha, hid)
        return MattingOutput(paddle.clip(fgr_residual + src, 0., 1.), paddle.clip(pha, 0., 1.), *rec)

    def features(self, src_sm, r1, r2, r3, r4):
        """The recurrent network on the downsampled frames: (hidden features (.., 16, h, w), [r1..r4])."""
        f1, f2, f3, f4 = fold(self.backbone, src_sm)
        f4 = fold(self.aspp, f4)
        hid, *rec = self.decoder(src_sm, f1, f2, f3, f4, r1, r2, r3, r4)
        return hid, rec


class MattingNetworkStep(nn.Layer):
    """One frame of a MattingNetwork with a fixed downsample ratio and the recurrent states as explicit inputs and
    outputs, for `paddle.jit.to_static` / Paddle Inference:

        step = MattingNetworkStep(model, 0.25)
        paddle.jit.save(paddle.jit.to_static(step, input_spec=step.input_spec(), full_graph=True), prefix)

    forward(src (B, 3, H, W), r1, r2, r3, r4) -> (fgr, pha, r1, r2, r3, r4). The first frame takes four
    [1, 1, 1, 1] zero tensors (they broadcast to every state's shape), later frames the returned states; reset
    them when the resolution changes. The ratio is a constant of the graph (a runtime ratio would make the
    refiner branch and the resize scales data-dependent)."""

    def __init__(self, model, downsample_ratio):
        super().__init__()
        self.model = model
        self.downsample_ratio = downsample_ratio

    def forward(self, src, r1, r2, r3, r4):
        return self.model(src, r1, r2, r3, r4, downsample_ratio=self.downsample_ratio)

    @staticmethod
    def input_spec():
        states = [paddle.static.InputSpec([None, None, None, None], 'float32', f'r{k}i') for k in range(1, 5)]
        return [paddle.static.InputSpec([None, 3, None, None], 'float32', 'src')] + states


class MattingNetworkCoefficients(nn.Layer):
    """Everything of a MattingNetwork below full resolution, for the fast backends: the part of the work that
    needs a graph. The full-resolution rest is a resize and a multiply-add, done on the frames where they are
    (numpy, inference/guided_filter.py), which spares a graph the full-size input and output copies:

        fgr = clip(src + (A * guides(src) + B)[:3], 0, 1), pha = clip((A * guides(src) + B)[3], 0, 1)

    with A, B = a, b resized bilinearly to src's size (the refiner's own last step). forward(src_sm (B, 3, h, w),
    r1..r4) -> CoefficientOutput(a, b (B, 4, h, w), r1..r4), src_sm the downsampled frame. refine=False (ratio 1,
    where the network has no refiner): a = 0, b = (fgr residual, pha). States as in MattingNetworkStep."""

    def __init__(self, model, refine=True):
        super().__init__()
        self.model, self.refine = model, refine

    def forward(self, src_sm, r1, r2, r3, r4):
        hid, rec = self.model.features(src_sm, r1, r2, r3, r4)
        fgr_residual, pha = self.model.project_mat(hid).split([3, 1], axis=1)
        if self.refine:
            a, b = self.model.refiner.coefficients(src_sm, fgr_residual, pha, hid)
        else:
            b = paddle.concat([fgr_residual, pha], axis=1)
            a = b * 0
        return CoefficientOutput(a, b, *rec)

    @staticmethod
    def input_spec(h, w):
        """Dynamic batch, fixed size (the resizes inside need it), states of any shape."""
        states = [paddle.static.InputSpec([None, None, None, None], 'float32', f'r{k}i') for k in range(1, 5)]
        return [paddle.static.InputSpec([None, 3, h, w], 'float32', 'src_sm')] + states
