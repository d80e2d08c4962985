"""Convert an official PyTorch checkpoint of any family (BGMv2 MattingBase/MattingRefine, RVM, LKM, STCN, IMSFR)
to Paddle .pdparams.

No torch needed: the .pth is read by utils/torch_format.py, which refuses anything but tensors and plain
containers, so an untrusted file cannot run code. Every name and shape is checked against the Paddle
model before anything is written, and the output appears atomically (never a partial file).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import config  # noqa: E402
import families  # noqa: E402
from utils.checkpoint import describe_mismatch, load_state_dict, match_state_dict, save_atomic  # noqa: E402


def parser():
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='examples:\n'
               '  python3 tools/convert_weights.py pytorch_resnet50.pth model/weights/bgmv2_resnet50.pdparams\n'
               '  python3 predict.py --model-backbone resnet50 --model-checkpoint model/weights/bgmv2_resnet50.pdparams\n'
               '\nAccepted input: a torch.save file in the zip format (torch >= 1.6) or the legacy format, holding a\n'
               'state_dict, possibly wrapped in {"state_dict"|"model_state"|"model": ...} and/or with a DDP\n'
               '"module." prefix; a .pdparams is accepted too (re-checked and re-saved). The output loads with\n'
               '`model.set_state_dict(paddle.load(DST))`. Exit status 1 when the checkpoint does not fit.')
    p.add_argument('src', metavar='SRC', help='PyTorch checkpoint (.pth / .pt / .ckpt / .pth.tar) to read')
    p.add_argument('dst', metavar='DST', help='Paddle parameters (.pdparams) to write')
    p.add_argument('--model-type', choices=families.MODEL_TYPES, default=None,
                   help='the network (default: detected from the keys)')
    p.add_argument('--model-backbone', choices=families.BACKBONES, default=None,
                   help='its encoder (default: detected from the keys)')
    return p


def convert(src, dst, model_type=None, backbone=None):
    """Read, check against the Paddle network, write. Returns (ModelConfig, {name: array written}, the network);
    raises ValueError (with the key lists) when the checkpoint does not fit."""
    if os.path.isdir(dst):
        raise ValueError(f"{dst}: is a folder; give the .pdparams file to write")
    sd = load_state_dict(src)
    try:
        family, detected_type, detected_backbone, options = families.detect(sd)
    except ValueError:
        if not (model_type and backbone):
            raise
        family, detected_type, detected_backbone, options = families.family_of(model_type), None, None, {}
    if model_type and model_type not in family.model_types:
        family, options = families.family_of(model_type), {}
    model = config.ModelConfig(model_type=model_type or detected_type, backbone=backbone or detected_backbone,
                               device='cpu', family=family.name, options=family.options(**options))
    if model.backbone not in family.backbones:
        raise ValueError(f"backbone {model.backbone} does not fit {model.model_type}; use one of "
                         f"{', '.join(family.backbones)}")
    network = family.build(model)
    loadable, missing, unexpected, mismatched = match_state_dict(network, sd)
    if missing or unexpected or mismatched:
        raise ValueError(f"{src}: does not fit {model.model_type}/{model.backbone}\n" +
                         describe_mismatch(missing, unexpected, mismatched, limit=50))
    own = network.state_dict()
    out = {k: loadable[k].astype(str(own[k].dtype).split('.')[-1], copy=False) for k in own}   # the model's order
    save_atomic(out, dst)
    return model, out, network


def main(argv=None):
    args = parser().parse_args(argv)
    try:
        model, weights, network = convert(args.src, args.dst, args.model_type, args.model_backbone)
    except ValueError as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    stats = sum(v.size for k, v in weights.items() if k.endswith(('._mean', '._variance')))
    params = sum(int(p.size) for p in network.parameters() if not p.stop_gradient)     # not buffers (LKM's DWT)
    form = ', deploy form' if getattr(model.options, 'deploy', False) else ''
    print(f'model: {model.model_type} / {model.backbone}{form}')
    print(f'parameters: {params:,} (+ {stats:,} BatchNorm statistics) in {len(weights)} tensors')
    print(f'wrote {args.dst}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
