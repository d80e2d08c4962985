"""Inference speed of any family, like the official speed tests: random inputs at --resolution, random weights
unless --model-checkpoint is given (the weights do not change the work done). Prints the median latency and
frames/s, with the CPU seconds next to the wall time.

The model options are predict.py's. As in the official BGMv2 test, sampling mode refines the full
--model-refine-sample-pixels budget on every frame (--model-refine-prevent-oversampling false here). RVM frames
run one after another with the recurrent state carried. The inference and onnxruntime backends use
--export-dir, or export the model to a temporary folder first. --profile (BGMv2, dygraph) splits the time
into the base network, the refiner convolutions, resizes, patch selection, patch crop and patch replace.

--size picks the settings of the official speed tests: hd is 1920x1080 with BGMv2's backbone scale 0.25 and
80,000 refined pixels and RVM's downsample ratio 0.25; 4k is 3840x2160 with 0.125, 320,000 and 0.125. Options
given on the command line win. --batch-size frames go to the runner in one call (RVM: a chunk of one clip, run
frame by frame with the state carried).

--compare-torch PATH times the official PyTorch model from the official repository at PATH (the folder that
holds its `model` package: PeterL1n/BackgroundMattingV2 or PeterL1n/RobustVideoMatting) with the same options,
input size and thread count, in the same run, and prints the ratio. It needs torch (and torchvision for RVM),
which this project never installs; without them it says so and exits cleanly.
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
from families.rvm import auto_ratio  # noqa: E402
import model.static_ops as ops  # noqa: E402
from utils.checkpoint import read_card  # noqa: E402
from utils.options import option, positive_int, non_negative_int  # noqa: E402

TOOL_DEFAULTS = {'refine_prevent_oversampling': False,       # the official speed test refines the whole budget
                 'backend': 'dygraph', 'threads': 2}
SIZES = {'hd': {'resolution': (1920, 1080), 'backbone_scale': 0.25, 'refine_sample_pixels': 80_000,
                'downsample_ratio': 0.25},
         '4k': {'resolution': (3840, 2160), 'backbone_scale': 0.125, 'refine_sample_pixels': 320_000,
                'downsample_ratio': 0.125}}


@dataclass(frozen=True)
class SpeedConfig:
    size: str = option('hd', '--size', choices=tuple(SIZES), help="the official speed tests' settings (see above)")
    resolution: tuple = option(None, '--resolution', type=positive_int, nargs=2, metavar=('W', 'H'),
                               help='frame size', default_help="--size's: 1920 1080 or 3840 2160")
    batch_size: int = option(1, '--batch-size', type=positive_int, help='frames per call')
    warmup: int = option(2, '--warmup', type=non_negative_int, help='untimed runs first')
    repeats: int = option(10, '--repeats', type=positive_int, help='timed runs')
    profile: bool = option(False, '--profile', action='store_true', help='BGMv2, dygraph: time split by stage')
    compare_torch: str = option(None, '--compare-torch', metavar='PATH',
                                help='also time the official PyTorch model of the repository at PATH (see above)')


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
    sections = {'resize': 'resizes', 'pixels': 'patch crop', 'gather_patches': 'patch crop',
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


def timing(times, cpu, frames):
    """'median X ms per batch (min, max), Y ms per frame, Z frames/s; CPU W s per batch' of timed runs."""
    median = statistics.median(times)
    # CPU seconds show how much of the wall time was computing: below threads x wall when the CPU is shared
    return (f'median {median * 1000:.1f} ms per batch (min {min(times) * 1000:.1f}, max {max(times) * 1000:.1f}), '
            f'{median * 1000 / frames:.1f} ms per frame, {frames / median:.2f} frames/s; '
            f'CPU {statistics.median(cpu):.2f} s per batch')


def timed(calls, warmup, repeats):
    """[(wall seconds, CPU seconds) of each of `repeats` runs] per call, after `warmup` untimed runs. The calls
    alternate run by run, so a load that drifts during the test (a shared machine) weighs on each alike."""
    results = [([], []) for _ in calls]
    for i in range(warmup + repeats):
        for call, (times, cpu) in zip(calls, results):
            start, start_cpu = time.perf_counter(), time.process_time()
            call()
            if i >= warmup:
                times.append(time.perf_counter() - start)
                cpu.append(time.process_time() - start_cpu)
    return results


def import_official(path):
    """The official repository's `model` package at PATH, imported as `official_model` (this project has its own
    `model`), or None with the reason when torch or the code is missing."""
    import importlib.util
    if importlib.util.find_spec('torch') is None:
        return None, 'torch is not installed (this project never needs it): nothing to compare with'
    init = os.path.join(path, 'model', '__init__.py')
    if not os.path.isfile(init):
        return None, f'{path}: no model/__init__.py (give the folder of the official repository)'
    for name in [m for m in sys.modules if m == 'official_model' or m.startswith('official_model.')]:
        del sys.modules[name]                     # another repository's package imported earlier in this process
    spec = importlib.util.spec_from_file_location('official_model', init,
                                                  submodule_search_locations=[os.path.dirname(init)])
    package = importlib.util.module_from_spec(spec)
    sys.modules['official_model'] = package
    spec.loader.exec_module(package)
    return package, None


def official_network(package, model):
    """The official network of the same type, backbone and options (BGMv2 or RVM), untrained, or None."""
    o = model.options
    if model.model_type == 'mattingbase' and hasattr(package, 'MattingBase'):
        return package.MattingBase(model.backbone)
    if model.model_type == 'mattingrefine' and hasattr(package, 'MattingRefine'):
        return package.MattingRefine(model.backbone, o.backbone_scale, o.refine_mode, o.refine_sample_pixels,
                                     o.refine_threshold, o.refine_kernel_size, o.refine_prevent_oversampling)
    if model.model_type == 'rvm' and hasattr(package, 'MattingNetwork'):
        return package.MattingNetwork(model.backbone, o.refiner, pretrained_backbone=False)
    return None


def official_call(package, model, frames, partner, threads):
    """A no-argument call of the official model on the same inputs (RVM: its state carried), or a reason."""
    import torch
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2)))      # noqa: E731
    net = official_network(package, model)
    if net is not None and model.family == 'bgmv2':
        inputs = (tensor(frames), tensor(partner))
        step = lambda: net(*inputs)                                                          # noqa: E731
    elif net is not None:
        src, state = tensor(frames)[None], [None] * 4                     # 1 x T x 3 x H x W: one chunk
        ratio = model.options.downsample_ratio or auto_ratio(*frames.shape[1:3])

        def step():
            state[:] = net(src, *state, downsample_ratio=ratio)[2:]
    else:
        return None, f'the repository has no official {model.model_type} model'
    net.eval()

    def call():
        with torch.inference_mode():
            step()
    return call, None


def main(argv=None):
    args = parser().parse_args(argv)
    size = SIZES[args.size or 'hd']
    defaults = {**TOOL_DEFAULTS, **{k: v for k, v in size.items() if k != 'resolution'}}
    try:
        model = config.resolve_model(args, read_card, defaults, demo=False)
        backend = config.resolve_backend(args, model, defaults)
        cfg = config.fill(SpeedConfig, args, {'resolution': size['resolution']})
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
    frames, partner = model.spec.example_inputs(cfg.batch_size, h, w, rng)
    inputs = runner.prepare(frames, partner)
    calls = [lambda: runner.step(inputs)]
    if cfg.compare_torch:
        package, why = import_official(cfg.compare_torch)
        call, why = official_call(package, model, frames, partner, backend.threads) if package else (None, why)
        if call is None:
            print(f'--compare-torch: {why}')
        else:
            calls.append(call)
    timer = SectionTimer()
    with instrumented(network, timer) if cfg.profile else contextlib.nullcontext():
        (times, cpu), *official = timed(calls, cfg.warmup, cfg.repeats)
    options = ' '.join(f'{k} {v}' for k, v in sorted(size.items()) if k != 'resolution'
                       and hasattr(model.options, k) and getattr(model.options, k) == v)
    print(f'{model.model_type} {model.backbone} {w}x{h} batch {cfg.batch_size} backend {backend.backend} '
          f'threads {backend.threads}' + (f' ({options})' if options else '')
          + f': {timing(times, cpu, cfg.batch_size)}')
    if cfg.profile:
        total = sum(times)
        for name, seconds in sorted(timer.totals.items(), key=lambda kv: -kv[1]):
            print(f'  {name:16s} {seconds / len(times) * 1000:8.1f} ms  {seconds / total * 100:5.1f} %')
        other = total - sum(timer.totals.values())
        print(f"  {'other':16s} {other / len(times) * 1000:8.1f} ms  {other / total * 100:5.1f} %")
    if official:
        (official_times, official_cpu), = official
        print(f'official PyTorch {model.model_type} {model.backbone} {w}x{h} batch {cfg.batch_size} threads '
              f'{backend.threads}: {timing(official_times, official_cpu, cfg.batch_size)}')
        print(f'ratio (ours / official, medians): {statistics.median(times) / statistics.median(official_times):.2f}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
