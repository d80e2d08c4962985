"""The family registry: each model family declares, in one module, its networks and options, backbones,
checkpoint layouts, named outputs, predict runner, evaluation protocols and training (families/base.py).
Entry points dispatch through it; a capability a family lacks is refused in one line (Unavailable)."""

from utils.checkpoint import load_state_dict, load_weights
from utils.device import set_device

from .base import Family, Unavailable, describe
from .bgmv2 import BGMv2
from .indexnet import IndexNet
from .rvm import RVM

FAMILIES = {f.name: f for f in (BGMv2(), RVM(), IndexNet())}
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


def load(model):
    """ModelConfig -> its network on model.device in eval mode, with every weight from model.checkpoint (random
    weights without one). A checkpoint of another network is refused, naming what it is."""
    set_device(model.device)
    network = model.spec.build(model)
    if model.checkpoint:
        loaded = set(load_weights(network, model.checkpoint)[0])
        missing = [k for k in network.state_dict() if k not in loaded]
        if missing:
            try:
                family, model_type, backbone, _ = detect(load_state_dict(model.checkpoint))
                hint = f"; it holds {model_type} {backbone}: pass --model-type {model_type} --model-backbone {backbone}"
            except ValueError:
                hint = ''
            raise ValueError(f"{model.checkpoint}: does not fit {model.model_type} {model.backbone}: "
                             f"{len(missing)} weights missing (first: {missing[0]}){hint}")
    network.eval()
    return network


__all__ = ['FAMILIES', 'MODEL_TYPES', 'BACKBONES', 'Family', 'Unavailable', 'family_of', 'detect', 'load', 'describe']
