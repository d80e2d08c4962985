"""The augmentations of BGMv2 training (spec/bgmv2.md 2.3-2.4) in numpy/OpenCV, without kornia.

Every function takes a `numpy.random.Generator` and draws all of its randomness from it, so a sample is a
pure function of its seed: workers, resumed runs and evaluation composites are reproducible.
Images are float32 H x W x 3 RGB in [0, 1]; mattes are float32 H x W.

Two groups, as in the official code:
- per sample, in the data workers (2.3): paired affine-and-resize, flip, box blur, sharpen, colour jitter
  (`augment_pair`, `augment_background`);
- per batch (2.4, on the GPU officially; here in the collate step of the workers): a random crop of one size
  for the whole batch, then shadow, composite, noise, background colour jitter and background misalignment
  (`random_crop`, `draw_batch_params`, `composite_augment`; `eval_composite` and `perturb_plate` for
  evaluation sets).
"""
import math

import cv2
import numpy as np

GRAY = np.array([0.299, 0.587, 0.114], np.float32)
SHARPEN = np.array([[-2, -2, -2], [-2, 32, -2], [-2, -2, -2]], np.float32) / 16   # PIL ImageFilter.SHARPEN


# ---------------------------------------------------------------- geometry

def affine_matrix(angle, translate, scale, shear, center_in, center_out):
    """2x3 forward map: rotate by `angle` and x-shear by `shear` (degrees) and scale about `center_in`,
    then place that point at `center_out + translate`."""
    a, s = math.radians(angle), math.radians(shear)
    rotation = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    linear = scale * rotation @ np.array([[1, -math.tan(s)], [0, 1]])
    offset = np.asarray(center_out) + np.asarray(translate) - linear @ np.asarray(center_in)
    return np.hstack([linear, offset[:, None]]).astype(np.float32)


def warp(image, matrix, size, border=cv2.BORDER_CONSTANT):
    """Bilinear affine warp to (h, w); outside is 0 (torchvision's fill) unless `border` says otherwise."""
    h, w = size
    return cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=border, borderValue=0)


def random_affine_and_resize(images, size, rng, scale, degrees=5, translate=0.1, shear=5):
    """The official RandomAffineAndResize on images of one size, with shared parameters.

    The scale and translate ranges are relative to f = max(th/h, tw/w), the factor at which the image covers
    the target; translation is drawn relative to the unpadded image, the result is centred on the target
    (zero-padded where the image does not reach).
    """
    (th, tw), (h, w) = size, images[0].shape[:2]
    f = max(tw / w, th / h)
    angle = rng.uniform(-degrees, degrees)
    tx = round(rng.uniform(-1, 1) * translate * f * w)
    ty = round(rng.uniform(-1, 1) * translate * f * h)
    factor = rng.uniform(scale[0] * f, scale[1] * f)
    shear_x = rng.uniform(-shear, shear)
    if factor < 1:
        # shrink first with area averaging (a uniform scale commutes with the rest): no aliasing of hair
        sh, sw = max(1, round(h * factor)), max(1, round(w * factor))
        images = [cv2.resize(im, (sw, sh), interpolation=cv2.INTER_AREA) for im in images]
        factor, h, w = factor * w / sw, sh, sw
        factor = factor if abs(factor - 1) > 1e-3 else 1.0
    matrix = affine_matrix(angle, (tx, ty), factor, shear_x, ((w - 1) / 2, (h - 1) / 2), ((tw - 1) / 2, (th - 1) / 2))
    return [np.clip(warp(im, matrix, size), 0, 1) for im in images]   # resampling may overshoot 1 by an ulp


def resize_and_center_crop(image, size):
    """Resize to a square of side max(size) (bilinear), then centre-crop to size (h, w)."""
    h, w = size
    side = max(h, w)
    image = np.clip(cv2.resize(image, (side, side), interpolation=cv2.INTER_LINEAR), 0, 1)
    top, left = (side - h) // 2, (side - w) // 2
    return image[top:top + h, left:left + w]


def random_crop_size(rng, resolution, multiple=1):
    """(h, w), each drawn from [resolution/2, resolution) and rounded down to `multiple`
    (512 -> 256..511 for the base stage; 2048 -> 1024..2044 in steps of 4 for the refine stage)."""
    h, w = (int(rng.integers(resolution // 2, resolution)) // multiple * multiple for _ in range(2))
    return h, w


# ---------------------------------------------------------------- filters and colour

def box_blur(image, radius, border=cv2.BORDER_REPLICATE):
    """PIL BoxBlur(radius): a (2r+1)-wide mean filter."""
    return cv2.blur(image, (2 * radius + 1, 2 * radius + 1), borderType=border) if radius else image


def sharpen(image):
    return np.clip(cv2.filter2D(image, -1, SHARPEN, borderType=cv2.BORDER_REPLICATE), 0, 1)


def gray(image):
    return image @ GRAY


def adjust_hue(image, shift):
    """Rotate the hue by `shift` of a full turn (an image or a T x H x W x 3 clip)."""
    if image.ndim == 4:
        return np.stack([adjust_hue(frame, shift) for frame in image])
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)            # float input: H in [0, 360)
    hsv[..., 0] = (hsv[..., 0] + shift * 360) % 360
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def jitter_params(rng, brightness, contrast, saturation, hue):
    """torchvision ColorJitter's draw: factors 1 +- b/c/s, a hue shift +- h, and the order of the four."""
    factors = [rng.uniform(1 - v, 1 + v) for v in (brightness, contrast, saturation)] + [rng.uniform(-hue, hue)]
    return factors, rng.permutation(4)


def apply_jitter(image, params, kornia=False):
    """Apply jitter_params to an image (or to every frame of a T x H x W x 3 clip: one draw for the clip).

    kornia=True is kornia 0.4.1's variant used on backgrounds: brightness *adds* (factor - 1) and contrast
    scales the image instead of blending it with its mean."""
    factors, order = params
    mean_axes = tuple(range(image.ndim - 3, image.ndim - 1))
    for op in order:
        x = factors[op]
        if op == 0:
            image = image + (x - 1) if kornia else image * x
        elif op == 1:
            mean = gray(image).mean(axis=mean_axes, keepdims=True)[..., None]
            image = image * x if kornia else (image - mean) * x + mean
        elif op == 2:
            g = gray(image)[..., None]
            image = (image - g) * x + g
        else:
            image = adjust_hue(np.clip(image, 0, 1), x)
        image = np.clip(image, 0, 1).astype(np.float32)
    return image


def color_jitter(image, rng, brightness, contrast, saturation, hue, kornia=False):
    """torchvision ColorJitter: factors 1 +- b/c/s and a hue shift +- h, applied in random order."""
    return apply_jitter(image, jitter_params(rng, brightness, contrast, saturation, hue), kornia)


# ---------------------------------------------------------------- per-sample (data workers)

def augment_pair(fgr, pha, size, rng, scale, train=True):
    """(fgr, pha) -> same-size pair at `size` (h, w); training adds flip, blur, sharpen, fgr colour jitter."""
    fgr, pha = random_affine_and_resize([fgr, pha], size, rng, scale)
    if not train:
        return fgr, pha
    if rng.random() < 0.5:
        fgr, pha = fgr[:, ::-1], pha[:, ::-1]
    if rng.random() < 0.1:
        radius = int(rng.integers(0, 6))
        fgr, pha = box_blur(fgr, radius), box_blur(pha, radius)
    if rng.random() < 0.1:
        fgr, pha = sharpen(fgr), sharpen(pha)
    fgr = color_jitter(fgr, rng, 0.15, 0.15, 0.15, 0.05)
    return np.ascontiguousarray(fgr), np.ascontiguousarray(pha)


def augment_background(bgr, size, rng, train=True):
    """Background -> `size`, zoomed in (scale 1-2 in training, 1-1.2 in validation) so it always covers."""
    bgr, = random_affine_and_resize([bgr], size, rng, (1, 2) if train else (1, 1.2))
    if not train:
        return bgr
    if rng.random() < 0.5:
        bgr = bgr[:, ::-1]
    if rng.random() < 0.1:
        bgr = box_blur(bgr, int(rng.integers(0, 6)))
    if rng.random() < 0.1:
        bgr = sharpen(bgr)
    return np.ascontiguousarray(color_jitter(bgr, rng, 0.15, 0.15, 0.15, 0.05))


# ---------------------------------------------------------------- per-batch (collate) and evaluation

def draw_batch_params(rng):
    """The parameters the official loop shares across a batch: shadow strength, shadow and misalignment
    affines (translation as a fraction of the size) and the shadow blur kernel."""
    return {
        'shadow_strength': 0.3 * rng.uniform(),
        'shadow_affine': (rng.uniform(-5, 5), rng.uniform(-0.2, 0.2), rng.uniform(-0.2, 0.2),
                          rng.uniform(0.5, 1.5), rng.uniform(-5, 5)),
        'shadow_kernel': int(rng.integers(20, 40)),
        'misalign_affine': (rng.uniform(-1, 1), rng.uniform(-0.01, 0.01), rng.uniform(-0.01, 0.01), 1.0, 0.0),
    }


def _apply_affine(image, params):
    angle, fx, fy, scale, shear = params
    h, w = image.shape[:2]
    center = ((w - 1) / 2, (h - 1) / 2)
    return warp(image, affine_matrix(angle, (round(fx * w), round(fy * h)), scale, shear, center, center), (h, w))


def _box_blur_reflect(image, k):
    """kornia box_blur with an even or odd k x k kernel and reflect border; k is capped by the image size."""
    k = max(1, min(k, min(image.shape[:2]) - 1))
    return cv2.blur(image, (k, k), borderType=cv2.BORDER_REFLECT_101)


PLATE_JITTER = 0.8          # the official chance of the plate's colour jitter in the per-batch augmentation


def composite_augment(fgr, pha, bgr, rng, params, plate_jitter=PLATE_JITTER):
    """Shadow, composite, noise, background colour jitter (with chance `plate_jitter`) and misalignment for one
    sample.

    Returns (src, bgr): the composite and the background the network is given with it.
    """
    src = bgr
    if rng.random() < 0.3:
        shadow = _apply_affine(pha * params['shadow_strength'], params['shadow_affine'])
        src = np.clip(src - _box_blur_reflect(shadow, params['shadow_kernel'])[..., None], 0, 1)
    src = fgr * pha[..., None] + src * (1 - pha[..., None])
    if rng.random() < 0.4:
        src = src + rng.standard_normal(src.shape, np.float32) * np.float32(0.03 * rng.uniform())
        bgr = bgr + rng.standard_normal(bgr.shape, np.float32) * np.float32(0.03 * rng.uniform())
    src, bgr = np.clip(src, 0, 1), np.clip(bgr, 0, 1)
    if rng.random() < plate_jitter:
        bgr = color_jitter(bgr, rng, 0.18, 0.18, 0.18, 0.1, kornia=True)
    if rng.random() < 0.3:
        bgr = _apply_affine(bgr, params['misalign_affine'])      # the capture moved a little
    return src.astype(np.float32), bgr.astype(np.float32)


def eval_composite(fgr, pha, bgr, rng, augment=True):
    """Evaluation composite of fgr (H x W x 3), pha (H x W) and bgr (H x W x 3, already at the fgr size):
    the training-time per-batch augmentation of one sample, or (augment=False) the plain composite with the
    background itself as the plate. Returns float32 (src, bgr_aug) in [0, 1]."""
    if fgr.shape[:2] != pha.shape[:2] or bgr.shape != fgr.shape or fgr.ndim != 3:
        raise ValueError(f"eval_composite needs fgr H x W x 3, pha H x W and bgr of the fgr size; got "
                         f"{fgr.shape}, {pha.shape}, {bgr.shape}")
    fgr, pha, bgr = (np.asarray(x, np.float32) for x in (fgr, pha, bgr))
    if augment:
        return composite_augment(fgr, pha, bgr, rng, draw_batch_params(rng))
    return fgr * pha[..., None] + bgr * (1 - pha[..., None]), bgr


def perturb_plate(bgr, rng, shift, noise):
    """The plate moved by `shift` pixels in a random direction (bilinear, mirrored border: a hand-held or
    re-framed capture) and given Gaussian noise of std `noise` (sensor noise the photo does not share)."""
    if shift:
        angle = rng.uniform(0, 2 * np.pi)
        matrix = np.float32([[1, 0, shift * np.cos(angle)], [0, 1, shift * np.sin(angle)]])
        bgr = warp(bgr, matrix, bgr.shape[:2], cv2.BORDER_REFLECT_101)
    if noise:
        bgr = np.clip(bgr + rng.standard_normal(bgr.shape, np.float32) * np.float32(noise), 0, 1)
    return bgr
