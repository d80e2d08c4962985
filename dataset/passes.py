"""The data of one Robust Video Matting training step, numpy only (worker processes): the keys of its passes
(StepSampler), their samples (StepData) and the collated arrays with the per-pass random crop (StepCollate).

Keys are tuples (tag, *ids, index): tag one of TAGS, index the item of that source. A sample's randomness is
seeded by (seed, key), the crop of a pass by (seed, its keys), so the data of step N are a function of N alone.
"""
from typing import NamedTuple

import numpy as np

from .augmentation import resize_and_center_crop
from .matting import EpochSampler

TAGS = ('lr', 'hr', 'seg_clips', 'seg_images', 'valid')


class PassSample(NamedTuple):
    key: tuple
    arrays: tuple               # T x H x W x C each
    problems: tuple


class StepData:
    """Key (tag, *ids, index) -> PassSample of that source; a sample's randomness is seeded by (seed, key)."""

    def __init__(self, seed, sources):
        self.seed, self.sources = seed, sources

    def __len__(self):
        return len(self.sources['lr'])

    def __getitem__(self, key):
        *arrays, problems = self.sources[key[0]](np.random.default_rng([self.seed, TAGS.index(key[0]), *key[1:]]),
                                                 key[-1])
        return PassSample(key, tuple(arrays), problems)


class StepSampler(EpochSampler):
    """The low-resolution batches of an epoch (EpochSampler), each with the keys of its step's other passes: the
    next high-resolution batch and, by the parity of the global step, a batch of segmentation clips (even) or of
    B * T segmentation images (odd). Those streams cycle through their own seeded shuffles, independent of the
    epoch, so the keys of step N are a function of N alone."""

    def __init__(self, size, batch_size, streams, length, seed=0, rank=0, world=1):
        super().__init__(size, batch_size, seed=seed, rank=rank, world=world)
        self.streams, self.length = streams, length            # {tag: number of items}

    def stream(self, tag, counter, count):
        """Items [counter * count, (counter + 1) * count) of this rank's share of a stream."""
        n, keys = self.streams[tag], []
        for m in range(count):
            j = (counter * self.world + self.rank) * count + m
            cycle = np.random.default_rng([self.seed, TAGS.index(tag), j // n]).permutation(n)
            keys.append((tag, j, int(cycle[j % n])))
        return keys

    def __iter__(self):
        first = self.start_batch
        for b, keys in enumerate(super().__iter__(), first):
            step = self.epoch * len(self) + b
            keys = [('lr',) + k for k in keys]
            if 'hr' in self.streams:
                keys += self.stream('hr', step, self.batch_size)
            if 'seg_clips' in self.streams and (step % 2 == 0 or 'seg_images' not in self.streams):
                keys += self.stream('seg_clips', step // 2, self.batch_size)
            elif 'seg_images' in self.streams:
                keys += self.stream('seg_images', step // 2, self.batch_size * self.length)
            yield keys


def random_crop(rng, clips):
    """One crop for every frame of every clip (B x T x H x W x C): h, w uniform in [H/2, H), resized to a square
    of side max(h, w), centre-cropped (the official random_crop)."""
    h0, w0 = clips[0].shape[2:4]
    w, h = int(rng.integers(w0 // 2, w0)), int(rng.integers(h0 // 2, h0))
    return [np.stack([[resize_and_center_crop(frame, (h, w)).reshape(h, w, -1) for frame in clip] for clip in x])
            for x in clips]


def channels_first(x):
    """B x T x H x W x C -> B x T x C x H x W float32."""
    return np.ascontiguousarray(x.transpose(0, 1, 4, 2, 3), dtype=np.float32)


class StepCollate:
    """PassSamples of one step -> flat arrays: [fgr, pha, src] of the low-resolution pass, the same of the
    high-resolution pass when present, then [img, seg] of the segmentation pass when present (B x T x C x H x W).
    crop=False (validation) keeps the samples whole."""

    def __init__(self, seed, crop=True):
        self.seed, self.crop = seed, crop

    def __call__(self, samples):
        groups = {}
        for s in samples:
            groups.setdefault(s.key[0], []).append(s)
        out = []
        for tag, group in groups.items():
            clips = [np.stack(x) for x in zip(*(s.arrays for s in group))]        # per array: B x T x H x W x C
            if self.crop:
                rng = np.random.default_rng([self.seed, 7, TAGS.index(tag)] + [k for s in group for k in s.key[1:]])
                clips = random_crop(rng, clips)
            if tag == 'seg_images':
                clips = [x.reshape((-1, 1) + x.shape[2:]) for x in clips]          # B*T one-frame clips
            if tag in ('seg_clips', 'seg_images'):
                out += [channels_first(x) for x in clips]
            else:
                fgr, pha, bgr = clips
                out += [channels_first(fgr), channels_first(pha), channels_first(fgr * pha + bgr * (1 - pha))]
        return out
