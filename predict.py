"""Matting of photos and videos: BGMv2 with a captured background plate, RVM without one, IndexNet with a trimap;
video object segmentation (STCN, IMSFR) of clips from the first frame's masks.

    python3 predict.py                                   # the demo pair in image/ with the demo model
    python3 predict.py --src photo.jpg --bgr plate.jpg --output-dir out
    python3 predict.py --src photos/ --bgr plates/ --output-types com pha fgr --target-bgr "#00ff00"
    python3 predict.py --src talk.mp4 --bgr plate.png --model-checkpoint pytorch_resnet50.pth --model-backbone resnet50
    python3 predict.py --model-type rvm --src talk.mp4 --model-checkpoint rvm_mobilenetv3.pth
    python3 predict.py --model-type indexnet --src photo.png --trimap trimap.png --model-checkpoint indexnet.pdparams
    python3 predict.py --model-type stcn --model-checkpoint stcn.pth --src frames/ --mask frames_00000.png

Outputs: <output-dir>/<type>/<relative input path>.png for images,
<output-dir>/<relative video path without extension>/<type>.mp4 (or PNG frames) for videos;
stcn/imsfr: <output-dir>/<clip>/masks/<frame>.png (DAVIS palette) and <clip>/overlay.mp4.
"""
import argparse
import os
import sys

import config
import families
from utils.checkpoint import read_card


def parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    config.add_options(p, config.PredictConfig)
    config.add_model_options(p)
    config.add_options(p, config.BackendConfig, 'backend')
    return p


def run(args, load=families.load):
    """Resolves parsed arguments and mattes every input -> (PredictConfig, inference.predict.Summary).
    `load(model)` gives the network (the web demo keeps one loaded); bad input raises ValueError."""
    model = config.resolve_model(args, read_card)
    cfg = config.resolve_predict(args, model)
    backend = config.resolve_backend(args, model)
    return cfg, model.spec.predict(cfg, model, backend, load)


def main(argv=None):
    args = parser().parse_args(argv)
    try:
        cfg, summary = run(args)
    except ValueError as e:
        sys.exit(f"error: {e}")
    speed = summary.speed()
    print(f"{summary.done} inputs {'segmented' if cfg.mask else 'matted'} in {summary.seconds:.1f} s" + (f" ({speed})" if speed else '')
          + f" -> {os.path.abspath(cfg.output_dir)} ({', '.join(cfg.output_types)})"
          + (f"; {summary.skipped} already finished" if summary.skipped else '')
          + (f"; {len(summary.failures)} failed" if summary.failures else ''))
    return 1 if summary.failures and not summary.done else 0


if __name__ == '__main__':
    sys.exit(main())
