"""Print how a logged training term moved: the mean of its first and of its last logged values.

    python3 tools/loss_trend.py log/demo_stage1/train.log lr_total

Reads the step lines of a train.log ("epoch E step S loss L name value ..."); run.sh demo-rvm uses it to show
that stage 1 learned.
"""
import argparse
import sys


def values(path, term):
    found = []
    with open(path, encoding='utf-8') as f:
        for line in f:
            words = line.split()
            if 'step' in words and term in words[:-1]:
                found.append(float(words[words.index(term) + 1]))
    return found


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('log', help='a train.log')
    p.add_argument('term', help='a logged term, e.g. lr_total or loss')
    p.add_argument('--window', type=int, default=10, help='values averaged at each end')
    args = p.parse_args(argv)
    try:
        found = values(args.log, args.term)
    except OSError as e:
        print(f'error: {args.log}: {e.strerror}', file=sys.stderr)
        return 1
    if len(found) < 2:
        print(f'error: {args.log}: fewer than two {args.term} values', file=sys.stderr)
        return 1
    n = max(1, min(args.window, len(found) // 2))
    first, last = sum(found[:n]) / n, sum(found[-n:]) / n
    print(f'{args.term} over {len(found)} logged steps of {args.log}: mean of the first {n} {first:.4f}, '
          f'of the last {n} {last:.4f} ({(last - first) / first:+.0%})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
