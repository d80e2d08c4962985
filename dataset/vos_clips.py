"""Training clips of STCN / IMSFR (spec/vos.md 4), numpy and OpenCV only (the data workers): 3-frame clips of
DAVIS / YouTube-VOS videos with the max-skip rule and the official augmentations (the main stage), and 3-frame clips
made from one static image and its mask (stage 0), with the sampler of the max-skip curriculum and the collate.

Keys: (epoch, index, step, max skip). A sample's randomness is seeded by (seed, epoch, index), so the data of step N
are a function of N alone (resume, any worker). Validation keys are (0, index, 0, VALID_SKIP): fixed clips, the
training augmentation with a seed of their own.

Layouts of one split folder (a `train`/`valid` entry of configs/datasets.json):
* DAVIS: <folder>/ImageSets/2017/{train,val}.txt, JPEGImages/480p/<seq>/*.jpg, Annotations/480p/<seq>/*.png
  (split train reads 2017/train, valid 2017/val);
* YouTube-VOS (a split folder such as train/): JPEGImages/<video>/*.jpg, Annotations/<video>/*.png; with a
  meta.json only every 5th frame is there, so its max skip is divided by 5 (other folders of this layout, e.g.
  BL30K, keep it);
* static images (stage 0): every *.jpg under the folder with a mask of the same name and .png (FSS-1000 class
  folders, DUTS, ECSSD, BIG, HRSOD).
Frames without an annotation of the same name are left out; videos of fewer than 3 frames too.

Differences from the official loaders: OpenCV's interpolation instead of PIL's; stage 0 warps each frame once (the
shared scale and flip, the per-frame affine, the resize and the crop composed into one matrix; the colour jitter
after it) and leaves out the thin-plate-spline warp the official applies to a third of its frames.
"""
import os
from typing import NamedTuple

import cv2
import numpy as np

from utils.io import read_alpha, read_image, read_labels

from .augmentation import apply_jitter, jitter_params
from .matting import EpochSampler, read_first
from .motion import Affine, grayscale, resized_crop_params

MEAN = np.array([0.485, 0.456, 0.406], np.float32)          # the ImageNet normalisation of the networks
STD = np.array([0.229, 0.224, 0.225], np.float32)
FILL = np.array([124, 116, 104], np.float32) / 255          # the official affine fill (im_mean)
MAX_TRIALS = 100            # new frames of the same video while frame 0 holds no object
VALID_SKIP = 5
DEFAULT_SCHEDULE = '0:5,0.1:10,0.2:15,0.3:20,0.4:25,0.9:5'     # STCN: 5, then [10, 15, 20, 25, 5] at these fractions


class Video(NamedTuple):
    name: str
    frames: tuple               # ((jpg, png), ...) in name order
    divisor: int                # max skip // divisor (YouTube-VOS: 5)


class ClipSample(NamedTuple):
    key: tuple
    images: np.ndarray          # 3 x S x S x 3 float32 RGB in [0, 1]
    masks: np.ndarray           # 3 x 2 x S x S float32: target, second object
    selector: np.ndarray        # 2 float32: [1, 1 if there is a second object]
    problems: tuple


# ---------------------------------------------------------------- listings

def _names(folder, extension):
    if not os.path.isdir(folder):
        return {}
    return {os.path.splitext(f)[0]: os.path.join(folder, f) for f in os.listdir(folder)
            if f.lower().endswith(extension) and not f.startswith('.')}


def paired_frames(image_dir, label_dir):
    """((jpg, png), ...) of the frames with an annotation, in name order."""
    images, labels = _names(image_dir, '.jpg'), _names(label_dir, '.png')
    return tuple((images[n], labels[n]) for n in sorted(images) if n in labels)


def is_video_folder(folder):
    """A DAVIS or YouTube-VOS layout (else a folder of static images)."""
    return any(os.path.isdir(os.path.join(folder, d)) for d in ('ImageSets', 'JPEGImages'))


def video_listing(folder, split):
    """[Video] of a DAVIS or YouTube-VOS split folder (see the module docstring); ValueError naming what is missing."""
    if os.path.isdir(os.path.join(folder, 'ImageSets')):
        from .vos import davis_sequences
        names = davis_sequences(folder, '2017/train' if split == 'train' else '2017/val')
        images, labels, divisor = (os.path.join(folder, 'JPEGImages', '480p'),
                                   os.path.join(folder, 'Annotations', '480p'), 1)
    elif os.path.isdir(os.path.join(folder, 'JPEGImages')):
        images, labels = os.path.join(folder, 'JPEGImages'), os.path.join(folder, 'Annotations')
        names = sorted(d for d in os.listdir(images) if os.path.isdir(os.path.join(images, d)) and d[0] != '.')
        divisor = 5 if os.path.isfile(os.path.join(folder, 'meta.json')) else 1
    else:
        raise ValueError(f"{folder}: neither a DAVIS folder (ImageSets/, JPEGImages/480p/) nor a YouTube-VOS split "
                         f"folder (JPEGImages/, Annotations/)")
    videos = [Video(n, paired_frames(os.path.join(images, n), os.path.join(labels, n)), divisor) for n in names]
    videos = [v for v in videos if len(v.frames) >= 3]
    if not videos:
        raise ValueError(f"{folder}: no video with 3 or more annotated frames")
    return videos


def static_listing(folder):
    """[(jpg, png)] of every jpg under `folder` with a png mask of the same name, sorted."""
    if not os.path.isdir(folder):
        raise ValueError(f"{folder}: static image folder not found")
    pairs = []
    for directory, _, files in os.walk(folder):
        names = set(files)
        for f in files:
            stem, ext = os.path.splitext(f)
            if ext.lower() == '.jpg' and stem + '.png' in names:
                pairs.append((os.path.join(directory, f), os.path.join(directory, stem + '.png')))
    if not pairs:
        raise ValueError(f"{folder}: no jpg image with a png mask of the same name")
    return sorted(pairs)


# ---------------------------------------------------------------- the max-skip rule and its curriculum

def frame_indices(rng, n, max_skip):
    """The official 3-frame draw from n frames with a max skip J (time reversed with p 0.5)."""
    jump = min(n, max_skip)
    start = int(rng.integers(n - jump + 1))
    f1 = min(start + int(rng.integers(jump + 1)) + 1, n - jump, n - 1)
    f2 = min(f1 + int(rng.integers(jump + 1)) + 1, n - jump // 2, n - 1)
    indices = [start, f1, f2]
    return indices[::-1] if rng.random() < 0.5 else indices


def parse_schedule(text):
    """'0:5,0.1:10,...' -> [(fraction, max skip), ...] in increasing fractions starting at 0."""
    try:
        pairs = [(float(f), int(s)) for f, s in (item.split(':') for item in text.split(','))]
    except ValueError:
        raise ValueError(f"--max-skip-schedule {text!r}: expected FRACTION:SKIP items separated by commas, "
                         f"e.g. {DEFAULT_SCHEDULE}") from None
    if pairs[0][0] != 0 or any(b[0] <= a[0] for a, b in zip(pairs, pairs[1:])) or min(s for _, s in pairs) < 1:
        raise ValueError(f"--max-skip-schedule {text!r}: fractions must start at 0 and increase, skips be >= 1")
    return pairs


def max_skip_at(schedule, step, total):
    """The max skip at `step` of `total` steps: the last schedule entry whose fraction is reached."""
    fraction = step / max(total, 1)
    return [s for f, s in schedule if fraction >= f][-1]


class CurriculumSampler(EpochSampler):
    """EpochSampler batches whose keys carry the global step and its max skip: (epoch, index, step, skip)."""

    def __init__(self, size, batch_size, schedule, total, seed=0, rank=0, world=1):
        super().__init__(size, batch_size, seed=seed, rank=rank, world=world)
        self.schedule, self.total = schedule, total

    def __iter__(self):
        for b, keys in enumerate(super().__iter__(), self.start_batch):
            step = self.epoch * len(self) + b
            skip = max_skip_at(self.schedule, step, self.total)
            yield [(e, i, step, skip) for e, i in keys]


# ---------------------------------------------------------------- augmentation helpers

def _jitter(image, params):
    """apply_jitter without the hue step when its shift is 0 (torchvision skips it then too)."""
    factors, order = params
    return apply_jitter(image, (factors, [o for o in order if o != 3 or factors[3] != 0]))


def _warp(image, matrix, size, nearest=False, cubic=True, fill=0):
    flags = cv2.INTER_NEAREST if nearest else (cv2.INTER_CUBIC if cubic else cv2.INTER_LINEAR)
    border = tuple(float(v) for v in np.broadcast_to(fill, (3,))) if image.ndim == 3 else float(fill)
    return cv2.warpAffine(image, matrix[:2], (size, size), flags=flags, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=border)


def _h(matrix):
    """2 x 3 -> 3 x 3."""
    return np.vstack([matrix, [0, 0, 1]]).astype(np.float64)


def augment_video_clip(rng, images, labels, size):
    """The main-stage augmentation of 3 frames (H x W x 3 float, H x W uint8 labels) -> (3 x S x S x 3, 3 x S x S):
    per clip a horizontal flip (p 0.5), one RandomResizedCrop (scale 0.36-1; image bilinear, labels nearest), colour
    jitter (0.1, 0.03, 0.03, 0) and grayscale (p 0.05); per frame a RandomAffine (15 degrees, shear 10; image
    bicubic, labels nearest) drawn once for the image and its labels, then a mild jitter (0.01, 0.01, 0.01, 0)."""
    h, w = images[0].shape[:2]
    flip = rng.random() < 0.5
    top, left, ch, cw = resized_crop_params(rng, h, w, (0.36, 1.0), (3 / 4, 4 / 3))
    clip_jitter = jitter_params(rng, 0.1, 0.03, 0.03, 0)
    gray = rng.random() < 0.05
    out_images, out_labels = [], []
    for image, label in zip(images, labels):
        if flip:
            image, label = image[:, ::-1], label[:, ::-1]
        image = cv2.resize(np.ascontiguousarray(image[top:top + ch, left:left + cw]), (size, size),
                           interpolation=cv2.INTER_LINEAR)
        label = cv2.resize(np.ascontiguousarray(label[top:top + ch, left:left + cw]), (size, size),
                           interpolation=cv2.INTER_NEAREST)
        image = _jitter(np.clip(image, 0, 1), clip_jitter)
        if gray:
            image = grayscale(image)
        matrix = Affine(rng.uniform(-15, 15), 0.0, 0.0, 1.0, rng.uniform(-10, 10)).matrix(size, size)
        image = np.clip(_warp(image, matrix, size, fill=FILL), 0, 1)
        label = _warp(label, matrix, size, nearest=True)
        out_images.append(_jitter(image, jitter_params(rng, 0.01, 0.01, 0.01, 0)))
        out_labels.append(label)
    return np.stack(out_images).astype(np.float32), np.stack(out_labels)


def augment_static_clip(rng, image, mask, size):
    """Stage 0: 3 frames of one image (H x W x 3) and its soft mask (H x W) -> (3 x S x S x 3, 3 x S x S): a shared
    scale (0.8-1.5) and flip, jitter (0.1, 0.05, 0.05, 0.05) and grayscale (p 0.05); per frame a RandomAffine
    (20 degrees, scale 0.9-1.1, shear 10), the resize of the short side to S, a random S x S crop and a jitter
    (0.1, 0.05, 0.05, 0). One warp per frame (image bicubic, mask bilinear)."""
    h, w = image.shape[:2]
    r = size / min(h, w)
    if r < 1:                              # shrink first with area averaging: no aliasing of large images
        sw, sh = max(size, round(w * r)), max(size, round(h * r))
        image = cv2.resize(image, (sw, sh), interpolation=cv2.INTER_AREA)
        mask = cv2.resize(mask, (sw, sh), interpolation=cv2.INTER_AREA)
        h, w = sh, sw
        r = size / min(h, w)
    rh, rw = round(h * r), round(w * r)
    shared = _h(Affine(0.0, 0.0, 0.0, rng.uniform(0.8, 1.5), 0.0).matrix(h, w))
    if rng.random() < 0.5:
        shared = np.array([[-1, 0, w - 1], [0, 1, 0], [0, 0, 1]], np.float64) @ shared
    clip_jitter = jitter_params(rng, 0.1, 0.05, 0.05, 0.05)
    gray = rng.random() < 0.05
    images, masks = [], []
    for _ in range(3):
        frame = _h(Affine(rng.uniform(-20, 20), 0.0, 0.0, rng.uniform(0.9, 1.1), rng.uniform(-10, 10)).matrix(h, w))
        top, left = int(rng.integers(rh - size + 1)), int(rng.integers(rw - size + 1))
        place = np.array([[r, 0, -left], [0, r, -top], [0, 0, 1]], np.float64)
        matrix = (place @ frame @ shared)[:2].astype(np.float32)
        x = _jitter(np.clip(_warp(image, matrix, size, fill=FILL), 0, 1), clip_jitter)
        if gray:
            x = grayscale(x)
        images.append(_jitter(x, jitter_params(rng, 0.1, 0.05, 0.05, 0)))
        masks.append(np.clip(_warp(mask, matrix, size, cubic=False), 0, 1))
    return np.stack(images).astype(np.float32), np.stack(masks).astype(np.float32)


def pick_objects(rng, labels):
    """(target, second or None) of the labels present in frame 0 (0 is background), or None without any."""
    present = [int(v) for v in np.unique(labels[0]) if v != 0]
    if not present:
        return None
    target = present[int(rng.integers(len(present)))]
    rest = [v for v in present if v != target]
    return target, (rest[int(rng.integers(len(rest)))] if rest else None)


# ---------------------------------------------------------------- datasets

class VideoClips:
    """Key (epoch, index, step, max skip) -> ClipSample of video `index` (DAVIS, YouTube-VOS: `videos` with their
    repeats); an unreadable frame replaces the video by the next one (ClipSample.problems)."""

    def __init__(self, videos, size, seed=0, train=True):
        if not videos:
            raise ValueError('no training videos')
        self.videos, self.size, self.seed, self.train = videos, size, seed, train

    def __len__(self):
        return len(self.videos)

    def rng(self, key):
        epoch, index = key[:2]
        return np.random.default_rng([self.seed, epoch, index] if self.train else [self.seed, 1_000_003, index])

    def clip(self, rng, video, max_skip):
        """(images, masks 3 x 2 x S x S, selector) of one video, redrawing frames while frame 0 has no object."""
        skip = max(1, max_skip // video.divisor)
        for _ in range(MAX_TRIALS):
            chosen = [video.frames[i] for i in frame_indices(rng, len(video.frames), skip)]
            images, labels = augment_video_clip(rng, [read_image(j) for j, _ in chosen],
                                                [read_labels(p) for _, p in chosen], self.size)
            objects = pick_objects(rng, labels)
            if objects is not None:
                break
        target, second = objects or (None, None)            # no object after MAX_TRIALS: empty masks
        masks = np.zeros((3, 2) + labels.shape[1:], np.float32)
        for j, label in enumerate((target, second)):
            if label is not None:
                masks[:, j] = labels == label
        return images, masks, np.array([1, second is not None], np.float32)

    def __getitem__(self, key):
        skip = key[3] if len(key) > 3 else VALID_SKIP
        rng = self.rng(key)
        (images, masks, selector), problems = read_first(self.videos, key[1], lambda v: self.clip(rng, v, skip))
        return ClipSample(key, images, masks, selector, problems)


class StaticClips(VideoClips):
    """Key (epoch, index, ...) -> ClipSample of 3 frames made from static image `index` (a single object)."""

    def __init__(self, pairs, size, seed=0, train=True):
        if not pairs:
            raise ValueError('no static training images')
        super().__init__(pairs, size, seed, train)

    def read(self, rng, pair):
        image, mask = read_image(pair[0]), read_alpha(pair[1])
        if image.shape[:2] != mask.shape:
            raise ValueError(f"{pair[1]}: mask {mask.shape[1]}x{mask.shape[0]}, image {image.shape[1]}x"
                             f"{image.shape[0]}")
        return augment_static_clip(rng, image, mask, self.size)

    def __getitem__(self, key):
        rng = self.rng(key)
        (images, masks), problems = read_first(self.videos, key[1], lambda pair: self.read(rng, pair))
        masks = np.stack([masks, np.zeros_like(masks)], axis=1)
        return ClipSample(key, images, masks, np.array([1, 0], np.float32), problems)


def class_map(masks):
    """3 x K x S x S target (/ second) masks -> 3 x S x S int64 classes (0 background, 1 target, 2 second)."""
    cls = np.zeros(masks[:, 0].shape, np.int64)
    for j in range(masks.shape[1]):
        cls[masks[:, j] > 0.5] = j + 1
    return cls


def normalise(images):
    return (images - MEAN) / STD


class ClipCollate:
    """ClipSamples -> [frames B x 3 x 3 x S x S (ImageNet-normalised), masks B x 3 x K x S x S, selector B x K,
    classes B x 3 x S x S int64, step B int64]; K = `objects` (2, or 1 for the single-object stage 0)."""

    def __init__(self, objects=2):
        self.objects = objects

    def __call__(self, samples):
        frames = np.stack([normalise(s.images).transpose(0, 3, 1, 2) for s in samples]).astype(np.float32)
        masks = np.stack([s.masks[:, :self.objects] for s in samples]).astype(np.float32)
        selector = np.stack([s.selector[:self.objects] for s in samples]).astype(np.float32)
        classes = np.stack([class_map(s.masks[:, :self.objects]) for s in samples])
        step = np.array([s.key[2] if len(s.key) > 2 else 0 for s in samples], np.int64)
        return [np.ascontiguousarray(frames), masks, selector, classes, step]


def total_steps(max_steps, epochs, steps_per_epoch):
    """The length of the run the curriculum is spread over."""
    return max_steps if max_steps is not None else epochs * steps_per_epoch
