"""Semi-supervised video object segmentation: STCN and IMSFR propagate the first frame's object masks through a clip.

Networks and checkpoints only so far: prediction, the DAVIS protocol and training are refused by the base class
until they are added here (runner, protocols, trainer).
"""
from dataclasses import dataclass

from model import IMSFR, STCN
from model.vos import KEY_BACKBONES

from .base import Family


@dataclass(frozen=True)
class VOSOptions:
    """The released networks have no model options (top-k and the memory interval are inference settings)."""


class VOS(Family):
    name = 'vos'
    title = 'Video object segmentation (STCN, IMSFR)'
    model_types = ('stcn', 'imsfr')
    backbones = ('resnet50', 'resnet101')          # the key encoder: stcn resnet50, imsfr resnet101, nothing else
    default_backbone = 'resnet50'
    options = VOSOptions
    # stcn.pth (hkchengrex/STCN) is a bare state_dict; wrapped ones are unwrapped by utils/checkpoint.py
    signatures = (('stcn', 'resnet50', ('key_proj.key_proj.', 'key_encoder.res2.', 'value_encoder.fuser.'), {}),
                  ('imsfr', 'resnet101', ('conv_fusion1v.', 'key_encoder.layer3.22.', 'value_encoder.mask.'), {}))

    def build(self, model):
        expected = KEY_BACKBONES[model.model_type]
        if model.backbone != expected:
            raise ValueError(f"{model.model_type} has a {expected} key encoder: pass --model-backbone {expected}, "
                             f"not {model.backbone}")
        return STCN() if model.model_type == 'stcn' else IMSFR()
