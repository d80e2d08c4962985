"""Memory-based video object segmentation: STCN (Cheng et al., NeurIPS 2021) and IMSFR (Dang et al., TIP 2023).

The official evaluation networks layer for layer and name for name (hkchengrex/STCN `model/eval_network.py`;
xinbaiw/IMSFR `model/eval_networkoneconv10146181localgparapoolperand.py`, whose class is also called STCN), so
their checkpoints convert by renaming BatchNorm statistics (and transposing CBAM's two Linear weights, which
utils/checkpoint.py does for every nn.Linear). Then the memory banks (`inference_memory_bank.py`; IMSFR's
`...perandfinaltiptestdev.py`), `aggregate` and the inference core (`inference_core.py`; IMSFR's `...finaltip.py`),
which propagate the first frame's masks through a clip; last, the training pass of both networks (the official
training network's do_pass on 3-frame clips) and the official initialisation of an untrained network.

Shapes: K objects, a frame 3 x H x W padded to multiples of 16, h x w = H/16 x W/16, CK the key channels (STCN 64,
IMSFR 512), CV = 512 value channels, T memory frames, NE = T*h*w memory positions, HW = h*w query positions.
"""
import math
import random

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from .backbones.resnet import DEPTHS, BasicBlock, Bottleneck, batch_norm, make_layer
from .static_ops import resize

KEY_BACKBONES = {'stcn': 'resnet50', 'imsfr': 'resnet101'}
ENCODING_FREQUENCIES = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0)     # IMSFR's positional encoding: 2 ** linspace(0, 5, 6)
CHUNK_ELEMENTS = 1 << 23      # largest affinity / gathered-value block of a top-k readout (32 MB of float32)


# ---------------------------------------------------------------- building blocks (STCN model/modules.py, cbam.py)

class ResBlock(nn.Layer):
    """x + conv(relu(conv(relu(x)))), with a 3x3 conv on the shortcut when the channels change."""

    def __init__(self, in_channels, out_channels=None):
        super().__init__()
        out_channels = out_channels or in_channels
        self.downsample = None if in_channels == out_channels else nn.Conv2D(in_channels, out_channels, 3, padding=1)
        self.conv1 = nn.Conv2D(in_channels, out_channels, 3, padding=1)
        self.conv2 = nn.Conv2D(out_channels, out_channels, 3, padding=1)

    def forward(self, x):
        r = self.conv2(F.relu(self.conv1(F.relu(x))))
        return (x if self.downsample is None else self.downsample(x)) + r


class ChannelGate(nn.Layer):
    """CBAM channel attention: x * sigmoid(mlp(avgpool x) + mlp(maxpool x)); mlp = Flatten, Linear, ReLU, Linear
    (so its Linear layers are `mlp.1` and `mlp.3`, torch's names)."""

    def __init__(self, channels, reduction=16):
        super().__init__()
        self.mlp = nn.Sequential(nn.Flatten(), nn.Linear(channels, channels // reduction), nn.ReLU(),
                                 nn.Linear(channels // reduction, channels))

    def forward(self, x):                                                 # K x C x h x w
        attention = self.mlp(x.mean(axis=[2, 3], keepdim=True)) + self.mlp(x.max(axis=[2, 3], keepdim=True))
        return x * F.sigmoid(attention)[:, :, None, None]


class BasicConv(nn.Layer):
    """CBAM's conv wrapper (its weight is `<name>.conv.weight`)."""

    def __init__(self, in_channels, out_channels, kernel_size, padding):
        super().__init__()
        self.conv = nn.Conv2D(in_channels, out_channels, kernel_size, padding=padding)

    def forward(self, x):
        return self.conv(x)


class SpatialGate(nn.Layer):
    """CBAM spatial attention: x * sigmoid(conv7x7([max over channels, mean over channels]))."""

    def __init__(self):
        super().__init__()
        self.spatial = BasicConv(2, 1, 7, padding=3)

    def forward(self, x):
        pooled = paddle.concat([x.max(axis=1, keepdim=True), x.mean(axis=1, keepdim=True)], axis=1)   # K x 2 x h x w
        return x * F.sigmoid(self.spatial(pooled))


class CBAM(nn.Layer):
    def __init__(self, channels):
        super().__init__()
        self.ChannelGate = ChannelGate(channels)
        self.SpatialGate = SpatialGate()

    def forward(self, x):
        return self.SpatialGate(self.ChannelGate(x))


class FeatureFusionBlock(nn.Layer):
    """The value encoder's fuser: cat[value features, key f16] -> ResBlock -> + CBAM -> ResBlock."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.block1 = ResBlock(in_channels, out_channels)
        self.attention = CBAM(out_channels)
        self.block2 = ResBlock(out_channels, out_channels)

    def forward(self, x, f16):                                           # K x 256 x h x w, K x 1024 x h x w
        x = self.block1(paddle.concat([x, f16], axis=1))
        return self.block2(x + self.attention(x))                        # K x 512 x h x w


class KeyEncoder(nn.Layer):
    """torchvision ResNet-50 (STCN) / ResNet-101 (IMSFR) up to layer3, no conv biases; layer1 is named `res2`."""

    def __init__(self, variant):
        super().__init__()
        depths = DEPTHS[variant]
        self.conv1 = nn.Conv2D(3, 64, 7, stride=2, padding=3, bias_attr=False)
        self.bn1 = batch_norm(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2D(3, stride=2, padding=1)
        self.res2, channels = make_layer(Bottleneck, 64, 64, depths[0])
        self.layer2, channels = make_layer(Bottleneck, channels, 128, depths[1], stride=2)
        self.layer3, channels = make_layer(Bottleneck, channels, 256, depths[2], stride=2)

    def forward(self, f):                                                # B x 3 x H x W
        f4 = self.res2(self.maxpool(self.relu(self.bn1(self.conv1(f)))))  # B x 256 x H/4 x W/4
        f8 = self.layer2(f4)                                             # B x 512 x H/8 x W/8
        f16 = self.layer3(f8)                                            # B x 1024 x H/16 x W/16
        return f16, f8, f4


class ValueEncoder(nn.Layer):
    """STCN's modified ResNet-18 (conv biases everywhere, 5 input channels: RGB, mask, the other objects' masks) up
    to layer3, fused with the key encoder's f16."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2D(5, 64, 7, stride=2, padding=3)
        self.bn1 = batch_norm(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2D(3, stride=2, padding=1)
        self.layer1, channels = make_layer(BasicBlock, 64, 64, 2, bias=True)
        self.layer2, channels = make_layer(BasicBlock, channels, 128, 2, stride=2, bias=True)
        self.layer3, channels = make_layer(BasicBlock, channels, 256, 2, stride=2, bias=True)
        self.fuser = FeatureFusionBlock(1024 + 256, 512)

    def resnet(self, image, mask, other_masks):                          # K x 3 x H x W, K x 1 x H x W (twice)
        x = self.conv1(paddle.concat([image, mask, other_masks], axis=1))
        x = self.layer1(self.maxpool(self.relu(self.bn1(x))))            # K x 64 x H/4 x W/4
        return self.layer3(self.layer2(x))                               # K x 256 x h x w

    def forward(self, image, key_f16, mask, other_masks):
        return self.fuser(self.resnet(image, mask, other_masks), key_f16)   # K x 512 x h x w


class GatedValueEncoder(ValueEncoder):
    """IMSFR: the fused value times a gate from the *next* frame (`query`) with the same masks, through the same
    ResNet-18: sigmoid(mask(layer3)). `avg_pool` is unused (kept: the official module has it)."""

    def __init__(self):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2D(1)
        self.mask = nn.Conv2D(256, 512, 3, padding=1)

    def forward(self, image, query, key_f16, mask, other_masks):
        value = super().forward(image, key_f16, mask, other_masks)
        return value * F.sigmoid(self.mask(self.resnet(query, mask, other_masks)))


class UpsampleBlock(nn.Layer):
    """ResBlock(skip_conv(skip) + bilinear x2 of the coarser map)."""

    def __init__(self, skip_channels, up_channels, out_channels):
        super().__init__()
        self.skip_conv = nn.Conv2D(skip_channels, up_channels, 3, padding=1)
        self.out_conv = ResBlock(up_channels, out_channels)

    def forward(self, skip_f, up_f):
        up = resize(up_f, [up_f.shape[2] * 2, up_f.shape[3] * 2])      # = torch's scale_factor=2 (exact x2)
        return self.out_conv(self.skip_conv(skip_f) + up)


class KeyProjection(nn.Layer):
    def __init__(self, in_channels, key_channels):
        super().__init__()
        self.key_proj = nn.Conv2D(in_channels, key_channels, 3, padding=1)

    def forward(self, x):
        return self.key_proj(x)


class Decoder(nn.Layer):
    """cat[readout, f16_thin] (K x 1024 x h x w) with the f8 / f4 skips -> one logit per pixel at H x W."""

    def __init__(self):
        super().__init__()
        self.compress = ResBlock(1024, 512)
        self.up_16_8 = UpsampleBlock(512, 512, 256)
        self.up_8_4 = UpsampleBlock(256, 256, 256)
        self.pred = nn.Conv2D(256, 1, 3, padding=1)

    def forward(self, f16, f8, f4):                                      # f8, f4 of one frame (broadcast to K)
        x = self.up_16_8(f8, self.compress(f16))                         # K x 256 x H/8 x W/8
        x = self.pred(F.relu(self.up_8_4(f4, x)))                        # K x 1 x H/4 x W/4
        return resize(x, [x.shape[2] * 4, x.shape[3] * 4])               # K x 1 x H x W


# ---------------------------------------------------------------- the networks

def other_masks(masks):
    """For each object the sum of the other objects' masks (zeros for one object), summed in index order."""
    k = masks.shape[0]
    if k == 1:
        return paddle.zeros_like(masks)
    return paddle.concat([sum(masks[j:j + 1] for j in range(k) if j != i) for i in range(k)], axis=0)


def per_object(tensor, k):
    """1 x C x H x W -> K x C x H x W (the official repeat)."""
    return tensor.reshape([1] + list(tensor.shape[-3:])).tile([k, 1, 1, 1])


def positional_encoding(x):
    """IMSFR's element-wise encoding, concatenated block-major on the channels: [x, sin x, cos x, sin 2x, ...,
    cos 32x] (K x 13C x h x w; channel b*C + c)."""
    parts = [x]
    for frequency in ENCODING_FREQUENCIES:
        parts += [paddle.sin(x * frequency), paddle.cos(x * frequency)]
    return paddle.concat(parts, axis=1)


def decode_readout(decoder, readout, qv16, qf8, qf4):
    """readout K x 512 x h x w with the query's f16_thin (1 x 512 x h x w, repeated per object), f8, f4 -> the
    decoder -> K x 1 x H x W probabilities."""
    qv16 = paddle.expand_as(qv16, readout)
    return F.sigmoid(decoder(paddle.concat([readout, qv16], axis=1), qf8, qf4))


class STCN(nn.Layer):
    """STCN's evaluation network: ResNet-50 key encoder, 64-channel L2 keys, ResNet-18 value encoder, one readout."""

    def __init__(self):
        super().__init__()
        self.key_encoder = KeyEncoder('resnet50')
        self.value_encoder = ValueEncoder()
        self.key_proj = KeyProjection(1024, 64)
        self.key_comp = nn.Conv2D(1024, 512, 3, padding=1)
        self.decoder = Decoder()

    def encode_key(self, frame):
        """B x 3 x H x W -> (k16 B x 64 x h x w, f16_thin B x 512, f16 B x 1024, f8 B x 512 x H/8, f4 B x 256 x H/4)."""
        f16, f8, f4 = self.key_encoder(frame)
        return self.key_proj(f16), self.key_comp(f16), f16, f8, f4

    def encode_value(self, frame, kf16, masks):
        """frame 1 x 3 x H x W, kf16 1 x 1024 x h x w, masks K x 1 x H x W -> K x 512 x 1 x h x w."""
        k = masks.shape[0]
        value = self.value_encoder(per_object(frame, k), per_object(kf16, k), masks, other_masks(masks))
        return value.unsqueeze(2)

    def forward(self, frames, masks, selector):
        """The 3-frame training pass (training_pass): -> (logits of frames 1, 2), (their probabilities)."""
        return training_pass(self, frames, masks, selector)

    def segment_with_query(self, mem_bank, qf8, qf4, qk16, qv16):
        """Memory readout + the query's f16_thin -> the decoder -> K x 1 x H x W probabilities."""
        return self.decode(mem_bank.match_memory(qk16), qv16, qf8, qf4)

    def decode(self, readout, qv16, qf8, qf4):
        return decode_readout(self.decoder, readout, qv16, qf8, qf4)


class IMSFR(nn.Layer):
    """IMSFR's evaluation network: ResNet-101 key encoder whose `key_comp` is both the key and the query value
    (CK = 512), the next-frame gated value (and its positional-encoded twin for the local readout), and three
    readouts (long-term, first frame, newest memory frame) fused by one gate `mask` (`mask2` is trained for the
    second object but unused at test time)."""

    def __init__(self):
        super().__init__()
        self.key_encoder = KeyEncoder('resnet101')
        self.value_encoder = GatedValueEncoder()
        self.conv_fusion1v = nn.Conv2D(13 * 512, 512, 1)
        self.conv_fusion = nn.Conv2D(512, 512, 1)
        self.key_comp = nn.Conv2D(1024, 512, 3, padding=1)
        self.decoder = Decoder()
        self.mask = nn.Conv2D(1536, 512, 3, padding=1)
        self.mask2 = nn.Conv2D(1536, 512, 3, padding=1)
        self.avg_pool = nn.AdaptiveAvgPool2D(1)

    def encode_key(self, frame):
        """B x 3 x H x W -> (k16, f16_thin, f16, f8, f4) with k16 = f16_thin = key_comp(f16) (B x 512 x h x w)."""
        f16, f8, f4 = self.key_encoder(frame)
        f16_thin = self.key_comp(f16)
        return f16_thin, f16_thin, f16, f8, f4

    def _value(self, frame, curframe, kf16, masks):                      # K x 512 x h x w
        k = masks.shape[0]
        return self.value_encoder(per_object(frame, k), per_object(curframe, k), per_object(kf16, k), masks,
                                  other_masks(masks))

    def _valuepe(self, value):                                           # K x 512 x h x w
        return self.conv_fusion(value + self.conv_fusion1v(positional_encoding(value)))

    def encode_value(self, frame, curframe, kf16, masks):
        """The memory frame, the next frame (both 1 x 3 x H x W), kf16 1 x 1024 x h x w, masks K x 1 x H x W ->
        K x 512 x 1 x h x w."""
        return self._value(frame, curframe, kf16, masks).unsqueeze(2)

    def encode_valuepe(self, frame, curframe, kf16, masks):
        """The same value, positional-encoded and fused: K x 512 x 1 x h x w (the local readout's value)."""
        return self._valuepe(self._value(frame, curframe, kf16, masks)).unsqueeze(2)

    def encode_value_and_pe(self, frame, curframe, kf16, masks):
        """(encode_value, encode_valuepe) from one value-encoder pass (what the inference core stores)."""
        value = self._value(frame, curframe, kf16, masks)
        return value.unsqueeze(2), self._valuepe(value).unsqueeze(2)

    def forward(self, frames, masks, selector):
        """The 3-frame training pass (training_pass): -> (logits of frames 1, 2), (their probabilities)."""
        return training_pass(self, frames, masks, selector)

    def segment_with_query(self, mem_bank, qf8, qf4, qk16, qv16):
        readouts = mem_bank.match_memory(qk16)                             # (long, first, local) K x 512 x h x w
        return self.decode(paddle.concat(readouts, axis=1), qv16, qf8, qf4)

    def decode(self, readouts, qv16, qf8, qf4):
        """The three readouts concatenated (K x 1536 x h x w), fused by the gate, + the query's f16_thin -> the
        decoder -> K x 1 x H x W."""
        gate = F.sigmoid(self.mask(readouts + self.avg_pool(readouts)))    # K x 512 x h x w
        long, first, local = (r * gate + r for r in paddle.split(readouts, 3, axis=1))
        return decode_readout(self.decoder, long + first + local, qv16, qf8, qf4)


# ---------------------------------------------------------------- memory

def l2_affinity(mk, qk):
    """(2 k_m.k_q - |k_m|^2) / sqrt(CK): mk 1 x CK x NE, qk 1 x CK x n -> 1 x NE x n."""
    a_sq = mk.pow(2).sum(axis=1).unsqueeze(2)
    return (2 * paddle.matmul(mk, qk, transpose_x=True) - a_sq) / math.sqrt(mk.shape[1])


def softmax_readout(mk, mv, qk):
    """Full softmax over the memory positions: mk 1 x CK x NE, mv K x CV x NE, qk 1 x CK x HW -> K x CV x HW."""
    return paddle.matmul(mv, F.softmax(l2_affinity(mk, qk), axis=1))


def top_k_readout(mk, mv, qk, top_k):
    """STCN's softmax_w_top readout: per query position the top_k memory affinities, exp'd **without** subtracting
    their maximum, normalised, times the values at those positions (zeros elsewhere). The affinity is never kept
    whole: query positions are taken in chunks so that neither an NE x n affinity nor the gathered K*CV x top_k x n
    values exceed CHUNK_ELEMENTS; the values are gathered instead of multiplied by the sparse affinity."""
    k, cv, ne = mv.shape
    hw = qk.shape[2]
    if ne < top_k:
        raise ValueError(f'top-k {top_k} needs at least {top_k} memory positions, the memory has {ne} (frames '
                         f'smaller than 16 * 16 * top_k pixels need a smaller top_k)')
    values_flat = mv.reshape([k * cv, ne])
    chunk = max(1, min(hw, CHUNK_ELEMENTS // max(ne, k * cv * top_k)))
    out = []
    for start in range(0, hw, chunk):
        values, indices = paddle.topk(l2_affinity(mk, qk[:, :, start:start + chunk]), top_k, axis=1)
        weights = paddle.exp(values[0])                                    # top_k x n
        weights = weights / weights.sum(axis=0, keepdim=True)
        picked = paddle.index_select(values_flat, indices[0].flatten(), axis=1)    # K*CV x top_k*n
        out.append((picked.reshape([k * cv] + weights.shape) * weights).sum(axis=1))   # K*CV x n
    return paddle.concat(out, axis=1).reshape([k, cv, hw])


class MemoryBank:
    """STCN's memory: keys 1 x CK x NE and values K x CV x NE of the memory frames, plus an optional temporary
    frame (include_last) replaced by every add_memory call. Grows by CK*h*w + K*CV*h*w floats per memory frame."""

    def __init__(self, k, top_k=20):
        self.num_objects, self.top_k = k, top_k
        self.CK = self.CV = self.frame_positions = None
        self.mem_k = self.mem_v = self.temp_k = self.temp_v = None

    def add_memory(self, key, value, is_temp=False):
        """key 1 x CK x 1 x h x w, value K x CV x 1 x h x w."""
        self.temp_k = self.temp_v = None
        self.frame_positions = key.shape[-2] * key.shape[-1]
        key, value = key.flatten(start_axis=2), value.flatten(start_axis=2)
        if self.mem_k is None:
            self.mem_k, self.mem_v = key, value
            self.CK, self.CV = key.shape[1], value.shape[1]
        elif is_temp:
            self.temp_k, self.temp_v = key, value
        else:
            self.mem_k = paddle.concat([self.mem_k, key], axis=2)
            self.mem_v = paddle.concat([self.mem_v, value], axis=2)

    def keep_frames(self, n):
        """Forget the oldest memory frames but the first, down to n frames (bounded memory on long videos)."""
        hw = self.frame_positions
        t = self.mem_k.shape[2] // hw
        if t > n:
            self.mem_k, self.mem_v = (paddle.concat([m[:, :, :hw], m[:, :, (t - n + 1) * hw:]], axis=2)
                                      for m in (self.mem_k, self.mem_v))

    def match_memory(self, qk):
        """qk 1 x CK x h x w -> readout K x CV x h x w."""
        _, _, h, w = qk.shape
        mk, mv = self.mem_k, self.mem_v
        if self.temp_k is not None:
            mk, mv = paddle.concat([mk, self.temp_k], axis=2), paddle.concat([mv, self.temp_v], axis=2)
        return top_k_readout(mk, mv, qk.flatten(start_axis=2), self.top_k).reshape([self.num_objects, self.CV, h, w])


class IMSFRMemoryBank:
    """IMSFR's memory (the DAVIS 2017 bank): every memory frame (1 x CK x T x h x w keys, K x CV x T x h x w
    values), the first frame's key and value, the newest memory frame's key and positional-encoded value.

    The long-term readout uses all T frames while T <= 10; above, Python's `random.sample(range(0, T - 1),
    int(T * 0.6))` (sorted) picks frames, read as [frames T-5..T-2, frame 1, the picked frames] (duplicates
    allowed): seed Python's `random` to reproduce a run. Every draw is appended to `samples` (as drawn, unsorted)."""

    def __init__(self, k, top_k=20):
        self.num_objects, self.top_k = k, top_k
        self.CK = self.CV = None
        self.mem_k = self.mem_v = self.temp_k = self.temp_v = None
        self.firstmem_k = self.firstmem_v = self.premem_k = self.premem_v = None
        self.samples = []

    def add_memory(self, key, value, valuepe, is_temp=False):
        """key 1 x CK x 1 x h x w, value and valuepe K x CV x 1 x h x w. is_temp is refused: the official bank
        stores it but cannot read it (its include_last path fails)."""
        if is_temp:
            raise ValueError('the IMSFR memory bank has no temporary memory (include_last)')
        valuepe = valuepe.flatten(start_axis=2)
        if self.mem_k is None:
            self.mem_k, self.mem_v = key, value
            self.firstmem_k, self.firstmem_v = key.flatten(start_axis=2), value.flatten(start_axis=2)
            self.CK, self.CV = key.shape[1], value.shape[1]
        else:
            self.mem_k = paddle.concat([self.mem_k, key], axis=2)
            self.mem_v = paddle.concat([self.mem_v, value], axis=2)
        self.premem_k, self.premem_v = key.flatten(start_axis=2), valuepe

    def keep_frames(self, n):
        """Forget the oldest memory frames but the first, down to n frames (bounded memory on long videos)."""
        t = self.mem_k.shape[2]
        if t > n:
            self.mem_k, self.mem_v = (paddle.concat([m[:, :, :1], m[:, :, t - n + 1:]], axis=2)
                                      for m in (self.mem_k, self.mem_v))

    def long_term(self):
        """(keys 1 x CK x NE, values K x CV x NE) of the long-term readout."""
        t = self.mem_k.shape[2]
        if t <= 10:
            return self.mem_k.flatten(start_axis=2), self.mem_v.flatten(start_axis=2)
        target = random.sample(range(0, t - 1), int(t * 0.6))
        self.samples.append(list(target))
        target.sort()
        frames = paddle.to_tensor(list(range(t - 5, t - 1)) + [1] + target, dtype='int64')
        return (paddle.index_select(self.mem_k, frames, axis=2).flatten(start_axis=2),
                paddle.index_select(self.mem_v, frames, axis=2).flatten(start_axis=2))

    def match_memory(self, qk):
        """qk 1 x CK x h x w -> (long, first, local) readouts, each K x CV x h x w."""
        _, _, h, w = qk.shape
        qk = qk.flatten(start_axis=2)
        mk, mv = self.long_term()
        readouts = (top_k_readout(mk, mv, qk, self.top_k), softmax_readout(self.firstmem_k, self.firstmem_v, qk),
                    softmax_readout(self.premem_k, self.premem_v, qk))
        return tuple(r.reshape([self.num_objects, self.CV, h, w]) for r in readouts)


def aggregate(prob, keep_bg=False):
    """STM's soft aggregation: K x ... object probabilities -> softmax over [background = prod(1 - p), p] of the
    clamped logits (K+1 x ... with keep_bg, else the K objects)."""
    new_prob = paddle.concat([paddle.prod(1 - prob, axis=0, keepdim=True), prob], axis=0).clip(1e-7, 1 - 1e-7)
    out = F.softmax(paddle.log(new_prob / (1 - new_prob)), axis=0)
    return out if keep_bg else out[1:]


# ---------------------------------------------------------------- inference

def pad_sizes(h, w, d=16):
    """(lw, uw, lh, uh): zero padding to multiples of d, centred, the extra pixel at the right / bottom."""
    new_h, new_w = -(-h // d) * d, -(-w // d) * d
    lh, lw = (new_h - h) // 2, (new_w - w) // 2
    return lw, new_w - w - lw, lh, new_h - h - lh


def pad_divide_by(x, d=16):
    """Zero-pad the last two axes of x (any rank >= 3) to multiples of d -> (padded, pad (lw, uw, lh, uh))."""
    pad = pad_sizes(x.shape[-2], x.shape[-1], d)
    if not any(pad):
        return x, pad
    lead = list(x.shape[:-2])
    flat = x.reshape([1, -1] + list(x.shape[-2:]))
    out = F.pad(flat, list(pad), mode='constant', value=0.0)
    return out.reshape(lead + list(out.shape[-2:])), pad


def unpad(x, pad):
    """The inverse of pad_divide_by on a ... x H x W tensor."""
    lw, uw, lh, uh = pad
    return x[..., lh:x.shape[-2] - uh, lw:x.shape[-1] - uw]


class InferenceCore:
    """Propagates the masks of one frame through a clip (the official inference core, STCN's or IMSFR's logic
    chosen from the network; the propagation itself is Propagator's). images 1 x T x 3 x H x W
    (ImageNet-normalised); `prob` (K+1) x T x 1 x nh x nw float32 at the padded size, `pad` = (lw, uw, lh, uh).

    Frames are padded one at a time when they are encoded (the padded clip is never stored), so the core holds
    the caller's images, `prob` ((K+1) * T * nh * nw floats) and the memory bank, which grows by one frame every
    `mem_every` frames (STCN: (64 + K * 512) * nh*nw/256 floats per memory frame; IMSFR: (512 + 2 K * 512) * ...)."""

    def __init__(self, net, images, num_objects, top_k=20, mem_every=5, include_last=False):
        self.images = images if isinstance(images, paddle.Tensor) else paddle.to_tensor(images)
        t, (h, w) = self.images.shape[1], self.images.shape[-2:]
        if isinstance(net, IMSFR) and t < 2:
            raise ValueError('IMSFR needs at least 2 frames: a memory value is gated by the frame after it')
        self.propagator = Propagator(net, num_objects, top_k, mem_every, include_last)
        self.pad = pad_sizes(h, w)
        nh, nw = h + self.pad[2] + self.pad[3], w + self.pad[0] + self.pad[1]
        self.k = num_objects
        self.prob = paddle.zeros([self.k + 1, t, 1, nh, nw], dtype='float32')
        self.prob[0] = 1e-7

    @property
    def mem_bank(self):
        return self.propagator.mem_bank

    def frame(self, idx):
        """Frame idx, padded: 1 x 3 x nh x nw."""
        return pad_divide_by(self.images[:, idx].astype('float32'))[0]

    @paddle.no_grad()
    def interact(self, mask, frame_idx, end_idx):
        """mask K x 1 x H x W (unpadded) of frame frame_idx; segments frames frame_idx+1 .. end_idx-1 in order."""
        mask = mask if isinstance(mask, paddle.Tensor) else paddle.to_tensor(mask)
        self.prob[:, frame_idx] = self.propagator.first(self.frame(frame_idx), pad_divide_by(mask)[0], frame_idx)
        for ti in range(frame_idx + 1, end_idx):
            self.prob[:, ti] = self.propagator.next(self.frame(ti), last=ti == end_idx - 1)
        return end_idx


class Propagator:
    """The inference core's propagation for frames that arrive one at a time (a video being read): first(frame,
    masks) with the first frame's masks, then next(frame) for each later frame -> (K+1) x 1 x nh x nw
    probabilities. Frames are padded 1 x 3 x nh x nw tensors (pad_divide_by), masks K x 1 x nh x nw.

    The official order: a frame's probabilities are aggregated, and every mem_every-th frame (absolute index, and
    the first) is memorised from its soft probabilities before the next frame is segmented; IMSFR's memory value
    is gated by the frame after it, so its memorisation waits for that frame. At most max_memory_frames frames
    stay in memory (the first and the newest; None: all, the official behaviour)."""

    def __init__(self, net, num_objects, top_k=20, mem_every=5, include_last=False, max_memory_frames=None):
        self.net, self.imsfr = net, isinstance(net, IMSFR)
        if self.imsfr and include_last:
            raise ValueError('IMSFR cannot run with include_last (the official core fails there: its memory bank '
                             'cannot read a temporary frame)')
        self.mem_every, self.include_last, self.max_memory_frames = mem_every, include_last, max_memory_frames
        self.mem_bank = (IMSFRMemoryBank if self.imsfr else MemoryBank)(k=num_objects, top_k=top_k)
        self.index, self.pending = -1, None

    def memorise(self, frame, key, qf16, masks, is_temp=False, next_frame=None):
        if self.imsfr:
            value, valuepe = self.net.encode_value_and_pe(frame, next_frame, qf16, masks)
            self.mem_bank.add_memory(key.unsqueeze(2), value, valuepe, is_temp=is_temp)
        else:
            self.mem_bank.add_memory(key.unsqueeze(2), self.net.encode_value(frame, qf16, masks), is_temp=is_temp)
        if self.max_memory_frames and not is_temp:
            self.mem_bank.keep_frames(self.max_memory_frames)

    def remember(self, frame, key, qf16, masks, is_temp=False):
        """Memorise now (STCN) or when the next frame arrives (IMSFR)."""
        if self.imsfr:
            self.pending = (frame, key, qf16, masks, is_temp)
        else:
            self.memorise(frame, key, qf16, masks, is_temp)

    def first(self, frame, masks, index=0):
        """The first frame (at `index` of the clip: memory frames are counted from the clip's start)."""
        self.index = index
        prob = aggregate(masks.astype('float32'), keep_bg=True)
        key, _, qf16, _, _ = self.net.encode_key(frame)
        self.remember(frame, key, qf16, prob[1:])
        return prob

    def next(self, frame, last=False):
        """The probabilities of the next frame; last=True: the clip's last frame, never memorised."""
        if self.pending is not None:
            self.memorise(*self.pending[:4], is_temp=self.pending[4], next_frame=frame)
            self.pending = None
        self.index += 1
        k16, qv16, qf16, qf8, qf4 = self.net.encode_key(frame)
        prob = aggregate(self.net.segment_with_query(self.mem_bank, qf8, qf4, k16, qv16), keep_bg=True)
        is_mem_frame = self.index % self.mem_every == 0
        if not last and (self.include_last or is_mem_frame):
            self.remember(frame, k16, qf16, prob[1:], is_temp=not is_mem_frame)
        return prob


# ---------------------------------------------------------------- per-frame graphs (tools/export.py)

class KeyStep(nn.Layer):
    """encode_key of one padded frame: frame 1 x 3 x H x W -> (k16, f16_thin, f16, f8, f4)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, frame):
        return self.net.encode_key(frame)

    @staticmethod
    def input_spec():
        return [paddle.static.InputSpec([1, 3, None, None], 'float32', 'frame')]


class ValueStep(nn.Layer):
    """STCN's value encoder for K objects, the inputs already repeated per object (the graph has no loop over K):
    frame K x 3 x H x W, f16 K x 1024 x h x w, mask and the sum of the other objects' masks K x 1 x H x W ->
    value K x 512 x h x w."""
    inputs = ((3, 'frame'), (1024, 'f16'), (1, 'mask'), (1, 'others'))

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, frame, f16, mask, others):
        return self.net.value_encoder(frame, f16, mask, others)

    def input_spec(self):
        return [paddle.static.InputSpec([None, c, None, None], 'float32', name) for c, name in self.inputs]


class GatedValueStep(ValueStep):
    """IMSFR's: the next frame too (K x 3 x H x W, its gate) -> (value, valuepe) K x 512 x h x w."""
    inputs = ((3, 'frame'), (3, 'next_frame'), (1024, 'f16'), (1, 'mask'), (1, 'others'))

    def forward(self, frame, next_frame, f16, mask, others):
        value = self.net.value_encoder(frame, next_frame, f16, mask, others)
        return value, self.net._valuepe(value)


class DecodeStep(nn.Layer):
    """From the memory readout(s) to the object probabilities: readout K x 512 x h x w (IMSFR: the long, first and
    local readouts concatenated, K x 1536), the query's f16_thin 1 x 512 x h x w, f8, f4 -> K x 1 x H x W."""

    def __init__(self, net):
        super().__init__()
        self.net, self.imsfr = net, isinstance(net, IMSFR)

    def forward(self, readout, qv16, qf8, qf4):
        return self.net.decode(readout, qv16, qf8, qf4)

    def input_spec(self):
        channels = 1536 if self.imsfr else 512
        return [paddle.static.InputSpec([None, channels, None, None], 'float32', 'readout'),
                paddle.static.InputSpec([1, 512, None, None], 'float32', 'qv16'),
                paddle.static.InputSpec([1, 512, None, None], 'float32', 'qf8'),
                paddle.static.InputSpec([1, 256, None, None], 'float32', 'qf4')]


# ---------------------------------------------------------------- training
# The training pass of STCN and IMSFR (hkchengrex/STCN `model/model.py` do_pass with `model/network.py`; xinbaiw/IMSFR
# `model/modeloneconv10146181localgparapoolpe.py` with its network), batched: what `STCN.forward` / `IMSFR.forward`
# run while training (spec/vos.md 4).
#
# A 3-frame clip: keys of the three frames; values of frame 0 from the true masks (each object's value with the
# other object's mask as "others"); frame 1 segmented from a memory of frame 0 with a *full* softmax over the
# memory (no top-k), per-object decoder logits, sigmoid, times the selector, soft aggregation; frame 1's value
# encoded from its predicted soft masks; frame 2 segmented from frames 0 and 1. IMSFR: a memory frame's value is
# gated by the frame it is matched against next (frame 0's by frame 1, frame 1's by frame 2), three readouts
# (long = every memory frame, first = frame 0, local = the newest memory frame's positional-encoded value) fused by
# the gate `mask` for the first object and `mask2` for the second (as in the official training network).
#
# Shapes: B clips, K objects (1 or 2), frames B x 3 x 3 x H x W (ImageNet-normalised, H and W multiples of 16),
# masks B x 3 x K x H x W (soft, target first), selector B x K (1 where the object exists).

RESNET_PARTS = ('conv1', 'bn1', 'res2', 'layer1', 'layer2', 'layer3')   # of the key and value encoders


def official_init(net):
    """The official untrained network's initialisation where it does not load ImageNet weights: torch's default
    for every conv and linear layer outside the ResNet stages of the key and value encoders (weight and bias
    uniform in +-1/sqrt(fan_in)) and, for STCN, an orthogonal key projection with a zero bias. The ResNet stages
    keep Paddle's (fan-in Kaiming) initialisation: officially they start from ImageNet weights."""
    for name, layer in net.named_sublayers():
        parts = name.split('.')
        if parts[0] in ('key_encoder', 'value_encoder') and len(parts) > 1 and parts[1] in RESNET_PARTS:
            continue
        if isinstance(layer, (nn.Conv2D, nn.Linear)):
            weight = layer.weight
            fan_in = weight.shape[0] if isinstance(layer, nn.Linear) else math.prod(weight.shape[1:])
            bound = 1 / math.sqrt(fan_in)
            weight.set_value(paddle.uniform(weight.shape, weight.dtype, -bound, bound))
            if layer.bias is not None:
                layer.bias.set_value(paddle.uniform(layer.bias.shape, layer.bias.dtype, -bound, bound))
    if isinstance(net, STCN):
        weight = net.key_proj.key_proj.weight
        flat = paddle.randn([weight.shape[0], math.prod(weight.shape[1:])])
        q, _ = paddle.linalg.qr(flat.T)                                   # orthonormal columns
        weight.set_value(q.T.reshape(weight.shape))
        net.key_proj.key_proj.bias.set_value(paddle.zeros_like(net.key_proj.key_proj.bias))


def object_batch(x, k):
    """B x ... -> K*B x ... (object-major: all clips of object 0, then of object 1)."""
    return paddle.tile(x.unsqueeze(0), [k] + [1] * x.ndim).reshape([k * x.shape[0]] + list(x.shape[1:]))


def others(objects):
    """K x B x 1 x H x W object masks -> for each object the other one's (zeros for one object)."""
    return paddle.flip(objects, axis=[0]) if objects.shape[0] == 2 else paddle.zeros_like(objects)


def full_readout(mk, mv, qk):
    """Full-softmax readout: keys mk B x CK x N, values mv K x B x CV x N, query qk B x CK x HW -> K x B x CV x HW."""
    k, b, cv, n = mv.shape
    flat = mv.transpose([1, 0, 2, 3]).reshape([b, k * cv, n])           # no broadcast matmul (its backward fails)
    out = paddle.matmul(flat, F.softmax(l2_affinity(mk, qk), axis=1))   # B x K*CV x HW
    return out.reshape([b, k, cv, -1]).transpose([1, 0, 2, 3])


def aggregate_logits(prob):
    """The official training aggregate: B x K x H x W probabilities -> (logits B x K+1 x H x W of the clamped
    [prod(1 - p), p], their softmax without the background B x K x H x W)."""
    background = 1 - prob[:, :1]
    for j in range(1, prob.shape[1]):          # not paddle.prod: its gradient divides by the factors (0 / 0 = nan)
        background = background * (1 - prob[:, j:j + 1])
    new_prob = paddle.concat([background, prob], axis=1).clip(1e-7, 1 - 1e-7)
    logits = paddle.log(new_prob / (1 - new_prob))
    return logits, F.softmax(logits, axis=1)[:, 1:]


def training_pass(net, frames, masks, selector):
    """-> (logits of frames 1 and 2, each B x K+1 x H x W; their object probabilities, each B x K x H x W)."""
    b, t = frames.shape[:2]
    k = masks.shape[2]
    h, w = frames.shape[-2:]
    imsfr = isinstance(net, IMSFR)
    k16, f16_thin, f16, f8, f4 = (x.reshape([b, t] + list(x.shape[1:]))
                                  for x in net.encode_key(frames.reshape([b * t] + list(frames.shape[2:]))))

    def value(i, soft):
        """Memory value of frame i from its masks B x K x H x W -> (K x B x CV x h x w, valuepe or None)."""
        objects = soft.transpose([1, 0, 2, 3]).unsqueeze(2)             # K x B x 1 x H x W
        own = objects.reshape([k * b, 1, h, w])
        other = others(objects).reshape([k * b, 1, h, w])
        image, kf16 = object_batch(frames[:, i], k), object_batch(f16[:, i], k)
        if imsfr:
            v = net.value_encoder(image, object_batch(frames[:, i + 1], k), kf16, own, other)
            pe = net.conv_fusion(v + net.conv_fusion1v(positional_encoding(v)))
            return v.reshape([k, b] + list(v.shape[1:])), pe.reshape([k, b] + list(pe.shape[1:]))
        v = net.value_encoder(image, kf16, own, other)
        return v.reshape([k, b] + list(v.shape[1:])), None

    def segment(i, memory, values, first=None, local=None):
        """Frame i from the memory frames `memory` (their values K x B x CV x h x w each)."""
        qk = k16[:, i].flatten(start_axis=2)
        mk = paddle.stack([k16[:, j] for j in memory], axis=2).flatten(start_axis=2)      # B x CK x T*h*w
        mv = paddle.stack(values, axis=3).flatten(start_axis=3)                           # K x B x CV x T*h*w
        hw = list(k16.shape[-2:])
        readout = full_readout(mk, mv, qk)
        if imsfr:
            (fk, fv), (lk, lv) = first, local
            readouts = [readout, full_readout(fk.flatten(start_axis=2), fv.flatten(start_axis=3), qk),
                        full_readout(lk.flatten(start_axis=2), lv.flatten(start_axis=3), qk)]
            readouts = [r.reshape([k, b, r.shape[2]] + hw) for r in readouts]
            fused = []
            for j, gate_conv in zip(range(k), (net.mask, net.mask2)):
                x = paddle.concat([r[j] for r in readouts], axis=1)                     # B x 1536 x h x w
                gate = F.sigmoid(gate_conv(x + net.avg_pool(x)))
                fused.append(sum(r[j] * gate + r[j] for r in readouts))
            readout = paddle.stack(fused)
        readout = readout.reshape([k * b, readout.shape[2]] + hw)
        x = paddle.concat([readout, object_batch(f16_thin[:, i], k)], axis=1)
        logits = net.decoder(x, object_batch(f8[:, i], k), object_batch(f4[:, i], k))    # K*B x 1 x H x W
        prob = F.sigmoid(logits.reshape([k, b, h, w]).transpose([1, 0, 2, 3]))
        return aggregate_logits(prob * selector.astype(prob.dtype).reshape([b, k, 1, 1]))

    ref_v, ref_pe = value(0, masks[:, 0])
    first = (k16[:, 0], ref_v) if imsfr else None
    logits1, prob1 = segment(1, [0], [ref_v], first, (k16[:, 0], ref_pe))
    prev_v, prev_pe = value(1, prob1)
    logits2, prob2 = segment(2, [0, 1], [ref_v, prev_v], first, (k16[:, 1], prev_pe))
    return (logits1, logits2), (prob1, prob2)
