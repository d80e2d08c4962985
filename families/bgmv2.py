"""BackgroundMattingV2: MattingBase / MattingRefine, a photo and its background plate in, alpha and foreground out."""
import dataclasses
import math
import os
from dataclasses import dataclass

import cv2
import numpy as np

from model import BGMV2_BACKBONES, REFINE_MODES, MattingBase, MattingRefine
from model.bgmv2 import BaseOutput, RefineOutput
from inference.backends import create_backend
from utils.options import boolean, checked, non_negative_int, option

from .base import Family

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIN_COARSE = 1           # smallest side of the coarse map; smaller inputs are padded up (and cropped back)


@dataclass(frozen=True)
class BGMv2Options:
    """The official scripts' --model-* options (spec/bgmv2.md 1.6; inference defaults)."""
    backbone_scale: float = option(0.25, '--model-backbone-scale',
                                   type=checked(float, lambda v: 0 < v <= 0.5, 'in (0, 0.5]'),
                                   help='mattingrefine: scale at which the base network sees the image (the default '
                                        'is the official value for HD; use 0.125 for 4K)',
                                   default_help="{default}, or the checkpoint's card (the demo model's sets its own)")
    refine_mode: str = option('sampling', '--model-refine-mode', choices=REFINE_MODES,
                              help='which patches the refiner re-predicts: the --model-refine-sample-pixels worst '
                                   '(sampling), those above --model-refine-threshold (thresholding), or all (full)')
    refine_sample_pixels: int = option(80_000, '--model-refine-sample-pixels', type=non_negative_int,
                                       help='pixels refined in sampling mode, in 4x4 patches (320000 for 4K)')
    refine_threshold: float = option(0.7, '--model-refine-threshold', type=float,
                                     help='error threshold of thresholding mode (the default is the official '
                                          'inference scripts\' value)')
    refine_kernel_size: int = option(3, '--model-refine-kernel-size', type=int, choices=(1, 3),
                                     help='refiner conv kernel size; the official weights use 3')
    refine_prevent_oversampling: bool = option(True, '--model-refine-prevent-oversampling', type=boolean,
                                               metavar='{true,false}',
                                               help='sampling mode: skip patches whose error is 0 (true) or always '
                                                    'refine --model-refine-sample-pixels (false)')


class BGMv2Runner:
    """Runs BGMv2 on N x H x W x 3 float arrays of any size through a backend of inference.backends (padded to a
    multiple of 4 and to the smallest size the network takes, cropped back) and returns full-resolution numpy
    outputs by name: pha, fgr and, when wanted, err (the coarse error map, upsampled) and ref (refined patches)."""

    def __init__(self, model_type, backend, minimum, wanted):
        self.refine = model_type == 'mattingrefine'
        self.backend, self.minimum, self.wanted = backend, minimum, set(wanted)
        self.output = RefineOutput if self.refine else BaseOutput

    def reset(self):
        """Frames are independent: nothing to carry from one clip to the next."""

    def prepare(self, src, bgr):
        """N x H x W x 3 src and bgr -> padded N x 3 x H' x W' arrays the network takes."""
        n, h, w = src.shape[:3]
        pad = ((0, 0), (0, max(self.minimum, h + -h % 4) - h), (0, max(self.minimum, w + -w % 4) - w), (0, 0))
        nchw = lambda a: np.ascontiguousarray(np.pad(a, pad, mode='edge').transpose(0, 3, 1, 2))  # noqa: E731
        return nchw(src), nchw(bgr)

    def step(self, inputs):
        return self.output._make(self.backend(*inputs))

    def __call__(self, src, bgr):
        h, w = src.shape[1:3]
        out = self.step(self.prepare(src, bgr))
        crop = lambda t: t[:, :, :h, :w].transpose(0, 2, 3, 1)                  # noqa: E731
        result = {'pha': crop(out.pha)[..., 0], 'fgr': crop(out.fgr)}
        if 'err' in self.wanted:                    # the coarse error map at full resolution
            err = out.err_sm if self.refine else out.err
            size = (out.pha.shape[3], out.pha.shape[2])
            result['err'] = crop(np.stack([cv2.resize(e[0], size, interpolation=cv2.INTER_LINEAR)
                                           for e in err])[:, None])[..., 0]
        if 'ref' in self.wanted and self.refine:     # each value of ref_sm is a 4x4 patch
            result['ref'] = crop(np.repeat(np.repeat(out.ref_sm, 4, axis=2), 4, axis=3))[..., 0]
        return result


class BGMv2(Family):
    name = 'bgmv2'
    title = 'BackgroundMattingV2'
    model_types = ('mattingbase', 'mattingrefine')
    backbones = BGMV2_BACKBONES
    default_backbone = 'mobilenetv2'
    options = BGMv2Options
    partner = 'bgr'
    demo_checkpoint = os.path.join(ROOT, 'model', 'weights', 'bgmv2_mobilenetv2_demo.pdparams')
    protocols = ('image', 'video')
    # mobilenetv2 HD 257 ms against 423 in Paddle Inference (oneDNN), resnet50 481 against 698; 4K alike
    auto_backends = ('onnxruntime', 'inference')
    signatures = (
        ('mattingrefine', 'mobilenetv2', ('refiner.conv1.', 'backbone.features.'), {}),
        ('mattingrefine', 'resnet101', ('refiner.conv1.', 'backbone.layer3.22.'), {}),
        ('mattingrefine', 'resnet50', ('refiner.conv1.', 'backbone.layer4.'), {}),
        ('mattingbase', 'mobilenetv2', ('decoder.conv4.', 'backbone.features.'), {}),
        ('mattingbase', 'resnet101', ('decoder.conv4.', 'backbone.layer3.22.'), {}),
        ('mattingbase', 'resnet50', ('decoder.conv4.', 'backbone.layer4.'), {}),
    )

    def build(self, model):
        if model.model_type == 'mattingbase':
            return MattingBase(model.backbone)
        o = model.options
        return MattingRefine(model.backbone, o.backbone_scale, o.refine_mode, o.refine_sample_pixels,
                             o.refine_threshold, o.refine_kernel_size, o.refine_prevent_oversampling)

    def outputs(self, model_type):
        return RefineOutput if model_type == 'mattingrefine' else BaseOutput

    def output_types(self, model_type):
        return ('com', 'pha', 'fgr', 'err', 'ref') if model_type == 'mattingrefine' else ('com', 'pha', 'fgr', 'err')

    def runner(self, model, network, backend, frames, wanted=('pha', 'fgr')):
        """`backend` a BackendConfig (Family.backend_for)."""
        name = self.backend_for(backend, model, frames)
        scale = model.options.backbone_scale if model.model_type == 'mattingrefine' else 1
        minimum = math.ceil(MIN_COARSE / scale / 4) * 4
        options = {'tensorrt': backend.tensorrt} if name == 'inference' else {}
        return BGMv2Runner(model.model_type, create_backend(name, network, backend.export_dir, model.device,
                                                            backend.threads, backend.precision, **options),
                           minimum, wanted)

    def export_layer(self, model, network):
        meta = {'model_type': model.model_type, 'backbone': model.backbone}
        if model.model_type == 'mattingrefine':
            meta.update(dataclasses.asdict(model.options))
        return network, None, meta

    def trainer(self, model_type):
        from training.bgmv2 import BGMv2Training
        return BGMv2Training(model_type)
