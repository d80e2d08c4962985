"""Export a matting model for Paddle Inference (and ONNX Runtime) with dynamic batch, height and width.

Writes into OUTPUT:
  model.pdmodel + model.pdiparams   the static graph in the legacy format (default for BGMv2, IndexNet). On CPU, Paddle
                                    Inference runs it with oneDNN, several times faster than without; Paddle
                                    3.3's .json format cannot use oneDNN with bilinear resizes (Paddle#79749).
  model.json + model.pdiparams      --format json: the PIR format of Paddle 3 (the only one for rvm)
  model.onnx                        --onnx: for onnxruntime (`pip install paddle2onnx onnxruntime`); BGMv2 and
                                    IndexNet (paddle2onnx 2.1 rejects the scale_factor resizes of a dynamic-size
                                    RVM graph; predict.py exports RVM per frame size for ONNX Runtime itself)
  export.json                       the options baked into the graph and the output names

The refinement options (mode, sample pixels, threshold, kernel size, backbone scale) are constants of the
graph: export again to change them. Inputs: src, bgr (float32 N x 3 x H x W RGB in [0, 1], H and W
divisible by 4 for mattingrefine). Outputs as the model's forward: pha, fgr, pha_sm, fgr_sm, err_sm, ref_sm
(mattingrefine) or pha, fgr, err, hid (mattingbase). RVM (--model-type rvm) takes src, r1..r4 and
returns fgr, pha, r1..r4, with --downsample-ratio fixed in the graph. STCN / IMSFR (--model-type stcn|imsfr)
export their per-frame network calls as three graphs in subfolders: encode_key/ (frame -> k16, f16_thin, f16, f8,
f4), encode_value/ (frame, next_frame (IMSFR), f16, mask, others per object -> value (and valuepe)) and decode/
(memory readout, qv16, qf8, qf4 -> object probabilities); the memory read between them (L2 affinity, top-k) is
the caller's (model/vos.py top_k_readout).
"""
import argparse
import json
import os
import sys
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import paddle  # noqa: E402

import config  # noqa: E402
import families  # noqa: E402
from inference.backends import export_model, input_spec as input_spec_of  # noqa: E402
from utils.checkpoint import read_card  # noqa: E402
from utils.io import atomic_path  # noqa: E402
from utils.options import option, positive_int  # noqa: E402


# options whose default differs in an export (a fixed graph needs a value), of every family
EXPORT_DEFAULTS = {k: v for spec in families.FAMILIES.values() for k, v in spec.export_defaults.items()}


@dataclass(frozen=True)
class ExportConfig:
    output: str = option(None, '--output', required=True, metavar='DIR', help='folder to write the exported model into')
    format: str = option(None, '--format', choices=('pdmodel', 'json'),
                         help='pdmodel: legacy static graph, fast with oneDNN on CPU; json: PIR format of Paddle 3',
                         default_help='the family\'s first: pdmodel for BGMv2 and IndexNet, json for rvm (a graph for '
                                      'any frame size keeps scale-factor resizes, which only PIR takes)')
    onnx: bool = option(False, '--onnx', action='store_true', help='also convert to model.onnx with paddle2onnx')
    onnx_opset: int = option(11, '--onnx-opset', type=positive_int,
                             help='minimum ONNX opset (raised automatically where an op needs it)')


def parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog='example:\n  python3 tools/export.py --model-backbone resnet50 '
                                       '--model-checkpoint bgmv2_resnet50.pdparams --output export/resnet50 --onnx\n'
                                       '  python3 tools/speed_test.py --export-dir export/resnet50 --backend inference')
    config.add_options(p, ExportConfig)
    config.add_model_options(p, EXPORT_DEFAULTS)
    return p


def export(model, cfg):
    """Export the network a ModelConfig describes into cfg.output, described in export.json."""
    spec = model.spec
    fmt = cfg.format or spec.export_formats[0]
    if fmt not in spec.export_formats:
        raise ValueError(f"--format {fmt}: {model.model_type} exports as {' or '.join(spec.export_formats)} only")
    if cfg.onnx and spec.onnx_unavailable:
        raise families.Unavailable(f'ONNX export for {spec.name} is not available yet ({spec.onnx_unavailable})')
    graphs, meta = spec.export_graphs(model, families.load(model))
    for folder, layer, input_spec, outputs in graphs:
        export_model(layer, os.path.join(cfg.output, folder), fmt, cfg.onnx, cfg.onnx_opset, input_spec)
        described = dict(inputs=[i.name for i in input_spec or input_spec_of(layer)], outputs=outputs)
        if folder:
            meta.setdefault('graphs', {})[folder] = described
        else:
            meta.update(described)
    meta.update(format=fmt, paddle=paddle.__version__)
    with atomic_path(os.path.join(cfg.output, 'export.json')) as tmp, open(tmp, 'w', encoding='utf-8') as f:
        json.dump(meta, f, indent=1)
    return meta


def main(argv=None):
    args = parser().parse_args(argv)
    try:
        args.device = 'cpu'                # the graph is the same for every device; export on CPU
        model = config.resolve_model(args, read_card, EXPORT_DEFAULTS)
        meta = export(model, config.fill(ExportConfig, args))
    except ValueError as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    files = sorted(n for n in os.listdir(args.output) if not n.startswith('.'))
    print(f"exported {meta['model_type']} / {meta['backbone']} to {args.output}: {', '.join(files)}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
