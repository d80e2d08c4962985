"""ResNet-50/101 encoder in torchvision's layout with `replace_stride_with_dilation=[False, False, True]`, and the
residual blocks and stages it is made of (also used by the VOS encoders of model/vos.py).

paddle.vision's ResNet cannot dilate layer4, so the network is written here. Parameter names
(`conv1`, `layer3.5.conv2`, `layer1.0.downsample.0`, ...) equal torchvision's. `bias=True` gives the variant of
STCN's `mod_resnet` (every conv with a bias).
"""
import paddle.nn as nn

DEPTHS = {'resnet50': [3, 4, 6, 3], 'resnet101': [3, 4, 23, 3]}


def batch_norm(channels):
    # torch defaults: eps 1e-5, momentum 0.1 (Paddle counts momentum the other way round)
    return nn.BatchNorm2D(channels, momentum=0.9, epsilon=1e-5)


class Bottleneck(nn.Layer):
    """1x1 -> 3x3 (stride, dilation) -> 1x1, expansion 4, stride on the 3x3 conv (ResNet v1.5)."""
    expansion = 4

    def __init__(self, in_channels, planes, stride=1, dilation=1, downsample=None, bias=False):
        super().__init__()
        out_channels = planes * self.expansion
        self.conv1 = nn.Conv2D(in_channels, planes, 1, bias_attr=bias)
        self.bn1 = batch_norm(planes)
        self.conv2 = nn.Conv2D(planes, planes, 3, stride=stride, padding=dilation,
                               dilation=dilation, bias_attr=bias)
        self.bn2 = batch_norm(planes)
        self.conv3 = nn.Conv2D(planes, out_channels, 1, bias_attr=bias)
        self.bn3 = batch_norm(out_channels)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        x = self.bn3(self.conv3(x))
        return self.relu(x + identity)


class BasicBlock(nn.Layer):
    """3x3 (stride, dilation) -> 3x3, expansion 1 (ResNet-18/34)."""
    expansion = 1

    def __init__(self, in_channels, planes, stride=1, dilation=1, downsample=None, bias=False):
        super().__init__()
        self.conv1 = nn.Conv2D(in_channels, planes, 3, stride=stride, padding=dilation, dilation=dilation,
                               bias_attr=bias)
        self.bn1 = batch_norm(planes)
        self.conv2 = nn.Conv2D(planes, planes, 3, padding=dilation, dilation=dilation, bias_attr=bias)
        self.bn2 = batch_norm(planes)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.bn2(self.conv2(x))
        return self.relu(x + identity)


def make_layer(block, in_channels, planes, blocks, stride=1, dilation=1, first_dilation=None, bias=False):
    """One stage (torchvision's `_make_layer`): `blocks` blocks, the first with the stride, a 1x1 conv + BN
    shortcut when the shape changes, and dilation `first_dilation` (default `dilation`) in the first block.
    Returns (nn.Sequential, output channels)."""
    out_channels = planes * block.expansion
    downsample = None
    if stride != 1 or in_channels != out_channels:
        downsample = nn.Sequential(nn.Conv2D(in_channels, out_channels, 1, stride=stride, bias_attr=bias),
                                   batch_norm(out_channels))
    first = dilation if first_dilation is None else first_dilation
    layers = [block(in_channels, planes, stride, first, downsample, bias=bias)]
    layers += [block(out_channels, planes, dilation=dilation, bias=bias) for _ in range(1, blocks)]
    return nn.Sequential(*layers), out_channels


class ResNetEncoder(nn.Layer):
    """Returns the taps (x4, x3, x2, x1, x0): 2048@1/16, 512@1/8, 256@1/4, 64@1/2 and the input."""

    def __init__(self, in_channels=3, variant='resnet50'):
        super().__init__()
        if variant not in DEPTHS:
            raise ValueError(f"unknown ResNet variant {variant!r}; expected one of {sorted(DEPTHS)}")
        self.in_planes, self.dilation = 64, 1
        self.conv1 = nn.Conv2D(in_channels, 64, 7, stride=2, padding=3, bias_attr=False)
        self.bn1 = batch_norm(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2D(3, stride=2, padding=1)
        blocks = DEPTHS[variant]
        self.layer1 = self._make_layer(64, blocks[0])
        self.layer2 = self._make_layer(128, blocks[1], stride=2)
        self.layer3 = self._make_layer(256, blocks[2], stride=2)
        self.layer4 = self._make_layer(512, blocks[3], stride=2, dilate=True)

    def _make_layer(self, planes, blocks, stride=1, dilate=False):
        # torchvision: a dilated layer trades its stride for dilation, but its first block
        # still uses the previous dilation (1 for layer4).
        previous_dilation = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        layer, self.in_planes = make_layer(Bottleneck, self.in_planes, planes, blocks, stride, self.dilation,
                                           previous_dilation)
        return layer

    def forward(self, x):
        x0 = x                                        # C_in @ 1/1
        x1 = self.relu(self.bn1(self.conv1(x)))       # 64 @ 1/2
        x2 = self.layer1(self.maxpool(x1))            # 256 @ 1/4
        x3 = self.layer2(x2)                          # 512 @ 1/8
        x4 = self.layer4(self.layer3(x3))             # 2048 @ 1/16
        return x4, x3, x2, x1, x0
