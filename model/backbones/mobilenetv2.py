"""MobileNetV2 encoder in torchvision's layout, changed as BGMv2 changes it.

features[18] is dropped, features[14] keeps stride 1 and features[15..17] use dilation 2, so the
output stride is 16. Names (`features.<i>.conv.<j>...`) equal torchvision's.
"""
import paddle.nn as nn

from .resnet import batch_norm

# expansion t, output channels c, repeats n, first stride s
SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
            (6, 320, 1, 1)]


class ConvBNReLU(nn.Sequential):
    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, groups=1, dilation=1):
        padding = (kernel_size - 1) // 2 * dilation
        super().__init__(
            nn.Conv2D(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                      dilation=dilation, groups=groups, bias_attr=False),
            batch_norm(out_channels),
            nn.ReLU6())


class InvertedResidual(nn.Layer):
    def __init__(self, in_channels, out_channels, stride, expand_ratio, dilation=1):
        super().__init__()
        hidden = in_channels * expand_ratio
        # decided by the original stride, as torchvision does before BGMv2 patches the stride
        self.use_res_connect = stride == 1 and in_channels == out_channels
        layers = [] if expand_ratio == 1 else [ConvBNReLU(in_channels, hidden, kernel_size=1)]
        layers += [ConvBNReLU(hidden, hidden, stride=stride, groups=hidden, dilation=dilation),
                   nn.Conv2D(hidden, out_channels, 1, bias_attr=False),
                   batch_norm(out_channels)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2Encoder(nn.Layer):
    """Returns the taps (x4, x3, x2, x1, x0): 320@1/16, 32@1/8, 24@1/4, 16@1/2 and the input."""

    def __init__(self, in_channels=3):
        super().__init__()
        features = [ConvBNReLU(in_channels, 32, stride=2)]
        channels = 32
        for t, c, n, s in SETTINGS:
            for i in range(n):
                index = len(features)
                # features[14] (first 160-ch block) loses its stride 2 (it has no residual either
                # way, 96 != 160); features[15..17] use dilation 2 instead
                stride = s if i == 0 and index != 14 else 1
                features.append(InvertedResidual(channels, c, stride, t, dilation=2 if index >= 15 else 1))
                channels = c
        self.features = nn.Sequential(*features)

    def forward(self, x):
        x0 = x                              # C_in @ 1/1
        x1 = self.features[:2](x0)          # 16 @ 1/2
        x2 = self.features[2:4](x1)         # 24 @ 1/4
        x3 = self.features[4:7](x2)         # 32 @ 1/8
        x4 = self.features[7:](x3)          # 320 @ 1/16
        return x4, x3, x2, x1, x0
