"""The training pass of STCN and IMSFR (hkchengrex/STCN `model/model.py` do_pass with `model/network.py`; xinbaiw/IMSFR
`model/modeloneconv10146181localgparapoolpe.py` with its network), batched: what `STCN.forward` / `IMSFR.forward`
run while training (spec/vos.md 4).

A 3-frame clip: keys of the three frames; values of frame 0 from the true masks (each object's value with the
other object's mask as "others"); frame 1 segmented from a memory of frame 0 with a *full* softmax over the
memory (no top-k), per-object decoder logits, sigmoid, times the selector, soft aggregation; frame 1's value
encoded from its predicted soft masks; frame 2 segmented from frames 0 and 1. IMSFR: a memory frame's value is
gated by the frame it is matched against next (frame 0's by frame 1, frame 1's by frame 2), three readouts
(long = every memory frame, first = frame 0, local = the newest memory frame's positional-encoded value) fused by
the gate `mask` for the first object and `mask2` for the second (as in the official training network).

Shapes: B clips, K objects (1 or 2), frames B x 3 x 3 x H x W (ImageNet-normalised, H and W multiples of 16),
masks B x 3 x K x H x W (soft, target first), selector B x K (1 where the object exists).
"""
import math

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from .vos import IMSFR, STCN, l2_affinity, positional_encoding

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
