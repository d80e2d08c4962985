"""The video object segmentation datasets in their released layouts (numpy only; spec/vos.md section 6).

DAVIS (2016, 2017 train/val/test-dev):
    <root>/JPEGImages/480p/<seq>/00000.jpg       the frames
    <root>/Annotations/480p/<seq>/00000.png      indexed-palette label PNGs (0 background, k = object k, 255 void);
                                                 DAVIS 2016's own download: 0/255 binary masks; test-dev: only
                                                 the first frame
    <root>/ImageSets/2017/val.txt                one sequence name a line (also 2017/train, 2017/test-dev,
                                                 2016/val, 2016/train)
YouTube-VOS (2018, 2019):
    <root>/<split>/JPEGImages/<video>/<frame>.jpg       split train, valid or test; every 5th frame
    <root>/<split>/Annotations/<video>/<frame>.png      palette labels (train: every 5th frame; valid/test: the
                                                        frame where each object first appears)
    <root>/<split>/meta.json                            {"videos": {video: {"objects": {"1": {"category": ...,
                                                        "frames": [...]}}}}}; an object may first appear late
    <root>/<split>_all_frames/JPEGImages/<video>/       every frame, for inference (valid_all_frames)
Frames are named by file name without the extension and listed in name order (the toolkits sort them). Every
problem is a one-line ValueError naming the folder or file and what is wrong.
"""
import json
import os

import numpy as np

from utils.io import read_labels

DAVIS_RESOLUTION = '480p'


def _folder(path, what):
    if not os.path.isdir(path):
        raise ValueError(f"{path}: {what} folder not found")
    return path


def _files(directory, extension, what):
    """Sorted [(name without extension, path)] of the `extension` files of `directory` (hidden files left out)."""
    _folder(directory, what)
    found = sorted((os.path.splitext(f)[0], os.path.join(directory, f)) for f in os.listdir(directory)
                   if f.lower().endswith(extension) and not f.startswith('.'))
    if not found:
        raise ValueError(f"{directory}: no {extension} files in this {what} folder")
    return found


def read_label_stack(paths, binary=False):
    """T x H x W uint8 labels of label PNGs (utils.io.read_labels); `binary`: every nonzero label -> 1 (DAVIS 2016
    masks, 0/255). Frames of different sizes are an error naming the file."""
    stack = []
    for path in paths:
        labels = read_labels(path)
        if stack and labels.shape != stack[0].shape:
            raise ValueError(f"{path}: {labels.shape[1]}x{labels.shape[0]}, but the sequence's first frame "
                             f"{paths[0]} is {stack[0].shape[1]}x{stack[0].shape[0]}")
        stack.append((labels > 0).view(np.uint8) if binary else labels)
    if not stack:
        raise ValueError("no label files to read")
    return np.stack(stack)


# ---------------------------------------------------------------- DAVIS

def davis_image_set(image_set):
    """'2017/val' (default form), '2016/val', '2017/test-dev', ...; a bare split means 2017: 'val' -> '2017/val'."""
    image_set = image_set.strip('/').replace(os.sep, '/')
    return image_set if '/' in image_set else '2017/' + image_set


def is_davis_2016(image_set):
    """DAVIS 2016 is single-object: its masks (and results) are read as binary, nonzero = the object."""
    return davis_image_set(image_set).startswith('2016/')


def davis_sequences(root, image_set='2017/val'):
    """The sequence names of <root>/ImageSets/<image_set>.txt, in file order."""
    _folder(root, 'DAVIS root')
    path = os.path.join(root, 'ImageSets', davis_image_set(image_set) + '.txt')
    if not os.path.isfile(path):
        sets = os.path.join(root, 'ImageSets')
        there = sorted(os.path.relpath(os.path.join(d, f), sets)[:-4] for d, _, fs in os.walk(sets)
                       for f in fs if f.endswith('.txt')) if os.path.isdir(sets) else []
        raise ValueError(f"{path}: image set not found (DAVIS layout <root>/ImageSets/2017/val.txt; "
                         f"{'found ' + ', '.join(there) if there else 'no ImageSets/*/*.txt there'})")
    with open(path) as f:
        names = [line.strip() for line in f if line.strip()]
    if not names:
        raise ValueError(f"{path}: the image set lists no sequence")
    return names


def davis_frames(root, sequence, resolution=DAVIS_RESOLUTION):
    """[(frame, jpg path)] of <root>/JPEGImages/<resolution>/<sequence>/, in name order."""
    return _files(os.path.join(root, 'JPEGImages', resolution, sequence), '.jpg', f'DAVIS {sequence} frames')


def davis_annotations(root, sequence, resolution=DAVIS_RESOLUTION):
    """[(frame, png path)] of <root>/Annotations/<resolution>/<sequence>/, in name order (test-dev: one)."""
    return _files(os.path.join(root, 'Annotations', resolution, sequence), '.png',
                  f'DAVIS {sequence} annotation')


def davis_labels(root, sequence, resolution=DAVIS_RESOLUTION, binary=False):
    """(frame names, T x H x W uint8 labels) of a sequence's annotations (`binary`: DAVIS 2016, nonzero -> 1)."""
    annotations = davis_annotations(root, sequence, resolution)
    return [f for f, _ in annotations], read_label_stack([p for _, p in annotations], binary)


# ---------------------------------------------------------------- YouTube-VOS

def youtube_meta(root, split='valid'):
    """{video: {object id (int): {'category': str or None, 'frames': [frame names]}}} of <root>/<split>/meta.json."""
    path = os.path.join(_folder(os.path.join(root, split), f'YouTube-VOS {split}'), 'meta.json')
    try:
        with open(path) as f:
            meta = json.load(f)
    except FileNotFoundError:
        raise ValueError(f"{path}: meta.json not found (YouTube-VOS layout <root>/<split>/meta.json)") from None
    except ValueError as e:
        raise ValueError(f"{path}: not a readable JSON file ({e})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get('videos'), dict):
        raise ValueError(f"{path}: no \"videos\" table (YouTube-VOS meta.json: {{\"videos\": {{video: "
                         f"{{\"objects\": ...}}}}}})")
    out = {}
    for video, entry in meta['videos'].items():
        objects = entry.get('objects') if isinstance(entry, dict) else None
        if not isinstance(objects, dict):
            raise ValueError(f"{path}: video {video} has no \"objects\" table")
        try:
            out[video] = {int(k): {'category': o.get('category'), 'frames': sorted(o.get('frames', []))}
                          for k, o in objects.items()}
        except (ValueError, AttributeError):
            raise ValueError(f"{path}: video {video}: object ids must be integers with an object table each, "
                             f"got {sorted(objects)}") from None
    return out


def youtube_videos(root, split='valid'):
    """Sorted video names of a split: those of meta.json if it exists, else the folders of JPEGImages/."""
    split_dir = _folder(os.path.join(root, split), f'YouTube-VOS {split}')
    if os.path.isfile(os.path.join(split_dir, 'meta.json')):
        return sorted(youtube_meta(root, split))
    images = _folder(os.path.join(split_dir, 'JPEGImages'), f'YouTube-VOS {split} JPEGImages')
    videos = sorted(d for d in os.listdir(images) if os.path.isdir(os.path.join(images, d)) and d[0] != '.')
    if not videos:
        raise ValueError(f"{images}: no video folders")
    return videos


def youtube_frames(root, split, video, all_frames=False):
    """[(frame, jpg path)] of a video in name order: <split>/JPEGImages/<video>/ (every 5th frame), or with
    `all_frames` <split>_all_frames/JPEGImages/<video>/ (every frame, the inference input)."""
    top = split + '_all_frames' if all_frames else split
    return _files(os.path.join(root, top, 'JPEGImages', video), '.jpg', f'YouTube-VOS {video} frames')


def youtube_annotations(root, split, video):
    """[(frame, png path)] of <split>/Annotations/<video>/ in name order."""
    return _files(os.path.join(root, split, 'Annotations', video), '.png', f'YouTube-VOS {video} annotation')


def youtube_first_frames(root, split, video):
    """{object id: the frame where its mask is first given}: from meta.json (its first listed frame) if it
    exists, else from the annotation files (the first one holding the label). Objects can start late."""
    annotations = youtube_annotations(root, split, video)
    if os.path.isfile(os.path.join(root, split, 'meta.json')):
        meta = youtube_meta(root, split)
        if video not in meta:
            raise ValueError(f"{os.path.join(root, split, 'meta.json')}: no video {video}")
        firsts = {k: o['frames'][0] for k, o in meta[video].items() if o['frames']}
        names = {f for f, _ in annotations}
        missing = sorted(f for f in set(firsts.values()) if f not in names)
        if missing:
            raise ValueError(f"{os.path.join(root, split, 'Annotations', video)}: no annotation for frame "
                             f"{missing[0]}, where meta.json says an object first appears")
        return dict(sorted(firsts.items()))
    firsts = {}
    for frame, path in annotations:
        for k in np.unique(read_labels(path)).tolist():
            if k not in (0, 255):
                firsts.setdefault(int(k), frame)
    return dict(sorted(firsts.items()))
