"""Foreground colours from an image and its alpha matte, for matting networks that predict only alpha.

Blur-fusion (Forte and Pitie, "Approximate Fast Foreground Colour Estimation", ICIP 2021): local means of the
foreground and background colours, weighted by alpha and 1 - alpha, corrected so that the composite reproduces
the image; once with a large box (radius 90) from the image itself, then with a small one (radius 6).
"""
import cv2
import numpy as np


def _blur_fusion(fgr, bgr, image, alpha, radius):
    a = alpha[..., None]
    box = lambda x: cv2.blur(x, (2 * radius + 1, 2 * radius + 1), borderType=cv2.BORDER_REPLICATE)  # noqa: E731
    blurred_alpha = box(alpha)[..., None]
    mean_fgr = box(fgr * a) / (blurred_alpha + 1e-5)
    mean_bgr = box(bgr * (1 - a)) / (1 - blurred_alpha + 1e-5)
    fgr = mean_fgr + a * (image - a * mean_fgr - (1 - a) * mean_bgr)
    return np.clip(fgr, 0, 1).astype(np.float32), mean_bgr


def estimate_foreground(image, alpha):
    """image: H x W x 3 float32 in [0, 1]; alpha: H x W in [0, 1] -> H x W x 3 foreground colours."""
    image, alpha = image.astype(np.float32), alpha.astype(np.float32)
    fgr, bgr = _blur_fusion(image, image, image, alpha, 90)
    return _blur_fusion(fgr, bgr, image, alpha, 6)[0]
