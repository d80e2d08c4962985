"""The family registry: each model family declares, in one module, its networks and options, backbones,
checkpoint layouts, named outputs, predict runner, evaluation protocols and training (families/base.py).
Entry points dispatch through it; a capability a family lacks is refused in one line (Unavailable)."""

import dataclasses

from utils.checkpoint import load_state_dict, load_weights
from utils.device import set_device
from utils.onednn import accelerate

from .base import Family, Unavailable, describe
from .bgmv2 import BGMv2
from .indexnet import IndexNet
from .rvm import RVM
from .vos import VOS

FAMILIES = {f.name: f for f in (BGMv2(), RVM(), IndexNet(), VOS())}
MODEL_TYPES = tuple(t for f in FAMILIES.values() for t in f.model_types)
BACKBONES = tuple(dict.fromkeys(b for f in FAMILIES.values() for b in f.backbones))


def family_of(model_type):
    for family in FAMILIES.values():
        if model_type in family.model_types:
            return family
    raise ValueError(f"unknown model type {model_type!r}; expected one of {', '.join(MODEL_TYPES)}")


def detect(keys):
    """State-dict keys -> (family, model_type, backbone, options) of the first family whose layout matches."""
    keys = list(keys)
    for family in FAMILIES.values():
        found = family.signature_of(keys)
        if found:
            return (family,) + found
    raise ValueError(f"unknown checkpoint layout: no {', '.join(FAMILIES)} model matches its keys "
                     f"(first keys: {', '.join(keys[:5])})")


def _hint(model):
    """What the checkpoint holds, as the flags that select it ('' when its layout is unknown)."""
    try:
        family, model_type, backbone, options = detect(load_state_dict(model.checkpoint))
    except ValueError:
        return ''
    flags = [f'--model-type {model_type}', f'--model-backbone {backbone}']
    fields = {f.name: f.metadata for f in dataclasses.fields(family.options)}
    current = model.options if family is model.spec else family.options()
    for name, value in options.items():
        if value == getattr(current, name):
            continue
        meta = fields[name]
        if meta.get('action') == 'store_true':
            flags.append(meta['flag'] if value else f"without {meta['flag']}")
        else:
            flags.append(f"{meta['flag']} {value}")
    return f"; it holds {model_type} {backbone}: pass {' '.join(flags)}"


def load(model):
    """ModelConfig -> its network on model.device in eval mode, with every weight from model.checkpoint (random
    weights without one). A checkpoint of another network is refused, naming what it is."""
    set_device(model.device)
    network = model.spec.build(model)
    if model.checkpoint:
        loaded, skipped = load_weights(network, model.checkpoint)
        loaded = set(loaded)
        missing = [k for k in network.state_dict() if k not in loaded]
        allowed = model.spec.strict_loading.get(model.backbone)
        refused = [k for k in skipped if not k.startswith(allowed)] if allowed is not None else []
        if missing or refused:
            problem = (f"{len(missing)} weights missing (first: {missing[0]})" if missing else
                       f"{len(refused)} checkpoint entries not in the network (first: {refused[0]})")
            raise ValueError(f"{model.checkpoint}: does not fit {model.model_type} {model.backbone}: {problem}"
                             f"{_hint(model)}")
    network.eval()
    accelerate(network, model.device, model.cpu_kernels)
    return network


__all__ = ['FAMILIES', 'MODEL_TYPES', 'BACKBONES', 'Family', 'Unavailable', 'family_of', 'detect', 'load', 'describe']
