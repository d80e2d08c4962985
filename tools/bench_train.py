"""Training speed: iterations/s, samples/s and peak memory of train.py's step (forward, losses, backward, Adam).

    python3 tools/bench_train.py                        # MattingBase 512x512 and MattingRefine 2048x2048, mobilenetv2
    python3 tools/bench_train.py --model-backbone resnet50 --iters 2 --configs mattingbase:512:8
    python3 tools/bench_train.py --data                 # also the data pipeline (one worker) on the demo set
    python3 tools/bench_train.py --configs rvm:512:1 --train-args "--train-hr --seq-length-lr 15"   # RVM stage 3

RVM steps are timed per pass (low-resolution matting, high-resolution matting with --train-hr, segmentation clip),
at the lengths and high-resolution size train.py resolves from --train-args.
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


def rvm_batch(paddle, options, size, batch):
    """Random arrays of one RVM step in StepCollate's order: low-res [fgr, pha, src], high-res, segmentation clip."""
    def clip(t, s):
        return [paddle.rand([batch, t, c, s, s]) for c in (3, 1, 3)]
    arrays = clip(options.seq_length_lr, size)
    if options.train_hr:
        arrays += clip(options.seq_length_hr, options.resolution_hr)
    return arrays + [paddle.rand([batch, options.seq_length_lr, 3, size, size]),
                     paddle.rand([batch, options.seq_length_lr, 1, size, size]).round()]


def bench_step(model_type, backbone, size, batch, iters, device, train_args=()):
    """train.py's step on random tensors, with the options train.py resolves for this model type; one row per pass
    for tasks with several."""
    import paddle
    import config
    import train
    from training.loop import pass_step
    from utils.checkpoint import read_card
    args = train.parser().parse_args(['--model-type', model_type, '--device', device, '--batch-size', str(batch)] +
                                     (['--model-backbone', backbone] if backbone else []) + list(train_args))
    model = config.resolve_model(args, read_card, demo=False)
    _, run, options = config.resolve_train(args, model)
    task = model.spec.trainer(model.model_type)
    paddle.set_device(device)
    paddle.seed(0)
    network = model.spec.build(model)
    task.train_mode(network, run.batch_size == 1, options)
    optimizer = task.optimizer(network, options)
    tensors = rvm_batch(paddle, options, size, batch) if model_type == 'rvm' else \
        [paddle.rand([batch, c, size, size]) for c in (1, 3, 3, 3)]
    rows = []
    for prefix, inputs in task.passes(tensors, options):
        pass_step(task, network, optimizer, None, inputs, options)      # warm-up
        start = time.time()
        for i in range(iters):
            pass_step(task, network, optimizer, None, inputs, options)
        seconds = (time.time() - start) / iters
        shape = 'x'.join(str(d) for d in inputs[0].shape[1:]) if model_type == 'rvm' else f'{size}x{size}'
        rows.append({'what': f"{model_type} {model.backbone} {prefix.rstrip('_') or 'step'} {shape} batch {batch}",
                     'sec_per_iter': seconds, 'iters_per_sec': 1 / seconds, 'samples_per_sec': batch / seconds})
    return rows


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
    return [{'what': f'data pipeline {size}x{size} (1 worker)', 'sec_per_iter': seconds,
             'iters_per_sec': 1 / seconds, 'samples_per_sec': 1 / seconds}]


def child(spec):
    rows = bench_data(spec['model_type'], spec['size'], spec['iters']) if spec.get('data') else \
        bench_step(spec['model_type'], spec['backbone'], spec['size'], spec['batch'], spec['iters'], spec['device'],
                   spec['train_args'])
    for row in rows:
        row['peak_rss_mb'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print('RESULT ' + json.dumps(rows))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--configs', nargs='+', default=['mattingbase:512:1', 'mattingrefine:2048:1'],
                   metavar='TYPE:SIZE:BATCH')
    p.add_argument('--model-backbone', dest='backbone', default=None,
                   help="encoder (default: the family's, as train.py)")
    p.add_argument('--iters', type=int, default=3, help='timed iterations after one warm-up')
    p.add_argument('--device', default='cpu')
    p.add_argument('--data', action='store_true', help='also time the data pipeline at each size (BGMv2)')
    p.add_argument('--train-args', default='', help="more train.py options, e.g. \"--seq-length-lr 15 --train-hr\"")
    p.add_argument('--child', help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(json.loads(args.child))
    specs = []
    for config in args.configs:
        model_type, size, batch = config.split(':')
        spec = dict(model_type=model_type, size=int(size), batch=int(batch), backbone=args.backbone,
                    iters=args.iters, device=args.device, train_args=args.train_args.split())
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
        for r in json.loads(lines[-1][len('RESULT '):]):
            print(f"{r['what']:52s} {r['sec_per_iter']:8.2f} {r['iters_per_sec']:8.3f} {r['samples_per_sec']:10.3f} "
                  f"{r['peak_rss_mb']:12.0f}")


if __name__ == '__main__':
    main()
