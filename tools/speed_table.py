"""The README's speed table: tools/speed_test.py over every family, backbone, backend and size, as a Markdown
table of medians (min-max) per frame, with the ratio to the official PyTorch model when --compare-torch gives
its code (each ratio comes from one speed_test run that alternates the two models call by call).

    python3 tools/speed_table.py --compare-torch-bgmv2 ../BackgroundMattingV2 \\
        --compare-torch-rvm ../RobustVideoMatting > speed.md

A configuration that fails (a backend not installed) gets its one-line reason in the table.
"""
import argparse
import contextlib
import io
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tools import speed_test  # noqa: E402

MODELS = (('mattingrefine', 'mobilenetv2', 'bgmv2'), ('mattingrefine', 'resnet50', 'bgmv2'),
          ('rvm', 'mobilenetv3', 'rvm'), ('rvm', 'resnet50', 'rvm'), ('indexnet', 'mobilenetv2', None))
BACKENDS = ('dygraph', 'inference', 'onnxruntime')
LINE = re.compile(r'median ([\d.]+) ms per batch \(min ([\d.]+), max ([\d.]+)\), ([\d.]+) ms per frame')


def parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--sizes', nargs='+', default=['hd', '4k'], choices=tuple(speed_test.SIZES))
    p.add_argument('--backends', nargs='+', default=list(BACKENDS), choices=BACKENDS)
    p.add_argument('--models', nargs='+', default=[f'{t}:{b}' for t, b, _ in MODELS],
                   choices=[f'{t}:{b}' for t, b, _ in MODELS], metavar='TYPE:BACKBONE',
                   help='(default: all: %(default)s)')
    p.add_argument('--repeats', type=int, default=10, help='timed runs per configuration (default: 10)')
    p.add_argument('--warmup', type=int, default=2, help='untimed runs first (default: 2)')
    p.add_argument('--threads', type=int, default=2, help='CPU threads (default: 2)')
    p.add_argument('--compare-torch-bgmv2', metavar='PATH', help='the official BackgroundMattingV2 repository')
    p.add_argument('--compare-torch-rvm', metavar='PATH', help='the official RobustVideoMatting repository')
    return p


def measure(argv):
    """speed_test.main(argv) -> (ours (median, min, max) ms per frame, official (...) or None, ratio or None),
    or the one-line reason it failed."""
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            speed_test.main(argv)
    except SystemExit as e:
        return str(e.code).removeprefix('error: ')
    found = [tuple(float(v) for v in m.groups()) for m in LINE.finditer(out.getvalue())]
    if not found:
        return 'no timing printed'
    per_frame = lambda f: (f[3], f[1] / f[0] * f[3], f[2] / f[0] * f[3])      # noqa: E731 (batch -> frame)
    ratio = re.search(r'ratio \(ours / official, medians\): ([\d.]+)', out.getvalue())
    return per_frame(found[0]), per_frame(found[1]) if len(found) > 1 else None, ratio and float(ratio.group(1))


def cell(timing):
    median, low, high = timing
    return f'{median:.0f} ({low:.0f}-{high:.0f})'


def main(argv=None):
    args = parser().parse_args(argv)
    official = {'bgmv2': args.compare_torch_bgmv2, 'rvm': args.compare_torch_rvm}
    print('| model | size | backend | ours, ms per frame: median (min-max) | official PyTorch, ms | ours / official |')
    print('| --- | --- | --- | --- | --- | --- |')
    for model_type, backbone, family in MODELS:
        if f'{model_type}:{backbone}' not in args.models:
            continue
        for size in args.sizes if family else [s for s in args.sizes if s == 'hd']:   # IndexNet: HD only
            for backend in args.backends:
                argv = ['--model-type', model_type, '--model-backbone', backbone, '--size', size, '--backend',
                        backend, '--threads', str(args.threads), '--repeats', str(args.repeats), '--warmup',
                        str(args.warmup)]
                if family and official[family]:
                    argv += ['--compare-torch', official[family]]
                result = measure(argv)
                name = f'{model_type} {backbone}'
                if isinstance(result, str):
                    print(f'| {name} | {size} | {backend} | {result} | | |', flush=True)
                    continue
                ours, theirs, ratio = result
                print(f'| {name} | {size} | {backend} | {cell(ours)} | {cell(theirs) if theirs else ""} | '
                      f'{f"{ratio:.2f}" if ratio else ""} |', flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
