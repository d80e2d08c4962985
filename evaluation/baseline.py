"""The difference-matte reference of `eval.py --baseline difference`: alpha = clip(blur(max_c |src - bgr|) / t, 0, 1),
the photo itself as the foreground. A clean plate makes matting easy; a network that sees the plate should beat
this one line, so the image protocol prints it as a row of its own next to the model's."""
import cv2
import numpy as np

BLUR_SIGMA = 1.0                                   # pixels: the blur that fills single-pixel gaps and noise
THRESHOLDS = tuple(float(t) for t in np.geomspace(0.01, 0.5, 21))   # candidates for t, about 1.2x apart


def difference(src, bgr):
    """H x W x 3 photo and plate in [0, 1] -> the H x W blurred largest per-channel absolute difference."""
    return cv2.GaussianBlur(np.abs(src - bgr).max(axis=2), (0, 0), BLUR_SIGMA)


class DifferenceMatte:
    """A runner with the families' contract: N x H x W x 3 photos and plates -> {'pha', 'fgr'}."""

    def __init__(self, threshold):
        if not threshold > 0:
            raise ValueError(f'--baseline-threshold must be > 0, got {threshold}')
        self.threshold = threshold

    def reset(self):
        """Images are independent."""

    def __call__(self, src, bgr):
        pha = np.stack([np.clip(difference(s, b) / np.float32(self.threshold), 0, 1) for s, b in zip(src, bgr)])
        return {'pha': pha.astype(np.float32), 'fgr': np.asarray(src, np.float32)}


class ThresholdSearch:
    """Accumulates, over (photo, plate, true alpha) triples, the mean absolute alpha error of each candidate t;
    best() is the t with the smallest total."""

    def __init__(self):
        self.errors = np.zeros(len(THRESHOLDS))

    def add(self, src, bgr, alpha):
        d = difference(src, bgr)
        self.errors += [np.abs(np.clip(d / np.float32(t), 0, 1) - alpha).mean() for t in THRESHOLDS]

    def best(self):
        return THRESHOLDS[int(np.argmin(self.errors))]
