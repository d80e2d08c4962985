"""Trimaps and the trimap-based inference protocol of IndexNet (spec/indexnet.md 2-3), in numpy/OpenCV.

Trimap values: 0 background, 128 unknown, 255 foreground.
"""
import cv2
import numpy as np

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def trimap_from_alpha(alpha, k):
    """The training trimap: the pixels with 0 < alpha < 255 (uint8 alpha) widened by every pixel within Euclidean
    distance k of them are unknown; the rest is 255 where alpha is 255, else 0."""
    band = (alpha > 0) & (alpha < 255)
    if band.any() and k > 0:
        distance = cv2.distanceTransform((~band).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        band = distance <= k
    return np.where(band, 128, np.where(alpha == 255, 255, 0)).astype(np.uint8)


def normalise(image, trimap):
    """H x W x 3 RGB in [0, 1] and H x W uint8 trimap -> H x W x 4 network input: ImageNet-normalised RGB and
    trimap / 255, as the official Normalize."""
    return np.concatenate([(image - IMAGENET_MEAN) / IMAGENET_STD, trimap[..., None] / np.float32(255)], axis=2)


def align32(x):
    """The official image_alignment: *resize* (not pad) to the next multiples of 32 with OpenCV, cubic for the
    RGB channels and nearest for the trimap channel."""
    h, w = x.shape[:2]
    size = (-(-w // 32) * 32, -(-h // 32) * 32)
    if size == (w, h):
        return x
    rgb = cv2.resize(x[..., :3], size, interpolation=cv2.INTER_CUBIC)
    trimap = cv2.resize(x[..., 3], size, interpolation=cv2.INTER_NEAREST)
    return np.concatenate([rgb, trimap[..., None]], axis=2)


def restore(raw, trimap):
    """The network's raw H' x W' output -> the H x W alpha of the protocol: cubic back to the trimap's size,
    clipped, the trimap's known regions pasted, 8-bit by truncation (returned / 255, so that saving it as a
    rounded 8-bit PNG writes the official values)."""
    h, w = trimap.shape
    alpha = np.clip(cv2.resize(raw, (w, h), interpolation=cv2.INTER_CUBIC), 0, 1) * 255
    alpha = np.where(trimap == 128, alpha, trimap)
    return (np.floor(alpha) / np.float32(255)).astype(np.float32)
