"""Robust Video Matting: a recurrent network that mattes a video with no plate."""
from dataclasses import dataclass

import numpy as np
import paddle

from model import RVM_BACKBONES, RVM_REFINERS, MattingNetwork
from model.rvm import MattingNetworkStep, MattingOutput
from utils.options import option, ratio

from .base import Family, Unavailable


def auto_ratio(h, w):
    """The official automatic downsample ratio: the recurrent network sees at most 512 px."""
    return min(512 / max(h, w), 1)


@dataclass(frozen=True)
class RVMOptions:
    refiner: str = option('deep_guided_filter', '--model-refiner', choices=RVM_REFINERS,
                          help='the high-resolution refiner')
    downsample_ratio: float = option(None, '--downsample-ratio', type=ratio,
                                     help='scale of the recurrent network, in (0, 1]; 0.25-0.4 suit 1080p (the paper '
                                          'uses 0.25 at 1920x1080)',
                                     default_help='none: min(512 / max(H, W), 1) per clip, the official automatic '
                                                  'rule; tools/export.py, whose graph needs a fixed value, has its own')


class RVMRunner:
    """N x H x W x 3 frames of one clip in order -> {'pha', 'fgr'}; the recurrent state runs through the clip
    (reset() between clips) at a downsample ratio fixed for the whole clip."""

    def __init__(self, network, ratio, precision):
        self.network, self.ratio, self.fp16 = network, ratio, precision == 'fp16'
        self.reset()

    def reset(self):
        self.state, self.clip_ratio = [None] * 4, None

    def prepare(self, src, bgr=None):
        if self.clip_ratio is None:
            self.clip_ratio = self.ratio or auto_ratio(*src.shape[1:3])
        return paddle.to_tensor(np.ascontiguousarray(src.transpose(0, 3, 1, 2))[None])   # 1 x T x 3 x H x W

    def step(self, frames):
        with paddle.no_grad(), paddle.amp.auto_cast(enable=self.fp16, level='O1'):
            out = self.network(frames, *self.state, downsample_ratio=self.clip_ratio)
        self.state = [out.r1, out.r2, out.r3, out.r4]
        return out

    def __call__(self, src, bgr=None):
        out = self.step(self.prepare(src))
        return {'pha': out.pha.astype('float32').numpy()[0, :, 0],
                'fgr': out.fgr.astype('float32').numpy()[0].transpose(0, 2, 3, 1)}


class RVM(Family):
    name = 'rvm'
    title = 'Robust Video Matting'
    model_types = ('rvm',)
    backbones = RVM_BACKBONES
    default_backbone = 'mobilenetv3'
    options = RVMOptions
    protocols = ('video',)
    export_formats = ('json',)          # its ops have no legacy static kernels in Paddle 3.3
    export_defaults = {'downsample_ratio': 0.25}
    onnx_unavailable = 'paddle2onnx 2.1 rejects its scale_factor resizes'
    signatures = (
        ('rvm', 'mobilenetv3', ('decoder.decode4.', 'backbone.features.', 'refiner.box_filter.'),
         {'refiner': 'deep_guided_filter'}),
        ('rvm', 'mobilenetv3', ('decoder.decode4.', 'backbone.features.'), {'refiner': 'fast_guided_filter'}),
        ('rvm', 'resnet50', ('decoder.decode4.', 'backbone.layer4.', 'refiner.box_filter.'),
         {'refiner': 'deep_guided_filter'}),
        ('rvm', 'resnet50', ('decoder.decode4.', 'backbone.layer4.'), {'refiner': 'fast_guided_filter'}),
    )

    def build(self, model):
        return MattingNetwork(model.backbone, model.options.refiner)

    def outputs(self, model_type):
        return MattingOutput

    def output_types(self, model_type):
        return ('com', 'pha', 'fgr')

    def runner(self, model, network, backend, frames, wanted=('pha', 'fgr')):
        if backend.backend not in ('auto', 'dygraph'):
            raise Unavailable(f"the {backend.backend} backend for rvm is not available yet (it runs in dygraph; "
                              f"tools/export.py exports it with a fixed --downsample-ratio)")
        network.eval()
        return RVMRunner(network, model.options.downsample_ratio, backend.precision)

    def export_layer(self, model, network):
        ratio = model.options.downsample_ratio
        meta = {'model_type': 'rvm', 'backbone': model.backbone, 'refiner': model.options.refiner,
                'downsample_ratio': ratio}
        return MattingNetworkStep(network, ratio), None, meta
