"""Training and validation samples: (foreground, alpha) pairs zipped with cycling backgrounds. numpy only, so
worker processes load them without Paddle.

Determinism: the sampler yields keys (epoch, index) instead of bare indices; a sample's augmentation is
seeded by (seed, epoch, index) and a batch's by (seed, its keys), so the data of step N are the same
whichever worker loads them and whether or not the run was resumed in between.
Unreadable files: a pair or background that cannot be read (corrupt, truncated, sizes that differ) is replaced
by the next one in the list, and the sample reports it (`Sample.problems`) so the trainer can warn once; only
when MAX_SUBSTITUTES files in a row fail does loading stop, with their names.
"""
import math
from typing import NamedTuple

import numpy as np

from .augmentation import PLATE_JITTER, augment_background, augment_pair, composite_augment, draw_batch_params, \
    random_crop_size, resize_and_center_crop
from .folders import read_pair
from utils.io import read_image

MAX_SUBSTITUTES = 8


class Sample(NamedTuple):
    key: tuple               # (epoch, index)
    fgr: np.ndarray          # size x size x 3
    pha: np.ndarray          # size x size
    bgr: np.ndarray          # size x size x 3
    problems: tuple          # messages about files replaced by the next one


def read_first(paths, start, read):
    """read(paths[i]) for the first readable i from `start` on (cycling) -> (value, problems)."""
    problems = []
    for i in range(start, start + MAX_SUBSTITUTES + 1):
        path = paths[i % len(paths)]
        try:
            return read(path), tuple(problems)
        except ValueError as e:           # ImageReadError, size mismatch: the message names the file
            problems.append(str(e))
    raise ValueError(f"{len(problems)} files in a row cannot be read; the first: {problems[0]}")


class MattingDataset:
    """Item (epoch, i) -> Sample at `size` x `size`, as the official ZipDataset: the length is the longer of the
    two lists and the shorter one cycles.

    train=False gives the validation transforms (no flip/blur/jitter, milder zoom) and ignores the epoch.
    """

    def __init__(self, pairs, backgrounds, size, train, seed=0, pair_scale=(0.4, 1)):
        if not pairs or not backgrounds:
            raise ValueError("a matting dataset needs at least one (fgr, pha) pair and one background")
        self.pairs, self.backgrounds = pairs, backgrounds
        self.size, self.train, self.seed, self.pair_scale = size, train, seed, pair_scale

    def __len__(self):
        return max(len(self.pairs), len(self.backgrounds))

    def __getitem__(self, key):
        epoch, i = key if isinstance(key, tuple) else (0, int(key))
        rng = np.random.default_rng([self.seed, epoch if self.train else 0, i])
        (fgr, pha), bad_pairs = read_first(self.pairs, i, lambda pair: read_pair(*pair[:2]))
        bgr, bad_backgrounds = read_first(self.backgrounds, i, read_image)
        size = (self.size, self.size)
        fgr, pha = augment_pair(fgr, pha, size, rng, self.pair_scale, self.train)
        bgr = augment_background(bgr, size, rng, self.train)
        return Sample((epoch, i), fgr, pha, bgr, bad_pairs + bad_backgrounds)


class EpochSampler:
    """Batches of (epoch, index) keys: a shuffle seeded by (seed, epoch), split over `world` processes as
    paddle's DistributedBatchSampler splits it (each rank takes every world-th index of the wrap-padded list),
    starting at any batch of an epoch (resume). Incomplete batches are dropped in training so that every step
    sees `batch_size` samples per rank."""

    def __init__(self, size, batch_size, seed=0, shuffle=True, drop_last=True, rank=0, world=1):
        self.size, self.batch_size, self.seed, self.shuffle, self.drop_last = size, batch_size, seed, shuffle, drop_last
        self.rank, self.world = rank, world
        self.num_samples = math.ceil(size / world)
        self.epoch, self.start_batch = 0, 0

    def set_position(self, epoch, batch):
        self.epoch, self.start_batch = epoch, batch

    def __iter__(self):
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.size) if self.shuffle \
            else np.arange(self.size)
        order = np.resize(order, self.num_samples * self.world)[self.rank::self.world]
        for b in range(self.start_batch, len(self)):
            yield [(self.epoch, int(i)) for i in order[b * self.batch_size:(b + 1) * self.batch_size]]
        self.start_batch = 0

    def __len__(self):
        if self.drop_last:
            return self.num_samples // self.batch_size
        return math.ceil(self.num_samples / self.batch_size)


def chw(batch):
    return np.ascontiguousarray(np.stack(batch).reshape(len(batch), *batch[0].shape[:2], -1).transpose(0, 3, 1, 2))


class Collate:
    """Samples -> [true_pha, true_fgr, src, bgr] as B x C x H x W float32 arrays.

    augment=True is the official per-batch training augmentation: one random crop size for the batch
    (`multiple` 4 for the refine stage), then shadow/composite/noise/jitter/misalignment per sample.
    augment=False composites plainly (validation). plate_jitter: the chance of the plate's colour jitter.
    """

    def __init__(self, seed=0, augment=True, multiple=1, plate_jitter=PLATE_JITTER):
        self.seed, self.augment, self.multiple, self.plate_jitter = seed, augment, multiple, plate_jitter

    def __call__(self, samples):
        keys = [k for s in samples for k in s.key]
        rng = np.random.default_rng([self.seed, 1] + keys)     # 1: a stream apart from the samples'
        pha, fgr, src, bgr = [], [], [], []
        if self.augment:
            size = random_crop_size(rng, samples[0].fgr.shape[0], self.multiple)
            params = draw_batch_params(rng)
        for s in samples:
            f, p, b = s.fgr, s.pha, s.bgr
            if self.augment:
                f, p, b = (resize_and_center_crop(x, size) for x in (f, p, b))
                c, b = composite_augment(f, p, b, rng, params, self.plate_jitter)
            else:
                c = f * p[..., None] + b * (1 - p[..., None])
            pha.append(p), fgr.append(f), src.append(c), bgr.append(b)
        return [chw(x) for x in (pha, fgr, src, bgr)]
