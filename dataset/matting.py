"""Training and validation samples: (foreground, alpha) pairs zipped with cycling backgrounds.

Determinism: the sampler yields keys (epoch, index) instead of bare indices; a sample's augmentation is
seeded by (seed, epoch, index) and a batch's by (seed, its keys), so the data of step N are the same
whichever worker loads them and whether or not the run was resumed in between.
"""
import math

import cv2
import numpy as np
import paddle

from utils.io import ImageReadError, read_alpha, read_image

from .augmentation import augment_background, augment_pair, composite_augment, draw_batch_params, \
    random_crop_size, resize_and_center_crop


def read_pair(fgr_path, pha_path):
    """(fgr H x W x 3, pha H x W); pha_path == fgr_path means an RGBA file (PhotoMatte85)."""
    fgr = read_image(fgr_path)
    if pha_path == fgr_path:
        rgba = cv2.imdecode(np.fromfile(fgr_path, np.uint8), cv2.IMREAD_UNCHANGED)
        if rgba is None or rgba.ndim != 3 or rgba.shape[2] != 4:
            raise ImageReadError(f"{fgr_path}: no alpha channel (a folder without fgr/ and pha/ must hold RGBA images)")
        pha = rgba[:, :, 3].astype(np.float32) / np.float32(np.iinfo(rgba.dtype).max)
    else:
        pha = read_alpha(pha_path)
    if pha.shape != fgr.shape[:2]:
        raise ValueError(f"{fgr_path} is {fgr.shape[1]}x{fgr.shape[0]} but its alpha {pha_path} is "
                         f"{pha.shape[1]}x{pha.shape[0]}")
    return fgr, pha


class MattingDataset(paddle.io.Dataset):
    """Item (epoch, i) -> (key, fgr, pha, bgr) at `size` x `size`, as the official ZipDataset: the length is
    the longer of the two lists and the shorter one cycles.

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
        fgr_path, pha_path = self.pairs[i % len(self.pairs)][:2]
        fgr, pha = read_pair(fgr_path, pha_path)
        bgr = read_image(self.backgrounds[i % len(self.backgrounds)])
        size = (self.size, self.size)
        fgr, pha = augment_pair(fgr, pha, size, rng, self.pair_scale, self.train)
        bgr = augment_background(bgr, size, rng, self.train)
        return (epoch, i), fgr, pha, bgr


class EpochSampler(paddle.io.DistributedBatchSampler):
    """DistributedBatchSampler whose shuffle is seeded by (seed, epoch), whose items are (epoch, index) keys
    and which can start at any batch of an epoch (resume). Each rank takes every nranks-th index of the
    shuffled (wrap-padded) list; incomplete batches are dropped in training so that every step sees
    `batch_size` samples per rank."""

    def __init__(self, dataset, batch_size, seed=0, shuffle=True, drop_last=True):
        super().__init__(dataset, batch_size, shuffle=shuffle, drop_last=drop_last)
        self.seed, self.start_batch = seed, 0

    def set_position(self, epoch, batch):
        self.epoch, self.start_batch = epoch, batch

    def __iter__(self):
        n = len(self.dataset)
        order = np.random.default_rng([self.seed, self.epoch]).permutation(n) if self.shuffle else np.arange(n)
        order = np.resize(order, self.total_size)[self.local_rank::self.nranks]
        for b in range(self.start_batch, len(self)):
            yield [(self.epoch, int(i)) for i in order[b * self.batch_size:(b + 1) * self.batch_size]]
        self.start_batch = 0

    def __len__(self):
        return self.num_samples // self.batch_size if self.drop_last else math.ceil(self.num_samples / self.batch_size)


def chw(batch):
    return np.ascontiguousarray(np.stack(batch).reshape(len(batch), *batch[0].shape[:2], -1).transpose(0, 3, 1, 2))


class Collate:
    """Samples -> [true_pha, true_fgr, src, bgr] as B x C x H x W float32 arrays.

    augment=True is the official per-batch training augmentation: one random crop size for the batch
    (`multiple` 4 for the refine stage), then shadow/composite/noise/jitter/misalignment per sample.
    augment=False composites plainly (validation).
    """

    def __init__(self, seed=0, augment=True, multiple=1):
        self.seed, self.augment, self.multiple = seed, augment, multiple

    def __call__(self, samples):
        keys = [k for s in samples for k in s[0]]
        rng = np.random.default_rng([self.seed, 1] + keys)     # 1: a stream apart from the samples'
        pha, fgr, src, bgr = [], [], [], []
        if self.augment:
            size = random_crop_size(rng, samples[0][1].shape[0], self.multiple)
            params = draw_batch_params(rng)
        for _, f, p, b in samples:
            if self.augment:
                f, p, b = (resize_and_center_crop(x, size) for x in (f, p, b))
                s, b = composite_augment(f, p, b, rng, params)
            else:
                s = f * p[..., None] + b * (1 - p[..., None])
            pha.append(p), fgr.append(f), src.append(s), bgr.append(b)
        return [chw(x) for x in (pha, fgr, src, bgr)]
