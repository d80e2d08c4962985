"""STCN / IMSFR training (spec/vos.md 4): the task the loop of training/loop.py runs, for both networks.

Stages (--stage): `static` = stage 0, 3-frame clips made from static images and their masks (FSS-1000, DUTS,
ECSSD, BIG, HRSOD), a single object; `main` = stage 3 (after stage 0) or 2 (after BL30K), 3-frame clips of
DAVIS 2017 train (x5) and YouTube-VOS train with the max-skip curriculum, two objects (dataset/vos_clips.py).
The pass is model/vos.py training_pass: frame 0 with its true masks -> frame 1 from a memory of frame 0 -> frame 2 from
frames 0 and 1, full softmax over the memory. Loss: the bootstrapped cross-entropy over the aggregated logits of
frames 1 and 2, summed (per clip: 2 classes when the clip has no second object). Adam (lr 1e-5, weight decay 1e-7
as L2, the official torch Adam), MultiStep decay x0.1 at --lr-steps; the BatchNorm statistics stay frozen: the
network is in eval() mode while it trains. Batch 4 per process (official: 8 for stage 0), 384 px crops.
A network without pretrained weights (BatchNorm statistics still 0 / 1) gets its statistics from the first batch
(--bn-init auto); the official runs start from ImageNet weights instead. The layers outside the ResNet stages are
initialised as torch initialises them (model/vos.py official_init).

`--checkpoint` = the official --load_network (initial weights), `--resume` = --load_model. The step (from the batch
keys) drives the curriculum, the bootstrapping and the learning rate, so a resumed run continues exactly.
"""
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import paddle
import paddle.nn.functional as F

from dataset.config import load_roots, parse_names, split_dir
from dataset.vos_clips import DEFAULT_SCHEDULE, MEAN, STD, VALID_SKIP, ClipCollate, CurriculumSampler, StaticClips, \
    VideoClips, is_video_folder, parse_schedule, static_listing, total_steps, video_listing
from model.vos import official_init
from utils.io import DAVIS_PALETTE, to_uint8
from utils.options import non_negative, non_negative_int, option, ratio

from .loop import Task

DEFAULT_DATASETS = {'main': 'davis2017*5,youtubevos',
                    'static': 'fss,duts_tr,duts_te,ecssd,big_small*5,hrsod_small*5'}
LR_STEPS = {'main': '125000', 'static': '150000'}        # of the official 150K (stage 3) and 300K (stage 0) steps
GENERIC_DATASET = 'videomatte240k'                        # DataConfig's default: not a VOS set, so the stage's list
DEFAULTS = dict(batch_size=4, resolution=384, max_steps=150000, epochs=1_000_000, image_interval=800,
                valid_interval=5000, checkpoint_interval=5000)


@dataclass(frozen=True)
class VOSTrainOptions:
    stage: str = option('main', '--stage', choices=('main', 'static'),
                        help=f"main: DAVIS / YouTube-VOS clips, two objects (--dataset-name defaults to "
                             f"{DEFAULT_DATASETS['main']}); static: stage 0, clips made from static images, one object "
                             f"({DEFAULT_DATASETS['static']}; official length --max-steps 300000)")
    max_skip_schedule: str = option(DEFAULT_SCHEDULE, '--max-skip-schedule', metavar='F:SKIP,...',
                                    help='max frame skip from each fraction of --max-steps on (YouTube-VOS: '
                                         'skip // 5)')
    lr: float = option(1e-5, '--lr', type=non_negative, help='learning rate')
    lr_steps: str = option(None, '--lr-steps', metavar='N,...', help='steps where the learning rate is multiplied '
                           'by --lr-gamma', default_help=f"main {LR_STEPS['main']}, static {LR_STEPS['static']}")
    lr_gamma: float = option(0.1, '--lr-gamma', type=ratio, help='learning-rate decay factor')
    weight_decay: float = option(1e-7, '--weight-decay', type=non_negative, help="Adam's L2 weight decay")
    ce_warm_start: int = option(20000, '--ce-warm-start', type=non_negative_int,
                                help='plain cross-entropy before this step, then the hardest pixels only')
    ce_warm_end: int = option(70000, '--ce-warm-end', type=non_negative_int,
                              help='step where the share of pixels reaches --ce-top-p (linear from 1)')
    ce_top_p: float = option(0.15, '--ce-top-p', type=ratio, help='share of the hardest pixels after the warm-up')
    bn_init: str = option('auto', '--bn-init', choices=('auto', 'batch', 'keep'),
                          help='the frozen BatchNorm statistics at step 0: batch sets them from the first batch (a '
                               'train-mode forward without gradients), keep leaves them, auto sets them only while '
                               'they are the defaults (0, 1) of a network without pretrained weights, where frozen '
                               'statistics make training diverge (the official code starts from ImageNet weights)')


class VOSBatch(NamedTuple):
    frames: paddle.Tensor       # B x 3 x 3 x H x W, ImageNet-normalised
    masks: paddle.Tensor        # B x 3 x K x H x W
    selector: paddle.Tensor     # B x K
    classes: paddle.Tensor      # B x 3 x H x W int64
    step: paddle.Tensor         # B int64


# ---------------------------------------------------------------- loss

def top_share(step, start, end, top_p):
    """The share of pixels the bootstrapped CE keeps at `step`: 1 before `start`, linear to top_p at `end`."""
    if step < start:
        return 1.0
    if step > end:
        return top_p
    return top_p + (1 - top_p) * (end - step) / max(end - start, 1)


def bootstrapped_ce(logits, classes, share, second=None):
    """The mean over clips of each clip's mean of its int(H*W * share) largest per-pixel cross-entropies (all
    pixels for share 1). logits B x C x H x W, classes B x H x W; `second` B (0/1): clips without a second object
    use the first two classes only (the official per-clip loss over logits[:, :2])."""
    logits = logits.astype('float32')
    b, c = logits.shape[:2]
    if second is not None and c == 3:
        keep = paddle.concat([paddle.ones([b, 2]), second.astype('float32').reshape([b, 1])], axis=1)
        logits = logits - (1 - keep).reshape([b, c, 1, 1]) * 1e4        # exp underflows to exactly 0
    ce = -paddle.take_along_axis(F.log_softmax(logits, axis=1), classes.unsqueeze(1), axis=1).reshape([b, -1])
    if share >= 1:
        return ce.mean()
    top, _ = paddle.topk(ce, int(ce.shape[1] * share), axis=1)
    return top.mean()


def vos_loss(logits, classes, selector, share):
    """Sum over frames 1 and 2 -> (total, {ce_1, ce_2})."""
    second = selector[:, 1] if selector.shape[1] > 1 else None
    terms = {f'ce_{i}': bootstrapped_ce(logits[i - 1], classes[:, i], share, second) for i in (1, 2)}
    return terms['ce_1'] + terms['ce_2'], terms


def jaccard(pred, true):
    """IoU of two boolean arrays, 1 when both are empty (the DAVIS convention)."""
    union = np.logical_or(pred, true).sum()
    return 1.0 if union == 0 else float(np.logical_and(pred, true).sum() / union)


def batch_norms(network):
    return [m for m in network.sublayers() if isinstance(m, (paddle.nn.BatchNorm2D, paddle.nn.SyncBatchNorm))]


def default_statistics(network):
    """True while every BatchNorm still has its initial running statistics (mean 0, variance 1)."""
    return all(not m._mean.numpy().any() and (m._variance.numpy() == 1).all() for m in batch_norms(network))


def init_batch_norm(network, run):
    """Every BatchNorm's running statistics := those of its input in `run()` (a forward in train mode, no
    gradients); the network is left in eval mode."""
    layers = batch_norms(network)
    momenta = [m._momentum for m in layers]
    for m in layers:
        m._momentum = 0.0                  # Paddle: running = momentum * running + (1 - momentum) * batch
    network.train()
    try:
        with paddle.no_grad():
            run()
    finally:
        for m, momentum in zip(layers, momenta):
            m._momentum = momentum
        network.eval()
    world = paddle.distributed.get_world_size()
    if world > 1:                          # the same statistics on every rank: the mean of theirs
        for m in layers:
            for buffer in (m._mean, m._variance):
                paddle.distributed.all_reduce(buffer)
                buffer.set_value(buffer / world)


# ---------------------------------------------------------------- the task

class VOSTraining(Task):
    options = VOSTrainOptions
    defaults = DEFAULTS
    unused_parameters = True        # IMSFR's mask2 in the single-object stage

    def __init__(self, model_type):
        self.model_type = model_type
        self.optimiser = self.train_options = None

    def check(self, data, run):
        if data.resolution < 32 or data.resolution % 16:
            raise ValueError(f'--resolution must be a multiple of 16 and at least 32 (the crop side), got '
                             f'{data.resolution}')

    @staticmethod
    def names(spec, options):
        return DEFAULT_DATASETS[options.stage] if spec == GENERIC_DATASET else spec

    @staticmethod
    def objects(options):
        return 1 if options.stage == 'static' else 2

    # ------------------------------------------------------------ data

    def listing(self, roots, spec, split, options, repeat=True):
        """Videos (main) or image/mask pairs (static) of the names in `spec` 'a*5,b', repeated."""
        found = []
        for name, k in parse_names(spec):
            folder = split_dir(roots, name, split)
            items = video_listing(folder, split) if options.stage == 'main' else static_listing(folder)
            found += items * (k if repeat else 1)
        return found

    def clips(self, items, size, seed, options, train):
        return (VideoClips if options.stage == 'main' else StaticClips)(items, size, seed, train)

    def describe_data(self, data, options):
        roots = load_roots(data.dataset_config, data.dataset_root)
        spec = self.names(data.dataset_name, options)
        items = self.listing(roots, spec, 'train', options)
        what = 'video clips' if options.stage == 'main' else 'static images'
        return f'{spec}: {len(items)} training {what} (with repeats)'

    def validation(self, roots, data, run, options):
        """(dataset, picks) of fixed validation clips of the names with a valid split, or (None, note). Video
        folders give video clips in either stage (stage 0 can validate on DAVIS val); else static images."""
        videos, pairs, missing = [], [], []
        for name, _ in parse_names(self.names(data.valid_dataset_name, options)):
            try:
                folder = split_dir(roots, name, 'valid')
                if is_video_folder(folder):
                    videos += video_listing(folder, 'valid')
                else:
                    pairs += static_listing(folder)
            except ValueError as e:
                missing.append(str(e))
        items = videos or pairs
        if not items:
            return None, 'no validation: ' + '; '.join(missing)
        n = min(data.valid_samples, len(items))
        picks = [[(0, i * len(items) // n, 0, VALID_SKIP)] for i in range(n)]
        clips = (VideoClips if videos else StaticClips)(items, data.resolution, run.seed, False)
        return (clips, picks), ''

    def datasets(self, data, run, options, rank, world):
        roots = load_roots(data.dataset_config, data.dataset_root)
        spec = self.names(data.dataset_name, options)
        items = self.listing(roots, spec, 'train', options)
        if len(items) < run.batch_size * world:
            raise ValueError(f'{spec}: {len(items)} training items, fewer than one batch of {run.batch_size} per '
                             f'process')
        train = self.clips(items, data.resolution, run.seed, options, True)
        sampler = CurriculumSampler(len(train), run.batch_size, parse_schedule(options.max_skip_schedule), 0,
                                    seed=run.seed, rank=rank, world=world)
        sampler.total = total_steps(run.max_steps, run.epochs, len(sampler))
        collate = ClipCollate(self.objects(options))
        valid, note = self.validation(roots, data, run, options)
        notes = [f'{spec}: {len(items)} training items; max-skip curriculum over {sampler.total} steps'] + \
            ([note] if note else [])
        return train, sampler, collate, (valid + (collate,) if valid else None), '; '.join(notes)

    # ------------------------------------------------------------ optimiser, passes, loss

    def initialise(self, network):
        official_init(network)

    def lr_steps(self, options):
        text = options.lr_steps or LR_STEPS[options.stage]
        try:
            return sorted(int(s) for s in text.split(',') if s.strip())
        except ValueError:
            raise ValueError(f'--lr-steps {text!r}: expected step numbers separated by commas') from None

    def rate(self, options, step):
        """MultiStepLR: lr * gamma ** (the number of --lr-steps reached)."""
        return options.lr * options.lr_gamma ** sum(step >= s for s in self.lr_steps(options))

    def optimizer(self, network, options):
        self.lr_steps(options)
        self.train_options = options
        self.optimiser = paddle.optimizer.Adam(learning_rate=options.lr, parameters=network.parameters(),
                                               weight_decay=options.weight_decay or None)
        return self.optimiser

    def learning_rates(self, network, options):
        return {'lr': options.lr}

    def train_mode(self, network, single_sample, options):
        network.eval()          # the official training: BatchNorm uses and keeps its running statistics

    def passes(self, batch, options):
        batch = VOSBatch(*batch)
        if self.optimiser is not None:
            self.optimiser.set_lr(self.rate(options, int(batch.step[0])))
        return [('', batch)]

    def forward(self, net, batch):
        mode = self.train_options.bn_init if self.train_options is not None else 'keep'
        network = getattr(net, '_layers', net)
        if mode != 'keep' and int(batch.step[0]) == 0 and (mode == 'batch' or default_statistics(network)):
            init_batch_norm(network, lambda: net(batch.frames, batch.masks, batch.selector))
        return net(batch.frames, batch.masks, batch.selector)

    def loss(self, outputs, batch, options):
        logits, probs = outputs
        share = top_share(int(batch.step[0]), options.ce_warm_start, options.ce_warm_end, options.ce_top_p)
        total, terms = vos_loss(logits, batch.classes, batch.selector, share)
        with paddle.no_grad():
            pred = paddle.concat([p[:, 0] for p in probs]) > 0.5
            true = paddle.concat([batch.masks[:, i, 0] for i in (1, 2)]) > 0.5
            inter = paddle.logical_and(pred, true).astype('float32').sum()
            union = paddle.logical_or(pred, true).astype('float32').sum()
        return total, dict(terms, p=paddle.to_tensor(share), iou=(inter + 1) / (union + 1))

    # ------------------------------------------------------------ validation, images

    def validate(self, network, batches):
        """Plain cross-entropy (the loss before the warm-up) and J of the predicted masks of frames 1 and 2 (each
        object the clip has), averaged over the fixed validation clips."""
        losses, scores = [], []
        with paddle.no_grad():
            for arrays in batches:
                batch = VOSBatch(*(paddle.to_tensor(a) for a in arrays))
                logits, probs = network(batch.frames, batch.masks, batch.selector)
                losses.append(float(vos_loss(logits, batch.classes, batch.selector, 1.0)[0]))
                selector, masks = arrays[2], arrays[1]
                for i, prob in zip((1, 2), probs):
                    prob = prob.numpy()
                    scores += [jaccard(prob[b, j] > 0.5, masks[b, i, j] > 0.5) for b in range(len(prob))
                               for j in range(prob.shape[1]) if selector[b, j] > 0.5]
        return {'loss': float(np.mean(losses)), 'J': float(np.mean(scores))}

    def image_grid(self, network, batch):
        """First clip of the batch, frames 0, 1, 2 as rows: image | true objects | predicted objects (frame 0:
        its true masks, the memory)."""
        batch = VOSBatch(*batch)
        with paddle.no_grad():
            _, probs = network(batch.frames[:1], batch.masks[:1], batch.selector[:1])
        frames = batch.frames[0].numpy().transpose(0, 2, 3, 1) * STD + MEAN
        true = batch.classes[0].numpy()
        pred = [true[0]] + [np.where(p[0].numpy().max(axis=0) > 0.5, p[0].numpy().argmax(axis=0) + 1, 0)
                            for p in probs]
        colours = DAVIS_PALETTE.astype(np.float32) / 255
        rows = [np.hstack([frames[t], colours[true[t]], colours[pred[t]]]) for t in range(3)]
        return to_uint8(np.clip(np.vstack(rows), 0, 1))
