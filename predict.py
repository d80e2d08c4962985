"""Background matting of photos and videos with a captured background plate.

    python3 predict.py                                   # the demo pair in image/ with the demo model
    python3 predict.py --src photo.jpg --bgr plate.jpg --output-dir out
    python3 predict.py --src photos/ --bgr plates/ --output-types com pha fgr --target-bgr "#00ff00"
    python3 predict.py --src talk.mp4 --bgr plate.png --model-checkpoint pytorch_resnet50.pth \
        --model-backbone resnet50

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
                      read_image, write_image)
from utils.options import ROOT, add_model_args, model_from_args

OUTPUT_TYPES = ('com', 'pha', 'fgr', 'err', 'ref')
DEMO_SRC, DEMO_BGR = os.path.join(ROOT, 'image', 'src'), os.path.join(ROOT, 'image', 'bgr')
VIDEO_TARGET = (120 / 255, 1.0, 155 / 255)   # the official video default when no --target-bgr is given
NAME_SUFFIXES = ('_src', '_bgr', '_img', '_back', '_background')


class InputError(ValueError):
    """A pair that cannot be processed; the message names the file."""


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--src', '--images-src', '--video-src', dest='src', default=None,
                   help='photo, folder (searched recursively), glob pattern in quotes, or video. '
                        f'Default: the demo photos in image/src/ (with --preprocess-alignment)')
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
    p.add_argument('--batch-size', type=int, default=1, help='frames per model call (videos, equal-size images)')
    p.add_argument('--precision', choices=['fp32', 'fp16'], default='fp32', help='fp16 needs --device gpu')
    p.add_argument('-y', dest='overwrite', action='store_true', help='overwrite existing outputs')
    p.add_argument('--resume', action='store_true', help='skip inputs whose outputs all exist already')
    p.add_argument('--strict', action='store_true', help='stop at the first bad input instead of skipping it')
    add_model_args(p)
    args = p.parse_args(argv)
    if args.src is None:
        if args.bgr is not None:
            p.error('--bgr given without --src')
        args.src, args.bgr, args.preprocess_alignment = DEMO_SRC, DEMO_BGR, True
    elif args.bgr is None:
        p.error('--bgr is required with --src: BGMv2 needs a background plate')
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
            return fit(frame, h, w)
        if self.image is not None:
            return fit(self.image, h, w)
        return None if self.colour is None else np.broadcast_to(np.float32(self.colour), (h, w, 3))


def fit(image, h, w):
    """Resize to cover h x w and centre-crop (keeps the aspect ratio)."""
    import cv2
    ih, iw = image.shape[:2]
    if (ih, iw) == (h, w):
        return image
    s = max(h / ih, w / iw)
    image = cv2.resize(image, (max(w, round(iw * s)), max(h, round(ih * s))), interpolation=cv2.INTER_AREA)
    y, x = (image.shape[0] - h) // 2, (image.shape[1] - w) // 2
    return image[y:y + h, x:x + w]


# ---------------------------------------------------------------- model

class Matting:
    """Runs the network on N x H x W x 3 float arrays of any size (padded to a multiple of 4 and
    cropped back) and returns full-resolution numpy outputs by name."""

    def __init__(self, args):
        import paddle
        self.paddle = paddle
        self.model = model_from_args(args)
        self.refine = args.model_type == 'mattingrefine'
        self.fp16 = args.precision == 'fp16'

    def __call__(self, src, bgr):
        paddle = self.paddle
        n, h, w = src.shape[:3]
        ph, pw = -h % 4, -w % 4
        pad = ((0, 0), (0, ph), (0, pw), (0, 0))
        to_tensor = lambda a: paddle.to_tensor(np.ascontiguousarray(np.pad(a, pad, mode='edge').transpose(0, 3, 1, 2)))
        with paddle.no_grad(), paddle.amp.auto_cast(enable=self.fp16, level='O1'):
            out = self.model(to_tensor(src), to_tensor(bgr))
        if self.refine:
            pha, fgr, _, _, err, ref = out
            size = [h + ph, w + pw]
            err = paddle.nn.functional.interpolate(err, size=size, mode='bilinear', align_corners=False)
            ref = paddle.nn.functional.interpolate(ref, size=size, mode='nearest')
        else:
            pha, fgr, err, _ = out
            ref = None
        crop = lambda t: t.astype('float32').numpy()[:, :, :h, :w].transpose(0, 2, 3, 1)
        return {'pha': crop(pha)[..., 0], 'fgr': crop(fgr), 'err': crop(err)[..., 0],
                'ref': None if ref is None else crop(ref)[..., 0]}


def compose(result, i, target):
    pha, fgr = result['pha'][i], result['fgr'][i]
    if target is None:      # RGBA: colour only where there is some foreground, as the official tool
        return np.concatenate([fgr * (pha[..., None] > 0), pha[..., None]], axis=2)
    return fgr * pha[..., None] + target * (1 - pha[..., None])


def output_images(result, i, types, target):
    for t in types:
        if t == 'com':
            yield t, compose(result, i, target)
        elif result[t] is not None:
            yield t, result[t][i]


# ---------------------------------------------------------------- jobs

def active_types(args):
    """The requested outputs the model has (MattingBase refines no patches)."""
    return [t for t in args.output_types if t != 'ref' or args.model_type == 'mattingrefine']


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
        bgr = fit(bgr, *src.shape[:2])
    return bgr


def run_images(args, matting, pairs, target, bar):
    """Images of equal size are batched; each finished image is written at once."""
    batch = []

    def flush():
        src = np.stack([b[1] for b in batch])
        result = matting(src, np.stack([b[2] for b in batch]))
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


def run_video(args, matting, src_path, bgr_path, stem, bar):
    reader = VideoReader(src_path)
    plate_video = VideoReader(bgr_path) if is_video(bgr_path) else None
    plate = None if plate_video else read_image(bgr_path)
    plates = iter(plate_video) if plate_video else None
    target = Target(args.target_bgr, default=VIDEO_TARGET)
    out_dir = os.path.join(args.output_dir, stem)
    types = active_types(args)
    writers = {}
    if args.output_format == 'video':
        writers = {t: VideoWriter(os.path.join(out_dir, t + '.mp4'), reader.fps, reader.width, reader.height)
                   for t in types}
    try:
        frames = iter(reader)
        index = 0
        while True:
            chunk = [f for _, f in zip(range(args.batch_size), frames)]
            if not chunk:
                break
            bgrs = []
            for frame in chunk:
                bgr = next(plates, None) if plates else plate
                if bgr is None:
                    raise InputError(f"{bgr_path}: background video is shorter than {src_path}")
                bgrs.append(prepare_plate(frame, bgr, src_path, bgr_path, args.preprocess_alignment))
            result = matting(np.stack(chunk), np.stack(bgrs))
            for i, frame in enumerate(chunk):
                tgt = target.next(*frame.shape[:2])
                for t, image in output_images(result, i, types, tgt):
                    if writers:
                        writers[t].write(image)
                    else:
                        write_image(os.path.join(out_dir, t, f'{index:05d}.png'), image)
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


def video_outputs(args, stem):
    if args.output_format == 'video':
        return {t: os.path.join(args.output_dir, stem, t + '.mp4') for t in active_types(args)}
    return {t: os.path.join(args.output_dir, stem, t) for t in active_types(args)}


def finished(paths, frames=None):
    """All outputs exist (and, for PNG frame folders, hold every frame)."""
    if frames is None:
        return all(os.path.exists(p) for p in paths)
    return all(os.path.isdir(p) and len(os.listdir(p)) >= frames for p in paths)


def video_length(path):
    """Frame count, 0 for an unreadable video (reported when it is processed)."""
    try:
        reader = VideoReader(path)
    except ImageReadError:
        return 0
    reader.close()
    return len(reader)


def report(error, strict):
    message = str(error)
    if strict:
        sys.exit(f"error: {message}")
    tqdm.write(f"skipped: {message}", file=sys.stderr)
    return message


def main(argv=None):
    args = parse_args(argv)
    try:
        pairs = pair_inputs(args.src, args.bgr)
        target = Target(args.target_bgr)
    except (InputError, ImageReadError) as e:
        sys.exit(f"error: {e}")
    images, videos, existing = [], [], []
    for src_path, bgr_path, stem in pairs:
        if is_video(src_path):
            outputs = video_outputs(args, stem)
            frames = video_length(src_path) if args.output_format == 'png' else None
            done = finished(outputs.values(), frames)
            (videos if not (args.resume and done) else []).append((src_path, bgr_path, stem, outputs))
        else:
            outputs = image_outputs(args, stem)
            done = finished(outputs.values())
            (images if not (args.resume and done) else []).append((src_path, bgr_path, stem, outputs))
        if not args.overwrite and not args.resume:
            existing += [p for p in outputs.values() if os.path.exists(p)]
    if existing:
        sys.exit(f"error: {len(existing)} outputs exist already (first: {existing[0]}); "
                 f"pass -y to overwrite or --resume to skip finished inputs")
    skipped = len(pairs) - len(images) - len(videos)
    try:
        matting = Matting(args)
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")
    failures, start = [], time.time()
    total_frames = len(images) + sum(video_length(v[0]) for v in videos)
    with tqdm(total=total_frames, unit='frame', desc='matting', dynamic_ncols=True) as bar:
        failures += run_images(args, matting, images, target, bar)
        for src_path, bgr_path, stem, _ in videos:
            try:
                run_video(args, matting, src_path, bgr_path, stem, bar)
            except (InputError, ImageReadError) as e:
                failures.append(report(e, args.strict))
    done = len(images) + len(videos) - len(failures)
    print(f"{done} inputs matted in {time.time() - start:.1f} s -> {os.path.abspath(args.output_dir)} "
          f"({', '.join(args.output_types)})" + (f"; {skipped} already finished" if skipped else '')
          + (f"; {len(failures)} failed" if failures else ''))
    return 1 if failures and not done else 0


if __name__ == '__main__':
    sys.exit(main())
