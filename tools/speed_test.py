"""Inference speed of BGMv2, like the official inference_speed_test.py: random src and bgr at --resolution,
no checkpoint needed (the weights do not change the work done). Prints the median latency and frames/s.

As in the official test, sampling mode refines the full --model-refine-sample-pixels budget on every frame
(prevent_oversampling off; --prevent-oversampling turns it on). The inference and onnxruntime backends use
--export-dir, or export the model to a temporary folder first. --profile splits dygraph time into the base
network, the refiner convolutions, resizes, patch selection, patch crop and patch replace.
"""
import argparse
import collections
import contextlib
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import paddle  # noqa: E402

import model.bgmv2 as bgmv2  # noqa: E402
from model import build_model  # noqa: E402
from utils.checkpoint import load_weights  # noqa: E402
from utils.inference import BACKENDS, create_backend  # noqa: E402
from utils.options import add_model_args, model_options, set_device  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog='example (the setting of the official CPU numbers):\n'
                                            '  python3 tools/speed_test.py --model-backbone resnet50 '
                                            '--resolution 1920 1080 --backend inference --threads 2')
    parser.add_argument('--resolution', type=int, nargs=2, metavar=('W', 'H'), default=[1920, 1080])
    parser.add_argument('--batch-size', type=int, default=1)
    parser.add_argument('--precision', choices=['fp32', 'fp16'], default='fp32', help='fp16: GPU only')
    parser.add_argument('--backend', choices=BACKENDS, default='dygraph')
    parser.add_argument('--export-dir', default=None, help='exported model (tools/export.py, same model options) for '
                             'inference / onnxruntime; default: export the options to a temporary folder')
    parser.add_argument('--tensorrt', action='store_true', help='inference backend on GPU: use TensorRT')
    parser.add_argument('--threads', type=int, default=2, help='CPU threads (default 2)')
    parser.add_argument('--warmup', type=int, default=2, help='untimed runs first (default 2)')
    parser.add_argument('--repeats', type=int, default=10, help='timed runs (default 10)')
    parser.add_argument('--prevent-oversampling', action='store_true',
                        help='skip zero-error patches in sampling mode (off, as in the official speed test)')
    parser.add_argument('--profile', action='store_true', help='dygraph: time split by stage')
    add_model_args(parser)
    args = parser.parse_args(argv)
    if args.precision == 'fp16' and args.device != 'gpu':
        parser.error('--precision fp16 needs --device gpu')
    if args.profile and args.backend != 'dygraph':
        parser.error('--profile times the dygraph model; use --backend dygraph')
    if args.model_type == 'rvm':
        parser.error('the speed test covers BGMv2 (mattingbase, mattingrefine)')
    if args.model_backbone_scale is None:    # random weights: the official HD setting, not the demo model's
        args.model_backbone_scale = 0.25
    w, h = args.resolution
    if args.model_type == 'mattingrefine' and (h % 4 or w % 4):
        parser.error('mattingrefine needs W and H divisible by 4')
    return args


def build(args):
    """The model the options describe; random weights unless --model-checkpoint is given."""
    model = build_model(**model_options(args), refine_prevent_oversampling=args.prevent_oversampling)
    if args.model_checkpoint:
        load_weights(model, args.model_checkpoint)
    model.eval()
    return model


class SectionTimer:
    """Exclusive wall time per named section; sections nest (a section's time excludes its children)."""

    def __init__(self):
        self.totals = collections.defaultdict(float)
        self.stack = []

    def enter(self, name):
        self.stack.append([name, time.perf_counter(), 0.0])

    def leave(self):
        name, start, children = self.stack.pop()
        elapsed = time.perf_counter() - start
        self.totals[name] += elapsed - children
        if self.stack:
            self.stack[-1][2] += elapsed

    def wrap(self, name, fn):
        def timed(*args, **kwargs):
            if self.stack and self.stack[-1][0] == 'base':      # resizes inside the decoder belong to it
                return fn(*args, **kwargs)
            self.enter(name)
            try:
                return fn(*args, **kwargs)
            finally:
                self.leave()
        return timed


@contextlib.contextmanager
def instrumented(model, timer):
    """Time the stages of a dygraph MattingRefine/MattingBase: hooks on the base network's layers, wrappers
    around the refiner's steps; all removed on exit."""
    hooks = []
    for layer in (model.backbone, model.aspp, model.decoder):
        hooks.append(layer.register_forward_pre_hook(lambda *_: timer.enter('base')))
        hooks.append(layer.register_forward_post_hook(lambda *_: timer.leave()))
    functions = {name: getattr(bgmv2, name) for name in ('resize', 'planes', 'crop_patch', 'replace_patch')}
    sections = {'resize': 'resizes', 'planes': 'patch crop', 'crop_patch': 'patch crop',
                'replace_patch': 'patch replace'}
    for name, fn in functions.items():
        setattr(bgmv2, name, timer.wrap(sections[name], fn))
    methods = {'refine_patches': 'refiner convs', 'select_refinement_regions': 'patch selection'}
    refiner = getattr(model, 'refiner', None)
    for name, section in methods.items() if refiner else ():
        setattr(refiner, name, timer.wrap(section, getattr(refiner, name)))
    try:
        yield
    finally:
        for hook in hooks:
            hook.remove()
        for name, fn in functions.items():
            setattr(bgmv2, name, fn)
        for name in methods if refiner else ():
            delattr(refiner, name)


def main(argv=None):
    args = parse_args(argv)
    set_device(args.device)
    if hasattr(paddle.base.core, 'set_num_threads'):
        paddle.base.core.set_num_threads(args.threads)
    model = build(args)
    timer = SectionTimer()
    options = dict(tensorrt=args.tensorrt,
                   trt_max_shape=(args.batch_size, *args.resolution[::-1])) if args.backend == 'inference' else {}
    backend = create_backend(args.backend, model, args.export_dir, args.device, args.threads, args.precision,
                             **options)
    w, h = args.resolution
    rng = np.random.default_rng(0)
    src, bgr = (rng.random((args.batch_size, 3, h, w), dtype=np.float32) for _ in range(2))
    times, cpu = [], []
    with instrumented(model, timer) if args.profile else contextlib.nullcontext():
        for i in range(args.warmup + args.repeats):
            if i == args.warmup:
                timer.totals.clear()
            start, start_cpu = time.perf_counter(), time.process_time()
            backend(src, bgr)
            times.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
    times, cpu = times[args.warmup:], cpu[args.warmup:]
    median = statistics.median(times)
    # CPU seconds show how much of the wall time was computing: below threads x wall when the CPU is shared
    print(f'{args.model_type} {args.model_backbone} {w}x{h} batch {args.batch_size} backend {args.backend} '
          f'threads {args.threads}: median {median * 1000:.1f} ms per batch (min {min(times) * 1000:.1f}), '
          f'{median * 1000 / args.batch_size:.1f} ms per frame, {args.batch_size / median:.2f} frames/s; '
          f'CPU {statistics.median(cpu):.2f} s per batch')
    if args.profile:
        total = sum(times)
        for name, seconds in sorted(timer.totals.items(), key=lambda kv: -kv[1]):
            print(f'  {name:16s} {seconds / len(times) * 1000:8.1f} ms  {seconds / total * 100:5.1f} %')
        other = total - sum(timer.totals.values())
        print(f"  {'other':16s} {other / len(times) * 1000:8.1f} ms  {other / total * 100:5.1f} %")
    return 0


if __name__ == '__main__':
    sys.exit(main())
