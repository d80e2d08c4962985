"""Training speed: iterations/s, samples/s and peak memory of train.py's step (forward, losses, backward, Adam).

    python3 tools/bench_train.py                        # MattingBase 512x512 and MattingRefine 2048x2048, mobilenetv2
    python3 tools/bench_train.py --model-backbone resnet50 --iters 2 --configs mattingbase:512:8
    python3 tools/bench_train.py --data                 # also the data pipeline (one worker) on the demo set
    python3 tools/bench_train.py --configs rvm:512:1 --train-args "--train-hr --seq-length-lr 15"   # RVM stage 3
    python3 tools/bench_train.py --configs mattingbase:256:4 --split --compare-torch ../BackgroundMattingV2
    python3 tools/bench_train.py --configs rvm:256:1 --train-args "--seq-length-lr 4" --compare-torch ../RVM

RVM steps are timed per pass (low-resolution matting, high-resolution matting with --train-hr, segmentation clip),
at the lengths and high-resolution size train.py resolves from --train-args.
Each configuration runs in its own process so that its peak resident memory (ru_maxrss) is its own.
Inputs are random tensors at the full crop size (the largest crop of the official 256-511 / 1024-2044 ranges).
--split also times the parts of a step: forward, losses, backward, optimiser (Adam).
--compare-torch PATH (the official repository's folder) times the official model's training step on the same inputs
in the same process, its steps interleaved with ours, with Adam at the same learning rates and torch on as many
threads as oneDNN. BGMv2: its network and the losses of train_base.py / train_refine.py (L1 alpha, Sobel L1, masked
foreground L1, error MSE; kornia's Sobel written with torch convolutions; the Laplacian term this project adds has
no official counterpart: --train-args "--loss-laplacian 0" compares with the official loss exactly). RVM:
MattingNetwork and train_loss.py's matting loss (L1, Laplacian pyramid, coherence) and segmentation BCE, one row per
pass. Torch is never a dependency of this project: without it the comparison is skipped with a message.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

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


def timed(steps, iters):
    """Each step's parts (name -> no-argument call, in order) once to warm up, then `iters` rounds that run every
    step in turn: ours and the official one interleaved, so that a machine getting faster or slower during the run
    does not favour the side timed first. Returns per step ({name: median seconds}, [seconds of each step])."""
    for parts in steps:
        for call in parts.values():
            call()
    spent = [{name: [] for name in parts} for parts in steps]
    for _ in range(iters):
        for parts, times in zip(steps, spent):
            for name, call in parts.items():
                t = time.perf_counter()
                call()
                times[name].append(time.perf_counter() - t)
    return [({name: float(np.median(v)) for name, v in times.items()}, [sum(t) for t in zip(*times.values())])
            for times in spent]


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
    from utils.device import set_device
    from utils.onednn import accelerate
    args = train.parser().parse_args(['--model-type', model_type, '--device', device, '--batch-size', str(batch)] +
                                     (['--model-backbone', backbone] if backbone else []) + list(train_args))
    model = config.resolve_model(args, read_card, demo=False)
    _, run, options = config.resolve_train(args, model)
    task = model.spec.trainer(model.model_type)
    set_device(device)                       # train.py's: on CPU also the heap setting of keep_large_blocks
    paddle.seed(0)
    network = model.spec.build(model)
    accelerate(network, model.device, model.cpu_kernels)
    task.train_mode(network, run.batch_size == 1, options)
    optimizer = task.optimizer(network, options)
    tensors = rvm_batch(paddle, options, size, batch) if model_type == 'rvm' else \
        [paddle.rand([batch, c, size, size]) for c in (1, 3, 3, 3)]
    steps = []                                   # (what, batch, parts)
    for prefix, inputs in task.passes(tensors, options):
        if split:
            parts = split_parts(task, network, optimizer, inputs, options)
        else:
            parts = {'step': lambda inputs=inputs: pass_step(task, network, optimizer, None, inputs, options)}
        shape = 'x'.join(str(d) for d in inputs[0].shape[1:]) if model_type == 'rvm' else f'{size}x{size}'
        steps.append((f"{model_type} {model.backbone} {prefix.rstrip('_') or 'step'} {shape} batch {batch}",
                      batch, parts))
    why = None
    if compare_torch:
        official, why = official_steps(compare_torch, model, options, [t.numpy() for t in tensors], split)
        steps += official
    rows = [row(what, batch, spent if split else None, seconds)
            for (what, batch, _), (spent, seconds) in zip(steps, timed([parts for _, _, parts in steps], iters))]
    return rows + ([{'what': f'--compare-torch: {why}'}] if why else [])


def row(what, batch, parts, seconds):
    median = float(np.median(seconds))
    return {'what': what, 'sec_per_iter': median, 'min': min(seconds), 'max': max(seconds),
            'iters_per_sec': 1 / median, 'samples_per_sec': batch / median, 'parts': parts}


def official_steps(path, model, options, arrays, split):
    """The official training step (see the module doc) on the same arrays: ([(what, batch, parts)] one per pass,
    None), or ([], the reason it cannot run)."""
    from tools.speed_test import import_official, official_network
    from utils.device import usable_cpus
    package, why = import_official(path)
    if package is not None:
        import torch
        torch.set_num_threads(usable_cpus())               # the threads oneDNN gets on our side
        torch.manual_seed(0)
        net = official_network(package, model)
        why = None if net is not None else f'{path} has no official {model.model_type} model'
    if why:
        return [], why
    build = official_rvm if model.model_type == 'rvm' else official_bgmv2
    groups, passes = build(net, model, options, [torch.from_numpy(a) for a in arrays])
    optimizer = torch.optim.Adam(groups)
    steps = []
    for what, batch, forward, loss in passes:
        state = {}
        parts = {'forward': lambda forward=forward, state=state: state.update(outputs=forward()),
                 'loss': lambda loss=loss, state=state: state.update(loss=loss(state['outputs'])),
                 'backward': lambda state=state: state['loss'].backward(),
                 'optimizer': lambda: (optimizer.step(), optimizer.zero_grad())}
        if not split:
            parts = {'step': lambda calls=list(parts.values()): [call() for call in calls]}
        steps.append((f"official torch {torch.__version__.split('+')[0]} {what}", batch, parts))
    return steps, None


def official_bgmv2(net, model, options, tensors):
    """The official MattingBase / MattingRefine with train_base.py / train_refine.py's losses:
    ([Adam groups], [(what, batch, forward, loss)])."""
    import torch
    import torch.nn.functional as F
    refine = model.model_type == 'mattingrefine'
    net.train()
    true_pha, true_fgr, src, bgr = tensors
    if len(src) == 1:
        net.aspp.convs[-1][2].eval()                    # as train.py: no batch statistics of a 1 x 1 map
    groups = [{'params': getattr(net, name).parameters(), 'lr': getattr(options, f'lr_{name}')}
              for name in ('backbone', 'aspp', 'decoder') + (('refiner',) if refine else ())]
    kx = torch.tensor([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=torch.float32) / 8

    def sobel(x):                                       # kornia.filters.sobel of a 1-channel map
        x = F.pad(x, [1, 1, 1, 1], mode='replicate')
        gx, gy = F.conv2d(x, kx[None, None]), F.conv2d(x, kx.t()[None, None])
        return torch.sqrt(gx * gx + gy * gy + 1e-6)

    def terms(pha, fgr, t_pha, t_fgr):
        mask = t_pha != 0
        return F.l1_loss(pha, t_pha) + F.l1_loss(sobel(pha), sobel(t_pha)) + F.l1_loss(fgr * mask, t_fgr * mask)

    def resize(x, like):
        return F.interpolate(x, like.shape[2:], mode='bilinear', align_corners=False)

    def loss(outputs):
        if refine:                                      # train_refine.compute_loss
            pha, fgr, pha_sm, fgr_sm, err_sm = outputs[:5]
            t_pha_sm, t_fgr_sm = resize(true_pha, pha_sm), resize(true_fgr, pha_sm)
            return (terms(pha, fgr, true_pha, true_fgr) + terms(pha_sm, fgr_sm, t_pha_sm, t_fgr_sm)
                    + F.mse_loss(resize(err_sm, true_pha), torch.abs(resize(pha_sm, true_pha) - true_pha)))
        pha, fgr, err = outputs[:3]                     # train_base.compute_loss
        return terms(pha, fgr, true_pha, true_fgr) + F.mse_loss(err, torch.abs(pha.detach() - true_pha))
    size = 'x'.join(str(d) for d in src.shape[2:])
    return groups, [(f'{model.model_type} {model.backbone} {size} batch {len(src)}', len(src),
                     lambda: net(src, bgr), loss)]


def official_rvm(net, model, options, tensors):
    """The official MattingNetwork with train_loss.py's matting and segmentation losses, one pass each as
    train.py's (low-res at ratio 1, high-res at --downsample-ratio-hr, segmentation clip)."""
    import torch
    import torch.nn.functional as F
    net.train()
    groups = [{'params': net.backbone.parameters(), 'lr': options.lr_backbone},
              {'params': net.aspp.parameters(), 'lr': options.lr_aspp},
              {'params': list(net.decoder.parameters()) + list(net.project_mat.parameters()) +
               list(net.project_seg.parameters()), 'lr': options.lr_decoder},
              {'params': net.refiner.parameters(), 'lr': options.lr_refiner}]
    gauss = torch.tensor([1., 4., 6., 4., 1.])
    gauss = (gauss[:, None] * gauss[None]) / 256

    def blur(x):
        return F.conv2d(F.pad(x, (2, 2, 2, 2), mode='reflect'), gauss.expand(x.shape[1], 1, 5, 5), groups=x.shape[1])

    def pyramid(x, levels=5):
        out = []
        for _ in range(levels):
            x = x[..., :x.shape[-2] // 2 * 2, :x.shape[-1] // 2 * 2]
            down = blur(x)[..., ::2, ::2]
            up = torch.zeros_like(x)
            up[..., ::2, ::2] = down * 4
            out.append(x - blur(up))
            x = down
        return out

    def coherence(pred, true):
        return 5 * F.mse_loss(pred[:, 1:] - pred[:, :-1], true[:, 1:] - true[:, :-1])

    def matting(true_fgr, true_pha):                    # train_loss.matting_loss
        def loss(outputs):
            fgr, pha = outputs[0], outputs[1]
            levels = zip(pyramid(pha.flatten(0, 1)), pyramid(true_pha.flatten(0, 1)))
            mask = true_pha.gt(0)
            return (F.l1_loss(pha, true_pha) + sum(2 ** i * F.l1_loss(a, b) for i, (a, b) in enumerate(levels)) / 5
                    + coherence(pha, true_pha) + F.l1_loss(fgr * mask, true_fgr * mask)
                    + coherence(fgr * mask, true_fgr * mask))
        return loss

    def shape(x):
        return 'x'.join(str(d) for d in x.shape[1:])
    clips = [tensors[:3]] + ([tensors[3:6]] if options.train_hr else [])
    passes = [(f'rvm {model.backbone} {name} {shape(src)}', len(src),
               lambda src=src, ratio=ratio: net(src, downsample_ratio=ratio), matting(fgr, pha))
              for name, ratio, (fgr, pha, src) in zip(('lr', 'hr'), (1, options.downsample_ratio_hr), clips)]
    image, seg = tensors[-2:]
    passes.append((f'rvm {model.backbone} seg {shape(image)}', len(image),
                   lambda: net(image, segmentation_pass=True),
                   lambda outputs: F.binary_cross_entropy_with_logits(outputs[0], seg)))
    return groups, passes


def bench_data(model_type, size, iters):
    """One worker's throughput: read, per-sample augmentation and the per-batch collate, demo data."""
    from dataset.config import background_split, load_roots, matting_split
    from dataset.matting import Collate, MattingDataset
    from training.loader import load_batch
    roots = load_roots()
    ds = MattingDataset(matting_split(roots, 'demo', 'train'), background_split(roots, 'demo_backgrounds', 'train'),
                        size, train=True)
    collate = Collate(augment=True, multiple=4 if model_type == 'mattingrefine' else 1)
    seconds = []
    for i in range(iters):
        start = time.perf_counter()
        load_batch(ds, collate, [(0, i)])
        seconds.append(time.perf_counter() - start)
    return [row(f'data pipeline {size}x{size} (1 worker)', 1, None, seconds)]


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
                  f"{r['peak_rss_mb']:12.0f}  (step {r['min']:.2f}-{r['max']:.2f} s)")
            if r.get('parts'):
                print('    ' + ', '.join(f'{k} {v:.2f} s' for k, v in r['parts'].items()))
        ours = [r for r in rows if not r['what'].startswith(('official', '--compare'))]
        official = [r for r in rows if r['what'].startswith('official')]
        if official and len(official) == len(ours):
            ratios = ', '.join(f"{a['sec_per_iter'] / b['sec_per_iter']:.2f}x" for a, b in zip(ours, official))
            print(f"    ours / official: {ratios} (medians; same inputs, same process, steps interleaved; "
                  "peak RSS is the process's)")


if __name__ == '__main__':
    main()
