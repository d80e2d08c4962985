"""Video object segmentation of whole clips with STCN / IMSFR: predict.py and eval.py of the vos family.

A clip is streamed: frames are read, resized, normalised and propagated one at a time (model.vos.Propagator), so
memory holds the memory bank and one frame, not the clip. The bank grows by one frame every `mem_every` frames and
is capped at `max_memory_frames` (the first frame and the newest ones are kept), which bounds memory on long
videos; the cap (64) is above what the official settings reach on DAVIS and YouTube-VOS clips (at most 21 and 60
memory frames), where results are the official ones.

Labels: the first frame's label map gives the objects (its non-zero values, sorted); every output frame is the
argmax over background and objects of the probabilities upsampled (bilinear) to the frame's size, written as the
same label values in the DAVIS palette.
"""
import os
import random
import time

import cv2
import numpy as np
import paddle
import paddle.nn.functional as F
from tqdm import tqdm

from model.vos import Propagator, pad_divide_by, unpad
from utils.io import DAVIS_PALETTE, ImageReadError, VideoWriter, make_dirs, read_labels, to_uint8, write_image, \
    write_labels
from utils.pairing import by_stem, discover

from .predict import InputError, Summary, clip_length, finished, open_clip, plate_free_clips

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


def resize_short(image, size, interpolation=cv2.INTER_AREA):
    """Resize so that the short side is `size` (None: unchanged)."""
    h, w = image.shape[:2]
    if not size or min(h, w) == size:
        return image
    scale = size / min(h, w)
    shape = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, shape, interpolation=interpolation if scale < 1 else cv2.INTER_CUBIC)


def to_network(frame):
    """H x W x 3 RGB in [0, 1] -> 1 x 3 x H x W ImageNet-normalised (what ToTensor + Normalize give)."""
    return paddle.to_tensor(((frame - MEAN) / STD).transpose(2, 0, 1)[None].astype(np.float32))


def objects_of(first):
    """The sorted object labels of a first-frame label map; none is an error."""
    labels = [int(v) for v in np.unique(first) if v != 0]
    if not labels:
        raise InputError('the first-frame mask has no object (every pixel is 0)')
    return labels


class ClipSegmenter:
    """Frames of one clip in order (H x W x 3 RGB in [0, 1]) -> label maps of the same size.

    `first_labels` (H x W, the first frame's objects as values 1..255) starts it; the network sees frames resized
    so that their short side is `size` (480: the official 480p) and padded to multiples of 16."""

    def __init__(self, net, first_labels, top_k, mem_every, size=480, max_memory_frames=64, seed=0):
        random.seed(seed)                   # IMSFR's long-term memory sampling draws from Python's random
        self.labels = objects_of(first_labels)
        self.first, self.size = first_labels, size
        self.lut = np.array([0] + self.labels, np.uint8)
        self.propagator = Propagator(net, len(self.labels), top_k, mem_every, max_memory_frames=max_memory_frames)
        self.index = 0

    def __call__(self, frame):
        h, w = frame.shape[:2]
        x, pad = pad_divide_by(to_network(resize_short(frame, self.size)))
        if self.index == 0:
            if self.first.shape != (h, w):
                raise InputError(f'the first-frame mask is {self.first.shape[1]}x{self.first.shape[0]}, the frames '
                                 f'{w}x{h}')
            small = resize_short(self.first, self.size, cv2.INTER_NEAREST)
            masks = np.stack([(small == v) for v in self.labels])[:, None].astype(np.float32)
            prob = self.propagator.first(x, pad_divide_by(paddle.to_tensor(masks))[0])
        else:
            prob = self.propagator.next(x)
        self.index += 1
        prob = F.interpolate(unpad(prob, pad), size=[h, w], mode='bilinear', align_corners=False)   # K+1 x 1 x H x W
        return self.lut[prob[:, 0].argmax(axis=0).numpy()]


class VOSRunner:
    """The vos family's runner: called with a clip's first-frame labels it gives the clip's ClipSegmenter.
    prepare(frames, first) / step(frames) run one clip frame by frame, cycling over `frames` (the speed test)."""

    def __init__(self, network, options):
        self.network, self.options = network, options

    def __call__(self, first):
        o = self.options
        return ClipSegmenter(self.network, first, o.top_k, o.mem_every, o.vos_resolution, o.max_memory_frames,
                             o.memory_seed)

    def prepare(self, frames, first):
        self.segmenter, self.t = self(first), 0
        return frames

    def step(self, frames):
        frame = frames[self.t % len(frames)]
        self.t += 1
        with paddle.no_grad():
            return self.segmenter(frame)


def overlay(frame, labels, alpha=0.5):
    """The frame with each object tinted in its palette colour (uint8 RGB)."""
    colours = DAVIS_PALETTE[labels].astype(np.float32) / 255
    mask = (labels > 0)[..., None]
    return to_uint8(np.where(mask, frame * (1 - alpha) + colours * alpha, frame))


def first_masks(mask, clips):
    """{clip stem: first-frame mask path}: one file for one clip, or a folder paired with the clips by name
    (`<stem>.png`, or `<stem>/<first frame>.png` as a DAVIS Annotations folder holds)."""
    if mask is None:
        raise InputError('--mask is required for video object segmentation: the first frame\'s label PNG '
                         '(0 background, 1..N objects; a DAVIS annotation)')
    if os.path.isfile(mask):
        if len(clips) != 1:
            raise InputError(f'{mask}: one mask for {len(clips)} clips; give a folder of <clip>.png masks')
        return {clips[0][1]: mask}
    root, files = discover(mask)
    table = by_stem(root, files)
    found = {}
    for _, stem in clips:
        candidates = [key for key in table if key == stem or os.path.dirname(key) == stem]
        if not candidates:
            raise InputError(f'{mask}: no mask for clip {stem} (expected {stem}.png or {stem}/<frame>.png)')
        found[stem] = table[sorted(candidates)[0]]
    return found


def frame_names(source, count):
    """Output names: the frame files' names for a folder of frames, 00000.. for a video."""
    if isinstance(source, list):
        return [os.path.splitext(os.path.basename(p))[0] for p in source]
    return [f'{i:05d}' for i in range(count)]


def segment_video(cfg, segmenter_for):
    """predict.py for the vos family: every clip of cfg.src (a video, or a folder of frames) with its first-frame
    mask -> <output-dir>/<clip>/masks/<frame>.png (palette) and <clip>/overlay.mp4 (or overlay/ PNG frames);
    `segmenter_for(first labels)` gives the clip's ClipSegmenter. A clip whose outputs are complete is skipped
    with --resume. Returns inference.predict.Summary."""
    if os.path.exists(cfg.output_dir) and not os.path.isdir(cfg.output_dir):
        raise InputError(f"{cfg.output_dir}: --output-dir is a file, not a folder")
    clips = plate_free_clips(cfg.src)
    masks = first_masks(cfg.mask, clips)
    jobs, skipped = [], 0
    for source, stem in clips:
        folder = os.path.join(cfg.output_dir, stem)
        video = cfg.output_format == 'video'
        outputs = [os.path.join(folder, 'masks'), os.path.join(folder, 'overlay.mp4' if video else 'overlay')]
        count = clip_length(source)
        if cfg.resume and finished(outputs[:1], count) and (finished(outputs[1:]) if video else
                                                            finished(outputs[1:], count)):
            skipped += 1
            continue
        if not cfg.overwrite and not cfg.resume and os.path.exists(outputs[0]):
            raise InputError(f"{outputs[0]} exists already; pass -y to overwrite or --resume to skip finished clips")
        jobs.append((source, stem, outputs, count))
    failures, frames, model_seconds, start = [], 0, 0.0, time.time()
    with tqdm(total=sum(j[3] for j in jobs), unit='frame', desc='segmenting', dynamic_ncols=True) as bar:
        for source, stem, (mask_dir, overlay_path), count in jobs:
            try:
                segmenter = segmenter_for(read_labels(masks[stem]))
                reader = open_clip(source, cfg.fps)
                names = frame_names(source, count)
                make_dirs(mask_dir)
                writer = None
                if cfg.output_format == 'video':
                    writer = VideoWriter(overlay_path, reader.fps, reader.width, reader.height, cfg.video_preset)
                try:
                    for t, frame in enumerate(reader):
                        tick = time.perf_counter()
                        with paddle.no_grad():
                            labels = segmenter(frame)
                        model_seconds += time.perf_counter() - tick
                        write_labels(os.path.join(mask_dir, names[t] + '.png'), labels)
                        if writer is None:
                            write_image(os.path.join(overlay_path, names[t] + '.png'), overlay(frame, labels))
                        else:
                            writer.write(overlay(frame, labels))
                        frames += 1
                        bar.update()
                except BaseException:
                    if writer is not None:
                        writer.abort()              # no half-written overlay video
                    raise
                finally:
                    reader.close()
                if writer is not None:
                    writer.close()
            except (InputError, ImageReadError, ValueError) as e:
                failures.append(f'{stem}: {e}')
                tqdm.write(f'error: {stem}: {e}')
    return Summary(len(jobs) - len(failures), skipped, failures, frames, time.time() - start, model_seconds, 0.0)
