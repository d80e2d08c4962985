"""predict.py's jobs: find and pair the inputs, skip finished ones, run a family's runner over images (batched
when sizes agree) and clips (in frame order, plates alongside), compose and write every output atomically.

Outputs: <output_dir>/<type>/<relative input path>.png for images, <output_dir>/<relative clip path without
extension>/<type>.mp4 (or <type>/<frame>.png) for videos and folders of frames.
"""
import functools
import os
import sys
import time
from dataclasses import dataclass, field

import cv2
import numpy as np
from tqdm import tqdm

from utils.alignment import align_background
from utils.io import ImageReadError, VideoReader, VideoWriter, is_video, opencv_image, read_image, read_trimap, \
    resize_cover, write_image
from utils.pairing import by_stem, discover, pair_up
from utils.threads import ReadAhead, Worker

VIDEO_TARGET = (120 / 255, 1.0, 155 / 255)   # the official video default when no --target-bgr is given
NAME_SUFFIXES = ('_src', '_bgr', '_img', '_back', '_background', '_trimap')


class InputError(ValueError):
    """An input that cannot be processed; the message names the file."""


# ---------------------------------------------------------------- what the composite goes onto

def parse_colour(text):
    """'#00ff00' or '0,255,0' -> RGB in [0, 1], None when the text is neither."""
    text = text.strip()
    try:
        if text.startswith('#') and len(text) == 7:
            return tuple(int(text[i:i + 2], 16) / 255 for i in (1, 3, 5))
        values = [float(v) for v in text.split(',')]
        if len(values) == 3 and all(0 <= v <= 255 for v in values):
            return tuple(v / 255 for v in values)
    except ValueError:
        pass
    return None


class Target:
    """What the composite goes onto: None (transparent RGBA), a colour, an image or a looping video."""

    def __init__(self, spec, default=None):
        self.colour, self.image, self.frames, self.still = default, None, None, None
        if spec is None:
            return
        colour = parse_colour(spec) if not os.path.exists(spec) else None
        if colour is not None:
            self.colour = colour
        elif not os.path.isfile(spec):
            raise InputError(f"--target-bgr {spec}: neither a colour ('#00ff00' or '0,255,0') nor an image or "
                             f"video file")
        elif is_video(spec):
            self.video = VideoReader(spec)
            if next(iter(self.video), None) is None:
                raise InputError(f"{spec}: --target-bgr video has no frames")
            self.frames = iter(self.video)
        else:
            self.image = read_image(spec)

    def next(self, h, w):
        if self.frames is not None:
            frame = next(self.frames, None)
            if frame is None:                      # loop a shorter target video
                self.frames = iter(self.video)
                frame = next(self.frames)
            return resize_cover(frame, h, w)
        if self.image is None and self.colour is None:
            return None
        if self.still is None or self.still.shape[:2] != (h, w):     # an image or a colour: made once per size
            self.still = resize_cover(self.image, h, w) if self.image is not None else \
                np.ascontiguousarray(np.broadcast_to(np.float32(self.colour), (h, w, 3)))
        return self.still


def compose(result, i, target):
    """fgr * pha + target * (1 - pha). OpenCV's blendLinear does it in one pass (5 CPU-ms on an HD frame,
    against 25 for a subtract, a multiply by the alpha merged over three channels and an add); it divides by
    pha + (1 - pha) + 1e-5, which changes a value by at most 1e-5."""
    pha, fgr = result['pha'][i], result['fgr'][i]
    if target is None:      # RGBA: colour only where there is some foreground, as the official tool
        return np.concatenate([fgr * (pha[..., None] > 0), pha[..., None]], axis=2)
    if not opencv_image(pha):
        return fgr * pha[..., None] + target * (1 - pha[..., None])
    pha = np.ascontiguousarray(pha, np.float32)
    return cv2.blendLinear(np.ascontiguousarray(fgr, np.float32), np.ascontiguousarray(target, np.float32),
                           pha, 1 - pha)


def output_image(result, i, t, target):
    """Output type t of the i-th input of a runner's result (the composite onto target for 'com')."""
    return compose(result, i, target) if t == 'com' else result[t][i]


# ---------------------------------------------------------------- inputs

def pair_inputs(src, bgr):
    """[(src_path, bgr_path, relative stem)]: one plate for all, or folders/globs paired by relative path
    and name (suffixes such as _src/_bgr ignored)."""
    src_root, src_files = discover(src)
    bgr_root, bgr_files = discover(bgr)
    if not src_files:
        raise InputError(f"{src}: no images or videos found")
    stems = by_stem(src_root, src_files, NAME_SUFFIXES)
    if len(bgr_files) == 1 and os.path.isfile(bgr):
        return [(path, bgr_files[0], key) for key, path in stems.items()]
    tables = {src: stems, bgr: by_stem(bgr_root, bgr_files, NAME_SUFFIXES)}
    return [(paths[src], paths[bgr], key) for key, paths in pair_up(tables, exact=(src, bgr))]


class ImageSequence:
    """A folder of frames (sorted by name) read like a video."""

    def __init__(self, paths, fps):
        self.paths, self.fps = paths, fps
        self.height, self.width = read_image(paths[0]).shape[:2]

    def __len__(self):
        return len(self.paths)

    def __iter__(self):
        for path in self.paths:
            frame = read_image(path)
            if frame.shape[:2] != (self.height, self.width):
                raise InputError(f"{path}: frame is {frame.shape[1]}x{frame.shape[0]}, the sequence "
                                 f"{self.width}x{self.height}")
            yield frame

    def close(self):
        pass


def open_clip(source, fps):
    return ImageSequence(source, fps) if isinstance(source, list) else VideoReader(source)


def clip_length(source):
    """Frame count, 0 for an unreadable video (reported when it is processed)."""
    if isinstance(source, list):
        return len(source)
    try:
        reader = VideoReader(source)
    except ImageReadError:
        return 0
    reader.close()
    return len(reader)


def plate_free_clips(src):
    """Inputs of a plate-free video model: each video is a clip, and so is each folder of frames."""
    root, files = discover(src)
    clips = [(f, os.path.splitext(os.path.relpath(f, root))[0]) for f in files if is_video(f)]
    folders = {}
    for f in files:
        if not is_video(f):
            folders.setdefault(os.path.dirname(f), []).append(f)
    for folder, frames in sorted(folders.items()):
        stem = os.path.relpath(folder, root)
        if stem == '.':
            stem = os.path.basename(os.path.abspath(folder)) if os.path.isdir(src) else \
                os.path.splitext(os.path.basename(frames[0]))[0]
        clips.append((frames, stem))
    return clips


@dataclass
class Plan:
    """Jobs (src, bgr or None, stem, {type: output path}) of images and clips; `skipped`: finished already."""
    images: list = field(default_factory=list)
    clips: list = field(default_factory=list)
    skipped: int = 0

    @property
    def frames(self):
        return len(self.images) + sum(clip_length(job[0]) for job in self.clips)


def plan(cfg, partner):
    """The jobs of a PredictConfig (its output types are those the model has) for a family whose second input is
    `partner` ('bgr', 'trimap' or None: a video model); refuses to overwrite unless asked."""
    types = cfg.output_types
    if os.path.exists(cfg.output_dir) and not os.path.isdir(cfg.output_dir):
        raise InputError(f"{cfg.output_dir}: --output-dir is a file, not a folder")
    pairs = pair_inputs(cfg.src, getattr(cfg, partner)) if partner else \
        [(source, None, stem) for source, stem in plate_free_clips(cfg.src)]
    jobs = Plan()
    for src, bgr, stem in pairs:
        clip = not partner or is_video(src)
        if clip and partner == 'trimap':
            raise InputError(f"{src}: a video; trimap-based matting takes images (one trimap each)")
        if clip and cfg.output_format == 'video':
            outputs = {t: os.path.join(cfg.output_dir, stem, t + '.mp4') for t in types}
        elif clip:
            outputs = {t: os.path.join(cfg.output_dir, stem, t) for t in types}
        else:
            outputs = {t: os.path.join(cfg.output_dir, t, stem + '.png') for t in types}
        frames = clip_length(src) if clip and cfg.output_format == 'png' else None
        if cfg.resume and finished(outputs.values(), frames):
            jobs.skipped += 1
            continue
        (jobs.clips if clip else jobs.images).append((src, bgr, stem, outputs))
    if not cfg.overwrite and not cfg.resume:
        existing = [p for job in jobs.images + jobs.clips for p in job[3].values() if os.path.exists(p)]
        if existing:
            raise InputError(f"{len(existing)} outputs exist already (first: {existing[0]}); pass -y to overwrite "
                             f"or --resume to skip finished inputs")
    return jobs


def finished(paths, frames=None):
    """All outputs exist (and, for PNG frame folders, hold every frame)."""
    if frames is None:
        return all(os.path.exists(p) for p in paths)
    return all(os.path.isdir(p) and len(os.listdir(p)) >= frames for p in paths)


# ---------------------------------------------------------------- running

def prepare_plate(src, bgr, src_path, bgr_path, align):
    if align:
        aligned, _ = align_background(src, bgr)
        if aligned is None:
            tqdm.write(f"warning: {bgr_path}: no reliable homography to {src_path}; using the plate unaligned",
                       file=sys.stderr)
        else:
            return aligned
    if bgr.shape != src.shape:
        if not align:
            raise InputError(f"{bgr_path}: plate is {bgr.shape[1]}x{bgr.shape[0]} but {src_path} is "
                             f"{src.shape[1]}x{src.shape[0]}; pass --preprocess-alignment or resize it")
        bgr = resize_cover(bgr, *src.shape[:2])
    return bgr


class Jobs:
    """Runs a Plan with a runner; each failed input is reported by name and skipped (or stops with strict)."""

    def __init__(self, cfg, runner, bar, partner):
        self.cfg, self.runner, self.types, self.bar, self.partner = cfg, runner, cfg.output_types, bar, partner
        self.failures, self.model_seconds = [], 0.0

    def read_partner(self, src, path, src_path):
        """The second input of an image: its trimap, or its plate (aligned or checked for size)."""
        if self.partner == 'trimap':
            return read_trimap(path, src.shape[:2])
        return prepare_plate(src, read_image(path), src_path, path, self.cfg.preprocess_alignment)

    def fail(self, error):
        if self.cfg.strict:
            raise error
        tqdm.write(f"skipped: {error}", file=sys.stderr)
        self.failures.append(str(error))

    def images(self, jobs, target):
        """Images of equal size are batched; each finished image is written at once."""
        batch = []

        def flush():
            start = time.perf_counter()
            result = self.runner(np.stack([b[1] for b in batch]), np.stack([b[2] for b in batch]))
            self.model_seconds += time.perf_counter() - start
            for i, (outputs, s, _) in enumerate(batch):
                tgt = target.next(*s.shape[:2])
                for t in self.types:
                    write_image(outputs[t], output_image(result, i, t, tgt))
            self.bar.update(len(batch))
            batch.clear()

        for src_path, bgr_path, _, outputs in jobs:
            try:
                src = read_image(src_path)
                bgr = self.read_partner(src, bgr_path, src_path)
            except (InputError, ImageReadError) as e:
                self.fail(e)
                self.bar.update(1)
                continue
            if batch and (len(batch) == self.cfg.batch_size or batch[0][1].shape != src.shape):
                flush()
            batch.append((outputs, src, bgr))
        if batch:
            flush()

    def clips(self, jobs, chunk_size):
        for source, bgr_path, stem, _ in jobs:
            try:
                self.clip(source, bgr_path, stem, chunk_size)
            except (InputError, ImageReadError) as e:
                self.fail(e)

    def clip(self, source, bgr_path, stem, chunk_size):
        """One video or image sequence, frame chunks in order; the plate is an image, a video or none. Decoding
        (with the plates) runs ahead in a thread, and each output stream is composed and encoded in a thread of
        its own, so a video goes at the speed of the slowest of them rather than of their sum."""
        cfg = self.cfg
        reader = open_clip(source, cfg.fps)
        target = Target(cfg.target_bgr, default=VIDEO_TARGET)
        out_dir = os.path.join(cfg.output_dir, stem)
        files = {}
        if cfg.output_format == 'video':
            files = {t: VideoWriter(os.path.join(out_dir, t + '.mp4'), reader.fps, reader.width, reader.height,
                                    cfg.video_preset) for t in self.types}
        # PNG frames of an image sequence keep their input names (eval.py --pred-dir pairs by name)
        names = [os.path.splitext(os.path.basename(p))[0] for p in source] if isinstance(source, list) else None

        def write(t, item):
            first, chunk, result = item
            for i, frame in enumerate(chunk):
                image = output_image(result, i, t, target.next(*frame.shape[:2]) if t == 'com' else None)
                if files:
                    files[t].write(image)
                else:
                    name = names[first + i] if names else f'{first + i:05d}'
                    write_image(os.path.join(out_dir, t, name + '.png'), image)

        self.runner.reset()
        chunks = ReadAhead(self.chunks(reader, bgr_path, stem, chunk_size))
        writers = [Worker(functools.partial(write, t)) for t in self.types]
        frames = 0
        try:
            for chunk, bgrs in chunks:
                start = time.perf_counter()
                result = self.runner(chunk, bgrs)
                self.model_seconds += time.perf_counter() - start
                for w in writers:
                    w.submit((frames, chunk, result))
                frames += len(chunk)
                self.bar.update(len(chunk))
            for w in writers:
                w.close()
            if frames == 0:
                raise InputError(f"{source if isinstance(source, str) else os.path.dirname(source[0])}: no frames")
            for f in files.values():
                f.close()
        except BaseException:
            for w in writers:
                w.abort()
            for f in files.values():
                f.abort()
            raise
        finally:
            chunks.close()
            reader.close()

    def chunks(self, reader, bgr_path, stem, chunk_size):
        """(N x H x W x 3 frames, their plates or None) of a clip, in order."""
        plate_video = VideoReader(bgr_path) if bgr_path and is_video(bgr_path) else None
        plate = read_image(bgr_path) if bgr_path and not plate_video else None
        plates = iter(plate_video) if plate_video else None
        frames = iter(reader)
        try:
            while True:
                chunk = [f for _, f in zip(range(chunk_size), frames)]
                if not chunk:
                    return
                bgrs = None
                if bgr_path:
                    bgrs = []
                    for frame in chunk:
                        bgr = next(plates, None) if plates else plate
                        if bgr is None:
                            raise InputError(f"{bgr_path}: background video is shorter than {stem}")
                        bgrs.append(prepare_plate(frame, bgr, stem, bgr_path, self.cfg.preprocess_alignment))
                    bgrs = np.stack(bgrs)
                yield np.stack(chunk), bgrs
        finally:
            if plate_video:
                plate_video.close()


@dataclass(frozen=True)
class Summary:
    """What a predict run did: inputs matted, skipped as finished, failure messages, frames, wall seconds of the
    whole run and of the runner's calls alone (without the graph exports of the fast backends)."""
    done: int
    skipped: int
    failures: list
    frames: int
    seconds: float
    model_seconds: float
    setup_seconds: float

    def speed(self):
        """'12.3 frames/s; the model alone 13.0' (and the time spent exporting or loading graphs), for the report
        line. The model's figure is measured during the run, beside decoding and encoding threads."""
        if not self.frames or not self.seconds:
            return ''
        model = self.model_seconds - self.setup_seconds
        text = f"{self.frames / self.seconds:.2f} frames/s"
        if model > 0:
            text += f"; the model alone {self.frames / model:.2f}"
        return text + (f"; {self.setup_seconds:.1f} s preparing graphs" if self.setup_seconds >= 0.1 else '')


def predict(cfg, runner_for, partner, chunk_size):
    """Run a PredictConfig: `runner_for(frames)` makes the family's runner for that many frames; `partner` as in
    plan. Returns a Summary."""
    jobs = plan(cfg, partner)
    target = Target(cfg.target_bgr)
    frames = jobs.frames
    runner = runner_for(frames)
    start = time.time()
    with tqdm(total=frames, unit='frame', desc='matting', dynamic_ncols=True) as bar:
        run = Jobs(cfg, runner, bar, partner)
        run.images(jobs.images, target)
        run.clips(jobs.clips, chunk_size)
    done = len(jobs.images) + len(jobs.clips) - len(run.failures)
    return Summary(done, jobs.skipped, run.failures, bar.n, time.time() - start, run.model_seconds,
                   getattr(runner, 'setup_seconds', 0.0))
