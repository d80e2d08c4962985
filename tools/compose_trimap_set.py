"""Composite a trimap-matting training and validation set, as the MindSpore IndexNet port's process_dataset.py:
AIM-500 (original/ mask/ trimap/) over COCO-2014 backgrounds -> OUT/train and OUT/validation.

    python3 tools/compose_trimap_set.py --images data/AIM-500 --backgrounds data/coco/train2014 --out data/AIM-500-COCO
    python3 tools/compose_trimap_set.py ... --estimate-only        # disk and time for the whole set, then stop

Validation: --valid-count images (50) named by --valid-list (one id per line; the MindSpore port's hard-coded list
of 50 AIM-500 ids is not part of this project: give it there), else every (N / valid-count)-th image in name
order. Each training image gets --train-backgrounds (96) backgrounds, each validation image --valid-backgrounds
(20): the sorted background list shuffled by --seed, taken in that order without repetition (the port takes
them in directory-listing order, which depends on the file system). Composite = alpha * image + (1 - alpha) *
background, the background upscaled with cubic only when smaller than the image and cropped at the top left,
truncated to 8 bits, PNG. AIM-500 has no foreground colours: the photo itself is the foreground, as in the port.

Writes OUT/{train,validation}/merged/<id>_<k>.png, OUT/validation/{mask,trimap}/<id>.png and data.txt per split
(train: merged|mask|original|background, validation: merged|mask|trimap; paths relative to the split), which
train.py (--dataset-root NAME=OUT, the split folders train/ and validation/) and eval.py --data-dir
OUT/validation read. Resumable: finished composites are kept, every file is written atomically.
"""
import argparse
import os
import shutil
import sys
import time

import numpy as np
from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dataset.folders import find_pairs, image_files, pair_stem, read_pair  # noqa: E402
from dataset.trimap import composite  # noqa: E402
from utils.io import atomic_path, read_image, read_trimap, write_image  # noqa: E402

SAMPLES = 3          # composites made to estimate the size and time of the whole set


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--images', required=True, help='AIM-500 root (original/ mask/ trimap/), or any fg/alpha set')
    p.add_argument('--backgrounds', required=True, help='background photos (COCO train2014/), searched recursively')
    p.add_argument('--out', required=True, help='output root')
    p.add_argument('--train-backgrounds', type=int, default=96, help='composites per training image (default 96)')
    p.add_argument('--valid-backgrounds', type=int, default=20, help='composites per validation image (default 20)')
    p.add_argument('--valid-count', type=int, default=50, help='validation images (default 50)')
    p.add_argument('--valid-list', help='file of validation ids (file names without extension), one per line')
    p.add_argument('--seed', type=int, default=0, help='shuffle of the sorted background list (default 0)')
    p.add_argument('--estimate-only', action='store_true', help='print the disk and time estimate and stop')
    args = p.parse_args(argv)
    if min(args.train_backgrounds, args.valid_backgrounds, args.valid_count) < 0:
        p.error('counts must be 0 or more')
    return args


def split(names, valid_count, valid_list):
    """(training names, validation names)."""
    if valid_list:
        with open(valid_list, encoding='utf-8') as f:
            wanted = [line.strip() for line in f if line.strip()]
        unknown = [n for n in wanted if n not in names]
        if unknown:
            raise ValueError(f"{valid_list}: {len(unknown)} ids not among the images (first: {unknown[0]})")
        valid = sorted(wanted)
    else:
        step = max(1, len(names) // valid_count) if valid_count else 0
        valid = names[::step][:valid_count] if valid_count else []
    return [n for n in names if n not in set(valid)], valid


def plan(args):
    """[(split, name, fg path, alpha path, trimap path, [background paths])] and the background count."""
    pairs = {pair_stem(args.images, fg): (fg, pha, tri) for fg, pha, tri in find_pairs(args.images)}
    train, valid = split(sorted(pairs), args.valid_count, args.valid_list)
    backgrounds = image_files(args.backgrounds)
    order = np.random.default_rng(args.seed).permutation(len(backgrounds))
    needed = len(train) * args.train_backgrounds + len(valid) * args.valid_backgrounds
    if needed > len(backgrounds):
        raise ValueError(f"{args.backgrounds}: {len(backgrounds)} backgrounds, {needed} needed "
                         f"({len(train)} x {args.train_backgrounds} + {len(valid)} x {args.valid_backgrounds})")
    jobs, start = [], 0
    for split_name, names, count in (('train', train, args.train_backgrounds),
                                     ('validation', valid, args.valid_backgrounds)):
        for name in names:
            fg, pha, tri = pairs[name]
            if split_name == 'validation' and tri is None:
                raise ValueError(f"{args.images}: validation image {name} has no trimap")
            jobs.append((split_name, name, fg, pha, tri, [backgrounds[i] for i in order[start:start + count]]))
            start += count
    return jobs, needed


def outputs(out, job, k):
    split_name, name = job[:2]
    return os.path.join(out, split_name, 'merged', f"{name.replace('/', '_')}_{k}.png")


def make(job, k, out):
    """One composite, written atomically; returns its size in bytes."""
    fgr, pha = read_pair(job[2], job[3])
    merged, _ = composite(fgr, pha, read_image(job[5][k]))
    path = outputs(out, job, k)
    write_image(path, merged)
    return os.path.getsize(path)


def estimate(args, jobs, total):
    """Bytes and seconds of the whole set from SAMPLES composites made in a scratch folder."""
    scratch = os.path.join(args.out, '.estimate')
    sizes, start = [], time.time()
    picks = [(job, 0) for job in jobs[::max(1, len(jobs) // SAMPLES)][:SAMPLES] if job[5]]
    try:
        for job, k in picks:
            sizes.append(make(job, k, scratch))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    seconds = (time.time() - start) / max(1, len(picks))
    return np.mean(sizes) * total if sizes else 0, seconds * total


def write_listing(path, rows):
    with atomic_path(path) as tmp, open(tmp, 'w', encoding='utf-8') as f:
        f.writelines('|'.join(row) + '\n' for row in rows)


def main(argv=None):
    args = parse_args(argv)
    try:
        jobs, total = plan(args)
        size, seconds = estimate(args, jobs, total)
    except ValueError as e:
        sys.exit(f'error: {e}')
    free = shutil.disk_usage(os.path.dirname(os.path.abspath(args.out)) if not os.path.exists(args.out)
                             else args.out).free
    print(f"{total} composites ({sum(j[0] == 'train' for j in jobs)} training and "
          f"{sum(j[0] == 'validation' for j in jobs)} validation images): about {size / 1e9:.1f} GB and "
          f"{seconds / 3600:.1f} h on this machine; {free / 1e9:.1f} GB free")
    if args.estimate_only:
        return 0
    if size > free:
        sys.exit(f"error: {args.out}: not enough disk space ({size / 1e9:.1f} GB needed, {free / 1e9:.1f} GB free); "
                 f"train.py can composite on the fly instead (pairs + backgrounds, no disk)")
    rows = {'train': [], 'validation': []}
    try:
        with tqdm(total=total, unit='composite', desc='compositing', dynamic_ncols=True) as bar:
            for job in jobs:
                split_name, name, fg, pha, tri, backgrounds = job
                root = os.path.join(args.out, split_name)
                if split_name == 'validation':
                    fgr, alpha = read_pair(fg, pha)
                    for folder, image in (('mask', alpha), ('trimap', read_trimap(tri, alpha.shape))):
                        write_image(os.path.join(root, folder, name.replace('/', '_') + '.png'), image)
                for k in range(len(backgrounds)):
                    if not os.path.exists(outputs(args.out, job, k)):
                        make(job, k, args.out)
                    merged = os.path.relpath(outputs(args.out, job, k), root)
                    if split_name == 'train':
                        rows['train'].append((merged, os.path.relpath(pha, root), os.path.relpath(fg, root),
                                              os.path.relpath(backgrounds[k], root)))
                    else:
                        stem = name.replace('/', '_') + '.png'
                        rows['validation'].append((merged, os.path.join('mask', stem), os.path.join('trimap', stem)))
                    bar.update()
    except ValueError as e:
        sys.exit(f'error: {e}')
    for split_name, listing in rows.items():
        if listing:
            write_listing(os.path.join(args.out, split_name, 'data.txt'), listing)
    print(f"wrote {total} composites and data.txt to {os.path.abspath(args.out)}/{{train,validation}}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
