"""Networks only (no file I/O, no options parsing); families/ builds them from a configuration."""
from .bgmv2 import BACKBONES as BGMV2_BACKBONES, REFINE_MODES, MattingBase, MattingRefine
from .indexnet import IndexNetMatting
from .rvm import REFINERS as RVM_REFINERS, VARIANTS as RVM_BACKBONES, MattingNetwork
from .vos import IMSFR, STCN, IMSFRMemoryBank, InferenceCore, MemoryBank, aggregate

__all__ = ['MattingBase', 'MattingRefine', 'MattingNetwork', 'IndexNetMatting', 'BGMV2_BACKBONES', 'REFINE_MODES',
           'RVM_BACKBONES', 'RVM_REFINERS', 'STCN', 'IMSFR', 'MemoryBank', 'IMSFRMemoryBank', 'InferenceCore',
           'aggregate']
