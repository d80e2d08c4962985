"""Convert an official PyTorch checkpoint (BGMv2 MattingBase/MattingRefine, RVM) to Paddle .pdparams.

No torch needed: the .pth is read by utils/torch_format.py, which refuses anything but tensors and plain
containers, so an untrusted file cannot run code. Every name and shape is checked against the Paddle
model before anything is written, and the output appears atomically (never a partial file).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from model import build_model  # noqa: E402
from utils.checkpoint import (describe_mismatch, detect_model, detect_options, load_state_dict,  # noqa: E402
                              match_state_dict, save_atomic)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='examples:\n'
               '  python3 tools/convert_weights.py pytorch_resnet50.pth model/weights/bgmv2_resnet50.pdparams\n'
               '  python3 predict.py --model-backbone resnet50 --model-checkpoint model/weights/bgmv2_resnet50.pdparams\n'
               '\nAccepted input: a torch.save file in the zip format (torch >= 1.6) or the legacy format, holding a\n'
               'state_dict, possibly wrapped in {"state_dict"|"model_state"|"model": ...} and/or with a DDP\n'
               '"module." prefix; a .pdparams is accepted too (re-checked and re-saved). The output loads with\n'
               '`model.set_state_dict(paddle.load(DST))`. Exit status 1 when the checkpoint does not fit.')
    parser.add_argument('src', metavar='SRC', help='PyTorch checkpoint (.pth / .pt / .ckpt) to read')
    parser.add_argument('dst', metavar='DST', help='Paddle parameters (.pdparams) to write')
    parser.add_argument('--model-type', default=None,
                        help='mattingbase, mattingrefine or rvm (default: detected from the keys)')
    parser.add_argument('--model-backbone', default=None,
                        help='resnet50, resnet101, mobilenetv2 (BGMv2) or mobilenetv3, resnet50 (RVM) '
                             '(default: detected from the keys)')
    return parser.parse_args(argv)


def convert(src, dst, model_type=None, backbone=None):
    """Read, check against the Paddle model, write. Returns (model_type, backbone, {name: array written});
    raises ValueError (with the key lists) when the checkpoint does not fit."""
    sd = load_state_dict(src)
    detected_type, detected_backbone = detect_model(sd)
    model_type, backbone = model_type or detected_type, backbone or detected_backbone
    model = build_model(model_type, backbone, **detect_options(sd))
    loadable, missing, unexpected, mismatched = match_state_dict(model, sd)
    if missing or unexpected or mismatched:
        raise ValueError(f"{src}: does not fit {model_type}/{backbone}\n" +
                         describe_mismatch(missing, unexpected, mismatched, limit=50))
    own = model.state_dict()
    out = {k: sd[k].astype(str(own[k].dtype).split('.')[-1], copy=False) for k in own}   # the model's order
    save_atomic(out, dst)
    return model_type, backbone, out


def main(argv=None):
    args = parse_args(argv)
    try:
        model_type, backbone, weights = convert(args.src, args.dst, args.model_type, args.model_backbone)
    except ValueError as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    stats = sum(v.size for k, v in weights.items() if k.endswith(('._mean', '._variance')))
    params = sum(v.size for v in weights.values()) - stats
    print(f'model: {model_type} / {backbone}')
    print(f'parameters: {params:,} (+ {stats:,} BatchNorm statistics) in {len(weights)} tensors')
    print(f'wrote {args.dst}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
