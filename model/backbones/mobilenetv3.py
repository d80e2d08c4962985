"""MobileNetV3-Large encoder as Robust Video Matting uses it.

torchvision's layout (`features.<i>.block.<j>...`, SE as `fc1`/`fc2`) without the classifier, the last
stage dilated for output stride 16, and the ImageNet normalisation done inside the encoder.
"""
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

# in, kernel, expanded, out, squeeze-excite, hard-swish, stride, dilation (torchvision's large config;
# rows 13-15 trade the stride 2 of row 13 for dilation 2)
SETTINGS = [(16, 3, 16, 16, False, False, 1, 1), (16, 3, 64, 24, False, False, 2, 1),
            (24, 3, 72, 24, False, False, 1, 1), (24, 5, 72, 40, True, False, 2, 1),
            (40, 5, 120, 40, True, False, 1, 1), (40, 5, 120, 40, True, False, 1, 1),
            (40, 3, 240, 80, False, True, 2, 1), (80, 3, 200, 80, False, True, 1, 1),
            (80, 3, 184, 80, False, True, 1, 1), (80, 3, 184, 80, False, True, 1, 1),
            (80, 3, 480, 112, True, True, 1, 1), (112, 3, 672, 112, True, True, 1, 1),
            (112, 5, 672, 160, True, True, 1, 2), (160, 5, 960, 160, True, True, 1, 2),
            (160, 5, 960, 160, True, True, 1, 2)]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def batch_norm(channels):
    # torchvision's MobileNetV3 norm layer: eps 1e-3, momentum 0.01 (Paddle counts momentum the other way round)
    return nn.BatchNorm2D(channels, momentum=0.99, epsilon=1e-3)


def make_divisible(value, divisor=8):
    """torchvision's channel rounding: nearest multiple of 8, never more than 10 % below `value`."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class ConvBNActivation(nn.Sequential):
    def __init__(self, in_channels, out_channels, kernel_size=1, stride=1, groups=1, dilation=1, activation=None):
        layers = [nn.Conv2D(in_channels, out_channels, kernel_size, stride=stride,
                            padding=(kernel_size - 1) // 2 * dilation, dilation=dilation, groups=groups,
                            bias_attr=False),
                  batch_norm(out_channels)]
        super().__init__(*layers, *([activation()] if activation else []))


class SqueezeExcitation(nn.Layer):
    def __init__(self, channels, squeeze_channels):
        super().__init__()
        self.fc1 = nn.Conv2D(channels, squeeze_channels, 1)
        self.fc2 = nn.Conv2D(squeeze_channels, channels, 1)

    def forward(self, x):
        scale = self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(x, 1))))
        # torch's hardsigmoid is relu6(x + 3) / 6; Paddle's default slope 0.1666667 is not exactly 1/6
        return x * F.hardsigmoid(scale, slope=1 / 6, offset=0.5)


class InvertedResidual(nn.Layer):
    def __init__(self, in_channels, kernel_size, expanded, out_channels, use_se, use_hs, stride, dilation):
        super().__init__()
        self.use_res_connect = stride == 1 and in_channels == out_channels
        activation = nn.Hardswish if use_hs else nn.ReLU
        layers = [] if expanded == in_channels else [ConvBNActivation(in_channels, expanded, activation=activation)]
        layers.append(ConvBNActivation(expanded, expanded, kernel_size, stride, groups=expanded, dilation=dilation,
                                       activation=activation))
        if use_se:
            layers.append(SqueezeExcitation(expanded, make_divisible(expanded // 4)))
        layers.append(ConvBNActivation(expanded, out_channels))
        self.block = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.block(x) if self.use_res_connect else self.block(x)


class MobileNetV3LargeEncoder(nn.Layer):
    """RGB in [0, 1] -> taps (f1, f2, f3, f4): 16@1/2, 24@1/4, 40@1/8, 960@1/16."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            ConvBNActivation(3, 16, 3, stride=2, activation=nn.Hardswish),
            *[InvertedResidual(*row) for row in SETTINGS],
            ConvBNActivation(160, 960, activation=nn.Hardswish))
        self.register_buffer('mean', paddle.to_tensor(IMAGENET_MEAN).reshape([1, 3, 1, 1]), persistable=False)
        self.register_buffer('std', paddle.to_tensor(IMAGENET_STD).reshape([1, 3, 1, 1]), persistable=False)

    def forward(self, x):
        x = (x - self.mean) / self.std
        f1 = self.features[:2](x)
        f2 = self.features[2:4](f1)
        f3 = self.features[4:7](f2)
        f4 = self.features[7:](f3)
        return f1, f2, f3, f4
