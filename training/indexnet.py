"""IndexNet training (spec/indexnet.md 2): trimap samples with the official crop rule, Adam in two groups (the
index networks, ASPP, decoder and head at --lr; the MobileNetV2 encoder at --lr / --backbone-lr-mult), a step
schedule at --milestones, the weighted alpha + composition loss, validation with the DIM metrics.

Encoder BatchNorm: the official PyTorch code means to freeze it but calls net.train() every epoch, so its BN
layers train; the MindSpore port really freezes them (no gradients, running statistics). --freeze-encoder-bn
chooses the latter; the default follows the official code.
"""
from dataclasses import dataclass

import numpy as np
import paddle

from dataset.config import background_split, load_roots, parse_names, split_dir
from dataset.folders import find_pairs
from dataset.matting import EpochSampler
from dataset.trimap import TrimapCollate, TrimapDataset, composite_rows, is_composite_set
from utils.io import to_uint8
from utils.losses import indexnet_loss
from utils.metrics import dim_metrics
from utils.options import non_negative, option, positive_int

from .loop import Task

DEFAULTS = dict(batch_size=16, resolution=320, image_interval=500, valid_interval=2000, checkpoint_interval=2000)
HIGH_LR = ('dconv', 'pred', 'index')        # the official name filter: decoder, ASPP (dconv_pp), head, index nets


@dataclass(frozen=True)
class IndexNetTrainOptions:
    lr: float = option(0.01, '--lr', type=non_negative, help='learning rate of the index networks, ASPP, decoder '
                                                             'and head (Adam, no weight decay)')
    backbone_lr_mult: float = option(100.0, '--backbone-lr-mult', type=non_negative,
                                     help='the encoder learns at --lr divided by this')
    milestones: tuple = option((20, 26), '--milestones', type=positive_int, nargs='+', metavar='EPOCH',
                               help='epochs (counted from 0) at which the learning rates drop by --lr-decay')
    lr_decay: float = option(0.1, '--lr-decay', type=non_negative, help='factor at each milestone')
    loss_wl: float = option(0.5, '--loss-wl', type=non_negative,
                            help='weight of the alpha term; the composition term gets 1 minus it')
    freeze_encoder_bn: bool = option(False, '--freeze-encoder-bn', action='store_true',
                                     help="freeze the encoder's BatchNorm layers as the MindSpore port does (the "
                                          "official PyTorch code trains them)")


def encoder_bn(network):
    return [layer for name, layer in network.named_sublayers()
            if name.startswith('layer') and isinstance(layer, paddle.nn.BatchNorm2D)]


class IndexNetTraining(Task):
    options = IndexNetTrainOptions
    defaults = DEFAULTS

    def check(self, data, run):
        if data.resolution % 32 or data.resolution < 64:
            raise ValueError(f'--resolution must be a multiple of 32 and at least 64, got {data.resolution}')

    # ------------------------------------------------------------ data

    def sources(self, data, split):
        """(composite rows, (fg, alpha) pairs, backgrounds) of a split: composites when its folder holds them."""
        roots = load_roots(data.dataset_config, data.dataset_root)
        name_spec = data.dataset_name if split == 'train' else data.valid_dataset_name
        rows, pairs = [], []
        for name, k in parse_names(name_spec):
            folder = split_dir(roots, name, split)
            if is_composite_set(folder):
                rows += composite_rows(folder) * (k if split == 'train' else 1)
            else:
                pairs += find_pairs(folder) * (k if split == 'train' else 1)
        if rows and pairs:
            raise ValueError(f"{name_spec}: mixes composited sets and (fg, alpha) sets; train on one kind")
        backgrounds = [] if rows else background_split(
            roots, data.background_name if split == 'train' else data.valid_background_name, split)
        return rows, pairs, backgrounds

    def describe_data(self, data, options):
        rows, pairs, backgrounds = self.sources(data, 'train')
        if rows:
            return f'{data.dataset_name}: {len(rows)} training pairs (pre-rendered composites)'
        return (f'{data.dataset_name}: {len(pairs)} training pairs; {data.background_name}: {len(backgrounds)} '
                f'backgrounds (composited on the fly)')

    def datasets(self, data, run, options, rank, world):
        rows, pairs, backgrounds = self.sources(data, 'train')
        train = TrimapDataset(data.resolution, True, run.seed, pairs, backgrounds, rows)
        if len(train) < run.batch_size * world:
            raise ValueError(f'{data.dataset_name}: {len(train)} samples, fewer than one batch of {run.batch_size} '
                             f'per process')
        sampler = EpochSampler(len(train), run.batch_size, seed=run.seed, rank=rank, world=world)
        try:
            rows, pairs, backgrounds = self.sources(data, 'valid')
            valid = TrimapDataset(data.resolution, False, run.seed, pairs, backgrounds, rows)
        except ValueError as e:
            return train, sampler, TrimapCollate(), None, f'no validation: {e}'
        n = min(data.valid_samples, len(valid))
        picks = [[(0, i * len(valid) // n)] for i in range(n)]
        return train, sampler, TrimapCollate(), (valid, picks, TrimapCollate()), None

    # ------------------------------------------------------------ model, optimiser, step

    def optimizer(self, network, options):
        frozen = {id(p) for layer in encoder_bn(network) for p in layer.parameters()} \
            if options.freeze_encoder_bn else set()
        high, low = [], []
        for name, param in network.named_parameters():
            if not param.trainable:
                continue                                    # BatchNorm running statistics
            if id(param) in frozen:
                param.stop_gradient = True
                continue
            (high if any(key in name for key in HIGH_LR) else low).append(param)
        groups = [{'params': high, 'learning_rate': 1.0}]
        if low and options.backbone_lr_mult > 0:
            groups.append({'params': low, 'learning_rate': 1 / options.backbone_lr_mult})
        return paddle.optimizer.Adam(learning_rate=options.lr, parameters=groups)

    def start_epoch(self, optimizer, options, epoch):
        """The step schedule: --lr times --lr-decay for every milestone reached (the official one decays an epoch
        early, as it steps its scheduler at the start of each epoch; this is the schedule it states)."""
        optimizer.set_lr(options.lr * options.lr_decay ** sum(epoch >= m for m in options.milestones))

    def learning_rates(self, network, options):
        return {'decoder': options.lr, 'encoder': options.lr / options.backbone_lr_mult
                if options.backbone_lr_mult else 0.0}

    def train_mode(self, network, single_sample, options):
        network.train()
        if options.freeze_encoder_bn:
            for layer in encoder_bn(network):
                layer.eval()

    def forward(self, net, batch):
        return net(batch[0])

    def loss(self, outputs, batch, options):
        _, alpha, fgr, bgr, merged, mask = batch
        total, alpha_term, comp_term = indexnet_loss(outputs.astype('float32'), alpha, fgr, bgr, merged, mask,
                                                     wl=options.loss_wl)
        return total, {'alpha': alpha_term, 'composition': comp_term}

    # ------------------------------------------------------------ validation, images

    def validate(self, network, batches):
        """Mean SAD (/1000), MSE, Grad, Conn of the clipped alpha over the unknown region of the crops' trimaps."""
        rows = []
        with paddle.no_grad():
            for x, alpha, *_, mask in batches:
                pred = np.clip(network(paddle.to_tensor(x)).numpy()[0, 0], 0, 1)
                trimap = np.where(mask[0, 0] > 0, 128, np.where(alpha[0, 0] >= 1, 255, 0)).astype(np.uint8)
                rows.append(dim_metrics(pred, alpha[0, 0], trimap))
        return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}

    def image_grid(self, network, batch):
        """First sample: composite | trimap | true alpha / predicted alpha | its error | foreground."""
        with paddle.no_grad():
            pred = np.clip(network(batch[0][:1]).numpy()[0, 0], 0, 1)
        merged, fgr = (batch[i][0].numpy().transpose(1, 2, 0) for i in (4, 2))
        alpha, mask = batch[1][0, 0].numpy(), batch[5][0, 0].numpy()
        trimap = np.where(mask > 0, 0.5, (alpha >= 1).astype(np.float32))
        gray = lambda a: np.repeat(a[..., None], 3, axis=2)   # noqa: E731
        return to_uint8(np.vstack([np.hstack([merged, gray(trimap), gray(alpha)]),
                                   np.hstack([gray(pred), gray(np.abs(pred - alpha)), fgr])]))
