"""Checkpoints: load `.pdparams` and official PyTorch `.pth` files (converted on the fly, no torch) by name
and shape, recognise which network a checkpoint belongs to, and save atomically.

Both formats are pickles; both are read with a restricted unpickler, so loading a file from the internet
cannot run code (paddle.load and torch.load without weights_only would).
"""
import collections
import os
import pickle

import numpy as np
import paddle

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
        except (pickle.UnpicklingError, EOFError, TypeError, AttributeError, IndexError, KeyError) as e:
            raise ValueError(f"{path}: not a readable .pdparams or .pth checkpoint ({e})") from e


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


def convert_torch_state_dict(sd, path='state_dict'):
    """A torch state_dict (possibly wrapped) -> Paddle names: BN running_mean/var -> _mean/_variance,
    num_batches_tracked dropped. Conv weights have the same layout in both frameworks."""
    out = {}
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
        raise ValueError(f"{path}: checkpoint not found")
    if is_torch_checkpoint(path):
        return convert_torch_state_dict(load_torch(path), path)
    return _unwrap(_load_pdparams(path), path)


def _numpy_dtype(tensor):
    return str(tensor.dtype).split('.')[-1]     # paddle.float32 -> float32 (2.6 and 3.x)


def match_state_dict(model, sd):
    """Compare a checkpoint with a model: (loadable {name: array}, missing, unexpected, mismatched)."""
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


# Which network a checkpoint belongs to, from its key names. First match wins; a row is
# (model_type, backbone, key prefixes that must all occur, extra build_model options).
SIGNATURES = (
    ('rvm', 'mobilenetv3', ('decoder.decode4.', 'backbone.features.', 'refiner.box_filter.'),
     {'refiner': 'deep_guided_filter'}),
    ('rvm', 'mobilenetv3', ('decoder.decode4.', 'backbone.features.'), {'refiner': 'fast_guided_filter'}),
    ('rvm', 'resnet50', ('decoder.decode4.', 'backbone.layer4.', 'refiner.box_filter.'),
     {'refiner': 'deep_guided_filter'}),
    ('rvm', 'resnet50', ('decoder.decode4.', 'backbone.layer4.'), {'refiner': 'fast_guided_filter'}),
    ('mattingrefine', 'mobilenetv2', ('refiner.conv1.', 'backbone.features.'), {}),
    ('mattingrefine', 'resnet101', ('refiner.conv1.', 'backbone.layer3.22.'), {}),
    ('mattingrefine', 'resnet50', ('refiner.conv1.', 'backbone.layer4.'), {}),
    ('mattingbase', 'mobilenetv2', ('decoder.conv4.', 'backbone.features.'), {}),
    ('mattingbase', 'resnet101', ('decoder.conv4.', 'backbone.layer3.22.'), {}),
    ('mattingbase', 'resnet50', ('decoder.conv4.', 'backbone.layer4.'), {}),
)


def _signature(keys):
    keys = list(keys)
    for row in SIGNATURES:
        if all(any(k.startswith(p) for k in keys) for p in row[2]):
            return row
    raise ValueError(f"unknown checkpoint layout: no BGMv2/RVM model matches its keys "
                     f"(first keys: {', '.join(keys[:5])})")


def detect_model(keys):
    """State-dict keys -> (model_type, backbone), e.g. ('mattingrefine', 'resnet50')."""
    return _signature(keys)[:2]


def detect_options(keys):
    """Extra build_model options a checkpoint implies (the RVM refiner: deep or fast guided filter)."""
    return dict(_signature(keys)[3])
