"""UniRepLKNet-A encoder as LKM (lvhonglong/LKM, RVM with a large-kernel backbone) uses it.

The official layout and names (`unirep.downsample_layers.<i>`, `unirep.stages.<i>.<j>` blocks, taps
`unirep.norm0..3`), so its checkpoints convert by renaming BatchNorm statistics and transposing the Linear weights
(torch (out, in), Paddle (in, out)). LKM's stem keeps stage 0 at 1/2 (its second conv has stride 1).

Each block exists in two forms, chosen at construction: the *training* form (BatchNorms, parallel dilated
branches, GRN bias, layer scale) and the *deploy* form, where all of that is folded into the convolutions and
Linears (`rep_model.pth`). `reparameterize()` turns a training-form layer into exactly the deploy structure
(same names, shapes and order; a second call does nothing).
"""
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ..static_ops import GELU, Sigmoid, sqrt
from .mobilenetv3 import IMAGENET_MEAN, IMAGENET_STD
from .resnet import batch_norm

DEPTHS = (2, 2, 6, 2)                   # UniRepLKNet-A
DIMS = (40, 80, 160, 320)
KERNELS = (3, 13, 13, 13)               # per stage, every block of the stage
# (kernel, dilation) of the branches beside the large kernel, in the official order
BRANCHES = {13: ((5, 1), (7, 2), (3, 3), (3, 4), (3, 5)),     # DilatedReparamBlock (depthwise, backbone)
            9: ((5, 1), (5, 2), (3, 3), (3, 4))}              # DilatedReparamBlockk (dense, LKM's decode1)


def conv2d(in_channels, out_channels, kernel_size, dilation=1, groups=1, bias=False):
    """Stride-1 'same' conv (odd kernels)."""
    return nn.Conv2D(in_channels, out_channels, kernel_size, padding=dilation * (kernel_size - 1) // 2,
                     dilation=dilation, groups=groups, bias_attr=None if bias else False)


@paddle.no_grad()
def fuse_bn(weight, bias, bn):
    """conv (weight, bias or None) followed by an eval BatchNorm -> one conv's (weight, bias)."""
    scale = bn.weight / paddle.sqrt(bn._variance + bn._epsilon)
    shift = -bn._mean if bias is None else bias - bn._mean
    return weight * scale.reshape([-1, 1, 1, 1]), bn.bias + shift * scale


@paddle.no_grad()
def dilate_to(kernel, dilation, size):
    """A k x k kernel of a conv with this dilation -> the equivalent size x size kernel of an undilated conv
    (zeros between the taps, centred)."""
    out_channels, in_channels, k, _ = kernel.shape
    if dilation > 1:
        taps = kernel.reshape([out_channels * in_channels, 1, k, k])
        taps = F.conv2d_transpose(taps, paddle.ones([1, 1, 1, 1], kernel.dtype), stride=dilation)
        k = dilation * (k - 1) + 1
        kernel = taps.reshape([out_channels, in_channels, k, k])
    pad = size // 2 - k // 2
    return F.pad(kernel, [pad] * 4) if pad else kernel


def set_conv(conv, weight, bias):
    """A conv with bias of conv's geometry holding (weight, bias)."""
    new = nn.Conv2D(conv._in_channels, conv._out_channels, conv._kernel_size, padding=conv._padding,
                    dilation=conv._dilation, groups=conv._groups)
    new.weight.set_value(weight)
    new.bias.set_value(bias)
    return new


class DilatedReparamBlock(nn.Layer):
    """A large k x k conv (`lk_origin`) plus parallel smaller dilated convs (`dil_conv_k{k}_{r}`), each followed
    by its own BatchNorm, summed. Depthwise in the backbone (k = 13); dense with in != out in LKM's decode1
    (k = 9, `DilatedReparamBlockk`). Deploy form: `lk_origin` alone, with bias."""

    def __init__(self, in_channels, kernel_size, deploy=False, out_channels=None, depthwise=True):
        super().__init__()
        out_channels = out_channels or in_channels
        groups = in_channels if depthwise else 1
        self.kernel_size = kernel_size
        self.lk_origin = conv2d(in_channels, out_channels, kernel_size, groups=groups, bias=deploy)
        self.branches = [] if deploy else BRANCHES[kernel_size]
        if not deploy:
            self.origin_bn = batch_norm(out_channels)
            for k, r in self.branches:
                setattr(self, f'dil_conv_k{k}_{r}', conv2d(in_channels, out_channels, k, r, groups))
                setattr(self, f'dil_bn_k{k}_{r}', batch_norm(out_channels))

    def forward(self, x):
        if not self.branches:
            return self.lk_origin(x)
        out = self.origin_bn(self.lk_origin(x))
        for k, r in self.branches:
            out = out + getattr(self, f'dil_bn_k{k}_{r}')(getattr(self, f'dil_conv_k{k}_{r}')(x))
        return out

    @paddle.no_grad()
    def merge_dilated_branches(self):
        """Fold every branch and BatchNorm into `lk_origin` (with bias); the deploy structure."""
        if not self.branches:
            return
        weight, bias = fuse_bn(self.lk_origin.weight, None, self.origin_bn)
        for k, r in self.branches:
            w, b = fuse_bn(getattr(self, f'dil_conv_k{k}_{r}').weight, None, getattr(self, f'dil_bn_k{k}_{r}'))
            weight, bias = weight + dilate_to(w, r, self.kernel_size), bias + b
            delattr(self, f'dil_conv_k{k}_{r}')
            delattr(self, f'dil_bn_k{k}_{r}')
        delattr(self, 'origin_bn')
        self.lk_origin = set_conv(self.lk_origin, weight, bias)
        self.branches = []


class LayerNorm(nn.Layer):
    """Channels-first LayerNorm of a B x C x H x W map: biased variance over C, eps 1e-6."""

    def __init__(self, channels, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.weight = self.create_parameter([channels], default_initializer=nn.initializer.Constant(1.))
        self.bias = self.create_parameter([channels], is_bias=True)

    def forward(self, x):
        u = x.mean(axis=1, keepdim=True)
        s = (x - u).pow(2).mean(axis=1, keepdim=True)
        x = (x - u) / sqrt(s + self.eps)
        return self.weight.reshape([1, -1, 1, 1]) * x + self.bias.reshape([1, -1, 1, 1])


class SEBlock(nn.Layer):
    """Squeeze-excite: global mean -> 1x1 conv C -> C/4 -> ReLU -> 1x1 conv -> sigmoid, scaling the input."""

    def __init__(self, channels, internal):
        super().__init__()
        self.down = nn.Conv2D(channels, internal, 1)
        self.up = nn.Conv2D(internal, channels, 1)
        self.sigmoid = Sigmoid()

    def forward(self, x):
        return x * self.sigmoid(self.up(F.relu(self.down(F.adaptive_avg_pool2d(x, 1)))))


def spatial_sum(x):
    """B x H x W x C -> B x 1 x 1 x C sums. Over rows, then columns: one float32 reduction of H * W values (Paddle
    adds in order) had 4x torch's rounding error (torch adds pairwise), half the golden tolerance at ratio 1. As
    means times H * W: Paddle 3.3's sum does not trace into a legacy (.pdmodel) graph, mean does."""
    size = x.shape[1] * x.shape[2]
    size = size if isinstance(size, int) else size.astype(x.dtype)       # a shape tensor in a graph
    return x.mean(axis=2, keepdim=True).mean(axis=1, keepdim=True) * size


class GRN(nn.Layer):
    """ConvNeXt-V2 global response normalisation on B x H x W x C: (gamma * Nx + 1) * x (+ beta), Nx the
    spatial L2 norm of each channel over its mean across channels. The deploy form has no beta (folded)."""

    def __init__(self, channels, use_bias=True):
        super().__init__()
        zeros = nn.initializer.Constant(0.)
        self.gamma = self.create_parameter([1, 1, 1, channels], default_initializer=zeros)
        self.beta = self.create_parameter([1, 1, 1, channels], default_initializer=zeros) if use_bias else None

    def forward(self, x):
        gx = sqrt(spatial_sum(x * x))
        nx = gx / (gx.mean(axis=-1, keepdim=True) + 1e-6)
        out = (self.gamma * nx + 1) * x
        return out if self.beta is None else out + self.beta


class ToChannelsLast(nn.Layer):
    def forward(self, x):
        return x.transpose([0, 2, 3, 1])


class ToChannelsFirst(nn.Layer):
    def forward(self, x):
        return x.transpose([0, 3, 1, 2])


class UniRepLKNetBlock(nn.Layer):
    """x + gamma * BN(pwconv2(GRN(GELU(pwconv1(SE(BN(dwconv(x)))))))), the Linears on channels-last maps
    (C -> 4C -> C). dwconv: a plain 3x3 depthwise conv, or a DilatedReparamBlock for larger kernels."""

    def __init__(self, dim, kernel_size, deploy=False, layer_scale=1e-6):
        super().__init__()
        self.gamma = None if deploy else self.create_parameter(
            [dim], default_initializer=nn.initializer.Constant(layer_scale))
        self.dwconv = (DilatedReparamBlock(dim, kernel_size, deploy) if kernel_size > 3 else
                       conv2d(dim, dim, 3, groups=dim, bias=deploy))
        self.norm = nn.Identity() if deploy else batch_norm(dim)
        self.se = SEBlock(dim, dim // 4)
        self.pwconv1 = nn.Sequential(ToChannelsLast(), nn.Linear(dim, 4 * dim))
        self.act = nn.Sequential(GELU(), GRN(4 * dim, use_bias=not deploy))
        self.pwconv2 = (nn.Sequential(nn.Linear(4 * dim, dim), ToChannelsFirst()) if deploy else
                        nn.Sequential(nn.Linear(4 * dim, dim, bias_attr=False), ToChannelsFirst(), batch_norm(dim)))

    def forward(self, x):
        y = self.pwconv2(self.act(self.pwconv1(self.se(self.norm(self.dwconv(x))))))
        return x + (y if self.gamma is None else self.gamma.reshape([1, -1, 1, 1]) * y)

    @paddle.no_grad()
    def reparameterize(self):
        """Fold the branches and `norm` into dwconv, GRN beta, pwconv2's BatchNorm and gamma into pwconv2."""
        if self.gamma is None:
            return
        if isinstance(self.dwconv, DilatedReparamBlock):
            self.dwconv.merge_dilated_branches()
            conv = self.dwconv.lk_origin
            self.dwconv.lk_origin = set_conv(conv, *fuse_bn(conv.weight, conv.bias, self.norm))
        else:
            self.dwconv = set_conv(self.dwconv, *fuse_bn(self.dwconv.weight, None, self.norm))
        self.norm = nn.Identity()
        grn, linear, bn = self.act[1], self.pwconv2[0], self.pwconv2[2]
        projected = (grn.beta.reshape([1, -1]) @ linear.weight).reshape([-1])       # W2 @ beta (Paddle: in x out)
        scale = bn.weight / paddle.sqrt(bn._variance + bn._epsilon)
        folded = nn.Linear(*linear.weight.shape)
        folded.weight.set_value(linear.weight * (scale * self.gamma).reshape([1, -1]))
        folded.bias.set_value((bn.bias + (projected - bn._mean) * scale) * self.gamma)
        self.pwconv2 = nn.Sequential(folded, self.pwconv2[1])
        grn.beta = None
        self.gamma = None


class UniRepLKNet(nn.Layer):
    """downsample_layers[i] then stages[i], tapped after a channels-first LayerNorm norm<i>:
    40@1/2, 80@1/4, 160@1/8, 320@1/16. Stem: conv 3x3 s2 -> LN -> GELU -> conv 3x3 s1 -> LN."""

    def __init__(self, depths=DEPTHS, dims=DIMS, kernels=KERNELS, deploy=False):
        super().__init__()
        self.downsample_layers = nn.LayerList([nn.Sequential(
            nn.Conv2D(3, dims[0] // 2, 3, stride=2, padding=1), LayerNorm(dims[0] // 2), GELU(),
            nn.Conv2D(dims[0] // 2, dims[0], 3, stride=1, padding=1), LayerNorm(dims[0]))])
        for i in range(1, len(dims)):
            self.downsample_layers.append(nn.Sequential(
                nn.Conv2D(dims[i - 1], dims[i], 3, stride=2, padding=1), LayerNorm(dims[i])))
        self.stages = nn.LayerList([nn.Sequential(*[UniRepLKNetBlock(dim, kernel, deploy) for _ in range(depth)])
                                    for depth, dim, kernel in zip(depths, dims, kernels)])
        for i, dim in enumerate(dims):
            self.add_sublayer(f'norm{i}', LayerNorm(dim))

    def forward(self, x):
        taps = []
        for i, (down, stage) in enumerate(zip(self.downsample_layers, self.stages)):
            x = stage(down(x))
            taps.append(getattr(self, f'norm{i}')(x))
        return taps

    def reparameterize_unireplknet(self):
        for layer in self.sublayers():
            if isinstance(layer, UniRepLKNetBlock):
                layer.reparameterize()


class UniRepLKNetEncoder(nn.Layer):
    """RGB in [0, 1] -> ImageNet normalisation -> taps (f1, f2, f3, f4) of UniRepLKNet-A."""

    def __init__(self, deploy=False):
        super().__init__()
        self.unirep = UniRepLKNet(deploy=deploy)
        self.register_buffer('mean', paddle.to_tensor(IMAGENET_MEAN).reshape([1, 3, 1, 1]), persistable=False)
        self.register_buffer('std', paddle.to_tensor(IMAGENET_STD).reshape([1, 3, 1, 1]), persistable=False)

    def forward(self, x):
        return tuple(self.unirep((x - self.mean) / self.std))


class DilatedReparamBlockk(DilatedReparamBlock):
    """LKM's dense variant (decode1): in -> out channels, 9 x 9 plus dilated 5x5/5x5/3x3/3x3 branches."""

    def __init__(self, in_channels, out_channels, kernel_size=9, deploy=False):
        super().__init__(in_channels, kernel_size, deploy, out_channels=out_channels, depthwise=False)
