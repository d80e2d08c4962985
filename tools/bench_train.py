"""Training speed: iterations/s, samples/s and peak memory of train.py's step (forward, losses, backward, Adam).

    python3 tools/bench_train.py                        # MattingBase 512x512 and MattingRefine 2048x2048, mobilenetv2
    python3 tools/bench_train.py --model-backbone resnet50 --iters 2 --configs mattingbase:512:8
    python3 tools/bench_train.py --data                 # also the data pipeline (one worker) on the demo set
    python3 tools/bench_train.py --configs rvm:512:1 --train-args "--train-hr --seq-length-lr 15"   # RVM stage 3
    python3 tools/bench_train.py --configs mattingbase:256:4 --split --compare-torch ../BackgroundMattingV2

RVM steps are timed per pass (low-resolution matting, high-resolution matting with --train-hr, segmentation clip),
at the lengths and high-resolution size train.py resolves from --train-args.
Each configuration runs in its own process so that its peak resident memory (ru_maxrss) is its own.
Inputs are random tensors at the full crop size (the largest crop of the official 256-511 / 1024-2044 ranges).
--split also times the parts of a step: forward, losses, backward, optimiser (Adam).
--compare-torch PATH (BGMv2) times the official model's training step on the same inputs in the same process,
after ours: its network, the losses of the official train_base.py / train_refine.py (L1 alpha, Sobel L1, masked
foreground L1, error MSE; kornia's Sobel written with torch convolutions; the Laplacian term this project adds
has no official counterpart, so compare with --train-args "--loss-laplacian 0"), Adam with the same learning
rates. Torch is never a dependency of this project: without it the comparison is skipped with a message.
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


def timed_parts(parts, iters):
    """Run the step's parts (name -> no-argument call, in order) once to warm up, then `iters` times.
    Returns ({name: mean seconds}, mean seconds of a whole step)."""
    for call in parts.values():
        call()
    spent = dict.fromkeys(parts, 0.0)
    start = time.time()
    for _ in range(iters):
        for name, call in parts.items():
            t = time.time()
            call()
            spent[name] += time.time() - t
    return {k: v / iters for k, v in spent.items()}, (time.time() - start) / iters


def split_parts(task, net, optimizer, inputs, options):
    """pass_step in four timed parts, sharing their tensors through a dict."""
    state = {}

    def forward():
        state['outputs'] = task.forward(net, inputs)

    def loss():
        state['loss'] = task.loss(state['outputs'], inputs, options)[0]

    def backward():
        state['loss'].backward()

    def optimise():
        optimizer.step()
        optimizer.clear_grad(set_to_zero=False)
    return {'forward': forward, 'loss': loss, 'backward': backward, 'optimizer': optimise}


def bench_step(model_type, backbone, size, batch, iters, device, train_args=(), split=False, compare_torch=None):
    """train.py's step on random tensors, with the options train.py resolves for this model type; one row per pass
    for tasks with several (with split: the parts of each), then the official step's row with compare_torch."""
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
        if split:
            parts = split_parts(task, network, optimizer, inputs, options)
        else:
            parts = {'step': lambda: pass_step(task, network, optimizer, None, inputs, options)}
        spent, seconds = timed_parts(parts, iters)
        shape = 'x'.join(str(d) for d in inputs[0].shape[1:]) if model_type == 'rvm' else f'{size}x{size}'
        rows.append(row(f"{model_type} {model.backbone} {prefix.rstrip('_') or 'step'} {shape} batch {batch}",
                        seconds, batch, spent if split else None))
    if compare_torch:
        rows.append(official_row(compare_torch, model, options, [t.numpy() for t in tensors], iters, split))
    return rows


def row(what, seconds, batch, parts=None):
    return {'what': what, 'sec_per_iter': seconds, 'iters_per_sec': 1 / seconds, 'samples_per_sec': batch / seconds,
            'parts': parts}


def official_row(path, model, options, arrays, iters, split):
    """The official BGMv2 training step (see the module doc) on the same [true_pha, true_fgr, src, bgr], or a row
    holding the reason it cannot run."""
    from tools.speed_test import import_official
    package, why = import_official(path)
    if package is None or model.model_type not in ('mattingbase', 'mattingrefine'):
        return {'what': f"--compare-torch: {why or 'wired for BGMv2 (mattingbase, mattingrefine) only'}"}
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(2)
    torch.manual_seed(0)
    o = model.options
    refine = model.model_type == 'mattingrefine'
    net = package.MattingRefine(model.backbone, o.backbone_scale, o.refine_mode, o.refine_sample_pixels,
                                o.refine_threshold, o.refine_kernel_size) if refine else package.MattingBase(
                                    model.backbone)
    net.train()
    if arrays[0].shape[0] == 1:
        net.aspp.convs[-1][2].eval()                    # as train.py: no batch statistics of a 1 x 1 map
    groups = [{'params': net.backbone.parameters(), 'lr': options.lr_backbone},
              {'params': net.aspp.parameters(), 'lr': options.lr_aspp},
              {'params': net.decoder.parameters(), 'lr': options.lr_decoder}]
    if refine:
        groups.append({'params': net.refiner.parameters(), 'lr': options.lr_refiner})
    optimizer = torch.optim.Adam(groups)
    true_pha, true_fgr, src, bgr = (torch.from_numpy(a) for a in arrays)
    kx = torch.tensor([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=torch.float32) / 8

    def sobel(x):                                       # kornia.filters.sobel of a 1-channel map
        x = F.pad(x, [1, 1, 1, 1], mode='replicate')
        gx, gy = F.conv2d(x, kx[None, None]), F.conv2d(x, kx.t()[None, None])
        return torch.sqrt(gx * gx + gy * gy + 1e-6)

    def terms(pha, fgr, t_pha, t_fgr):
        mask = t_pha != 0
        return F.l1_loss(pha, t_pha) + F.l1_loss(sobel(pha), sobel(t_pha)) + F.l1_loss(fgr * mask, t_fgr * mask)

    state = {}

    def forward():
        state['outputs'] = net(src, bgr)

    def loss():
        if refine:                                      # train_refine.compute_loss
            pha, fgr, pha_sm, fgr_sm, err_sm = state['outputs'][:5]
            t_pha_sm = F.interpolate(true_pha, pha_sm.shape[2:], mode='bilinear', align_corners=False)
            t_fgr_sm = F.interpolate(true_fgr, pha_sm.shape[2:], mode='bilinear', align_corners=False)
            t_err = torch.abs(F.interpolate(pha_sm, true_pha.shape[2:], mode='bilinear', align_corners=False)
                              - true_pha)
            err = F.interpolate(err_sm, true_pha.shape[2:], mode='bilinear', align_corners=False)
            state['loss'] = (terms(pha, fgr, true_pha, true_fgr) + terms(pha_sm, fgr_sm, t_pha_sm, t_fgr_sm)
                             + F.mse_loss(err, t_err))
        else:                                           # train_base.compute_loss
            pha, fgr, err = state['outputs'][:3]
            state['loss'] = terms(pha, fgr, true_pha, true_fgr) + F.mse_loss(err, torch.abs(pha.detach() - true_pha))

    def backward():
        state['loss'].backward()

    def optimise():
        optimizer.step()
        optimizer.zero_grad()
    parts = {'forward': forward, 'loss': loss, 'backward': backward, 'optimizer': optimise}
    if not split:
        parts = {'step': lambda: [call() for call in (forward, loss, backward, optimise)]}
    spent, seconds = timed_parts(parts, iters)
    size = 'x'.join(str(d) for d in arrays[0].shape[2:])
    return row(f"official torch {torch.__version__.split('+')[0]} {model.model_type} {model.backbone} {size} batch "
               f"{arrays[0].shape[0]}", seconds, arrays[0].shape[0], spent if split else None)


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
                   spec['train_args'], spec['split'], spec['compare_torch'])
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
    p.add_argument('--split', action='store_true', help='also time forward, losses, backward and optimiser')
    p.add_argument('--compare-torch', metavar='PATH', help='the official BackgroundMattingV2 repository: time its '
                   'training step too (needs torch, which this project never does)')
    p.add_argument('--child', help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(json.loads(args.child))
    specs = []
    for config in args.configs:
        model_type, size, batch = config.split(':')
        spec = dict(model_type=model_type, size=int(size), batch=int(batch), backbone=args.backbone,
                    iters=args.iters, device=args.device, train_args=args.train_args.split(), split=args.split,
                    compare_torch=args.compare_torch)
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
        rows = json.loads(lines[-1][len('RESULT '):])
        for r in rows:
            if 'sec_per_iter' not in r:
                print(r['what'])
                continue
            print(f"{r['what']:52s} {r['sec_per_iter']:8.2f} {r['iters_per_sec']:8.3f} {r['samples_per_sec']:10.3f} "
                  f"{r['peak_rss_mb']:12.0f}")
            if r.get('parts'):
                print('    ' + ', '.join(f'{k} {v:.2f} s' for k, v in r['parts'].items()))
        if len(rows) > 1 and rows[-1]['what'].startswith('official') and 'sec_per_iter' in rows[-1]:
            print(f"    ours / official: {rows[0]['sec_per_iter'] / rows[-1]['sec_per_iter']:.2f}x (same inputs, "
                  f"same process; peak RSS is the process's)")


if __name__ == '__main__':
    main()
