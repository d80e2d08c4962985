"""BGMv2 training (spec/bgmv2.md 2.3-2.6): the base stage (MattingBase) and the refine stage (MattingRefine).

The task the loop of training/loop.py runs: samples of (foreground, alpha) pairs over backgrounds with the
official augmentations, Adam with one learning rate per module, the official losses plus RVM's Laplacian loss,
validation on whole composites (trimap-free DIM metrics) and a VisualDL image grid.
"""
from dataclasses import dataclass

import cv2
import numpy as np
import paddle

from dataset.config import background_split, load_roots, matting_split
from dataset.augmentation import PLATE_JITTER
from dataset.matting import Collate, EpochSampler, MattingDataset
from utils.io import to_uint8
from utils.losses import LossWeights, base_loss, refine_loss
from utils.metrics import dim_metrics
from utils.options import checked, non_negative, option

from .loop import Task, module_adam

MODULES = ('backbone', 'aspp', 'decoder', 'refiner')
MIN_RESOLUTION = 32
# the official train_base.py / train_refine.py values per stage
DEFAULTS = {
    'mattingbase': dict(lr_backbone=1e-4, lr_aspp=5e-4, lr_decoder=5e-4, lr_refiner=0, batch_size=8,
                        resolution=512, image_interval=2000, valid_interval=5000, checkpoint_interval=5000),
    'mattingrefine': dict(lr_backbone=5e-5, lr_aspp=5e-5, lr_decoder=1e-4, lr_refiner=3e-4, batch_size=4,
                          resolution=2048, image_interval=1000, valid_interval=2000, checkpoint_interval=2000),
}


def by_stage(key):
    return ', '.join(f'{model_type} {values[key]}' for model_type, values in DEFAULTS.items())


def lr_option(module):
    return option(None, f'--lr-{module}', type=non_negative, help=f'learning rate of the {module}; 0 freezes it',
                  default_help=by_stage(f'lr_{module}'))


def loss_option(term, what):
    return option(getattr(LossWeights, term), f'--loss-{term}', type=non_negative,
                  help=f'weight of the {what} loss term; 0 switches it off')


@dataclass(frozen=True)
class BGMv2TrainOptions:
    lr_backbone: float = lr_option('backbone')
    lr_aspp: float = lr_option('aspp')
    lr_decoder: float = lr_option('decoder')
    lr_refiner: float = lr_option('refiner')
    loss_pha: float = loss_option('pha', 'L1 alpha')
    loss_sobel: float = loss_option('sobel', 'L1 alpha-gradient (Sobel)')
    loss_fgr: float = loss_option('fgr', 'L1 foreground')
    loss_err: float = loss_option('err', 'error-map MSE')
    loss_laplacian: float = loss_option('laplacian', 'Laplacian-pyramid alpha (not in the official code)')
    freeze_bn_statistics: bool = option(False, '--freeze-bn-statistics', action='store_true',
                                        help='BatchNorm layers normalise with their running statistics and keep '
                                             'them (scale and shift still train): for fine-tuning with small '
                                             'batches (the official code updates them)')
    plate_jitter: float = option(PLATE_JITTER, '--plate-jitter',
                                 type=checked(float, lambda v: 0 <= v <= 1, 'in [0, 1]'),
                                 help="chance of the plate's colour jitter in the per-batch augmentation (the "
                                      'official value; lower it to teach the network to trust a clean plate)')


class BGMv2Training(Task):
    options = BGMv2TrainOptions

    def __init__(self, model_type):
        self.model_type = model_type
        self.defaults = DEFAULTS[model_type]
        self.refine = model_type == 'mattingrefine'

    def check(self, data, run):
        if data.resolution < MIN_RESOLUTION:        # crops of a few pixels leave the losses nothing to measure
            raise ValueError(f'--resolution must be at least {MIN_RESOLUTION}, got {data.resolution}')
        if self.refine and data.resolution % 8:
            raise ValueError(f'--resolution must be a multiple of 8 for mattingrefine, got {data.resolution}')

    # ------------------------------------------------------------ data

    def describe_data(self, data, options):
        roots = load_roots(data.dataset_config, data.dataset_root)
        pairs = matting_split(roots, data.dataset_name, 'train')
        backgrounds = background_split(roots, data.background_name, 'train')
        return f'{data.dataset_name}: {len(pairs)} training pairs; {data.background_name}: {len(backgrounds)} backgrounds'

    def datasets(self, data, run, options, rank, world):
        roots = load_roots(data.dataset_config, data.dataset_root)
        train = MattingDataset(matting_split(roots, data.dataset_name, 'train'),
                               background_split(roots, data.background_name, 'train'), data.resolution, train=True,
                               seed=run.seed, pair_scale=(0.3, 1) if self.refine else (0.4, 1))
        if len(train) < run.batch_size * world:
            raise ValueError(f'{data.dataset_name}: {len(train)} samples, fewer than one batch of {run.batch_size} '
                             f'per process')
        sampler = EpochSampler(len(train), run.batch_size, seed=run.seed, rank=rank, world=world)
        collate = Collate(run.seed, True, 4 if self.refine else 1, options.plate_jitter)
        try:
            valid = MattingDataset(matting_split(roots, data.valid_dataset_name, 'valid', repeat=False),
                                   background_split(roots, data.valid_background_name, 'valid'), data.resolution,
                                   train=False, seed=run.seed, pair_scale=(0.3, 1))
        except ValueError as e:
            return train, sampler, collate, None, f'no validation: {e}'
        n = min(data.valid_samples, len(valid))
        picks = [[(0, i * len(valid) // n)] for i in range(n)]     # evenly spaced, as the official SampleDataset
        return train, sampler, collate, (valid, picks, Collate(run.seed, augment=False)), None

    # ------------------------------------------------------------ model, optimiser, step

    def optimizer(self, network, options):
        return module_adam(network, {(name,): getattr(options, f'lr_{name}') for name in MODULES})

    def learning_rates(self, network, options):
        return {name: getattr(options, f'lr_{name}') for name in MODULES if hasattr(network, name)}

    def train_mode(self, network, single_sample, options):
        """network.train(), except the BN of ASPP's image-pooling branch when a device holds one sample:
        it would normalise a single value per channel (torch refuses; Paddle returns garbage), so it keeps
        using its running statistics; with --freeze-bn-statistics every BN does."""
        network.train()
        if options.freeze_bn_statistics:
            for layer in network.sublayers():
                if isinstance(layer, paddle.nn.BatchNorm2D):
                    layer.eval()
        elif single_sample:
            network.aspp.convs[-1][2].eval()

    def single_sample_note(self):
        return 'batch of 1 per device: the BatchNorm of ASPP image pooling keeps its running statistics'

    def loss(self, outputs, batch, options):
        true_pha, true_fgr = batch[0], batch[1]
        w = LossWeights(options.loss_pha, options.loss_sobel, options.loss_fgr, options.loss_err,
                        options.loss_laplacian)
        o = type(outputs)._make(x.astype('float32') for x in outputs)
        if self.refine:
            return refine_loss(o.pha, o.fgr, o.pha_sm, o.fgr_sm, o.err_sm, true_pha, true_fgr, w)
        return base_loss(o.pha, o.fgr, o.err, true_pha, true_fgr, w)

    def forward(self, net, batch):
        """batch: [true_pha, true_fgr, src, bgr]."""
        return net(batch[2], batch[3])

    # ------------------------------------------------------------ validation, images

    def validate(self, network, batches):
        """Mean SAD (/1000), MSE, Grad, Conn of the predicted alpha over whole images (trimap-free)."""
        rows = []
        with paddle.no_grad():
            for true_pha, _, src, bgr in batches:
                pha = network(paddle.to_tensor(src), paddle.to_tensor(bgr)).pha.numpy()[0, 0]
                gt = true_pha[0, 0]
                rows.append(dim_metrics(pha, gt, np.full(gt.shape, 128, np.uint8)))
        return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}

    def image_grid(self, network, batch):
        """First sample: composite | background | true alpha / predicted alpha | foreground | error."""
        with paddle.no_grad():
            out = network(batch[2][:1], batch[3][:1])
        true_pha, _, src, bgr = (x[0].numpy().transpose(1, 2, 0) for x in batch)
        pha, fgr = (x[0].numpy().transpose(1, 2, 0) for x in (out.pha, out.fgr))
        err = (out.err_sm if self.refine else out.err)[0, 0].numpy()
        err = cv2.resize(err, pha.shape[1::-1], interpolation=cv2.INTER_NEAREST)[..., None]
        gray = lambda a: np.repeat(a, 3, axis=2)   # noqa: E731
        return to_uint8(np.vstack([np.hstack([src, bgr, gray(true_pha)]),
                                   np.hstack([gray(pha), fgr * pha, gray(err)])]))
