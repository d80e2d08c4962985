"""Running a matting network on images: padding, batching, recurrent state, outputs by name.

Entry points (predict.py, eval.py) hand in float32 N x H x W x 3 arrays and get numpy mattes back.
"""
import cv2
import numpy as np
import paddle

from utils.inference import create_backend
from utils.options import model_from_args

OUTPUT_TYPES = ('com', 'pha', 'fgr', 'err', 'ref')
AUTO_FRAMES = 8


class BGMv2Runner:
    """Runs BGMv2 on N x H x W x 3 float arrays of any size (padded to a multiple of 4 and cropped
    back) through a backend of utils.inference, and returns full-resolution numpy outputs by name."""
    types = OUTPUT_TYPES

    def __init__(self, args, backend):
        self.backend = backend
        self.refine = args.model_type == 'mattingrefine'
        if not self.refine:
            self.types = ('com', 'pha', 'fgr', 'err')

    def reset(self):
        """Frames are independent: nothing to carry from one clip to the next."""

    def __call__(self, src, bgr):
        n, h, w = src.shape[:3]
        pad = ((0, 0), (0, -h % 4), (0, -w % 4), (0, 0))
        nchw = lambda a: np.ascontiguousarray(np.pad(a, pad, mode='edge').transpose(0, 3, 1, 2))
        out = self.backend(nchw(src), nchw(bgr))
        if self.refine:
            pha, fgr, _, _, err, ref = out
            ref = np.repeat(np.repeat(ref, 4, axis=2), 4, axis=3)         # each value is a 4x4 patch
        else:
            pha, fgr, err, _ = out
            ref = None
        crop = lambda t: t[:, :, :h, :w].transpose(0, 2, 3, 1)
        size = (pha.shape[3], pha.shape[2])                                # the coarse error map, upsampled
        err = np.stack([cv2.resize(e[0], size, interpolation=cv2.INTER_LINEAR) for e in err])[:, None]
        return {'pha': crop(pha)[..., 0], 'fgr': crop(fgr), 'err': crop(err)[..., 0],
                'ref': None if ref is None else crop(ref)[..., 0]}


class RVMRunner:
    """Robust Video Matting: no plate; the recurrent state runs through the frames of a clip."""
    types = ('com', 'pha', 'fgr')

    def __init__(self, args, model):
        self.model = model
        self.ratio = args.downsample_ratio
        self.fp16 = args.precision == 'fp16'
        self.reset()

    def reset(self):
        self.state, self.clip_ratio = [None] * 4, None

    def __call__(self, src, bgr=None):
        h, w = src.shape[1:3]
        if self.clip_ratio is None:      # the official automatic rule, fixed for the whole clip
            self.clip_ratio = self.ratio or min(512 / max(h, w), 1)
        frames = paddle.to_tensor(np.ascontiguousarray(src.transpose(0, 3, 1, 2))[None])   # 1 x T x 3 x H x W
        with paddle.no_grad(), paddle.amp.auto_cast(enable=self.fp16, level='O1'):
            fgr, pha, *self.state = self.model(frames, *self.state, downsample_ratio=self.clip_ratio)
        return {'pha': pha.astype('float32').numpy()[0, :, 0], 'fgr': fgr.astype('float32').numpy()[0].transpose(0, 2, 3, 1)}


def create_runner(args, frames=0):
    """The runner for the parsed options. `--backend auto` takes Paddle Inference (oneDNN) on CPU once there are
    more than AUTO_FRAMES frames to matte: exporting costs seconds, and dygraph convolutions are several
    times slower on CPU."""
    model = model_from_args(args)
    if args.model_type == 'rvm':
        if args.backend not in ('auto', 'dygraph'):
            raise ValueError(f"--model-type rvm runs in dygraph only here (its export takes a fixed "
                             f"downsample ratio: tools/export.py); got --backend {args.backend}")
        return RVMRunner(args, model)
    backend = args.backend
    if backend == 'auto':
        backend = 'inference' if args.device == 'cpu' and frames > AUTO_FRAMES else 'dygraph'
    return BGMv2Runner(args, create_backend(backend, model, None, args.device, args.threads, args.precision))
