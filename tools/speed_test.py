"""Inference speed of any family, like the official speed tests: random inputs at --resolution, random weights
unless --model-checkpoint is given (the weights do not change the work done). Prints the median latency and
frames/s, with the CPU seconds next to the wall time.

The model options are predict.py's. As in the official BGMv2 test, sampling mode refines the full
--model-refine-sample-pixels budget on every frame (--model-refine-prevent-oversampling false here). RVM frames
run one after another with the recurrent state carried. The inference and onnxruntime backends use
--export-dir, or export the model to a temporary folder first. --profile (BGMv2, dygraph) splits the time
into the base network, the refiner convolutions, resizes, patch selection, patch crop and patch replace.
"""
import argparse
import collections
import contextlib
import os
import statistics
import sys
import time
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import paddle  # noqa: E402

import config  # noqa: E402
import families  # noqa: E402
import model.static_ops as ops  # noqa: E402
from utils.checkpoint import read_card  # noqa: E402
from utils.options import option, positive_int, non_negative_int  # noqa: E402

TOOL_DEFAULTS = {'refine_prevent_oversampling': False,       # the official speed test refines the whole budget
                 'backend': 'dygraph', 'threads': 2}


@dataclass(frozen=True)
class SpeedConfig:
    resolution: tuple = option((1920, 1080), '--resolution', type=positive_int, nargs=2, metavar=('W', 'H'),
                               help='frame size')
    batch_size: int = option(1, '--batch-size', type=positive_int, help='frames per call')
    warmup: int = option(2, '--warmup', type=non_negative_int, help='untimed runs first')
    repeats: int = option(10, '--repeats', type=positive_int, help='timed runs')
    profile: bool = option(False, '--profile', action='store_true', help='BGMv2, dygraph: time split by stage')


def parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog='example (the setting of the official CPU numbers):\n'
                                       '  python3 tools/speed_test.py --model-backbone resnet50 '
                                       '--resolution 1920 1080 --backend inference --threads 2')
    config.add_options(p, SpeedConfig)
    config.add_model_options(p, TOOL_DEFAULTS, demo=False)
    config.add_options(p, config.BackendConfig, 'backend', TOOL_DEFAULTS)
    return p


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
    sections = {'resize': 'resizes', 'planes': 'patch crop', 'gather_patches': 'patch crop',
                'scatter_patches': 'patch replace'}
    functions = {name: getattr(ops, name) for name in sections}
    for name, fn in functions.items():
        setattr(ops, name, timer.wrap(sections[name], fn))
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
            setattr(ops, name, fn)
        for name in methods if refiner else ():
            delattr(refiner, name)


def main(argv=None):
    args = parser().parse_args(argv)
    try:
        model = config.resolve_model(args, read_card, TOOL_DEFAULTS, demo=False)
        backend = config.resolve_backend(args, model, TOOL_DEFAULTS)
        cfg = config.fill(SpeedConfig, args)
        if cfg.profile and (model.family != 'bgmv2' or backend.backend != 'dygraph'):
            raise ValueError('--profile times the stages of a dygraph BGMv2 model: use --backend dygraph')
        if hasattr(paddle.base.core, 'set_num_threads'):
            paddle.base.core.set_num_threads(backend.threads)
        network = families.load(model)
        runner = model.spec.runner(model, network, backend, cfg.warmup + cfg.repeats)
    except ValueError as e:
        sys.exit(f'error: {e}')
    w, h = cfg.resolution
    rng = np.random.default_rng(0)
    inputs = runner.prepare(*model.spec.example_inputs(cfg.batch_size, h, w, rng))
    timer = SectionTimer()
    times, cpu = [], []
    with instrumented(network, timer) if cfg.profile else contextlib.nullcontext():
        for i in range(cfg.warmup + cfg.repeats):
            if i == cfg.warmup:
                timer.totals.clear()
            start, start_cpu = time.perf_counter(), time.process_time()
            runner.step(inputs)
            times.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
    times, cpu = times[cfg.warmup:], cpu[cfg.warmup:]
    median = statistics.median(times)
    # CPU seconds show how much of the wall time was computing: below threads x wall when the CPU is shared
    print(f'{model.model_type} {model.backbone} {w}x{h} batch {cfg.batch_size} backend {backend.backend} '
          f'threads {backend.threads}: median {median * 1000:.1f} ms per batch (min {min(times) * 1000:.1f}), '
          f'{median * 1000 / cfg.batch_size:.1f} ms per frame, {cfg.batch_size / median:.2f} frames/s; '
          f'CPU {statistics.median(cpu):.2f} s per batch')
    if cfg.profile:
        total = sum(times)
        for name, seconds in sorted(timer.totals.items(), key=lambda kv: -kv[1]):
            print(f'  {name:16s} {seconds / len(times) * 1000:8.1f} ms  {seconds / total * 100:5.1f} %')
        other = total - sum(timer.totals.values())
        print(f"  {'other':16s} {other / len(times) * 1000:8.1f} ms  {other / total * 100:5.1f} %")
    return 0


if __name__ == '__main__':
    sys.exit(main())
