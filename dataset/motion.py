"""The augmentations of Robust Video Matting training (spec/rvm.md 2.5) in numpy/OpenCV, without torchvision or
kornia: MotionAugmentation (affine motion, colour and blur eased over the frames of a clip) and the segmentation
augmentations of COCO / Supervisely (one image) and YouTubeVIS (one draw per clip).

Clips are float32 T x H x W x C arrays in [0, 1] (C = 3 for images, 1 for mattes and masks). Every draw comes from
the `numpy.random.Generator` passed in, so a sample is a pure function of its seed.
"""
import math
from dataclasses import dataclass

import cv2
import numpy as np

from .augmentation import affine_matrix, apply_jitter, gray, jitter_params


# ---------------------------------------------------------------- easing curves (Penner's, as easing_functions)

def _bounce_out(t):
    if t < 4 / 11:
        return 121 * t * t / 16
    if t < 8 / 11:
        return 363 / 40 * t * t - 99 / 10 * t + 17 / 5
    if t < 9 / 10:
        return 4356 / 361 * t * t - 35442 / 1805 * t + 16061 / 1805
    return 54 / 5 * t * t - 513 / 25 * t + 268 / 25


def _back_in(t):
    return t ** 3 - t * math.sin(t * math.pi)


def _elastic_in(t):
    return math.sin(13 * math.pi / 2 * t) * 2 ** (10 * (t - 1))


def _exponential_in(t):
    return 0.0 if t == 0 else 2 ** (10 * (t - 1))


def _circular_in(t):
    return 1 - math.sqrt(max(0.0, 1 - t * t))


EASE_IN = {
    'back': _back_in, 'bounce': lambda t: 1 - _bounce_out(1 - t), 'circular': _circular_in,
    'cubic': lambda t: t ** 3, 'exponential': _exponential_in, 'elastic': _elastic_in, 'quad': lambda t: t * t,
    'quartic': lambda t: t ** 4, 'quintic': lambda t: t ** 5, 'sine': lambda t: 1 - math.cos(t * math.pi / 2),
}


def ease(curve, mode, t):
    """Curve `curve` ('linear', 'step' or a key of EASE_IN) in `mode` 'in' | 'out' | 'inout' at t in [0, 1]."""
    if curve == 'linear':
        return t
    if curve == 'step':
        return 0.0 if t < 0.5 else 1.0
    f = EASE_IN[curve]
    if mode == 'in':
        return f(t)
    if mode == 'out':
        return 1 - f(1 - t)
    return f(2 * t) / 2 if t < 0.5 else 1 - f(2 - 2 * t) / 2


CURVES = [(c, m) for c in EASE_IN for m in ('in', 'out', 'inout')] + [('step', '')]     # 30 curves + a step


def random_easing(rng):
    """The official draw: linear with p 0.2, else one of the 30 curves or the step, uniformly."""
    if rng.random() < 0.2:
        return lambda t: t
    curve, mode = CURVES[int(rng.integers(len(CURVES)))]
    return lambda t: ease(curve, mode, t)


def progress(easing, frames):
    """easing(t / (T - 1)) per frame (0 for a single frame)."""
    return [easing(t / (frames - 1)) if frames > 1 else 0.0 for t in range(frames)]


def lerp(a, b, p):
    return a + (b - a) * p


# ---------------------------------------------------------------- geometry

@dataclass
class Affine:
    angle: float
    tx: float
    ty: float
    scale: float
    shear: float

    def mix(self, other, p):
        return Affine(*(lerp(a, b, p) for a, b in zip(vars(self).values(), vars(other).values())))

    def matrix(self, h, w):
        """Output size = input size, about the image centre (torchvision F.affine)."""
        center = ((w - 1) / 2, (h - 1) / 2)
        return affine_matrix(self.angle, (self.tx, self.ty), self.scale, self.shear, center, center)


def random_affine(rng, h, w, degrees, translate, scale, shear):
    """torchvision RandomAffine.get_params: angle, integer translation within +-translate of the size, scale and
    x-shear uniform in their ranges."""
    angle = rng.uniform(-degrees, degrees)
    tx, ty = (float(round(rng.uniform(-translate * n, translate * n))) for n in (w, h))
    return Affine(angle, tx, ty, rng.uniform(*scale), rng.uniform(-shear, shear))


def warp_clip(clip, affines, nearest=False):
    """Warp frame t of a T x H x W x C clip by affines[t] (bilinear, zero outside)."""
    h, w = clip.shape[1:3]
    flags = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    out = [cv2.warpAffine(frame, a.matrix(h, w), (w, h), flags=flags, borderValue=0).reshape(frame.shape)
           for frame, a in zip(clip, affines)]
    return np.clip(np.stack(out), 0, 1)


def resized_crop_params(rng, h, w, scale, ratio):
    """torchvision RandomResizedCrop.get_params: (top, left, height, width) of a crop of area `scale` of the image
    and aspect ratio log-uniform in `ratio`; after 10 misses, the centre crop of the ratio nearest the image's."""
    area = h * w
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        cw, ch = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            return int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1)), ch, cw
    if w / h < ratio[0]:
        cw, ch = w, int(round(w / ratio[0]))
    elif w / h > ratio[1]:
        ch, cw = h, int(round(h * ratio[1]))
    else:
        cw, ch = w, h
    return (h - ch) // 2, (w - cw) // 2, ch, cw


def resized_crop(clip, params, size, nearest=False):
    top, left, ch, cw = params
    flags = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    out = [cv2.resize(frame[top:top + ch, left:left + cw], (size, size), interpolation=flags).reshape(
        size, size, -1) for frame in clip]
    return np.clip(np.stack(out), 0, 1).astype(np.float32)


# ---------------------------------------------------------------- photometric

def grayscale(clip):
    return np.repeat(gray(clip)[..., None], 3, axis=-1)


SMOOTH = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], np.float32) / 13


def adjust_sharpness(clip, factor):
    """torchvision adjust_sharpness: blend with a 3x3 smoothed copy whose border pixels stay unsmoothed."""
    out = []
    for frame in clip:
        smooth = cv2.filter2D(frame, -1, SMOOTH, borderType=cv2.BORDER_REPLICATE).reshape(frame.shape)
        smooth[0], smooth[-1], smooth[:, 0], smooth[:, -1] = frame[0], frame[-1], frame[:, 0], frame[:, -1]
        out.append(np.clip(smooth + factor * (frame - smooth), 0, 1))
    return np.stack(out).astype(np.float32)


def gaussian_blur(frame, sigma):
    """torchvision gaussian_blur with kernel int(2 sigma) made odd, reflect padding."""
    k = int(sigma * 2)
    k += k % 2 == 0
    return cv2.GaussianBlur(frame, (k, k), sigma, borderType=cv2.BORDER_REFLECT_101).reshape(frame.shape)


class MotionAugmentation:
    """The official MotionAugmentation: (fgr, pha, bgr) clips of any size -> three size x size clips.

    The probabilities of each step are constructor arguments (TRAIN_VIDEOMATTE etc. below give the official
    values per dataset). The static affine runs always, validation included, as in the official code."""

    def __init__(self, size, fgr_affine, bgr_affine, noise, color_jitter, grayscale, sharpness, blur, hflip, pause,
                 static_affine=True, aspect_ratio_range=(0.9, 1.1)):
        self.size, self.static_affine, self.aspect = size, static_affine, aspect_ratio_range
        self.p = dict(fgr_affine=fgr_affine, bgr_affine=bgr_affine, noise=noise, color_jitter=color_jitter,
                      grayscale=grayscale, sharpness=sharpness, blur=blur, hflip=hflip, pause=pause)

    def __call__(self, fgr, pha, bgr, rng):
        p, chance = self.p, lambda q: rng.random() < q      # noqa: E731
        if chance(p['fgr_affine']):
            fgr, pha = self.motion_affine(rng, fgr, pha)
        if chance(p['bgr_affine'] / 2):
            bgr, = self.motion_affine(rng, bgr)
        if chance(p['bgr_affine'] / 2):
            fgr, pha, bgr = self.motion_affine(rng, fgr, pha, bgr)
        if self.static_affine:
            fgr, pha = self.still_affine(rng, (0.5, 1), fgr, pha)
            bgr, = self.still_affine(rng, (1, 1.5), bgr)
        crop = resized_crop_params(rng, *fgr.shape[1:3], (1, 1), self.aspect)
        fgr, pha = resized_crop(fgr, crop, self.size), resized_crop(pha, crop, self.size)
        bgr = resized_crop(bgr, resized_crop_params(rng, *bgr.shape[1:3], (1, 1), self.aspect), self.size)
        if chance(p['hflip']):
            fgr, pha = fgr[:, :, ::-1], pha[:, :, ::-1]
        if chance(p['hflip']):
            bgr = bgr[:, :, ::-1]
        if chance(p['noise']):
            fgr, bgr = self.motion_noise(rng, fgr, bgr)
        if chance(p['color_jitter']):
            fgr = self.motion_color_jitter(rng, fgr)
        if chance(p['color_jitter']):
            bgr = self.motion_color_jitter(rng, bgr)
        if chance(p['grayscale']):
            fgr, bgr = grayscale(fgr), grayscale(bgr)
        if chance(p['sharpness']):
            factor = rng.random() * 8
            fgr, pha, bgr = (adjust_sharpness(x, factor) for x in (fgr, pha, bgr))
        if chance(p['blur'] / 3):
            fgr, pha = self.motion_blur(rng, fgr, pha)
        if chance(p['blur'] / 3):
            bgr, = self.motion_blur(rng, bgr)
        if chance(p['blur'] / 3):
            fgr, pha, bgr = self.motion_blur(rng, fgr, pha, bgr)
        if chance(p['pause']):
            fgr, pha, bgr = self.motion_pause(rng, fgr, pha, bgr)
        return [np.ascontiguousarray(x, dtype=np.float32) for x in (fgr, pha, bgr)]

    @staticmethod
    def motion_affine(rng, *clips):
        """Two random affines (rotation 10 deg, translation 10 %, scale 0.9-1.1, shear 5 deg) eased over time."""
        h, w = clips[0].shape[1:3]
        a, b = (random_affine(rng, h, w, 10, 0.1, (0.9, 1.1), 5) for _ in range(2))
        affines = [a.mix(b, q) for q in progress(random_easing(rng), len(clips[0]))]
        return [warp_clip(clip, affines) for clip in clips]

    @staticmethod
    def still_affine(rng, scale, *clips):
        h, w = clips[0].shape[1:3]
        a = random_affine(rng, h, w, 10, 0.1, scale, 5)
        return [warp_clip(clip, [a] * len(clip)) for clip in clips]

    @staticmethod
    def motion_noise(rng, *clips):
        """Grain 1-4 px, monochrome with p 0.5, std U[0, 0.2) / grain; fresh noise per clip."""
        grain = rng.random() * 3 + 1
        mono = rng.random() < 0.5
        out = []
        for clip in clips:
            t, h, w, c = clip.shape
            noise = rng.standard_normal((t, round(h / grain), round(w / grain), 1 if mono else c)).astype(np.float32)
            noise *= rng.random() * 0.2 / grain
            if grain != 1:
                noise = np.stack([cv2.resize(n, (w, h), interpolation=cv2.INTER_LINEAR).reshape(h, w, -1)
                                  for n in noise])
            out.append(np.clip(clip + noise, 0, 1))
        return out

    @staticmethod
    def motion_color_jitter(rng, clip):
        """Endpoints N(0, 0.1) of brightness, contrast, saturation and hue offsets, eased, times a strength
        U[0, 0.2). Saturation uses the brightness endpoints: the official code's slip, kept."""
        b0, b1, c0, c1, _, _, h0, h1 = rng.standard_normal(8) * 0.1
        strength = rng.random() * 0.2
        out = []
        for frame, q in zip(clip, progress(random_easing(rng), len(clip))):
            q *= strength
            bright = max(1 + lerp(b0, b1, q), 0.1)
            factors = [bright, max(1 + lerp(c0, c1, q), 0.1), bright, min(0.5, max(-0.5, lerp(h0, h1, q) * 0.1))]
            out.append(apply_jitter(frame, (factors, range(4))))      # brightness, contrast, saturation, hue
        return np.stack(out)

    @staticmethod
    def motion_blur(rng, *clips):
        a, b = rng.random() * 10, rng.random() * 10
        clips = [clip.copy() for clip in clips]
        for t, q in enumerate(progress(random_easing(rng), len(clips[0]))):
            sigma = max(lerp(a, b, q), 0)
            if sigma:
                for clip in clips:
                    clip[t] = gaussian_blur(clip[t], sigma)
        return clips

    @staticmethod
    def motion_pause(rng, *clips):
        """Frames after a random one repeat it for a random length."""
        t = len(clips[0])
        frame = int(rng.integers(t - 1)) if t > 1 else 0
        length = int(rng.integers(t - frame))
        clips = [clip.copy() for clip in clips]
        for clip in clips:
            clip[frame + 1:frame + length] = clip[frame]
        return clips


# official probabilities: fgr_affine, bgr_affine, noise, color_jitter, grayscale, sharpness, blur, hflip, pause
TRAIN_VIDEOMATTE = (0.3, 0.3, 0.1, 0.3, 0.02, 0.1, 0.02, 0.5, 0.03)
TRAIN_IMAGEMATTE = (0.95, 0.3, 0.05, 0.3, 0.03, 0.05, 0.02, 0.5, 0.03)
VALID = (0,) * 9


def motion_augmentation(size, probabilities):
    return MotionAugmentation(size, *probabilities)


# ---------------------------------------------------------------- segmentation

def augment_image_segmentation(img, seg, size, rng):
    """COCO / Supervisely: affine (rotation 20 deg, translation 10 %, shear 10 deg; mask nearest), resized crop of
    scale 0.5-1 and ratio 0.7-1.3, flip p 0.5, ColorJitter(0.1, 0.1, 0.1, 0.1). img H x W x 3, seg H x W x 1."""
    h, w = img.shape[:2]
    a = random_affine(rng, h, w, 20, 0.1, (1, 1), 10)
    img, seg = warp_clip(img[None], [a])[0], warp_clip(seg[None], [a], nearest=True)[0]
    crop = resized_crop_params(rng, h, w, (0.5, 1), (0.7, 1.3))
    img, seg = resized_crop(img[None], crop, size)[0], resized_crop(seg[None], crop, size, nearest=True)[0]
    if rng.random() < 0.5:
        img, seg = img[:, ::-1], seg[:, ::-1]
    return apply_jitter(np.ascontiguousarray(img), jitter_params(rng, 0.1, 0.1, 0.1, 0.1)), np.ascontiguousarray(seg)


def augment_clip_segmentation(imgs, segs, size, rng):
    """YouTubeVIS: resized crop of scale 0.8-1 and ratio 0.9-1.1 (bilinear for both), ColorJitter(0.3, 0.3, 0.3,
    0.15) drawn once for the clip, grayscale p 0.05, flip p 0.5. imgs T x H x W x 3, segs T x H x W x 1."""
    crop = resized_crop_params(rng, *imgs.shape[1:3], (0.8, 1), (0.9, 1.1))
    imgs, segs = resized_crop(imgs, crop, size), resized_crop(segs, crop, size)
    imgs = apply_jitter(imgs, jitter_params(rng, 0.3, 0.3, 0.3, 0.15))
    if rng.random() < 0.05:
        imgs = grayscale(imgs)
    if rng.random() < 0.5:
        imgs, segs = imgs[:, :, ::-1], segs[:, :, ::-1]
    return np.ascontiguousarray(imgs), np.ascontiguousarray(segs)
