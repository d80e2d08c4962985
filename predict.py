"""Matting of photos and videos: BGMv2 with a captured background plate, or RVM without one.

    python3 predict.py                                   # the demo pair in image/ with the demo model
    python3 predict.py --src photo.jpg --bgr plate.jpg --output-dir out
    python3 predict.py --src photos/ --bgr plates/ --output-types com pha fgr --target-bgr "#00ff00"
    python3 predict.py --src talk.mp4 --bgr plate.png --model-checkpoint pytorch_resnet50.pth \
        --model-backbone resnet50
    python3 predict.py --model-type rvm --src talk.mp4 --model-checkpoint rvm_mobilenetv3.pth

Outputs: <output-dir>/<type>/<relative input path>.png for images,
<output-dir>/<relative video path without extension>/<type>.mp4 (or PNG frames) for videos.
"""
import argparse
import glob
import os
import sys
import time

import numpy as np
from tqdm import tqdm

from utils.alignment import align_background
from utils.io import (IMAGE_EXTENSIONS, ImageReadError, VideoReader, VideoWriter, is_video, list_images,
                      read_image, resize_cover, write_image)
from utils.options import ROOT, add_backend_args, add_model_args
from utils.runner import OUTPUT_TYPES, RVMRunner, create_runner

DEMO_SRC, DEMO_BGR = os.path.join(ROOT, 'image', 'src'), os.path.join(ROOT, 'image', 'bgr')
VIDEO_TARGET = (120 / 255, 1.0, 155 / 255)   # the official video default when no --target-bgr is given
NAME_SUFFIXES = ('_src', '_bgr', '_img', '_back', '_background')


class InputError(ValueError):
    """A pair that cannot be processed; the message names the file."""


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--src', '--images-src', '--video-src', dest='src', default=None,
                   help='photo, folder (searched recursively), glob pattern in quotes, or video. '
                        'Default: the demo photos in image/src/ (with --preprocess-alignment)')
    p.add_argument('--bgr', '--images-bgr', '--video-bgr', dest='bgr', default=None,
                   help='background plate(s) captured without the subject: one image for all inputs, a folder '
                        'or glob paired with --src by relative path and name (suffixes such as _src/_bgr are '
                        'ignored), or a video paired frame by frame with a --src video')
    p.add_argument('--output-dir', default=os.path.join(ROOT, 'output'), help='where results go (default output/)')
    p.add_argument('--output-types', nargs='+', choices=OUTPUT_TYPES, default=['com', 'pha', 'fgr'],
                   help='com: composite (RGBA PNG, or over --target-bgr), pha: alpha matte, fgr: foreground, '
                        'err: predicted error map, ref: refined patches (default: com pha fgr)')
    p.add_argument('--output-format', choices=['video', 'png'], default='video',
                   help='for video inputs: MP4 files (H.264 with PyAV installed, else mp4v) or PNG frames')
    p.add_argument('--target-bgr', default=None,
                   help='composite onto this instead of transparency: an image, a video (looped) or a colour '
                        '("#00ff00" or "0,255,0"); videos default to the official light green')
    p.add_argument('--preprocess-alignment', action='store_true',
                   help='align each plate to its photo with a feature homography (hand-held captures)')
    p.add_argument('--batch-size', type=int, default=1,
                   help='BGMv2: frames per model call (videos, equal-size images)')
    p.add_argument('--seq-chunk', type=int, default=1,
                   help='rvm: frames per model call; the recurrent state is carried across chunks')
    p.add_argument('--downsample-ratio', type=float, default=None,
                   help='rvm: scale of the recurrent network, in (0, 1]; default min(512 / max(H, W), 1), '
                        'the official automatic rule (0.25-0.4 suit 1080p)')
    p.add_argument('--fps', type=float, default=30.0, help='frame rate of videos made from image sequences')
    p.add_argument('-y', dest='overwrite', action='store_true', help='overwrite existing outputs')
    p.add_argument('--resume', action='store_true', help='skip inputs whose outputs all exist already')
    p.add_argument('--strict', action='store_true', help='stop at the first bad input instead of skipping it')
    add_model_args(p)
    add_backend_args(p)
    args = p.parse_args(argv)
    if args.src is None:
        if args.bgr is not None or args.model_type == 'rvm':
            p.error('--src is required')
        args.src, args.bgr, args.preprocess_alignment = DEMO_SRC, DEMO_BGR, True
    elif args.bgr is None and args.model_type != 'rvm':
        p.error('--bgr is required with --src: BGMv2 needs a background plate (or use --model-type rvm)')
    if args.model_type == 'rvm' and args.bgr is not None:
        p.error('--model-type rvm takes no --bgr: Robust Video Matting needs no background plate')
    if args.downsample_ratio is not None and not 0 < args.downsample_ratio <= 1:
        p.error('--downsample-ratio must be in (0, 1]')
    if args.seq_chunk < 1:
        p.error('--seq-chunk must be at least 1')
    if args.precision == 'fp16' and args.device != 'gpu':
        p.error('--precision fp16 needs --device gpu (half precision gives no speed-up on CPU)')
    if args.batch_size < 1:
        p.error('--batch-size must be at least 1')
    return args


# ---------------------------------------------------------------- inputs

def expand(pattern):
    """A file, folder or glob -> (root, files) with paths relative to root kept for the output tree."""
    if os.path.isdir(pattern):
        return pattern, list_images(pattern) + sorted(
            os.path.join(d, f) for d, _, fs in os.walk(pattern) for f in fs if is_video(f))
    if os.path.isfile(pattern):
        return os.path.dirname(pattern), [pattern]
    files = sorted(f for f in glob.glob(pattern, recursive=True)
                   if os.path.isfile(f) and (f.lower().endswith(IMAGE_EXTENSIONS) or is_video(f)))
    if not files:
        raise InputError(f"{pattern}: no such file or folder, and no image or video matches it")
    static = pattern.split('*')[0].split('?')[0].split('[')[0]
    return (static if static.endswith(os.sep) else os.path.dirname(static)) or '.', files


def pair_key(root, path):
    stem = os.path.splitext(os.path.relpath(path, root))[0]
    for suffix in NAME_SUFFIXES:
        if stem.endswith(suffix):
            return stem[:-len(suffix)]
    return stem


def pair_inputs(src, bgr):
    """[(src_path, bgr_path, relative_stem)], pairing folders/globs by relative path and name."""
    src_root, src_files = expand(src)
    bgr_root, bgr_files = expand(bgr)
    if not src_files:
        raise InputError(f"{src}: no images or videos found")
    if len(bgr_files) == 1 and os.path.isfile(bgr):
        return [(s, bgr_files[0], pair_key(src_root, s)) for s in src_files]
    plates = {pair_key(bgr_root, b): b for b in bgr_files}
    photos = {pair_key(src_root, s): s for s in src_files}
    unpaired = sorted(set(photos) ^ set(plates))
    if unpaired:
        listing = ', '.join((photos.get(k) or plates.get(k)) for k in unpaired[:8])
        more = f' and {len(unpaired) - 8} more' if len(unpaired) > 8 else ''
        raise InputError(f"{len(unpaired)} inputs have no partner in {src} / {bgr}: {listing}{more}")
    return [(photos[k], plates[k], k) for k in sorted(photos)]


def parse_colour(text):
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
        self.colour, self.image, self.frames = default, None, None
        if spec is None:
            return
        colour = parse_colour(spec) if not os.path.exists(spec) else None
        if colour is not None:
            self.colour = colour
        elif is_video(spec):
            self.video = VideoReader(spec)
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
        if self.image is not None:
            return resize_cover(self.image, h, w)
        return None if self.colour is None else np.broadcast_to(np.float32(self.colour), (h, w, 3))


# ---------------------------------------------------------------- outputs

def compose(result, i, target):
    pha, fgr = result['pha'][i], result['fgr'][i]
    if target is None:      # RGBA: colour only where there is some foreground, as the official tool
        return np.concatenate([fgr * (pha[..., None] > 0), pha[..., None]], axis=2)
    return fgr * pha[..., None] + target * (1 - pha[..., None])


def output_images(result, i, types, target):
    for t in types:
        yield t, compose(result, i, target) if t == 'com' else result[t][i]


# ---------------------------------------------------------------- jobs

def active_types(args):
    """The requested outputs the model has (MattingBase refines no patches; RVM has no error map)."""
    has = {'rvm': RVMRunner.types, 'mattingbase': ('com', 'pha', 'fgr', 'err')}.get(args.model_type, OUTPUT_TYPES)
    return [t for t in args.output_types if t in has]


def image_outputs(args, stem):
    return {t: os.path.join(args.output_dir, t, stem + '.png') for t in active_types(args)}


def load_pair(src_path, bgr_path, align):
    src, bgr = read_image(src_path), read_image(bgr_path)
    return src, prepare_plate(src, bgr, src_path, bgr_path, align)


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


def run_images(args, matting, pairs, target, bar):
    """Images of equal size are batched; each finished image is written at once."""
    batch = []

    def flush():
        result = matting(np.stack([b[1] for b in batch]), np.stack([b[2] for b in batch]))
        for i, (outputs, s, _) in enumerate(batch):
            tgt = target.next(*s.shape[:2])
            for t, image in output_images(result, i, outputs, tgt):
                write_image(outputs[t], image)
        bar.update(len(batch))
        batch.clear()

    failures = []
    for src_path, bgr_path, stem, outputs in pairs:
        try:
            src, bgr = load_pair(src_path, bgr_path, args.preprocess_alignment)
        except (InputError, ImageReadError) as e:
            failures.append(report(e, args.strict))
            bar.update(1)
            continue
        if batch and (len(batch) == args.batch_size or batch[0][1].shape != src.shape):
            flush()
        batch.append((outputs, src, bgr))
    if batch:
        flush()
    return failures


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


def run_clip(args, matting, source, bgr_path, stem, bar):
    """One video or image sequence, frame chunks in order; the plate is an image, a video or none."""
    reader = open_clip(source, args.fps)
    plate_video = VideoReader(bgr_path) if bgr_path and is_video(bgr_path) else None
    plate = read_image(bgr_path) if bgr_path and not plate_video else None
    plates = iter(plate_video) if plate_video else None
    target = Target(args.target_bgr, default=VIDEO_TARGET)
    out_dir = os.path.join(args.output_dir, stem)
    types = active_types(args)
    writers = {}
    if args.output_format == 'video':
        writers = {t: VideoWriter(os.path.join(out_dir, t + '.mp4'), reader.fps, reader.width, reader.height)
                   for t in types}
    chunk_size = args.seq_chunk if args.model_type == 'rvm' else args.batch_size
    # PNG frames of an image sequence keep their input names (eval.py --pred-dir pairs by name)
    names = [os.path.splitext(os.path.basename(p))[0] for p in source] if isinstance(source, list) else None
    matting.reset()
    try:
        frames, index = iter(reader), 0
        while True:
            chunk = [f for _, f in zip(range(chunk_size), frames)]
            if not chunk:
                break
            bgrs = None
            if bgr_path:
                bgrs = []
                for frame in chunk:
                    bgr = next(plates, None) if plates else plate
                    if bgr is None:
                        raise InputError(f"{bgr_path}: background video is shorter than {stem}")
                    bgrs.append(prepare_plate(frame, bgr, stem, bgr_path, args.preprocess_alignment))
                bgrs = np.stack(bgrs)
            result = matting(np.stack(chunk), bgrs)
            for i, frame in enumerate(chunk):
                tgt = target.next(*frame.shape[:2])
                for t, image in output_images(result, i, types, tgt):
                    if writers:
                        writers[t].write(image)
                    else:
                        name = names[index] if names else f'{index:05d}'
                        write_image(os.path.join(out_dir, t, name + '.png'), image)
                index += 1
            bar.update(len(chunk))
        for w in writers.values():
            w.close()
    except BaseException:
        for w in writers.values():
            w.abort()
        raise
    finally:
        reader.close()


def clip_outputs(args, stem):
    if args.output_format == 'video':
        return {t: os.path.join(args.output_dir, stem, t + '.mp4') for t in active_types(args)}
    return {t: os.path.join(args.output_dir, stem, t) for t in active_types(args)}


def finished(paths, frames=None):
    """All outputs exist (and, for PNG frame folders, hold every frame)."""
    if frames is None:
        return all(os.path.exists(p) for p in paths)
    return all(os.path.isdir(p) and len(os.listdir(p)) >= frames for p in paths)


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


def rvm_clips(src):
    """RVM inputs: each video is a clip, and so is each folder of frames (frames sorted by name)."""
    root, files = expand(src)
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


def plan(args):
    """-> (image jobs, clip jobs): (src, bgr, stem, outputs) each; bgr is None for RVM."""
    if args.model_type == 'rvm':
        pairs = [(source, None, stem) for source, stem in rvm_clips(args.src)]
    else:
        pairs = pair_inputs(args.src, args.bgr)
    images, clips = [], []
    for src, bgr, stem in pairs:
        clip = args.model_type == 'rvm' or is_video(src)
        outputs = clip_outputs(args, stem) if clip else image_outputs(args, stem)
        frames = clip_length(src) if clip and args.output_format == 'png' else None
        if args.resume and finished(outputs.values(), frames):
            continue
        (clips if clip else images).append((src, bgr, stem, outputs))
    return pairs, images, clips


def report(error, strict):
    message = str(error)
    if strict:
        sys.exit(f"error: {message}")
    tqdm.write(f"skipped: {message}", file=sys.stderr)
    return message


def main(argv=None):
    args = parse_args(argv)
    try:
        pairs, images, clips = plan(args)
        target = Target(args.target_bgr)
    except (InputError, ImageReadError, ValueError) as e:
        sys.exit(f"error: {e}")
    if not args.overwrite and not args.resume:
        existing = [p for job in images + clips for p in job[3].values() if os.path.exists(p)]
        if existing:
            sys.exit(f"error: {len(existing)} outputs exist already (first: {existing[0]}); "
                     f"pass -y to overwrite or --resume to skip finished inputs")
    total_frames = len(images) + sum(clip_length(job[0]) for job in clips)
    try:
        matting = create_runner(args, total_frames)
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")
    failures, start = [], time.time()
    with tqdm(total=total_frames, unit='frame', desc='matting', dynamic_ncols=True) as bar:
        failures += run_images(args, matting, images, target, bar)
        for src, bgr, stem, _ in clips:
            try:
                run_clip(args, matting, src, bgr, stem, bar)
            except (InputError, ImageReadError) as e:
                failures.append(report(e, args.strict))
    done = len(images) + len(clips) - len(failures)
    skipped = len(pairs) - len(images) - len(clips)
    print(f"{done} inputs matted in {time.time() - start:.1f} s -> {os.path.abspath(args.output_dir)} "
          f"({', '.join(active_types(args))})" + (f"; {skipped} already finished" if skipped else '')
          + (f"; {len(failures)} failed" if failures else ''))
    return 1 if failures and not done else 0


if __name__ == '__main__':
    sys.exit(main())
