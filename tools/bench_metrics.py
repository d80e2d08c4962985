"""Time utils.metrics on one synthetic 2048x2048 portrait-like matte, on one core.

    python3 tools/bench_metrics.py [--size 2048] [--repeat 5]

Prints the best wall-clock and CPU time of `dim_metrics` (all four DIM metrics) and `video_matte_metrics`.
The best of several runs is reported because the machine may be shared.
"""
import argparse
import os
import sys
import time

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from utils.metrics import dim_metrics, video_matte_metrics  # noqa: E402


def synthetic_case(size, seed=0):
    """A soft head-and-shoulders blob with hair-like noise on its edge; pred = gt blurred, shifted, noisy.
    Returns uint8 pred, gt and a trimap whose unknown band is the edge dilated by 10 px."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    body = ((yy - 0.45) / 0.25) ** 2 + ((xx - 0.5) / 0.2) ** 2 < 1
    body |= (yy > 0.7) & (np.abs(xx - 0.5) < 0.4)
    gt = cv2.GaussianBlur(body.astype(np.float32), (0, 0), size / 400)
    edge = (gt > 0.02) & (gt < 0.98)
    gt = np.clip(gt + edge * rng.normal(0, 0.15, gt.shape), 0, 1).astype(np.float32)
    pred = cv2.GaussianBlur(np.roll(gt, (3, -2), axis=(0, 1)), (0, 0), 2.0)
    pred = np.clip(pred + rng.normal(0, 0.02, gt.shape) * (pred > 0.01), 0, 1)
    gt_u8, pred_u8 = (np.rint(a * 255).astype(np.uint8) for a in (gt, pred))
    band = cv2.dilate(edge.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (21, 21)))
    trimap = np.where(band > 0, 128, np.where(gt_u8 == 255, 255, 0)).astype(np.uint8)
    return pred_u8, gt_u8, trimap


def best_time(fn, repeat):
    walls, cpus = [], []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return min(walls), min(cpus)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--size', type=int, default=2048)
    parser.add_argument('--repeat', type=int, default=5)
    args = parser.parse_args()
    cv2.setNumThreads(1)          # one core; numpy is single-threaded for everything used here
    pred, gt, trimap = synthetic_case(args.size)
    pred_f, gt_f = pred / np.float32(255), gt / np.float32(255)
    print(f"{args.size}x{args.size}, unknown pixels {np.count_nonzero(trimap == 128)}, "
          f"opencv {cv2.__version__}, numpy {np.__version__}, 1 thread, best of {args.repeat}")
    for name, fn in [('dim_metrics (SAD, MSE, Grad, Conn)', lambda: dim_metrics(pred, gt, trimap)),
                     ('video_matte_metrics (MAD, MSE, Grad, Conn, dtSSD)',
                      lambda: video_matte_metrics(pred_f, gt_f, gt_f, pred_f))]:
        wall, cpu = best_time(fn, args.repeat)
        print(f"{name:50s} wall {wall:.3f} s   cpu {cpu:.3f} s")


if __name__ == '__main__':
    main()
