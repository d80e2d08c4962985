"""Write a synthetic matting dataset in the layouts the readers of dataset/ understand.

Foregrounds are textured blobs with soft edges and hair-like strands of fractional alpha; backgrounds are
textured images (procedural, or random crops of real photos with --real-bg). Real foregrounds (a folder
with fgr/ + pha/, e.g. dataset/demo/train) can be mixed in with --real-fg.

    python3 tools/make_synthetic_data.py --out data/synthetic --layout fgr_pha --num-train 40 --num-valid 8
    python3 tools/make_synthetic_data.py --out data/vm --layout videomatte --num-train 4 --frames 3

Layouts: fgr_pha ({train,valid}/{fgr,pha}), videomatte ({train,test}/{fgr,pha}/<clip>/<frame>.jpg),
aim ({train,valid}/{original,mask,trimap}), rgba ({train,valid}/*.png with alpha). Backgrounds go to
<out>/backgrounds/{train,valid}/. Layout rvm writes the data of every RVM training pass instead:
videomatte/{train,valid}/ clips, background_videos/{train,valid}/<clip>/ (a panning background),
supervisely/{img,seg}/ (segmentation images) and youtubevis/train/ (JPEGImages/<video>/ + instances.json, RLE).
Layout davis writes video object segmentation clips in the DAVIS 2017 layout: textured shapes moving over a
panning background, JPEGImages/480p/<seq>/, Annotations/480p/<seq>/ (palette PNGs, one label per shape) and
ImageSets/2017/{train,val}.txt (--num-train / --num-valid sequences of --frames frames, --size px high), and
static/<seq>.jpg + .png image/mask pairs of the training scenes (VOS stage 0).

--demo-from-realdata DIR builds dataset/demo (the shipped demo set) from shared/realdata instead.
"""
import argparse
import json
import os
import shutil
import sys

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from dataset.folders import find_pairs, image_files, read_pair  # noqa: E402
from utils.io import read_alpha, read_image, to_uint8, write_image, write_labels  # noqa: E402


# ---------------------------------------------------------------- textures

def smooth_noise(rng, h, w, cells):
    """Value noise: a cells x cells random grid upsampled smoothly, one field per colour channel."""
    grid = rng.random((cells, cells, 3), dtype=np.float32)
    return cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 1)


def texture(rng, h, w, real=None):
    """A textured RGB image: a crop of a real photo when given, else multi-scale noise, a colour
    gradient and random shapes."""
    if real is not None:
        image = read_image(real[int(rng.integers(len(real)))])
        s = max(h / image.shape[0], w / image.shape[1]) * rng.uniform(1, 1.6)
        image = cv2.resize(image, (max(w, round(image.shape[1] * s)), max(h, round(image.shape[0] * s))),
                           interpolation=cv2.INTER_AREA)
        y, x = rng.integers(0, image.shape[0] - h + 1), rng.integers(0, image.shape[1] - w + 1)
        return np.ascontiguousarray(image[y:y + h, x:x + w])
    image = sum(smooth_noise(rng, h, w, c) * a for c, a in ((3, 0.5), (12, 0.3), (48, 0.2)))
    image = image * rng.uniform(0.3, 1, 3).astype(np.float32) + rng.uniform(0, 0.4, 3).astype(np.float32)
    for _ in range(int(rng.integers(3, 9))):
        colour = tuple(float(c) for c in rng.random(3))
        centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        if rng.random() < 0.5:
            cv2.circle(image, centre, int(rng.integers(4, max(5, w // 5))), colour, -1, cv2.LINE_AA)
        else:
            size = (int(rng.integers(4, max(5, w // 4))), int(rng.integers(4, max(5, h // 4))))
            cv2.rectangle(image, centre, (centre[0] + size[0], centre[1] + size[1]), colour, -1, cv2.LINE_AA)
    return np.clip(image, 0, 1).astype(np.float32)


# ---------------------------------------------------------------- foregrounds

def hair_alpha(rng, h, w, body, strands, supersample=4):
    """Strands of hair grown outwards from the body's edge: thin anti-aliased random-walk curves drawn at
    `supersample` x the size and area-averaged down, which gives sub-pixel, fractional alpha."""
    H, W = h * supersample, w * supersample
    canvas = np.zeros((H, W), np.float32)
    edge = np.argwhere(cv2.Canny(to_uint8(body), 50, 150) > 0)
    if len(edge) == 0:
        return canvas[::supersample, ::supersample]
    cy, cx = np.argwhere(body > 0.5).mean(axis=0)
    for _ in range(strands):
        y, x = edge[int(rng.integers(len(edge)))]
        direction = np.arctan2(y - cy, x - cx) + rng.normal(0, 0.5)
        points = [(x * supersample, y * supersample)]
        for _ in range(int(rng.integers(6, 20))):
            direction += rng.normal(0, 0.25)
            step = rng.uniform(1.5, 4) * supersample
            points.append((points[-1][0] + step * np.cos(direction), points[-1][1] + step * np.sin(direction)))
        cv2.polylines(canvas, [np.round(points).astype(np.int32)], False, float(rng.uniform(0.3, 1)),
                      int(rng.integers(1, 3)), cv2.LINE_AA)
    return cv2.resize(canvas, (w, h), interpolation=cv2.INTER_AREA)


def synthetic_foreground(rng, h, w, real=None):
    """(fgr, pha): a union of ellipses with a soft edge plus hair, coloured with a texture everywhere."""
    body = np.zeros((h, w), np.float32)
    for _ in range(int(rng.integers(1, 4))):
        centre = (int(w * rng.uniform(0.3, 0.7)), int(h * rng.uniform(0.35, 0.75)))
        axes = (int(w * rng.uniform(0.1, 0.3)), int(h * rng.uniform(0.1, 0.35)))
        cv2.ellipse(body, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1, cv2.LINE_AA)
    body = cv2.GaussianBlur(body, (0, 0), rng.uniform(0.5, 2.5))
    hair = hair_alpha(rng, h, w, body, int(rng.integers(40, 200)))
    pha = np.clip(np.maximum(body, hair), 0, 1)
    hair_colour = rng.uniform(0, 1, 3).astype(np.float32)
    fgr = texture(rng, h, w, real)
    fgr = fgr * (1 - hair[..., None]) + (hair_colour * rng.uniform(0.8, 1.2, (h, w, 1))).clip(0, 1) * hair[..., None]
    return fgr.astype(np.float32), pha.astype(np.float32)


def real_foreground(rng, pair, size):
    """A real (fgr, pha) pair, resized so that its long side is `size`."""
    fgr, pha = read_pair(*pair[:2])
    s = size / max(fgr.shape[:2])
    shape = (max(1, round(fgr.shape[1] * s)), max(1, round(fgr.shape[0] * s)))
    return cv2.resize(fgr, shape, interpolation=cv2.INTER_AREA), cv2.resize(pha, shape, interpolation=cv2.INTER_AREA)


def trimap_of(pha, width=7):
    """Unknown (128) where alpha is fractional or within `width` px of the edge, else 0/255."""
    kernel = np.ones((width, width), np.uint8)
    fg, bg = (pha > 0.99).astype(np.uint8), (pha < 0.01).astype(np.uint8)
    trimap = np.full(pha.shape, 128, np.uint8)
    trimap[cv2.erode(fg, kernel) > 0] = 255
    trimap[cv2.erode(bg, kernel) > 0] = 0
    return trimap


# ---------------------------------------------------------------- layouts

def write_sample(out, layout, split, name, fgr, pha, rng, real_bg):
    if layout == 'fgr_pha':
        write_image(os.path.join(out, split, 'fgr', name + '.png'), fgr)
        write_image(os.path.join(out, split, 'pha', name + '.png'), pha)
    elif layout == 'aim':        # AIM-500: the photo, its matte and a trimap
        photo = fgr * pha[..., None] + texture(rng, *pha.shape, real_bg) * (1 - pha[..., None])
        write_image(os.path.join(out, split, 'original', name + '.jpg'), photo)
        write_image(os.path.join(out, split, 'mask', name + '.png'), pha)
        write_image(os.path.join(out, split, 'trimap', name + '.png'), trimap_of(pha))
    elif layout == 'rgba':       # PhotoMatte85: one RGBA PNG per portrait
        write_image(os.path.join(out, split, name + '.png'), np.dstack([fgr, pha]))
    else:
        raise ValueError(f"unknown layout {layout!r}")


def write_clip(out, split, name, fgr, pha, frames, rng):
    """VideoMatte240K: a clip of JPEG frames of the foreground drifting a few pixels per frame."""
    dx, dy = rng.uniform(-3, 3, 2)
    for t in range(frames):
        m = np.float32([[1, 0, dx * t], [0, 1, dy * t]])
        h, w = pha.shape
        f = cv2.warpAffine(fgr, m, (w, h), borderMode=cv2.BORDER_REFLECT)
        p = cv2.warpAffine(pha, m, (w, h))
        write_image(os.path.join(out, split, 'fgr', name, f'{t:05d}.jpg'), f)
        write_image(os.path.join(out, split, 'pha', name, f'{t:05d}.jpg'), p)


def rle(mask):
    """Uncompressed COCO RLE of an H x W 0/1 mask: run lengths in column-major order, zeros first."""
    flat = mask.T.reshape(-1).astype(np.int8)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
    return {'size': list(mask.shape), 'counts': np.diff(np.concatenate([[0], edges])).tolist()}


def panning_clip(rng, h, w, frames, real_bg):
    """Frames of a camera panning over a wider background."""
    wide = texture(rng, h + 8 * frames, w + 8 * frames, real_bg)
    dx, dy = rng.integers(0, 5, 2)
    return [wide[t * dy:t * dy + h, t * dx:t * dx + w] for t in range(frames)]


def generate_rvm(args, rng, real_bg, real_fg):
    """The data of the RVM training passes (see the module docstring)."""
    h = w = args.size
    for split, count in (('train', args.num_train), ('valid', args.num_valid)):
        for i in range(count):
            fgr, pha = (real_foreground(rng, real_fg[i], args.size) if split == 'train' and i < len(real_fg)
                        else synthetic_foreground(rng, h, w, real_bg if rng.random() < 0.5 else None))
            write_clip(os.path.join(args.out, 'videomatte'), split, f'{split}_{i:04d}', fgr, pha, args.frames, rng)
        for i in range(max(1, count // 2)):
            for t, frame in enumerate(panning_clip(rng, h, round(w * 1.25), args.frames, real_bg)):
                write_image(os.path.join(args.out, 'background_videos', split, f'{i:04d}', f'{t:05d}.jpg'), frame)
    videos, annotations = [], []
    for i in range(args.num_train):
        fgr, pha = synthetic_foreground(rng, h, w, real_bg)
        seg = (pha > 0.5).astype(np.float32)
        image = fgr * pha[..., None] + texture(rng, h, w, real_bg) * (1 - pha[..., None])
        write_image(os.path.join(args.out, 'supervisely', 'img', f'{i:04d}.jpg'), image)
        write_image(os.path.join(args.out, 'supervisely', 'seg', f'{i:04d}.png'), seg)
        background = panning_clip(rng, h, w, args.frames, real_bg)
        names, masks = [], []
        dx, dy = rng.uniform(-3, 3, 2)
        for t in range(args.frames):
            m = np.float32([[1, 0, dx * t], [0, 1, dy * t]])
            f, p = cv2.warpAffine(fgr, m, (w, h), borderMode=cv2.BORDER_REFLECT), cv2.warpAffine(pha, m, (w, h))
            names.append(f'{i:04d}/{t:05d}.jpg')
            write_image(os.path.join(args.out, 'youtubevis', 'train', 'JPEGImages', names[-1]),
                        f * p[..., None] + background[t] * (1 - p[..., None]))
            masks.append(rle(p > 0.5))
        videos.append({'id': i + 1, 'file_names': names, 'height': h, 'width': w, 'length': args.frames})
        annotations.append({'id': i + 1, 'video_id': i + 1, 'category_id': 26, 'segmentations': masks,
                            'iscrowd': 0})
    with open(os.path.join(args.out, 'youtubevis', 'train', 'instances.json'), 'w') as f:
        json.dump({'videos': videos, 'annotations': annotations,
                   'categories': [{'id': 26, 'name': 'person'}]}, f)


def moving_shapes(rng, h, w, frames, objects, real_bg):
    """Frames and label maps of `objects` textured ellipses and polygons moving and turning over a panning
    background (later objects in front)."""
    background = panning_clip(rng, h, w, frames, real_bg)
    shapes = []
    for k in range(objects):
        size = rng.uniform(0.12, 0.25) * min(h, w)
        shapes.append(dict(centre=rng.uniform([0.25 * w, 0.25 * h], [0.75 * w, 0.75 * h]),
                           velocity=rng.uniform(-0.03, 0.03, 2) * (w, h), axes=(size, size * rng.uniform(0.5, 1)),
                           angle=rng.uniform(0, 180), spin=rng.uniform(-8, 8), texture=texture(rng, h, w),
                           polygon=rng.random() < 0.5, sides=int(rng.integers(3, 7))))
    images, labels = [], []
    for t in range(frames):
        image, label = background[t].copy(), np.zeros((h, w), np.uint8)
        for k, shape in enumerate(shapes, 1):
            cx, cy = shape['centre'] + shape['velocity'] * t
            angle = shape['angle'] + shape['spin'] * t
            mask = np.zeros((h, w), np.uint8)
            if shape['polygon']:
                a = np.radians(angle) + np.arange(shape['sides']) * 2 * np.pi / shape['sides']
                points = np.stack([cx + shape['axes'][0] * np.cos(a), cy + shape['axes'][1] * np.sin(a)], axis=1)
                cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 1)
            else:
                cv2.ellipse(mask, (int(cx), int(cy)), tuple(int(a) for a in shape['axes']), angle, 0, 360, 1, -1)
            image[mask > 0] = shape['texture'][mask > 0]
            label[mask > 0] = k
        images.append(image)
        labels.append(label)
    return images, labels


def generate_davis(args, rng, real_bg):
    """VOS clips in the DAVIS 2017 layout (see the module docstring): 1 to 3 objects per sequence."""
    h, w = args.size, round(args.size * 16 / 9)
    names = {}
    for split, count in (('train', args.num_train), ('val', args.num_valid)):
        names[split] = [f'{split}{i:03d}' for i in range(count)]
        for name in names[split]:
            images, labels = moving_shapes(rng, h, w, args.frames, int(rng.integers(1, 4)), real_bg)
            for t, (image, label) in enumerate(zip(images, labels)):
                write_image(os.path.join(args.out, 'JPEGImages', '480p', name, f'{t:05d}.jpg'), image)
                write_labels(os.path.join(args.out, 'Annotations', '480p', name, f'{t:05d}.png'), label)
            if split == 'train':        # static pairs for stage 0: one frame per scene, its first object's mask
                write_image(os.path.join(args.out, 'static', name + '.jpg'), images[0])
                write_image(os.path.join(args.out, 'static', name + '.png'), (labels[0] == 1).astype(np.float32))
    os.makedirs(os.path.join(args.out, 'ImageSets', '2017'), exist_ok=True)
    for split, listed in names.items():
        with open(os.path.join(args.out, 'ImageSets', '2017', f'{split}.txt'), 'w') as f:
            f.write(''.join(n + '\n' for n in listed))


def generate(args):
    rng = np.random.default_rng(args.seed)
    real_bg = image_files(args.real_bg) if args.real_bg else None
    real_fg = find_pairs(args.real_fg) if args.real_fg else []
    if args.layout == 'rvm':
        return generate_rvm(args, rng, real_bg, real_fg)
    if args.layout == 'davis':
        return generate_davis(args, rng, real_bg)
    h = w = args.size
    splits = (('train', args.num_train), ('test' if args.layout == 'videomatte' else 'valid', args.num_valid))
    for split, count in splits:
        for i in range(count):
            if i < len(real_fg) and split == 'train':
                fgr, pha = real_foreground(rng, real_fg[i], args.size)
            else:
                fgr, pha = synthetic_foreground(rng, h, w, real_bg if rng.random() < 0.5 else None)
            name = f'{split}_{i:04d}'
            if args.layout == 'videomatte':
                write_clip(args.out, split, name, fgr, pha, args.frames, rng)
            else:
                write_sample(args.out, args.layout, split, name, fgr, pha, rng, real_bg)
        for i in range(args.num_backgrounds if split == 'train' else max(1, args.num_backgrounds // 4)):
            write_image(os.path.join(args.out, 'backgrounds', 'valid' if split != 'train' else 'train',
                                     f'{i:04d}.jpg'), texture(rng, h, round(w * 1.25), real_bg))


# ---------------------------------------------------------------- the shipped demo set

DEMO_VALID_SCENES = ('GT08', 'GT11', 'GT14')          # the project's own validation split
DEMO_VALID_BACKGROUNDS = ('wiki_022', 'wiki_024', 'wiki_028', 'wiki_030', 'teaser_back')


def build_demo(realdata, out, long_side=640):
    """dataset/demo from shared/realdata: alphamatting.com foregrounds (GTxx_fg_est + GTxx_alpha) and
    background photos, background JPEGs downscaled to `long_side`, split into train/valid."""
    scenes = os.path.join(realdata, 'fg_alpha', 'alphamatting_com')
    for name in sorted(f[:4] for f in os.listdir(scenes) if f.endswith('_alpha.png')):
        split = 'valid' if name in DEMO_VALID_SCENES else 'train'
        fgr = read_image(os.path.join(scenes, name + '_fg_est.png'))
        write_image(os.path.join(out, split, 'fgr', name + '.jpg'), fgr, quality=92)
        os.makedirs(os.path.join(out, split, 'pha'), exist_ok=True)
        shutil.copyfile(os.path.join(scenes, name + '_alpha.png'), os.path.join(out, split, 'pha', name + '.png'))
        assert read_alpha(os.path.join(out, split, 'pha', name + '.png')).shape[:2] == \
            read_image(os.path.join(out, split, 'fgr', name + '.jpg')).shape[:2]
        if split == 'valid':        # the real photo, its alpha and its first benchmark trimap: a trimap test set
            write_image(os.path.join(out, 'trimap_valid', 'merged', name + '.jpg'),
                        read_image(os.path.join(scenes, name + '_input.png')), quality=95)
            for part, source in (('alpha', '_alpha.png'), ('trimap', '_trimap1.png')):
                os.makedirs(os.path.join(out, 'trimap_valid', part), exist_ok=True)
                shutil.copyfile(os.path.join(scenes, name + source), os.path.join(out, 'trimap_valid', part,
                                                                                   name + '.png'))
    for path in image_files(os.path.join(realdata, 'backgrounds')):
        name = os.path.splitext(os.path.basename(path))[0]
        image = read_image(path)
        s = long_side / max(image.shape[:2])
        if s < 1:
            size = (round(image.shape[1] * s), round(image.shape[0] * s))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        split = 'valid' if name in DEMO_VALID_BACKGROUNDS else 'train'
        write_image(os.path.join(out, 'backgrounds', split, name + '.jpg'), image, quality=88)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--out', required=True)
    p.add_argument('--layout', default='fgr_pha', choices=['fgr_pha', 'videomatte', 'aim', 'rgba', 'rvm', 'davis'])
    p.add_argument('--num-train', type=int, default=40)
    p.add_argument('--num-valid', type=int, default=8)
    p.add_argument('--num-backgrounds', type=int, default=16, help='training backgrounds (a quarter as many for valid)')
    p.add_argument('--size', type=int, default=320, help='side of the synthetic images')
    p.add_argument('--frames', type=int, default=3, help='frames per clip (videomatte, rvm and davis layouts)')
    p.add_argument('--real-fg', help='a folder with fgr/ + pha/ whose pairs start the training split')
    p.add_argument('--real-bg', help='a folder of photos to crop backgrounds and textures from')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--demo-from-realdata', metavar='DIR', help='build the shipped demo set from shared/realdata')
    args = p.parse_args(argv)
    if args.demo_from_realdata:
        build_demo(args.demo_from_realdata, args.out)
    else:
        generate(args)
    print(f"wrote {args.out}")


if __name__ == '__main__':
    main()
