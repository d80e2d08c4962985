"""Evaluate a model, or existing predictions, with the reference metrics of its protocol.

    python3 eval.py                                    # demo model on PhotoMatte85 + validation backgrounds
    python3 eval.py --model-backbone resnet50 --model-checkpoint pytorch_resnet50.pth
    python3 eval.py --pred-dir other_method/           # score existing mattes, no model
    python3 eval.py --model-type rvm --model-checkpoint rvm_mobilenetv3.pth --data-dir videomatte_512x288
    python3 eval.py --data-dir videomatte_1920x1080 --pred-dir rvm_hd/ --hr
    python3 eval.py --model-type stcn --model-checkpoint stcn.pth --data-dir DAVIS --image-set 2017/val

IMAGE PROTOCOL (BGMv2, PhotoMatte85): the Deep Image Matting metrics (SAD, MSE, Grad, Conn over the
trimap's unknown region, scaled as the official MATLAB evaluation reports them) plus the foreground MSE.
Test set: `fgr/ pha/ [trimap/]` or a folder of RGBA images. Image i (in sorted name order) is composited at
its native size over background i mod N of --bgr-dir (resized to cover it and centre-cropped, aspect kept)
with the BGMv2 evaluation augmentation (shadow, noise, background colour jitter, background misalignment;
--augment none: the plain composite, the background itself as the plate), then the plate moved by
--plate-shift pixels and given --plate-noise, all drawn from numpy's generator seeded by (--seed, i): every
run, resumed or not, sees the same composites. The
predicted matte is quantised to 8 bits (as a saved PNG) and scored as is (not pasted with the trimap).
Prediction mode scores `<pred-dir>/pha/<name>.*` (or `<pred-dir>/<name>.*`) against the same ground truth,
and `<pred-dir>/fgr/<name>.*` if present.
Trimaps: the test set's own if it has them; otherwise derived from the ground-truth alpha (8-bit) with
the rule of the earlier Paddle reproduction: 255 where the alpha is 255 at every pixel within L1 distance
--trimap-radius (10; a 3x3 cross eroded that many times), 0 where it is 0 at all of them, 128 elsewhere.
Derived trimaps are saved in <output-dir>/trimap/.
Output (<output-dir>): per-image `metrics.csv`, `summary.json` (means over images, protocol, failures),
`trimap/`, and with --save-pred `pred/pha/` + `pred/fgr/` (which --pred-dir accepts).

VIDEO PROTOCOL (Robust Video Matting, VideoMatte240K composited test sets): the trimap-free metrics of the
official evaluators (MAD, MSE, Grad, Conn, dtSSD on the alpha, MSE and MAD on the foreground), over whole
frames. Chosen by --protocol video, or automatically for --model-type rvm and for a --data-dir holding
clips with composites. Test set: `<data-dir>/[<set>/]<clip>/{com,fgr,pha,bgr}/<frame>.png` as the official
generators write it (videomatte_512x288 or videomatte_1920x1080, whose static/ and motion/ clips are pooled
as the official evaluator pools everything under its folder). Model mode runs the network over each clip's
com/ frames in name order, --seq-chunk frames per call, from a zero recurrent state per clip (RVM) or with
the clip's bgr/ frames as plates (BGMv2), at --downsample-ratio (default min(512 / max(H, W), 1), the
official automatic rule: 1 for 512x288; the paper's HD numbers use 0.25); the predicted alpha and
foreground are quantised to 8 bits by rounding (the official PNG writer truncates). Prediction mode reads
`<pred-dir>/<clip>/pha/<frame>.*` and, if the folder exists, `<pred-dir>/<clip>/fgr/<frame>.*` for every
ground-truth frame, paired by clip path and frame name without extension (the layout --save-pred writes);
a clip with a missing or unreadable file is not scored. Every frame is scored in name order; dtSSD is 0
for a clip's first frame, as the evaluator writes it. Averaging as the official spreadsheet: each metric is
averaged over the clips at each frame position, then over the positions (the grand mean over frames when
clips are equally long, leading dtSSD zeros included); NaN values (FG of a frame without foreground) are
left out. --hr: the definitions of evaluate_hr.py (Grad without the min-max stretch, no Conn), which the
paper reports for 1920x1080.
Output (<output-dir>): per-frame `frames.csv`, per-clip means `clips.csv`, `summary.json`, and with
--save-pred `pred/<clip>/pha/` + `pred/<clip>/fgr/` (which --pred-dir accepts).

DAVIS PROTOCOL (STCN, IMSFR; --protocol davis, the default for --model-type stcn|imsfr): semi-supervised video
object segmentation scored as the DAVIS 2017 toolkit scores it. --data-dir is a DAVIS root (ImageSets/<year>/,
JPEGImages/480p/, Annotations/480p/), --image-set the list to score (2017/val). Model mode segments every
sequence from its first annotation into <output-dir>/pred/<seq>/<frame>.png (sequences already complete there
are not redone); prediction mode scores <pred-dir>/<seq>/<frame>.png. Per object: J (region IoU) and F
(boundary F-measure) over the frames but the first and the last, their mean, recall and decay; J&F-Mean is the
mean of J-Mean and F-Mean over all objects. Output: global_results-<split>.csv, per-sequence_results-<split>.csv,
sequences.csv, summary.json.

All: `settings.json` records what the numbers depend on; a rerun with the same settings skips the images or
clips already scored (other settings need another --output-dir). Exit status 1 if any image or clip could
not be scored (each is reported with the file at fault and listed in summary.json).
"""
import argparse
import os
import sys
import textwrap

import config
import evaluation
import families
from evaluation.images import IMAGE_COLUMNS
from evaluation.video import VIDEO_COLUMNS
from utils.checkpoint import read_card


def columns_help():
    """The --help epilog: every number of both protocols with its scaling."""
    item = lambda name, text: textwrap.fill(f'{name}: {text}', 116, initial_indent='  ',  # noqa: E731
                                            subsequent_indent='      ')
    return '\n'.join(['columns of the image protocol (metrics.csv; the summary averages over images):']
                     + [item(*kv) for kv in IMAGE_COLUMNS.items()]
                     + ['columns of the video protocol (frames.csv per frame, clips.csv per clip; the summary '
                        'averages over the clips at each', 'frame position, then over the positions, as the '
                        'official evaluator):']
                     + [item(*kv) for kv in VIDEO_COLUMNS.items()])


def parser():
    p = argparse.ArgumentParser(description=__doc__, epilog=columns_help(),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    config.add_options(p, config.EvalConfig)
    config.add_model_options(p)
    config.add_options(p, config.BackendConfig, 'backend')
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    try:
        model = config.resolve_model(args, read_card, demo=args.pred_dir is None)
        cfg = config.resolve_eval(args, model)
        backend = config.resolve_backend(args, model)
        if cfg.pred_dir:
            settings, make_runner = evaluation.settings(cfg), None
        else:
            settings = evaluation.settings(cfg, families.describe(model))
            make_runner = lambda frames: model.spec.runner(model, families.load(model), backend, frames)  # noqa
        summary, text, files = evaluation.PROTOCOLS[cfg.protocol].evaluate(cfg, settings, make_runner,
                                                                            model.spec.partner == 'bgr')
    except ValueError as e:
        sys.exit(f"error: {e}")
    print(text)
    print('results: ' + ', '.join(os.path.join(cfg.output_dir, f) for f in files))
    return 1 if summary['failed'] else 0


if __name__ == '__main__':
    sys.exit(main())
