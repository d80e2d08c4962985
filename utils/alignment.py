"""Aligning a hand-held background plate to the photo with a feature-based homography."""
import cv2
import numpy as np

MAX_SIDE = 1280        # features are found on a downscaled copy: faster, and enough for a homography
MIN_INLIERS = 12


def _gray_u8(image, scale):
    gray = cv2.cvtColor(np.clip(image * 255, 0, 255).astype(np.uint8), cv2.COLOR_RGB2GRAY)
    return cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else gray


def estimate_homography(src, bgr):
    """3x3 H mapping bgr pixel coordinates onto src, or None when the images do not match.

    SIFT keypoints, Lowe's ratio test and RANSAC: the subject, present only in src, yields matches
    that RANSAC rejects as outliers, so a subject covering much of the frame is tolerated.
    """
    scale = min(1.0, MAX_SIDE / max(src.shape[:2] + bgr.shape[:2]))
    detector = cv2.SIFT_create(nfeatures=8000)
    kp_src, des_src = detector.detectAndCompute(_gray_u8(src, scale), None)
    kp_bgr, des_bgr = detector.detectAndCompute(_gray_u8(bgr, scale), None)
    if des_src is None or des_bgr is None or len(kp_src) < MIN_INLIERS or len(kp_bgr) < MIN_INLIERS:
        return None
    pairs = cv2.BFMatcher(cv2.NORM_L2).knnMatch(des_bgr, des_src, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < 0.75 * p[1].distance]
    if len(good) < MIN_INLIERS:
        return None
    pts_bgr = np.float32([kp_bgr[m.queryIdx].pt for m in good]) / scale
    pts_src = np.float32([kp_src[m.trainIdx].pt for m in good]) / scale
    H, inliers = cv2.findHomography(pts_bgr, pts_src, cv2.RANSAC, 3.0 / scale)
    if H is None or int(inliers.sum()) < MIN_INLIERS:
        return None
    return H


def align_background(src, bgr):
    """Warp bgr (H' x W' x 3 float) onto src's frame (H x W x 3). Pixels the plate does not cover are
    taken from src, as the official pipeline does. Returns (aligned, H) or (None, None) on failure."""
    H = estimate_homography(src, bgr)
    if H is None:
        return None, None
    h, w = src.shape[:2]
    warped = cv2.warpPerspective(bgr, H, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    cover = cv2.warpPerspective(np.ones(bgr.shape[:2], np.float32), H, (w, h), flags=cv2.INTER_LINEAR)
    inside = (cover >= 1 - 1e-3)[:, :, None]
    return np.where(inside, warped, src).astype(np.float32), H
