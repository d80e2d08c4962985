"""Running a matting network on images: padding, batching, recurrent state, outputs by name.

Entry points (predict.py, eval.py) hand in float32 N x H x W x 3 arrays and get numpy mattes back.
"""
import numpy as np
import paddle

from utils.options import model_from_args

OUTPUT_TYPES = ('com', 'pha', 'fgr', 'err', 'ref')


class BGMv2Runner:
    """Runs BGMv2 on N x H x W x 3 float arrays of any size (padded to a multiple of 4 and cropped
    back) and returns full-resolution numpy outputs by name."""
    types = OUTPUT_TYPES

    def __init__(self, args, model):
        self.model = model
        self.refine = args.model_type == 'mattingrefine'
        self.fp16 = args.precision == 'fp16'
        if not self.refine:
            self.types = ('com', 'pha', 'fgr', 'err')

    def reset(self):
        """Frames are independent: nothing to carry from one clip to the next."""

    def __call__(self, src, bgr):
        n, h, w = src.shape[:3]
        ph, pw = -h % 4, -w % 4
        pad = ((0, 0), (0, ph), (0, pw), (0, 0))
        to_tensor = lambda a: paddle.to_tensor(np.ascontiguousarray(np.pad(a, pad, mode='edge').transpose(0, 3, 1, 2)))
        with paddle.no_grad(), paddle.amp.auto_cast(enable=self.fp16, level='O1'):
            out = self.model(to_tensor(src), to_tensor(bgr))
        if self.refine:
            pha, fgr, _, _, err, ref = out
            size = [h + ph, w + pw]
            err = paddle.nn.functional.interpolate(err, size=size, mode='bilinear', align_corners=False)
            ref = paddle.nn.functional.interpolate(ref, size=size, mode='nearest')
        else:
            pha, fgr, err, _ = out
            ref = None
        crop = lambda t: t.astype('float32').numpy()[:, :, :h, :w].transpose(0, 2, 3, 1)
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


def create_runner(args):
    model = model_from_args(args)
    return (RVMRunner if args.model_type == 'rvm' else BGMv2Runner)(args, model)
