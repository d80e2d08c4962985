"""Training speed: iterations/s, samples/s and peak memory of train.py's step (forward, losses, backward, Adam).

    python3 tools/bench_train.py                        # MattingBase 512x512 and MattingRefine 2048x2048, mobilenetv2
    python3 tools/bench_train.py --model-backbone resnet50 --iters 2 --configs mattingbase:512:8
    python3 tools/bench_train.py --data                 # also the data pipeline (one worker) on the demo set

Each configuration runs in its own process so that its peak resident memory (ru_maxrss) is its own.
Inputs are random tensors at the full crop size (the largest crop of the official 256-511 / 1024-2044 ranges).
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def bench_step(model_type, backbone, size, batch, iters, device):
    """train.py's step on random tensors, with the options train.py resolves for this model type."""
    import paddle
    import config
    import train
    from training.loop import train_step
    from utils.checkpoint import read_card
    args = train.parser().parse_args(['--model-type', model_type, '--device', device, '--batch-size', str(batch)] +
                                     (['--model-backbone', backbone] if backbone else []))
    model = config.resolve_model(args, read_card, demo=False)
    _, run, options = config.resolve_train(args, model)
    task = model.spec.trainer(model.model_type)
    paddle.set_device(device)
    paddle.seed(0)
    network = model.spec.build(model)
    task.train_mode(network, run.batch_size == 1, options)
    optimizer = task.optimizer(network, options)
    batch_tensors = [paddle.rand([batch, c, size, size]) for c in (1, 3, 3, 3)]
    train_step(task, network, optimizer, None, batch_tensors, options)     # warm-up
    start = time.time()
    for i in range(iters):
        train_step(task, network, optimizer, None, batch_tensors, options)
    seconds = (time.time() - start) / iters
    return {'what': f'{model_type} {model.backbone} {size}x{size} batch {batch}', 'sec_per_iter': seconds,
            'iters_per_sec': 1 / seconds, 'samples_per_sec': batch / seconds}


def bench_data(model_type, size, iters):
    """One worker's throughput: read, per-sample augmentation and the per-batch collate, demo data."""
    from dataset.config import background_split, load_roots, matting_split
    from dataset.matting import Collate, MattingDataset
    from training.loader import load_batch
    roots = load_roots()
    ds = MattingDataset(matting_split(roots, 'demo', 'train'), background_split(roots, 'demo_backgrounds', 'train'),
                        size, train=True)
    collate = Collate(augment=True, multiple=4 if model_type == 'mattingrefine' else 1)
    start = time.time()
    for i in range(iters):
        load_batch(ds, collate, [(0, i)])
    seconds = (time.time() - start) / iters
    return {'what': f'data pipeline {size}x{size} (1 worker)', 'sec_per_iter': seconds, 'iters_per_sec': 1 / seconds,
            'samples_per_sec': 1 / seconds}


def child(spec):
    result = bench_data(spec['model_type'], spec['size'], spec['iters']) if spec.get('data') else \
        bench_step(spec['model_type'], spec['backbone'], spec['size'], spec['batch'], spec['iters'], spec['device'])
    result['peak_rss_mb'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print('RESULT ' + json.dumps(result))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--configs', nargs='+', default=['mattingbase:512:1', 'mattingrefine:2048:1'],
                   metavar='TYPE:SIZE:BATCH')
    p.add_argument('--model-backbone', dest='backbone', default=None,
                   help="encoder (default: the family's, as train.py)")
    p.add_argument('--iters', type=int, default=3, help='timed iterations after one warm-up')
    p.add_argument('--device', default='cpu')
    p.add_argument('--data', action='store_true', help='also time the data pipeline at each size')
    p.add_argument('--child', help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(json.loads(args.child))
    specs = []
    for config in args.configs:
        model_type, size, batch = config.split(':')
        spec = dict(model_type=model_type, size=int(size), batch=int(batch), backbone=args.backbone,
                    iters=args.iters, device=args.device)
        specs.append(spec)
        if args.data:
            specs.append(dict(spec, data=True, iters=max(args.iters, 5)))
    print(f"{'configuration':52s} {'s/iter':>8s} {'iter/s':>8s} {'samples/s':>10s} {'peak RSS MB':>12s}")
    for spec in specs:
        out = subprocess.run([sys.executable, __file__, '--child', json.dumps(spec)], capture_output=True, text=True)
        lines = [line for line in out.stdout.splitlines() if line.startswith('RESULT ')]
        if out.returncode or not lines:
            print(f"{spec}: failed\n{out.stderr[-2000:]}")
            continue
        r = json.loads(lines[-1][len('RESULT '):])
        print(f"{r['what']:52s} {r['sec_per_iter']:8.2f} {r['iters_per_sec']:8.3f} {r['samples_per_sec']:10.3f} "
              f"{r['peak_rss_mb']:12.0f}")


if __name__ == '__main__':
    main()
