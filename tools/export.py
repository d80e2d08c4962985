"""Export a matting model for Paddle Inference (and ONNX Runtime) with dynamic batch, height and width.

Writes into OUTPUT:
  model.pdmodel + model.pdiparams   the static graph in the legacy format (default for BGMv2). On CPU, Paddle
                                    Inference runs it with oneDNN, several times faster than without; Paddle
                                    3.3's .json format cannot use oneDNN with bilinear resizes (Paddle#79749).
  model.json + model.pdiparams      --format json: the PIR format of Paddle 3 (default for rvm)
  model.onnx                        --onnx: for onnxruntime (`pip install paddle2onnx onnxruntime`); BGMv2 only
                                    for now (paddle2onnx 2.1 rejects the scale_factor resizes of RVM)
  export.json                       the options baked into the graph and the output names

The refinement options (mode, sample pixels, threshold, kernel size, backbone scale) are constants of the
graph: export again to change them. Inputs: src, bgr (float32 N x 3 x H x W RGB in [0, 1], H and W
divisible by 4 for mattingrefine). Outputs as the model's forward: pha, fgr, pha_sm, fgr_sm, err_sm, ref_sm
(mattingrefine) or pha, fgr, err, hid (mattingbase). RVM (--model-type rvm) takes src, r1..r4 and
returns fgr, pha, r1..r4, with --downsample-ratio fixed in the graph.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import paddle  # noqa: E402

from utils.inference import export_model  # noqa: E402
from utils.io import atomic_path  # noqa: E402
from utils.options import add_model_args, model_from_args, model_options  # noqa: E402

OUTPUT_NAMES = {'mattingrefine': ['pha', 'fgr', 'pha_sm', 'fgr_sm', 'err_sm', 'ref_sm'],
                'mattingbase': ['pha', 'fgr', 'err', 'hid'],
                'rvm': ['fgr', 'pha', 'r1', 'r2', 'r3', 'r4']}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog='example:\n  python3 tools/export.py --model-backbone resnet50 '
                                            '--model-checkpoint bgmv2_resnet50.pdparams --output export/resnet50 '
                                            '--onnx\n  python3 tools/speed_test.py --export-dir export/resnet50 '
                                            '--backend inference')
    parser.add_argument('--output', required=True, help='folder to write the exported model into')
    parser.add_argument('--format', choices=['pdmodel', 'json'], default=None,
                        help='pdmodel: legacy static graph, fast with oneDNN on CPU (default for BGMv2); '
                             'json: PIR format of Paddle 3 (default for rvm, whose ops have no legacy kernels '
                             'in Paddle 3.3)')
    parser.add_argument('--onnx', action='store_true', help='also convert to model.onnx with paddle2onnx')
    parser.add_argument('--onnx-opset', type=int, default=11,
                        help='minimum ONNX opset (default 11; raised automatically where an op needs it)')
    parser.add_argument('--model-refine-prevent-oversampling', choices=['true', 'false'], default='true',
                        help='sampling mode: skip patches whose error is 0 (true, default) or always refine '
                             '--model-refine-sample-pixels (false, as the official speed test)')
    parser.add_argument('--downsample-ratio', type=float, default=0.25,
                        help='rvm only: the fixed downsample ratio of the graph (default 0.25)')
    add_model_args(parser)
    args = parser.parse_args(argv)
    args.device = 'cpu'                      # the graph is the same for every device; export on CPU
    args.format = args.format or ('json' if args.model_type == 'rvm' else 'pdmodel')
    return args


def export(args):
    """Build the model the options describe, export it, describe it in export.json."""
    model = model_from_args(args)
    options = model_options(args)
    if args.model_type == 'rvm':
        from model.rvm import MattingNetworkStep
        layer = MattingNetworkStep(model, args.downsample_ratio)
        meta = dict(model_type='rvm', backbone=options['backbone'], refiner=options['refiner'],
                    downsample_ratio=args.downsample_ratio)
    else:
        layer = model
        meta = {k: v for k, v in options.items() if k != 'refiner'}
        if args.model_type == 'mattingrefine':
            model.refiner.prevent_oversampling = args.model_refine_prevent_oversampling == 'true'
            meta['refine_prevent_oversampling'] = model.refiner.prevent_oversampling
        else:
            meta = {k: v for k, v in meta.items() if k in ('model_type', 'backbone')}
    export_model(layer, args.output, args.format, args.onnx, args.onnx_opset)
    meta.update(format=args.format, outputs=OUTPUT_NAMES[args.model_type], paddle=paddle.__version__)
    with atomic_path(os.path.join(args.output, 'export.json')) as tmp, open(tmp, 'w', encoding='utf-8') as f:
        json.dump(meta, f, indent=1)
    return meta


def main(argv=None):
    args = parse_args(argv)
    try:
        meta = export(args)
    except (ValueError, FileNotFoundError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    files = sorted(n for n in os.listdir(args.output) if not n.startswith('.'))
    print(f"exported {meta['model_type']} / {meta['backbone']} to {args.output}: {', '.join(files)}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
