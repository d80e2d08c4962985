"""Fold an LKM checkpoint (RVM --model-backbone unireplknet) from its training form into its deploy form.

What the official model/rep_param.py does to model.pth to make rep_model.pth: every UniRepLKNet block's
dilated branches, BatchNorms, GRN bias and layer scale, and decode1's dilated branches, are folded into single
convolutions and Linears (MattingNetwork.reparameterize). The result has exactly the state_dict of
`MattingNetwork('unireplknet', refiner, deploy=True)`, gives the same mattes (to float rounding) with fewer
parameters (5,031,242 instead of 5,423,898) and runs faster; use it with --model-deploy. SRC is a .pdparams of
this project or the official .pth (converted on the fly, no torch); the output appears atomically.
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
        epilog='example:\n'
               '  python3 tools/reparameterize.py model.pth model/weights/lkm_deploy.pdparams\n'
               '  python3 predict.py --model-type rvm --model-backbone unireplknet --model-deploy \\\n'
               '      --model-checkpoint model/weights/lkm_deploy.pdparams --src video.mp4\n'
               '\nExit status 1 when SRC is not an LKM training-form checkpoint.')
    p.add_argument('src', metavar='SRC', help='LKM training-form weights (model.pth or a converted .pdparams)')
    p.add_argument('dst', metavar='DST', help='deploy-form Paddle parameters (.pdparams) to write')
    return p


def build(refiner, deploy):
    family = families.family_of('rvm')
    return family.build(config.ModelConfig(model_type='rvm', backbone='unireplknet', device='cpu', family='rvm',
                                           options=family.options(refiner=refiner, deploy=deploy)))


def reparameterize(src, dst):
    """Read, check (strictly), fold, check against the deploy network, write. Returns (refiner, {name: array
    written}, the folded network)."""
    if os.path.isdir(dst):
        raise ValueError(f"{dst}: is a folder; give the .pdparams file to write")
    sd = load_state_dict(src)
    _, model_type, backbone, options = families.detect(sd)
    if (model_type, backbone) != ('rvm', 'unireplknet'):
        raise ValueError(f"{src}: holds {model_type} {backbone}, not LKM (rvm unireplknet)")
    if options['deploy']:
        raise ValueError(f"{src}: is already the deploy form (use it with --model-deploy)")
    network = build(options['refiner'], deploy=False)
    loadable, missing, unexpected, mismatched = match_state_dict(network, sd)
    if missing or unexpected or mismatched:
        raise ValueError(f"{src}: does not fit rvm/unireplknet (training form)\n" +
                         describe_mismatch(missing, unexpected, mismatched, limit=50))
    network.set_state_dict(loadable)
    network.eval()
    folded = network.reparameterize().state_dict()      # in place
    deploy = build(options['refiner'], deploy=True).state_dict()
    if [(k, v.shape) for k, v in folded.items()] != [(k, v.shape) for k, v in deploy.items()]:
        raise RuntimeError('the folded network does not have the deploy form\'s state_dict')    # a bug here
    out = {k: v.numpy() for k, v in folded.items()}
    save_atomic(out, dst)
    return options['refiner'], out, network


def main(argv=None):
    args = parser().parse_args(argv)
    try:
        refiner, weights, network = reparameterize(args.src, args.dst)
    except ValueError as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    stats = sum(v.size for k, v in weights.items() if k.endswith(('._mean', '._variance')))
    params = sum(int(p.size) for p in network.parameters() if not p.stop_gradient)
    print(f'model: rvm / unireplknet, deploy form ({refiner})')
    print(f'parameters: {params:,} (+ {stats:,} BatchNorm statistics) in {len(weights)} tensors')
    print(f'wrote {args.dst}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
