"""Networks of this project and the one place that builds them by name."""
from .bgmv2 import BACKBONES, REFINE_MODES, MattingBase, MattingRefine
from .rvm import REFINERS as RVM_REFINERS, VARIANTS as RVM_BACKBONES, MattingNetwork

MODEL_TYPES = ('mattingbase', 'mattingrefine', 'rvm')


def build_model(model_type, backbone, backbone_scale=0.25, refine_mode='sampling', refine_sample_pixels=80_000,
                refine_threshold=0.1, refine_kernel_size=3, refine_prevent_oversampling=True,
                refiner='deep_guided_filter'):
    """model_type + options -> an (untrained) network in train mode. BGMv2 ignores `refiner`; RVM
    ('rvm', backbone 'mobilenetv3' or 'resnet50') uses only it."""
    if model_type == 'rvm':
        return MattingNetwork(backbone, refiner)
    if model_type == 'mattingbase':
        return MattingBase(backbone)
    if model_type == 'mattingrefine':
        return MattingRefine(backbone, backbone_scale, refine_mode, refine_sample_pixels, refine_threshold,
                             refine_kernel_size, refine_prevent_oversampling)
    raise ValueError(f"unknown model type {model_type!r}; expected one of {', '.join(MODEL_TYPES)}")


__all__ = ['MattingBase', 'MattingRefine', 'MattingNetwork', 'build_model', 'BACKBONES', 'REFINE_MODES', 'MODEL_TYPES',
           'RVM_BACKBONES', 'RVM_REFINERS']
