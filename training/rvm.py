"""Robust Video Matting training (spec/rvm.md 2): the task the loop of training/loop.py runs.

One step is up to three passes, each its own forward, loss and optimiser step, as in the official train.py:
1. matting at low resolution (`--seq-length-lr` frames of `--resolution` px, ratio 1: no refiner);
2. with `--train-hr`, matting at high resolution (`--seq-length-hr` frames of `--resolution-hr` px, ratio
   `--downsample-ratio-hr`: the refiner learns);
3. segmentation: even steps a batch of YouTubeVIS clips, odd steps COCO + Supervisely images as one-frame clips
   (B * T of them), `segmentation_pass=True`.
Every pass starts from zero recurrent state and gets one random crop (h, w each in [S/2, S), resized square,
centre-cropped) for all its frames. The data of all passes of a step are loaded together in the data workers,
keyed by the step (dataset/passes.py), so a resumed run sees exactly what an uninterrupted one would.
Adam in six groups: backbone, ASPP, decoder (with both projections, the official fix) and refiner; rate 0
freezes a group. Losses: utils/losses.rvm_matting_loss and rvm_segmentation_loss.
"""
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import paddle

from dataset.config import load_roots, parse_names, split_dir
from dataset.folders import image_files
from dataset.motion import TRAIN_IMAGEMATTE, TRAIN_VIDEOMATTE, VALID
from dataset.passes import StepCollate, StepData, StepSampler
from dataset.segmentation import ClipSegmentation, ImageSegmentation, image_rows, youtubevis
from dataset.video_matting import Backgrounds, ImageMatteClips, VideoMatteClips, frame_clips, imagematte_pairs, \
    videomatte_split
from utils.io import to_uint8
from utils.losses import rvm_matting_loss, rvm_segmentation_loss
from utils.options import non_negative, option, positive_int, ratio

from .loop import Task, module_adam

MODULES = {'backbone': ('backbone',), 'aspp': ('aspp',), 'decoder': ('decoder', 'project_mat', 'project_seg'),
           'refiner': ('refiner',)}
DEFAULTS = dict(lr_backbone=1e-4, lr_aspp=2e-4, lr_decoder=2e-4, lr_refiner=0, batch_size=1, resolution=512,
                image_interval=500, valid_interval=2000, checkpoint_interval=500)


def lr_option(module, what):
    return option(None, f'--lr-{module}', type=non_negative, help=f'learning rate of {what}; 0 freezes it',
                  default_help=f"rvm {DEFAULTS[f'lr_{module}']}")


@dataclass(frozen=True)
class RVMTrainOptions:
    lr_backbone: float = lr_option('backbone', 'the encoder')
    lr_aspp: float = lr_option('aspp', 'LR-ASPP')
    lr_decoder: float = lr_option('decoder', 'the decoder and both projections')
    lr_refiner: float = lr_option('refiner', 'the refiner (deep guided filter)')
    matting_layout: str = option('videomatte', '--matting-layout', choices=('videomatte', 'imagematte'),
                                 help='videomatte: VideoMatte240K clips (stages 1-3); imagematte: still '
                                      'foregrounds repeated over the frames (stage 4)')
    seq_length_lr: int = option(15, '--seq-length-lr', type=positive_int,
                                help='frames per low-resolution clip (official stages: 15, 50, 40, 40)')
    seq_length_hr: int = option(6, '--seq-length-hr', type=positive_int, help='frames per high-resolution clip')
    train_hr: bool = option(False, '--train-hr', action='store_true',
                            help='add the high-resolution pass, which trains the refiner (stages 3-4)')
    resolution_hr: int = option(2048, '--resolution-hr', type=positive_int,
                                help='side of the high-resolution samples; crops are 1/2 to 1 of it')
    downsample_ratio_hr: float = option(0.25, '--downsample-ratio-hr', type=ratio,
                                        help='downsample ratio of the high-resolution pass')
    background_video_name: str = option('background_videos', '--background-video-name',
                                        help='background video clips (folders of frames); absent: image '
                                             'backgrounds only')
    seg_image_names: str = option('coco_panoptic,supervisely', '--seg-image-names',
                                  help='segmentation images: COCO panoptic and/or Supervisely layouts')
    seg_clip_name: str = option('youtubevis', '--seg-clip-name', help='segmentation clips (YouTubeVIS layout)')
    no_segmentation: bool = option(False, '--no-segmentation', action='store_true',
                                   help='no segmentation pass (it is also left out when its data are absent)')


class MattingPass(NamedTuple):
    fgr: paddle.Tensor          # B x T x 3 x H x W, true foreground
    pha: paddle.Tensor          # B x T x 1 x H x W, true alpha
    src: paddle.Tensor          # the composite fgr * pha + bgr * (1 - pha)
    ratio: float


class SegmentationPass(NamedTuple):
    img: paddle.Tensor          # B x T x 3 x H x W (images: B*T x 1 x 3 x H x W)
    seg: paddle.Tensor          # B x T x 1 x H x W in {0, 1}


def names(spec):
    return [name for name, _ in parse_names(spec)]


class RVMTraining(Task):
    options = RVMTrainOptions
    defaults = DEFAULTS
    unused_parameters = True        # the projection a pass does not use, the refiner at ratio 1

    def check(self, data, run):
        if data.resolution < 32:
            raise ValueError(f'--resolution must be at least 32, got {data.resolution}')

    # ------------------------------------------------------------ data

    def backgrounds(self, roots, data, options, split, size):
        """Backgrounds of a split: images and video clips, whichever exist (at least one)."""
        images, videos, missing = [], [], []
        for name in names(data.background_name if split == 'train' else data.valid_background_name):
            try:
                images += image_files(split_dir(roots, name, split))
            except ValueError as e:
                missing.append(str(e))
        try:
            videos = list(frame_clips(split_dir(roots, options.background_video_name, split)).values())
        except ValueError as e:
            missing.append(str(e))
        if not images and not videos:
            raise ValueError('no backgrounds: ' + '; '.join(missing))
        return Backgrounds(images, videos, size)

    def matting(self, roots, data, options, split, size, length, probabilities):
        """The matting clips of a split at `size` px, `length` frames."""
        name = data.dataset_name if split == 'train' else data.valid_dataset_name
        train = split == 'train'
        if options.matting_layout == 'imagematte':
            pairs = [p for n in names(name) for p in imagematte_pairs(split_dir(roots, n, split), split)]
            return ImageMatteClips(pairs, self.backgrounds(roots, data, options, split, size), size, length, train,
                                   probabilities)
        clips = {}
        for n in names(name):
            own = self.has_valid_folder(roots, n)       # else the official four clips are held back from train
            clips.update(videomatte_split(split_dir(roots, n, split if own else 'train'), split, own))
        return VideoMatteClips(clips, self.backgrounds(roots, data, options, split, size), size, length, train,
                               probabilities)

    @staticmethod
    def has_valid_folder(roots, name):
        try:
            split_dir(roots, name, 'valid')
            return True
        except ValueError:
            return False

    def segmentation(self, roots, data, options):
        """(clips dataset or None, images dataset or None, [notes on what is left out])."""
        if options.no_segmentation:
            return None, None, ['no segmentation pass (--no-segmentation)']
        notes, rows, clips = [], [], None
        for name in names(options.seg_image_names):
            try:
                rows += image_rows(split_dir(roots, name, 'train'))
            except ValueError as e:
                notes.append(f'segmentation images {name} left out: {e}')
        try:
            clips = ClipSegmentation(youtubevis(split_dir(roots, options.seg_clip_name, 'train')), data.resolution,
                                     options.seq_length_lr)
        except ValueError as e:
            notes.append(f'segmentation clips {options.seg_clip_name} left out: {e}')
        return clips, ImageSegmentation(rows, data.resolution) if rows else None, notes

    def sources(self, data, options):
        """{tag: dataset} of the training passes, and notes on what is left out."""
        roots = load_roots(data.dataset_config, data.dataset_root)
        probabilities = TRAIN_IMAGEMATTE if options.matting_layout == 'imagematte' else TRAIN_VIDEOMATTE
        sources = {'lr': self.matting(roots, data, options, 'train', data.resolution, options.seq_length_lr,
                                      probabilities)}
        if options.train_hr:
            sources['hr'] = self.matting(roots, data, options, 'train', options.resolution_hr, options.seq_length_hr,
                                         probabilities)
        clips, images, notes = self.segmentation(roots, data, options)
        if clips:
            sources['seg_clips'] = clips
        if images:
            sources['seg_images'] = images
        return sources, notes

    def describe_data(self, data, options):
        sources, notes = self.sources(data, options)
        return '; '.join([f'{data.dataset_name}: {len(sources["lr"])} training clips'] +
                         [f'{tag}: {len(d)} samples' for tag, d in sources.items() if tag != 'lr'] + notes)

    def datasets(self, data, run, options, rank, world):
        sources, notes = self.sources(data, options)
        if len(sources['lr']) < run.batch_size * world:
            raise ValueError(f'{data.dataset_name}: {len(sources["lr"])} clips, fewer than one batch of '
                             f'{run.batch_size} per process')
        train = StepData(run.seed, sources)
        sampler = StepSampler(len(train), run.batch_size, {t: len(d) for t, d in sources.items() if t != 'lr'},
                              options.seq_length_lr, seed=run.seed, rank=rank, world=world)
        try:
            roots = load_roots(data.dataset_config, data.dataset_root)
            clips = self.matting(roots, data, options, 'valid', data.resolution, options.seq_length_lr, VALID)
            valid = StepData(run.seed, {'valid': clips})
        except ValueError as e:
            return train, sampler, StepCollate(run.seed), None, '; '.join(notes + [f'no validation: {e}'])
        n = min(data.valid_samples, len(valid.sources['valid']))
        picks = [[('valid', 0, i * len(valid.sources['valid']) // n)] for i in range(n)]
        return train, sampler, StepCollate(run.seed), (valid, picks, StepCollate(run.seed, crop=False)), \
            '; '.join(notes)

    # ------------------------------------------------------------ model, optimiser, passes

    def optimizer(self, network, options):
        return module_adam(network, {modules: getattr(options, f'lr_{group}') for group, modules in MODULES.items()})

    def learning_rates(self, network, options):
        return {group: getattr(options, f'lr_{group}') for group in MODULES}

    def passes(self, batch, options):
        """The step's passes, in the official order: low-resolution matting, high-resolution matting, segmentation."""
        passes = [('lr_', MattingPass(*batch[:3], 1))]
        rest = batch[3:]
        if options.train_hr:
            passes.append(('hr_', MattingPass(*rest[:3], options.downsample_ratio_hr)))
            rest = rest[3:]
        if rest:
            passes.append(('seg_', SegmentationPass(*rest)))
        return passes

    def forward(self, net, batch):
        if isinstance(batch, SegmentationPass):
            return net(batch.img, segmentation_pass=True)
        return net(batch.src, downsample_ratio=batch.ratio)

    def loss(self, outputs, batch, options):
        if isinstance(batch, SegmentationPass):
            return rvm_segmentation_loss(outputs.seg.astype('float32'), batch.seg)
        return rvm_matting_loss(outputs.fgr.astype('float32'), outputs.pha.astype('float32'), batch.fgr, batch.pha)

    # ------------------------------------------------------------ validation, images

    def validate(self, network, batches):
        """The official validation: the matting loss (total and terms) of whole clips at ratio 1, averaged."""
        rows = []
        with paddle.no_grad():
            for fgr, pha, src in batches:
                out = network(paddle.to_tensor(src), downsample_ratio=1)
                total, terms = rvm_matting_loss(out.fgr, out.pha, paddle.to_tensor(fgr), paddle.to_tensor(pha))
                rows.append({'total': float(total), **{k: float(v) for k, v in terms.items()}})
        return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}

    def image_grid(self, network, batch):
        """First low-resolution clip, three frames as rows: composite | true alpha | predicted alpha | fgr x alpha."""
        with paddle.no_grad():
            out = network(batch[2][:1], downsample_ratio=1)
        src, true_pha = batch[2][0].numpy(), batch[1][0].numpy()
        pha, fgr = out.pha[0].numpy(), out.fgr[0].numpy()
        gray = lambda a: np.repeat(a, 3, axis=0)   # noqa: E731
        frames = sorted({0, len(src) // 2, len(src) - 1})
        rows = [np.hstack([x.transpose(1, 2, 0) for x in (src[t], gray(true_pha[t]), gray(pha[t]), fgr[t] * pha[t])])
                for t in frames]
        return to_uint8(np.vstack(rows))
