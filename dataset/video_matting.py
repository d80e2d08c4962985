"""The matting data of Robust Video Matting training (spec/rvm.md 2.4), numpy only (worker processes):
VideoMatte240K clips, ImageMatte images, and backgrounds that are images or video clips.

Layouts: VideoMatte240K `<split>/fgr/<clip>/<frame>.jpg` with `pha/` beside it (the official docs move clips
0000, 0100, 0200 and 0300 to validation; here a dataset without a validation folder holds those four back from
training); ImageMatte `<split>/fgr/<name>` + `pha/<name>` (any matting folder of dataset/folders.py), optionally
restricted to the official name list (`imagematte_train.txt` / `imagematte_valid.txt` in the split folder, one
file name per line); background images: any folder of images; background videos: `<clip>/<frame>.jpg` folders.
A sample is a pure function of (seed, key); an unreadable file makes the sample use the next one (reported).
"""
import os
from collections import OrderedDict

import cv2
import numpy as np

from utils.io import read_alpha, read_image

from .folders import find_pairs, image_files
from .matting import read_first
from .motion import motion_augmentation

VALID_CLIPS = ('0000', '0100', '0200', '0300')      # the official validation clips of VideoMatte240K
SPEEDS = (0.5, 1, 2, 3, 4, 5)


def train_frames(rng, length, speeds=SPEEDS):
    """The official TrainFrameSampler: 0..T-1 at a random speed (truncated), shifted by U{0..T-1}, reversed with
    p 0.5. Indices may exceed a clip; readers wrap them modulo its length."""
    speed = speeds[int(rng.integers(len(speeds)))]
    shift = int(rng.integers(length))
    frames = [int(t * speed) + shift for t in range(length)]
    return frames[::-1] if rng.random() < 0.5 else frames


def valid_frames(rng, length, speeds=None):
    return list(range(length))


def shrink(image, size):
    """Shrink so the short side is at most `size` (area resampling); smaller images are kept."""
    h, w = image.shape[:2]
    if min(h, w) <= size:
        return image
    scale = size / min(h, w)
    out = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return out.reshape(out.shape[:2] + image.shape[2:])


def clips_of(pairs):
    """[(fgr, pha, trimap)] in name order -> OrderedDict {clip folder: [(fgr, pha)]} (frames in order)."""
    clips = OrderedDict()
    for fgr, pha, *_ in pairs:
        clips.setdefault(os.path.dirname(fgr), []).append((fgr, pha))
    return clips


def frame_clips(root):
    """Background video clips: {clip folder: [frame files]} of every folder of images under `root`."""
    clips = OrderedDict()
    for path in image_files(root):
        clips.setdefault(os.path.dirname(path), []).append(path)
    return clips


class Backgrounds:
    """Background clips of T frames: 50 % one image repeated, 50 % T frames of a video clip from a random start in
    [0, max(1, n - T)), the sampler's frame offsets modulo its length. With only one kind, always that kind."""

    def __init__(self, images, videos, size):
        if not images and not videos:
            raise ValueError('RVM training needs background images or background video clips')
        self.images, self.videos, self.size = list(images), [list(v) for v in videos], size

    def __call__(self, rng, length, sampler):
        if self.images and (not self.videos or rng.random() < 0.5):
            image, problems = read_first(self.images, int(rng.integers(len(self.images))),
                                         lambda p: shrink(read_image(p), self.size))
            return np.stack([image] * length), problems
        clip = self.videos[int(rng.integers(len(self.videos)))]
        start = int(rng.integers(max(1, len(clip) - length)))
        frames, problems = [], ()
        for t in sampler(rng, length):
            frame, bad = read_first(clip, start + t, lambda p: shrink(read_image(p), self.size))
            frames.append(frame)
            problems += bad
        return np.stack(same_size(frames)), problems


def same_size(frames):
    """Frames of one clip resized to the first one's size (a stray odd-sized frame must not break stacking)."""
    h, w = frames[0].shape[:2]
    return [f if f.shape[:2] == (h, w) else cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA).reshape(
        (h, w) + f.shape[2:]) for f in frames]


class VideoMatteClips:
    """VideoMatte240K: one sample per `length` frames of each clip (the official index); item -> (fgr T x H x W x 3,
    pha T x H x W x 1, bgr T x H x W x 3) of `size` x `size`, augmented by MotionAugmentation."""

    def __init__(self, clips, backgrounds, size, length, train, probabilities):
        if not clips:
            raise ValueError('no VideoMatte clips')
        self.clips = [frames for frames in clips.values()]
        self.index = [(c, start) for c, frames in enumerate(self.clips) for start in range(0, len(frames), length)]
        self.backgrounds, self.size, self.length = backgrounds, size, length
        self.sampler = train_frames if train else valid_frames
        self.augment = motion_augmentation(size, probabilities)

    def __len__(self):
        return len(self.index)

    def read(self, rng, i):
        clip, start = self.index[i]
        frames = self.clips[clip]
        fgr, pha = [], []
        for t in self.sampler(rng, self.length):
            f, p = frames[(start + t) % len(frames)]
            fgr.append(shrink(read_image(f), self.size))
            pha.append(shrink(read_alpha(p), self.size)[..., None])
        if any(a.shape[:2] != b.shape[:2] for a, b in zip(fgr, pha)):
            raise ValueError(f'{os.path.dirname(frames[0][0])}: foreground and alpha sizes differ')
        return np.stack(same_size(fgr)), np.stack(same_size(pha))

    def __call__(self, rng, i):
        """-> (fgr, pha, bgr, problems)."""
        bgr, problems = self.backgrounds(rng, self.length, self.sampler)
        (fgr, pha), bad = read_first(list(range(len(self))), i, lambda k: self.read(rng, k))
        return (*self.augment(fgr, pha, bgr, rng), problems + bad)


class ImageMatteClips(VideoMatteClips):
    """ImageMatte: a still (foreground, alpha) repeated T times (the motion comes from the augmentation); the length
    is max(#foregrounds, #background images + #background clips) as in the official dataset."""

    def __init__(self, pairs, backgrounds, size, length, train, probabilities):
        if not pairs:
            raise ValueError('no ImageMatte pairs')
        self.pairs = [(f, p) for f, p, *_ in pairs]
        self.index = list(range(max(len(self.pairs), len(backgrounds.images) + len(backgrounds.videos))))
        self.backgrounds, self.size, self.length = backgrounds, size, length
        self.sampler = train_frames if train else valid_frames
        self.augment = motion_augmentation(size, probabilities)

    def read(self, rng, i):
        f, p = self.pairs[i % len(self.pairs)]
        fgr, pha = shrink(read_image(f), self.size), shrink(read_alpha(p), self.size)[..., None]
        if fgr.shape[:2] != pha.shape[:2]:
            raise ValueError(f'{f}: foreground and alpha sizes differ')
        return np.stack([fgr] * self.length), np.stack([pha] * self.length)


def videomatte_split(folder, split, has_valid_folder):
    """{clip: frames} of a VideoMatte240K split folder. Without a validation folder the official four validation
    clips are held back from training and form the validation split."""
    clips = clips_of(find_pairs(folder))
    if has_valid_folder:
        return clips
    held = {c: f for c, f in clips.items() if os.path.basename(c) in VALID_CLIPS}
    if split == 'valid':
        if not held:
            raise ValueError(f'{folder}: no validation folder and none of the clips {", ".join(VALID_CLIPS)}')
        return held
    return OrderedDict((c, f) for c, f in clips.items() if c not in held)


def imagematte_pairs(folder, split):
    """Matting pairs of an ImageMatte split, restricted to `imagematte_<split>.txt` in it when present."""
    pairs = find_pairs(folder)
    listing = os.path.join(folder, f'imagematte_{split}.txt')
    if not os.path.isfile(listing):
        return pairs
    with open(listing, encoding='utf-8') as f:
        names = {line.strip() for line in f if line.strip()}
    kept = [p for p in pairs if os.path.basename(p[0]) in names]
    if not kept:
        raise ValueError(f'{listing}: none of its {len(names)} names is a foreground in {folder}')
    return kept
