"""Robust Video Matting: a recurrent network that mattes a video with no plate."""
import time
import weakref
from dataclasses import dataclass

import numpy as np
import paddle

from inference.backends import cached_export, create_backend, has_pir
from inference.guided_filter import downsample, guided_upsample
from model import RVM_BACKBONES, RVM_REFINERS, MattingNetwork
from model.rvm import CoefficientOutput, MattingNetworkCoefficients, MattingNetworkStep, MattingOutput
from utils.options import option, ratio

from .base import Family, Unavailable, describe

LKM_TRAINING = 'backbone.unirep.stages.0.0.gamma'          # keys only the training / deploy form of LKM has
LKM_DEPLOY = 'backbone.unirep.stages.0.0.pwconv2.0.bias'


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
    deploy: bool = option(False, '--model-deploy', action='store_true',
                          help='unireplknet (LKM): the re-parameterised deploy form (branches, BatchNorms and layer '
                               'scales folded into the convolutions; the official rep_model.pth) instead of the '
                               'training form (model.pth)')


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


class FastRVMRunner:
    """RVMRunner's contract on an exported graph (Paddle Inference or ONNX Runtime): per frame, the downsample in
    OpenCV, MattingNetworkCoefficients in the graph with the states as numpy arrays, the guided upsample in
    OpenCV. `graph(h, w, refine)` gives the backend for a downsampled size (exported on first use, cached);
    setup_seconds counts the time spent exporting or loading graphs."""

    def __init__(self, graph, ratio):
        self.graph, self.ratio, self.setup_seconds = graph, ratio, 0.0
        self.reset()

    def reset(self):
        self.state, self.clip_ratio = None, None

    def prepare(self, src, bgr=None):
        if self.clip_ratio is None:
            self.clip_ratio = self.ratio or auto_ratio(*src.shape[1:3])
        return np.ascontiguousarray(src, dtype=np.float32)          # N x H x W x 3, frames in order

    def step(self, frames):
        fgr, pha = np.empty_like(frames), np.empty(frames.shape[:3], np.float32)
        refine = self.clip_ratio != 1
        for t, frame in enumerate(frames):
            small = downsample(frame, self.clip_ratio) if refine else frame
            start = time.perf_counter()
            graph = self.graph(*small.shape[:2], refine)
            self.setup_seconds += time.perf_counter() - start
            if self.state is None:      # zeros of each state's shape where the graph fixes it, else broadcast
                self.state = [np.zeros([d or 1 for d in shape], np.float32) for shape in graph.input_shapes[1:]]
            out = CoefficientOutput._make(graph(small.transpose(2, 0, 1)[None], *self.state))
            self.state = [out.r1, out.r2, out.r3, out.r4]
            fgr[t], pha[t] = guided_upsample(frame, out.a[0].transpose(1, 2, 0), out.b[0].transpose(1, 2, 0))
        return {'pha': pha, 'fgr': fgr}

    def __call__(self, src, bgr=None):
        return self.step(self.prepare(src))


class RVM(Family):
    name = 'rvm'
    title = 'Robust Video Matting'
    model_types = ('rvm',)
    backbones = RVM_BACKBONES
    default_backbone = 'mobilenetv3'
    options = RVMOptions
    protocols = ('video',)
    export_formats = ('json',)          # a graph of any frame size has scale_factor resizes: PIR only
    export_defaults = {'downsample_ratio': 0.25}
    auto_backends = ('onnxruntime', 'inference')   # 0.6-1.0x Paddle Inference's time here, by backbone and size
    onnx_unavailable = 'paddle2onnx 2.1 rejects its scale_factor resizes'
    graphs = weakref.WeakKeyDictionary()    # network -> {(backend, device, threads, h, w, refine): backend}
    signatures = (
        ('rvm', 'mobilenetv3', ('decoder.decode4.', 'backbone.features.', 'refiner.box_filter.'),
         {'refiner': 'deep_guided_filter'}),
        ('rvm', 'mobilenetv3', ('decoder.decode4.', 'backbone.features.'), {'refiner': 'fast_guided_filter'}),
        ('rvm', 'resnet50', ('decoder.decode4.', 'backbone.layer4.', 'refiner.box_filter.'),
         {'refiner': 'deep_guided_filter'}),
        ('rvm', 'resnet50', ('decoder.decode4.', 'backbone.layer4.'), {'refiner': 'fast_guided_filter'}),
        # LKM: the training form has layer scales (gamma), the deploy form folds them into pwconv2's bias
        ('rvm', 'unireplknet', (LKM_TRAINING, 'decoder.down.', 'refiner.box_filter.'),
         {'refiner': 'deep_guided_filter', 'deploy': False}),
        ('rvm', 'unireplknet', (LKM_TRAINING, 'decoder.down.'), {'refiner': 'fast_guided_filter', 'deploy': False}),
        ('rvm', 'unireplknet', (LKM_DEPLOY, 'decoder.down.', 'refiner.box_filter.'),
         {'refiner': 'deep_guided_filter', 'deploy': True}),
        ('rvm', 'unireplknet', (LKM_DEPLOY, 'decoder.down.'), {'refiner': 'fast_guided_filter', 'deploy': True}),
    )
    strict_loading = {'unireplknet': ('refiner.',)}    # LKM's training and deploy forms must never mix

    def build(self, model):
        if model.options.deploy and model.backbone != 'unireplknet':
            raise ValueError(f"--model-deploy is for --model-backbone unireplknet (LKM); {model.backbone} has no "
                             f"deploy form")
        return MattingNetwork(model.backbone, model.options.refiner, deploy=model.options.deploy)

    def outputs(self, model_type):
        return MattingOutput

    def output_types(self, model_type):
        return ('com', 'pha', 'fgr')

    def runner(self, model, network, backend, frames, wanted=('pha', 'fgr')):
        """`backend` a BackendConfig (Family.backend_for: the graph is exported once per frame size)."""
        name = self.backend_for(backend, model, frames)
        if name != 'dygraph' and backend.export_dir:
            raise Unavailable('rvm exports its graph on the fly for each frame size: --export-dir is for the '
                              'image families (a tools/export.py rvm export is for deployment)')
        network.eval()
        if name == 'dygraph':
            return RVMRunner(network, model.options.downsample_ratio, backend.precision)
        return FastRVMRunner(lambda h, w, refine: self.graph(network, model, name, backend, h, w, refine),
                             model.options.downsample_ratio)

    def graph(self, network, model, name, backend, h, w, refine):
        """The backend of MattingNetworkCoefficients for h x w downsampled frames, kept for the network's
        lifetime; the export of a checkpoint's network is also kept on disk (inference.backends.cached_export),
        so the next run on frames of that size starts at once."""
        cache = self.graphs.setdefault(network, {})
        key = (name, model.device, backend.threads, backend.precision, backend.tensorrt, h, w, refine)
        if key not in cache:
            layer, spec = MattingNetworkCoefficients(network, refine), MattingNetworkCoefficients.input_spec(h, w)
            fmt = 'json' if name == 'onnxruntime' and has_pir() else 'pdmodel'     # pdmodel: oneDNN
            folder = None
            if model.checkpoint:
                identity = {**describe(model), 'graph': 'MattingNetworkCoefficients', 'size': [h, w],
                            'refine': refine}
                folder = cached_export(layer, identity, fmt, name == 'onnxruntime', spec)
            options = {'tensorrt': backend.tensorrt} if name == 'inference' else {}
            cache[key] = create_backend(name, layer, folder, model.device, backend.threads, backend.precision,
                                        spec=spec, fmt=fmt, **options)
        return cache[key]

    def export_layer(self, model, network):
        ratio = model.options.downsample_ratio
        meta = {'model_type': 'rvm', 'backbone': model.backbone, 'refiner': model.options.refiner,
                'downsample_ratio': ratio, 'deploy': model.options.deploy}
        return MattingNetworkStep(network, ratio), None, meta

    def trainer(self, model_type):
        from training.rvm import RVMTraining
        return RVMTraining()
