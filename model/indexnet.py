"""IndexNet Matting (Lu, Dai, Shen, Xu, ICCV 2019): IndexNetMatting.

A MobileNetV2 U-Net whose five stride-2 steps become stride-1 convolutions followed by *indexed pooling*
(a learned weighted sum of each 2x2 window) and, in the decoder, *indexed upsampling* (nearest upsampling gated
by learned maps), both predicted by small index networks. Layer for layer and name for name the official
`hlmobilenetv2(decoder='indexnet')`, so the released checkpoint converts by renaming BatchNorm statistics.

forward(x) on B x 4 x H x W (normalised RGB + trimap / 255; H, W multiples of 32) -> B x 1 x H x W raw alpha
(no sigmoid, no clip: inference clips).
"""
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from .backbones.resnet import batch_norm
from .static_ops import resize, sigmoid, zero_pad

INDEX_MODES = ('m2o', 'o2o', 'holistic')
# MobileNetV2 stages (expansion t, output channels c, blocks n); every stride is 1 here
STAGES = [(1, 16, 1), (6, 24, 2), (6, 32, 3), (6, 64, 4), (6, 96, 3), (6, 160, 3), (6, 320, 1)]
POOLED = (0, 2, 3, 4, 6)                   # the layers after which MobileNetV2 had a stride of 2


def conv_bn(in_channels, out_channels, kernel_size, stride=1, groups=1, dilation=1):
    """conv (no bias) - BN - ReLU6, padded to keep the size at stride 1."""
    padding = (kernel_size - 1) // 2 * dilation
    return [nn.Conv2D(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias_attr=False),
            batch_norm(out_channels), nn.ReLU6()]


class InvertedResidual(nn.Layer):
    """[1x1 expand - BN - ReLU6] - 3x3 depthwise - BN - ReLU6 - 1x1 - BN, residual when shapes agree. The block
    zero-pads its input, so the expansion also sees the padding (a border unlike padding the depthwise conv)."""

    def __init__(self, in_channels, out_channels, expand_ratio):
        super().__init__()
        hidden = in_channels * expand_ratio
        layers = [] if expand_ratio == 1 else conv_bn(in_channels, hidden, 1)
        layers += [nn.Conv2D(hidden, hidden, 3, groups=hidden, bias_attr=False), batch_norm(hidden), nn.ReLU6(),
                   nn.Conv2D(hidden, out_channels, 1, bias_attr=False), batch_norm(out_channels)]
        self.conv = nn.Sequential(*layers)
        self.use_res_connect = in_channels == out_channels

    def forward(self, x):
        out = self.conv(zero_pad(x, 1))
        return x + out if self.use_res_connect else out


def index_branch(in_channels, hidden, out_channels, use_nonlinear, use_context, groups=1):
    """Strided conv over each 2x2 window (4x4 with context), nonlinear: - BN - ReLU6 - 1x1 conv."""
    k, p = (4, 1) if use_context else (2, 0)
    if not use_nonlinear:
        return nn.Sequential(nn.Conv2D(in_channels, out_channels, k, 2, p, groups=groups, bias_attr=False))
    return nn.Sequential(nn.Conv2D(in_channels, hidden, k, 2, p, groups=groups, bias_attr=False),
                         batch_norm(hidden), nn.ReLU6(),
                         nn.Conv2D(hidden, out_channels, 1, groups=groups, bias_attr=False))


class DepthwiseIndexBlock(nn.Layer):
    """Four branches, one per position of the 2x2 window, each predicting C index channels (M2O: dense convs;
    O2O: depthwise). forward(x B x C x H x W) -> (encoder weights, decoder gates), both B x C x H x W."""

    def __init__(self, channels, index_mode, use_nonlinear, use_context):
        super().__init__()
        groups = channels if index_mode == 'o2o' else 1
        for k in range(1, 5):
            setattr(self, f'indexnet{k}', index_branch(channels, channels, channels, use_nonlinear, use_context, groups))

    def forward(self, x):
        b, c, h, w = x.shape
        y = paddle.stack([getattr(self, f'indexnet{k}')(x) for k in range(1, 5)], axis=2)   # B x C x 4 x h x w
        y = sigmoid(y)
        z = F.softmax(y, axis=2)                                     # each window's weights sum to 1
        # branch k fills position (k // 2, k % 2) of every window
        shuffle = lambda t: F.pixel_shuffle(t.reshape([b, c * 4, h // 2, w // 2]), 2)  # noqa: E731
        return shuffle(z), shuffle(y)


class HolisticIndexBlock(nn.Layer):
    """One branch predicting 4 maps (one per window position) shared by all channels."""

    def __init__(self, channels, use_nonlinear, use_context):
        super().__init__()
        self.indexnet = index_branch(channels, 2 * channels, 4, use_nonlinear, use_context)

    def forward(self, x):
        y = sigmoid(self.indexnet(x))                              # B x 4 x h x w
        z = F.softmax(y, axis=1)
        return F.pixel_shuffle(z, 2), F.pixel_shuffle(y, 2)          # B x 1 x H x W, broadcast over channels


class ASPP(nn.Layer):
    """Context aggregation at 1/32 (output stride 32): a 1x1 branch, three depthwise-separable dilated 3x3
    branches (dilations 2, 4, 8), an image-pooling branch; concat - 1x1 - dropout."""

    def __init__(self, in_channels, out_channels, dilations=(1, 2, 4, 8), branch_channels=256):
        super().__init__()
        self.aspp1 = Branch(nn.Sequential(*conv_bn(in_channels, branch_channels, 1)))
        for i, d in enumerate(dilations[1:], start=2):
            setattr(self, f'aspp{i}', Branch(nn.Sequential(*conv_bn(in_channels, in_channels, 3, groups=in_channels,
                                                                    dilation=d),
                                                           *conv_bn(in_channels, branch_channels, 1))))
        self.global_avg_pool = nn.Sequential(nn.AdaptiveAvgPool2D(1), *conv_bn(in_channels, branch_channels, 1))
        self.bottleneck_conv = nn.Sequential(*conv_bn(branch_channels * (len(dilations) + 1), out_channels, 1))
        self.dropout = nn.Dropout(0.5)

    def forward(self, x):
        branches = [self.aspp1(x), self.aspp2(x), self.aspp3(x), self.aspp4(x)]
        branches.append(resize(self.global_avg_pool(x), x.shape[2:], 'nearest'))
        return self.dropout(self.bottleneck_conv(paddle.concat(branches, axis=1)))


class Branch(nn.Layer):
    """One ASPP branch (its layers are `atrous_conv.*` in the official state dict)."""

    def __init__(self, atrous_conv):
        super().__init__()
        self.atrous_conv = atrous_conv

    def forward(self, x):
        return self.atrous_conv(x)


class IndexedUpsampling(nn.Layer):
    """Decoder stage: the coarser map upsampled (nearest) and gated by the decoder indices when there are any,
    concatenated with the skip, one conv-BN-ReLU6."""

    def __init__(self, in_channels, out_channels, kernel_size):
        super().__init__()
        self.dconv = nn.Sequential(*conv_bn(in_channels, out_channels, kernel_size))

    def forward(self, x, skip, index=None):
        if index is not None:
            x = index * resize(x, skip.shape[2:], 'nearest')
        return self.dconv(paddle.concat([x, skip], axis=1))


class IndexNetMatting(nn.Layer):
    """The released configuration by default: M2O depthwise index blocks, nonlinear, with context, ASPP, output
    stride 32, standard convolutions, decoder kernel 5 (5,953,515 parameters)."""

    def __init__(self, index_mode='m2o', use_nonlinear=True, use_context=True, apply_aspp=True, decoder_kernel_size=5):
        super().__init__()
        if index_mode not in INDEX_MODES:
            raise ValueError(f"unknown index mode {index_mode!r}; expected one of {', '.join(INDEX_MODES)}")
        self.layer0 = nn.Sequential(*conv_bn(4, 32, 3))
        channels = [32]
        for i, (t, c, n) in enumerate(STAGES, start=1):
            blocks = [InvertedResidual(channels[-1] if j == 0 else c, c, t) for j in range(n)]
            setattr(self, f'layer{i}', nn.Sequential(*blocks))
            channels.append(c)
        for i in POOLED:
            block = HolisticIndexBlock(channels[i], use_nonlinear, use_context) if index_mode == 'holistic' else \
                DepthwiseIndexBlock(channels[i], index_mode, use_nonlinear, use_context)
            setattr(self, f'index{i}', block)
        self.dconv_pp = ASPP(320, 160) if apply_aspp else nn.Sequential(*conv_bn(320, 160, 1))
        k = decoder_kernel_size
        # (input channels = coarser map + skip, output channels) of decoder_layer6 .. decoder_layer0
        for i, (cin, cout) in zip(range(6, -1, -1), [(320, 96), (192, 64), (128, 32), (64, 24), (48, 16), (32, 32),
                                                       (64, 32)]):
            setattr(self, f'decoder_layer{i}', IndexedUpsampling(cin, cout, k))
        self.pred = nn.Sequential(nn.Sequential(*conv_bn(32, 1, k)),
                                  nn.Conv2D(1, 1, k, padding=k // 2, bias_attr=False))

    def pool(self, i, x):
        """Indexed pooling after layer i: the index-weighted map (the decoder's skip) and its 2x2 weighted sums."""
        index_en, index_de = getattr(self, f'index{i}')(x)
        x = index_en * x
        return x, 4 * F.avg_pool2d(x, 2, 2), index_de

    def forward(self, x):
        l0, x, i0 = self.pool(0, self.layer0(x))     # 32 @ 1/1 (skip), 1/2 (pooled)
        l1 = self.layer1(x)                          # 16 @ 1/2
        l2, x, i2 = self.pool(2, self.layer2(l1))    # 24 @ 1/2, 1/4
        l3, x, i3 = self.pool(3, self.layer3(x))     # 32 @ 1/4, 1/8
        l4, x, i4 = self.pool(4, self.layer4(x))     # 64 @ 1/8, 1/16
        l5 = self.layer5(x)                          # 96 @ 1/16
        l6, x, i6 = self.pool(6, self.layer6(l5))    # 160 @ 1/16, 1/32
        x = self.dconv_pp(self.layer7(x))            # 160 @ 1/32
        x = self.decoder_layer6(x, l6, i6)           # 96 @ 1/16
        x = self.decoder_layer5(x, l5)               # 64 @ 1/16
        x = self.decoder_layer4(x, l4, i4)           # 32 @ 1/8
        x = self.decoder_layer3(x, l3, i3)           # 24 @ 1/4
        x = self.decoder_layer2(x, l2, i2)           # 16 @ 1/2
        x = self.decoder_layer1(x, l1)               # 32 @ 1/2
        x = self.decoder_layer0(x, l0, i0)           # 32 @ 1/1
        return self.pred(x)                          # 1 @ 1/1, raw
