"""IndexNet Matting: a photo and its trimap in, alpha out (foreground colours estimated from the alpha)."""
import collections
from dataclasses import dataclass

import numpy as np
from paddle.static import InputSpec

from inference.backends import create_backend, has_pir
from model import IndexNetMatting
from utils.foreground import estimate_foreground
from utils.trimap import align32, normalise, restore

from .base import Family

IndexNetOutput = collections.namedtuple('IndexNetOutput', 'pha')     # the network's one output: raw alpha
INPUT_SPEC = [InputSpec([None, 4, None, None], 'float32', 'x')]       # normalised RGB + trimap


@dataclass(frozen=True)
class IndexNetOptions:
    """The released network has no inference options."""


class IndexNetRunner:
    """The official inference protocol on N x H x W x 3 images and their N x H x W uint8 trimaps: normalise,
    resize to multiples of 32, forward, cubic back to the input size, clip, the trimap's known regions pasted,
    8-bit by truncation. Returns {'pha', 'fgr'} (fgr by blur-fusion from the alpha)."""

    def __init__(self, backend, wanted):
        self.backend, self.wanted = backend, set(wanted)

    def reset(self):
        """Images are independent."""

    def prepare(self, src, trimap):
        return np.ascontiguousarray(np.stack([align32(normalise(s, t)) for s, t in zip(src, trimap)])
                                    .transpose(0, 3, 1, 2))

    def step(self, inputs):
        return IndexNetOutput._make(self.backend(inputs))

    def __call__(self, src, trimap):
        raw = self.step(self.prepare(src, trimap)).pha[:, 0]
        pha = np.stack([restore(r, t) for r, t in zip(raw, trimap)])
        result = {'pha': pha}
        if self.wanted & {'fgr', 'com'}:
            result['fgr'] = np.stack([estimate_foreground(s, p) for s, p in zip(src, pha)])
        return result


class IndexNet(Family):
    name = 'indexnet'
    title = 'IndexNet Matting'
    model_types = ('indexnet',)
    backbones = ('mobilenetv2',)
    default_backbone = 'mobilenetv2'
    options = IndexNetOptions
    partner = 'trimap'
    protocols = ('trimap',)
    export_formats = ('pdmodel', 'json')   # pdmodel first: oneDNN runs it (6.2 s per HD image against 40 s as json)
    auto_frames = 1             # an HD image: Paddle Inference 4.5 s, ONNX Runtime 4.8, dygraph 7.3
    signatures = (('indexnet', 'mobilenetv2', ('index0.indexnet1.', 'dconv_pp.', 'decoder_layer0.'), {}),)

    def build(self, model):
        return IndexNetMatting()

    def outputs(self, model_type):
        return IndexNetOutput

    def output_types(self, model_type):
        return ('com', 'pha', 'fgr')

    def runner(self, model, network, backend, frames, wanted=('pha', 'fgr')):
        """`backend` a BackendConfig (Family.backend_for)."""
        name = self.backend_for(backend, model, frames)
        options = {'tensorrt': backend.tensorrt} if name == 'inference' else {}
        fmt = 'json' if name == 'onnxruntime' and has_pir() else 'pdmodel'   # paddle2onnx converts the PIR graph
        return IndexNetRunner(create_backend(name, network, backend.export_dir, model.device, backend.threads,
                                             backend.precision, spec=INPUT_SPEC, fmt=fmt, **options), wanted)

    def example_inputs(self, n, h, w, rng):
        """Images and trimaps with about a fifth of the pixels unknown."""
        trimap = np.choose(rng.integers(0, 5, (n, h, w)) % 3, [0, 128, 255]).astype(np.uint8)
        return rng.random((n, h, w, 3), dtype=np.float32), trimap

    def export_layer(self, model, network):
        return network, INPUT_SPEC, {'model_type': 'indexnet', 'backbone': 'mobilenetv2'}

    def trainer(self, model_type):
        from training.indexnet import IndexNetTraining
        return IndexNetTraining()
