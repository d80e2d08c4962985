"""The seeded-weight rule of the golden vectors, re-implemented for the tests (numpy only).

Entry i of a key list (num_batches_tracked left out) is drawn from numpy.random.default_rng(1000 + i):
conv/linear weights N(0,1)*sqrt(2/fan_in), biases N(0,1)*0.01, BN weight U(0.5,1.5), BN bias N(0,1)*0.1,
running mean N(0,1)*0.1, running var U(0.5,1.5); drawn in float64, stored as float32. LKM's kinds: LayerNorm
weight U(0.5,1.5), bias N(0,1)*0.1; GRN gamma ("scale") U(0.5,1.5), beta N(0,1)*0.1; layer scale U(0.05,0.15);
the Haar filter buffers of its DWT, fixed (1, 1)/sqrt(2) and (1, -1)/sqrt(2). VOS's (STCN, IMSFR): the last BN
weight of a residual branch ("bn_weight_small") U(0.1, 0.3), and "conv_weight*F", the conv rule times F.
"""
import json
import math

import numpy as np


def _draw(kind, shape, rng):
    if kind in ('conv_weight', 'linear_weight'):
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        return rng.standard_normal(size=shape) * math.sqrt(2.0 / fan_in)
    if kind.startswith('conv_weight*'):
        return _draw('conv_weight', shape, rng) * float(kind[len('conv_weight*'):])
    if kind == 'bias':
        return rng.standard_normal(size=shape) * 0.01
    if kind in ('bn_weight', 'bn_running_var'):
        return rng.uniform(0.5, 1.5, size=shape)
    if kind in ('bn_bias', 'bn_running_mean'):
        return rng.standard_normal(size=shape) * 0.1
    if kind in ('ln_weight', 'scale'):
        return rng.uniform(0.5, 1.5, size=shape)
    if kind in ('ln_bias', 'grn_beta'):
        return rng.standard_normal(size=shape) * 0.1
    if kind == 'bn_weight_small':
        return rng.uniform(0.1, 0.3, size=shape)
    if kind == 'layer_scale':
        return rng.uniform(0.05, 0.15, size=shape)
    if kind in ('dwt_haar_lo', 'dwt_haar_hi'):
        return np.array([1, 1 if kind == 'dwt_haar_lo' else -1], np.float64).reshape(shape) / math.sqrt(2)
    raise ValueError(f"unknown kind {kind!r}")


def make_weights(entries):
    """[(torch_key, shape, kind), ...] in state_dict order -> {torch_key: float32 array}."""
    return {key: np.asarray(_draw(kind, tuple(shape), np.random.default_rng(1000 + i)),
                            np.float64).astype(np.float32)
            for i, (key, shape, kind) in enumerate(entries)}


def load_entries(path):
    """A golden `keys_*.json` spec -> [(key, shape, kind), ...] in index order."""
    with open(path, encoding='utf-8') as f:
        entries = sorted(json.load(f)['entries'], key=lambda e: e['index'])
    return [(e['key'], tuple(e['shape']), e['kind']) for e in entries]


def to_paddle_names(weights):
    """torch BatchNorm statistic names -> Paddle's."""
    return {k.replace('running_mean', '_mean').replace('running_var', '_variance'): v for k, v in weights.items()}
