"""The person-segmentation data of Robust Video Matting training (spec/rvm.md 2.4), numpy only (worker processes).

Layouts, as distributed:
- COCO panoptic: a split folder `<root>/<split>/` of images (e.g. train2017), `<root>/annotations/panoptic_<split>.json`
  and the PNGs in `<root>/annotations/panoptic_<split>/` (segment id = R + 256 G + 256^2 B); images that have a person
  segment are kept, the mask is the union of person (1), backpack (27) and tie (32) segments.
- Supervisely Person Dataset (as prepared for RVM): `<root>/img/` and `<root>/seg/`, paired by file name.
- YouTubeVIS 2021: a split folder with `JPEGImages/<video>/<frame>.jpg` and `instances.json`; the person
  instances (category 26) of a frame are OR-ed; masks are RLE, uncompressed (counts list) or COCO-compressed.
"""
import json
import os

import cv2
import numpy as np

from utils.io import read_alpha, read_image
from utils.pairing import by_stem, pair_up

from .matting import read_first
from .motion import augment_clip_segmentation, augment_image_segmentation
from .video_matting import same_size, shrink, train_frames

COCO_PERSON = (1, 27, 32)          # person, backpack, tie
YOUTUBEVIS_PERSON = 26


def read_json(path):
    try:
        with open(path, encoding='utf-8') as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f'{path}: cannot read the annotations ({e})') from None


def coco_panoptic(folder):
    """[(image, panoptic png, (segment ids of the mask))] of the images of a split folder that show a person."""
    root, split = os.path.split(os.path.normpath(folder))
    annotations = os.path.join(root, 'annotations', f'panoptic_{split}.json')
    pngs = os.path.join(root, 'annotations', f'panoptic_{split}')
    if not os.path.isdir(pngs):
        pngs = os.path.join(root, f'panoptic_{split}')
    rows = []
    for ann in read_json(annotations).get('annotations', []):
        segments = ann.get('segments_info', [])
        if any(s['category_id'] == 1 for s in segments):
            ids = tuple(s['id'] for s in segments if s['category_id'] in COCO_PERSON)
            rows.append((os.path.join(root, split, os.path.splitext(ann['file_name'])[0] + '.jpg'),
                         os.path.join(pngs, ann['file_name']), ids))
    if not rows:
        raise ValueError(f'{annotations}: no image with a person segment')
    return rows


def supervisely(root):
    """[(image, mask, None)] of `<root>/img` and `<root>/seg` paired by name."""
    pairs = pair_up({'img/': by_stem(os.path.join(root, 'img')), 'seg/': by_stem(os.path.join(root, 'seg'))},
                    exact=('img/', 'seg/'), where=root)
    if not pairs:
        raise ValueError(f'{root}: img/ and seg/ hold no images')
    return [(files['img/'], files['seg/'], None) for _, files in pairs]


def image_rows(folder):
    """Rows of a segmentation-image folder: Supervisely when it has img/ and seg/ children, else COCO panoptic."""
    if all(os.path.isdir(os.path.join(folder, child)) for child in ('img', 'seg')):
        return supervisely(folder)
    return coco_panoptic(folder)


def read_mask(png, ids):
    """H x W x 1 float32 in {0, 1}: a panoptic PNG's segments `ids`, or any non-zero pixel of a mask file."""
    if ids is None:
        return (read_alpha(png) > 0).astype(np.float32)[..., None]
    rgb = cv2.imread(png, cv2.IMREAD_COLOR)
    if rgb is None:
        raise ValueError(f'{png}: cannot read the panoptic mask')
    rgb = rgb.astype(np.int64)
    segment = rgb[..., 2] + 256 * rgb[..., 1] + 65536 * rgb[..., 0]
    return np.isin(segment, ids).astype(np.float32)[..., None]


class ImageSegmentation:
    """COCO panoptic + Supervisely rows -> one-frame clips (image 1 x size x size x 3, mask 1 x size x size x 1),
    augmented."""

    def __init__(self, rows, size):
        if not rows:
            raise ValueError('no segmentation images')
        self.rows, self.size = rows, size

    def __len__(self):
        return len(self.rows)

    def read(self, row):
        image, png, ids = row
        img, seg = shrink(read_image(image), self.size), read_mask(png, ids)
        if seg.shape[:2] != img.shape[:2]:      # masks are at full size; shrink like the image
            seg = (cv2.resize(seg, img.shape[1::-1], interpolation=cv2.INTER_NEAREST) > 0.5)[..., None]
        return img, seg.astype(np.float32)

    def __call__(self, rng, i):
        (img, seg), problems = read_first(self.rows, i, self.read)
        img, seg = augment_image_segmentation(img, seg, self.size, rng)
        return img[None], seg[None], problems             # one-frame clips


def decode_rle(rle):
    """COCO RLE (uncompressed counts list or compressed string) -> H x W uint8, column-major as pycocotools."""
    h, w = rle['size']
    counts = rle['counts']
    if isinstance(counts, str):
        counts = rle_string_counts(counts)
    flat = np.zeros(h * w, np.uint8)
    position, value = 0, 0
    for n in counts:
        flat[position:position + n] = value
        position, value = position + n, 1 - value
    return flat.reshape(w, h).T


def rle_string_counts(text):
    """pycocotools' compressed counts: 5 bits per character (+48), continuation bit 0x20, sign bit 0x10, each
    count after the second stored as the difference to the one two places back."""
    counts, p = [], 0
    while p < len(text):
        x, k, more = 0, 0, True
        while more:
            c = ord(text[p]) - 48
            x |= (c & 0x1f) << 5 * k
            more = bool(c & 0x20)
            p, k = p + 1, k + 1
            if not more and c & 0x10:
                x |= -1 << 5 * k
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def youtubevis(folder):
    """[(frame files, per-frame [RLE of each person instance])] of the videos of a split folder with a person."""
    data = read_json(os.path.join(folder, 'instances.json'))
    videos = {v['id']: v for v in data.get('videos', [])}
    masks = {}
    for ann in data.get('annotations', []):
        if ann.get('category_id') == YOUTUBEVIS_PERSON and ann['video_id'] in videos:
            frames = masks.setdefault(ann['video_id'], [[] for _ in videos[ann['video_id']]['file_names']])
            for frame, rle in zip(frames, ann['segmentations']):
                if rle is not None:
                    frame.append(rle)
    clips = [([os.path.join(folder, 'JPEGImages', f) for f in videos[v]['file_names']], masks[v])
             for v in sorted(masks)]
    if not clips:
        raise ValueError(f"{os.path.join(folder, 'instances.json')}: no video with a person")
    return clips


class ClipSegmentation:
    """YouTubeVIS: one sample per `length` frames of each video; frames by the train sampler at speed 1 (modulo the
    video length) -> (images T x size x size x 3, masks T x size x size x 1), augmented once per clip."""

    def __init__(self, clips, size, length):
        if not clips:
            raise ValueError('no segmentation clips')
        self.clips, self.size, self.length = clips, size, length
        self.index = [(c, s) for c, (files, _) in enumerate(clips) for s in range(0, len(files), length)]

    def __len__(self):
        return len(self.index)

    def read(self, rng, i):
        clip, start = self.index[i]
        files, rles = self.clips[clip]
        imgs, segs = [], []
        for t in train_frames(rng, self.length, speeds=(1,)):
            k = (start + t) % len(files)
            img = read_image(files[k])
            seg = np.zeros(img.shape[:2], np.uint8)
            for rle in rles[k]:
                mask = decode_rle(rle)
                if mask.shape != seg.shape:
                    raise ValueError(f'{files[k]}: its mask is {mask.shape[1]}x{mask.shape[0]}, the frame '
                                     f'{seg.shape[1]}x{seg.shape[0]}')
                seg |= mask
            scale = shrink(img, self.size)
            imgs.append(scale)
            segs.append(cv2.resize(seg.astype(np.float32), scale.shape[1::-1], interpolation=cv2.INTER_NEAREST))
        return np.stack(same_size(imgs)), np.stack(same_size(segs))[..., None]

    def __call__(self, rng, i):
        (imgs, segs), problems = read_first(list(range(len(self))), i, lambda k: self.read(rng, k))
        return (*augment_clip_segmentation(imgs, segs, self.size, rng), problems)
