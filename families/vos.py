"""Semi-supervised video object segmentation: STCN and IMSFR propagate the first frame's object masks through a clip.

predict.py segments videos or folders of frames from a first-frame label PNG (inference/vos.py); eval.py scores
them on DAVIS (evaluation/davis.py).
"""
from dataclasses import dataclass

import numpy as np

from model import IMSFR, STCN
from model.vos import KEY_BACKBONES, DecodeStep, GatedValueStep, KeyStep, ValueStep
from utils.options import non_negative_int, option, positive_int

from .base import Family, Unavailable


@dataclass(frozen=True)
class VOSOptions:
    """Inference settings of the memory (the networks themselves have no options). Defaults: the official
    inference core (top-k 20, a memory frame every 5th frame, 480p); its eval scripts use --top-k 4 --mem-every 6
    for IMSFR on DAVIS 2017."""
    top_k: int = option(20, '--top-k', type=positive_int, help='memory positions read per query position')
    mem_every: int = option(5, '--mem-every', type=positive_int, help='every N-th frame (and the first) is memorised')
    vos_resolution: int = option(480, '--vos-resolution', type=non_negative_int,
                                 help='short side of the frames the network sees (0: as they are); outputs have the '
                                      "input's size")
    max_memory_frames: int = option(64, '--max-memory-frames', type=positive_int,
                                    help='memory frames kept (the first and the newest): bounds memory on long '
                                         'videos; official DAVIS / YouTube-VOS settings stay below it')
    memory_seed: int = option(0, '--memory-seed', type=int,
                              help="seed of IMSFR's random long-term memory sampling (Python's random), per clip")


class VOS(Family):
    name = 'vos'
    title = 'Video object segmentation (STCN, IMSFR)'
    model_types = ('stcn', 'imsfr')
    backbones = ('resnet50', 'resnet101')          # the key encoder: stcn resnet50, imsfr resnet101, nothing else
    default_backbone = 'resnet50'
    options = VOSOptions
    partner = 'mask'
    protocols = ('davis',)
    export_formats = ('json', 'pdmodel')
    # stcn.pth (hkchengrex/STCN) is a bare state_dict; wrapped ones are unwrapped by utils/checkpoint.py
    signatures = (('stcn', 'resnet50', ('key_proj.key_proj.', 'key_encoder.res2.', 'value_encoder.fuser.'), {}),
                  ('imsfr', 'resnet101', ('conv_fusion1v.', 'key_encoder.layer3.22.', 'value_encoder.mask.'), {}))

    def backbone_for(self, model_type):
        return KEY_BACKBONES[model_type]

    def build(self, model):
        expected = KEY_BACKBONES[model.model_type]
        if model.backbone != expected:
            raise ValueError(f"{model.model_type} has a {expected} key encoder: pass --model-backbone {expected}, "
                             f"not {model.backbone}")
        return STCN() if model.model_type == 'stcn' else IMSFR()

    def runner(self, model, network, backend, frames, wanted=None):
        """inference.vos.VOSRunner: first-frame labels -> a ClipSegmenter for that clip (frames in, labels out)."""
        from inference.vos import VOSRunner
        if backend.backend not in ('auto', 'dygraph'):
            raise Unavailable(f'{model.model_type} runs in dygraph only (--backend dygraph)')
        network.eval()
        return VOSRunner(network, model.options)

    def example_inputs(self, n, h, w, rng):
        """Random frames and a first-frame label map with two rectangles (the speed test)."""
        first = np.zeros((h, w), np.uint8)
        first[h // 8:h // 2, w // 8:w // 2], first[h // 2:h * 7 // 8, w // 2:w * 7 // 8] = 1, 2
        return rng.random((n, h, w, 3), dtype=np.float32), first

    def export_graphs(self, model, network):
        """The per-frame network calls as three graphs (tools/export.py docstring)."""
        network.eval()
        imsfr = model.model_type == 'imsfr'
        value, decode = (GatedValueStep if imsfr else ValueStep)(network), DecodeStep(network)
        graphs = [('encode_key', KeyStep(network), KeyStep.input_spec(), ['k16', 'f16_thin', 'f16', 'f8', 'f4']),
                  ('encode_value', value, value.input_spec(), ['value', 'valuepe'] if imsfr else ['value']),
                  ('decode', decode, decode.input_spec(), ['prob'])]
        return graphs, {'model_type': model.model_type, 'backbone': model.backbone}

    def predict(self, cfg, model, backend, load):
        from inference.vos import segment_video
        return segment_video(cfg, self.runner(model, load(model), backend, None))

    def outputs(self, model_type):
        raise Unavailable(f'{model_type} has no single forward pass to name or export: its calls (encode_key, '
                          f'encode_value, segment_with_query) run through model.vos.InferenceCore')

    def trainer(self, model_type):
        from training.vos import VOSTraining
        return VOSTraining(model_type)
