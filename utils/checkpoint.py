"""Checkpoints: the one loader of `.pdparams` and official PyTorch `.pth` files (converted on the fly, no torch),
matching by name and shape; checkpoint cards; atomic saves.

Both formats are pickles; both are read with a restricted unpickler, so loading a file from the internet
cannot run code (paddle.load and torch.load without weights_only would). Every failure is a ValueError whose
message names the file. A checkpoint's *card* is `<checkpoint without extension>.json`: its "config" entry
holds the model options the weights were made with (train.py writes one; the demo model ships one).
"""
import collections
import json
import os
import pickle
import struct
import zipfile

import numpy as np
import paddle
import paddle.nn as nn

from .io import atomic_path
from .torch_format import RestrictedUnpickler, is_torch_checkpoint, load_torch

WRAPPERS = ('state_dict', 'model_state', 'model')   # training scripts nest the weights under these keys
PREFIXES = ('module.', '_layers.')                  # torch DDP / Paddle DataParallel wrappers


def _paddle_tensor(items):
    # paddle.save pickles a Tensor nested in a container as tuple((name, ndarray))
    items = tuple(items)
    if len(items) == 2 and isinstance(items[0], str) and isinstance(items[1], np.ndarray):
        return items[1]
    return items


_RECONSTRUCT = np.zeros(0).__reduce__()[0]      # numpy's array unpickling helper (its module moved in numpy 2)
PADDLE_GLOBALS = {
    ('collections', 'OrderedDict'): collections.OrderedDict,
    ('builtins', 'tuple'): _paddle_tensor,
    ('numpy', 'ndarray'): np.ndarray,
    ('numpy', 'dtype'): np.dtype,
    ('numpy.core.multiarray', '_reconstruct'): _RECONSTRUCT,
    ('numpy._core.multiarray', '_reconstruct'): _RECONSTRUCT,
}


def _load_pdparams(path):
    with open(path, 'rb') as f:
        try:
            return RestrictedUnpickler(f, PADDLE_GLOBALS, source=path).load()
        except ValueError:
            raise
        except (pickle.UnpicklingError, EOFError, TypeError, AttributeError, IndexError, KeyError, MemoryError,
                OverflowError, RecursionError, UnicodeDecodeError) as e:
            raise ValueError(f"{path}: not a readable .pdparams or .pth checkpoint ({type(e).__name__}: "
                             f"{str(e)[:200]})") from None


def _unwrap(obj, path):
    """Weights nested under a wrapper key and/or behind a DDP prefix -> a flat {name: array}."""
    while isinstance(obj, dict) and not any(isinstance(v, np.ndarray) for v in obj.values()):
        inner = [k for k in WRAPPERS if isinstance(obj.get(k), dict)]
        if not inner:
            raise ValueError(f"{path}: no weights found (top-level keys: {', '.join(map(str, list(obj)[:10]))})")
        obj = obj[inner[0]]
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a state_dict, found a {type(obj).__name__}")
    obj = {k: v for k, v in obj.items() if k != 'StructuredToParameterName@@'}   # old paddle.save name table
    for prefix in PREFIXES:
        if obj and all(k.startswith(prefix) for k in obj):
            obj = {k[len(prefix):]: v for k, v in obj.items()}
    bad = [k for k, v in obj.items() if not isinstance(v, np.ndarray)]
    if bad:
        raise ValueError(f"{path}: entries that are not tensors: {', '.join(map(str, bad[:5]))}")
    return obj


class TorchStateDict(dict):
    """{name: array} read from a torch file, in Paddle naming but still torch's layout: Linear weights are
    (out, in) until match_state_dict meets the model and transposes its nn.Linear weights to Paddle's (in, out)."""


def convert_torch_state_dict(sd, path='state_dict'):
    """A torch state_dict (possibly wrapped) -> Paddle names: BN running_mean/var -> _mean/_variance,
    num_batches_tracked dropped. Conv and norm weights have the same layout in both frameworks; Linear weights
    do not (see TorchStateDict)."""
    out = TorchStateDict()
    for key, value in _unwrap(sd, path).items():
        head, _, last = key.rpartition('.')
        if last == 'num_batches_tracked':
            continue
        last = {'running_mean': '_mean', 'running_var': '_variance'}.get(last, last)
        out[f'{head}.{last}' if head else last] = value
    return out


def load_state_dict(path):
    """{name: numpy array} in Paddle naming from a .pdparams or a torch .pth (zip or legacy format)."""
    if not os.path.isfile(path):
        raise ValueError(f"{path}: checkpoint not found" if not os.path.isdir(path) else
                         f"{path}: is a folder, not a checkpoint file")
    try:
        if is_torch_checkpoint(path):
            return convert_torch_state_dict(load_torch(path), path)
        with open(path, 'rb') as f:
            zipped = f.read(4) == b'PK\x03\x04'
        if zipped:
            raise ValueError(f"{path}: a zip archive but not a torch checkpoint" +
                             (" (no data.pkl)" if zipfile.is_zipfile(path) else ": damaged or truncated (an interrupted "
                                                                                "download?)"))
        return _unwrap(_load_pdparams(path), path)
    except OSError as e:
        raise ValueError(f"{path}: cannot read ({e.strerror or e})") from None
    except (zipfile.BadZipFile, EOFError, pickle.UnpicklingError, struct.error, MemoryError, OverflowError) as e:
        raise ValueError(f"{path}: not a readable checkpoint ({type(e).__name__}: {str(e)[:200]})") from None


def read_card(path):
    """The "config" entry of a checkpoint's card ({} without a card); a card that cannot be read is an error."""
    card = os.path.splitext(path)[0] + '.json'
    if not os.path.isfile(card):
        return {}
    try:
        with open(card, encoding='utf-8') as f:
            config = json.load(f).get('config', {})
    except (OSError, ValueError, AttributeError) as e:
        raise ValueError(f"{card}: unreadable checkpoint card ({e})") from None
    if not isinstance(config, dict):
        raise ValueError(f"{card}: its \"config\" entry is not an object")
    return config


def _numpy_dtype(tensor):
    return str(tensor.dtype).split('.')[-1]     # paddle.float32 -> float32 (2.6 and 3.x)


def linear_weights(model):
    """Names of the weights of the model's nn.Linear layers."""
    return {f'{name}.weight' for name, layer in model.named_sublayers() if isinstance(layer, nn.Linear)}


def to_paddle_layout(model, sd):
    """A TorchStateDict's weights of the model's nn.Linear layers transposed from torch's (out, in) to Paddle's
    (in, out); the one place where a torch layout differs (shapes are checked by match_state_dict after)."""
    if not isinstance(sd, TorchStateDict):
        return sd
    linear = linear_weights(model)
    return {k: np.ascontiguousarray(v.T) if k in linear and v.ndim == 2 else v for k, v in sd.items()}


def match_state_dict(model, sd):
    """Compare a checkpoint with a model: (loadable {name: array} in the model's layout, missing, unexpected,
    mismatched)."""
    sd = to_paddle_layout(model, sd)
    own = model.state_dict()
    loadable = {k: v for k, v in sd.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    mismatched = [f'{k}: checkpoint {list(sd[k].shape)}, model {list(own[k].shape)}'
                  for k in sd if k in own and k not in loadable]
    return loadable, missing, unexpected, mismatched


def describe_mismatch(missing, unexpected, mismatched, limit=20):
    """Readable lists of the keys that do not fit."""
    lines = []
    for title, keys in (('missing in the checkpoint', missing), ('unexpected (not in the model)', unexpected),
                        ('shape mismatch', mismatched)):
        if keys:
            lines.append(f'{len(keys)} {title}:')
            lines += [f'  {k}' for k in keys[:limit]] + ([f'  ... and {len(keys) - limit} more'] if len(keys) > limit else [])
    return '\n'.join(lines)


def load_weights(model, path, strict=False):
    """Load the entries of a checkpoint that match the model by name and shape.

    Returns (loaded_names, skipped_names); skipped are checkpoint entries not loaded (unknown name or other
    shape). Model weights absent from the checkpoint keep their values. strict=True raises ValueError
    listing missing, unexpected and mismatched keys instead of loading a partial model.
    """
    sd = load_state_dict(path)
    loadable, missing, unexpected, mismatched = match_state_dict(model, sd)
    if strict and (missing or unexpected or mismatched):
        raise ValueError(f"{path}: does not fit {type(model).__name__}\n" +
                         describe_mismatch(missing, unexpected, mismatched))
    own = model.state_dict()
    for key, value in loadable.items():        # set_state_dict would warn once per weight not in the file
        own[key].set_value(value.astype(_numpy_dtype(own[key]), copy=False))
    return list(loadable), [k for k in sd if k not in loadable]


def save_atomic(obj, path):
    """paddle.save to a temporary file next to `path`, renamed into place: no partial file on failure."""
    with atomic_path(path) as tmp:
        paddle.save(obj, tmp)
