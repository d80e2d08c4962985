"""Training samples of trimap-based matting (IndexNet, spec/indexnet.md 2): composites, on-the-fly trimaps, the
official crop rule. numpy only.

Sources: pre-rendered composites (rows merged|alpha|fg|bg of a data.txt, as tools/compose_trimap_set.py and the
MindSpore port write them; bg may be the uncropped background photo) or composites made on the fly from (fg, alpha) pairs and backgrounds, which need no
disk: sample i is pair i mod P over background i mod B, the background upscaled (cubic) only when smaller than
the foreground and cropped at the top left, the composite truncated to 8 bits, as the official
Composition_code.py. Unlike the official loader, the loss sees the same background crop as the composite.

Per sample (randomness from numpy's generator seeded by (seed, epoch, index); validation ignores the epoch and
uses k = 10): trimap from the alpha with an unknown band widened by k = 1..19 pixels; when the shorter side is
below the crop size the sample is upscaled to make it 500/320 of it; a crop of 1, 1.5 or 2 times the crop size
(those that fit) centred on a random unknown pixel, resized to the crop size (cubic; nearest for the trimap);
a horizontal flip with probability 0.5 (training only).
"""
import os
from typing import NamedTuple

import cv2
import numpy as np

from utils.io import read_alpha_u8, read_image
from utils.pairing import by_stem, listing_rows, pair_up
from utils.trimap import normalise, trimap_from_alpha

from .folders import read_pair
from .matting import read_first

CROP_SCALES = (1, 1.5, 2)
UPSCALE = 500 / 320
VALID_BAND = 10


class TrimapSample(NamedTuple):
    key: tuple
    merged: np.ndarray       # size x size x 3, [0, 1]
    alpha: np.ndarray        # size x size
    fgr: np.ndarray
    bgr: np.ndarray
    trimap: np.ndarray       # size x size uint8
    problems: tuple


def fit_background(bgr, h, w):
    """The official rule: upscaled with cubic only when smaller than h x w, then cropped at the top left."""
    scale = max(h / bgr.shape[0], w / bgr.shape[1])
    if scale > 1:
        size = (max(w, int(np.ceil(bgr.shape[1] * scale))), max(h, int(np.ceil(bgr.shape[0] * scale))))
        bgr = np.clip(cv2.resize(bgr, size, interpolation=cv2.INTER_CUBIC), 0, 1)
    return np.ascontiguousarray(bgr[:h, :w], np.float32)


def composite(fgr, alpha, bgr):
    """alpha * fg + (1 - alpha) * bg, the background fitted (fit_background), truncated to 8 bits as the
    official Composition_code.py. -> (composite, background crop), float32 in [0, 1]."""
    bgr = fit_background(bgr, *alpha.shape)
    merged = np.floor((fgr * alpha[..., None] + bgr * (1 - alpha[..., None])) * 255) / np.float32(255)
    return merged.astype(np.float32), bgr


def composite_rows(root):
    """[(merged, alpha, fg, bg)] of pre-rendered composites: a data.txt of merged|alpha|fg|bg rows (relative to
    `root` unless absolute), or merged/ alpha/ fg/ bg/ folders paired by name."""
    listing = os.path.join(root, 'data.txt')
    if os.path.isfile(listing):
        return listing_rows(listing, root, ('merged', 'alpha', 'fg', 'bg'))
    folders = {name: os.path.join(root, name) for name in ('merged', 'alpha', 'fg', 'bg')}
    missing = [p for p in folders.values() if not os.path.isdir(p)]
    if missing:
        raise ValueError(f"{root}: no data.txt and no {', '.join(os.path.basename(m) for m in missing)}/ folder")
    tables = {name + '/': by_stem(path) for name, path in folders.items()}
    return [tuple(paths.values()) for _, paths in pair_up(tables, exact=list(tables), where=root)]


def is_composite_set(root):
    return os.path.isfile(os.path.join(root, 'data.txt')) or all(
        os.path.isdir(os.path.join(root, n)) for n in ('merged', 'alpha', 'fg', 'bg'))


class TrimapDataset:
    """Item (epoch, i) -> TrimapSample at `size` x `size`. `pairs`: [(fg, alpha, ...)] with `backgrounds` for
    composites made on the fly, or `rows` of pre-rendered composites (merged, alpha, fg, bg)."""

    def __init__(self, size, train, seed=0, pairs=None, backgrounds=None, rows=None):
        if not rows and not (pairs and backgrounds):
            raise ValueError("a trimap dataset needs composites, or (fg, alpha) pairs and backgrounds")
        self.size, self.train, self.seed = size, train, seed
        self.pairs, self.backgrounds, self.rows = pairs, backgrounds, rows

    def __len__(self):
        return len(self.rows) if self.rows else max(len(self.pairs), len(self.backgrounds))

    def load(self, i):
        """(merged, alpha uint8, fg, bg, problems) of sample i, at its native size."""
        if self.rows:
            (merged, alpha, fgr, bgr), problems = read_first(self.rows, i, self.read_row)
            return merged, alpha, fgr, bgr, problems
        (fgr, pha), bad_pairs = read_first(self.pairs, i, lambda pair: read_pair(*pair[:2]))
        bgr, bad_backgrounds = read_first(self.backgrounds, i, read_image)
        alpha = np.floor(pha * 255 + 0.5).astype(np.uint8)
        merged, bgr = composite(fgr, alpha / np.float32(255), bgr)
        return merged, alpha, fgr, bgr, bad_pairs + bad_backgrounds

    @staticmethod
    def read_row(row):
        """A pre-rendered composite; its background may be the uncropped photo (the MindSpore data.txt names the
        COCO file), fitted as the composite was."""
        merged, fgr, bgr = (read_image(p) for p in (row[0], row[2], row[3]))
        alpha = read_alpha_u8(row[1])
        for path, shape in ((row[1], alpha.shape), (row[2], fgr.shape[:2])):
            if shape != merged.shape[:2]:
                raise ValueError(f"{path} is {shape[1]}x{shape[0]} but its composite {row[0]} is "
                                 f"{merged.shape[1]}x{merged.shape[0]}")
        return merged, alpha, fgr, fit_background(bgr, *alpha.shape)

    def __getitem__(self, key):
        epoch, i = key if isinstance(key, tuple) else (0, int(key))
        rng = np.random.default_rng([self.seed, epoch if self.train else 0, i])
        merged, alpha, fgr, bgr, problems = self.load(i)
        trimap = trimap_from_alpha(alpha, int(rng.integers(1, 20)) if self.train else VALID_BAND)
        images = [merged, alpha / np.float32(255), fgr, bgr]
        h, w = alpha.shape
        if min(h, w) < self.size:                     # the official upscaling of small samples
            scale = self.size * UPSCALE / min(h, w)
            size = (round(w * scale), round(h * scale))
            images = [np.clip(cv2.resize(x, size, interpolation=cv2.INTER_CUBIC), 0, 1) for x in images]
            trimap = cv2.resize(trimap, size, interpolation=cv2.INTER_NEAREST)
            h, w = trimap.shape
        sides = [round(self.size * s) for s in CROP_SCALES if round(self.size * s) < min(h, w)] or [min(h, w)]
        side = sides[int(rng.integers(len(sides)))]
        top, left = crop_origin(trimap, side, rng)
        images = [cv2.resize(x[top:top + side, left:left + side], (self.size, self.size),
                             interpolation=cv2.INTER_CUBIC) for x in images]
        trimap = cv2.resize(trimap[top:top + side, left:left + side], (self.size, self.size),
                            interpolation=cv2.INTER_NEAREST)
        if self.train and rng.random() < 0.5:
            images, trimap = [x[:, ::-1] for x in images], trimap[:, ::-1]
        merged, pha, fgr, bgr = (np.ascontiguousarray(np.clip(x, 0, 1), np.float32) for x in images)
        return TrimapSample((epoch, i), merged, pha, fgr, bgr, np.ascontiguousarray(trimap), problems)


def crop_origin(trimap, side, rng):
    """Top-left corner of a side x side crop centred on a random unknown pixel that lets the crop stay inside
    the image (any unknown pixel, clamped, when none does; the image centre without unknown pixels)."""
    h, w = trimap.shape
    half = side // 2
    ys, xs = np.nonzero(trimap == 128)
    inside = (ys >= half) & (ys < h - side + half + 1) & (xs >= half) & (xs < w - side + half + 1)
    if inside.any():
        ys, xs = ys[inside], xs[inside]
    if len(ys):
        j = int(rng.integers(len(ys)))
        cy, cx = ys[j], xs[j]
    else:
        cy, cx = h // 2, w // 2
    return int(np.clip(cy - half, 0, h - side)), int(np.clip(cx - half, 0, w - side))


class TrimapCollate:
    """Samples -> [x (B, 4, H, W) network input, alpha, fg, bg, merged, mask (unknown region)] float32 arrays."""

    def __call__(self, samples):
        chw = lambda xs: np.ascontiguousarray(np.stack(xs).transpose(0, 3, 1, 2))  # noqa: E731
        return [chw([normalise(s.merged, s.trimap) for s in samples]), chw([s.alpha[..., None] for s in samples]),
                chw([s.fgr for s in samples]), chw([s.bgr for s in samples]), chw([s.merged for s in samples]),
                chw([(s.trimap == 128)[..., None].astype(np.float32) for s in samples])]

