"""Dataset roots: one config file (configs/datasets.json) plus command-line overrides.

Names follow the official DATA_PATH keys (videomatte240k, photomatte13k, distinction, adobe, backgrounds)
plus photomatte85, aim500, private and the project's demo/synthetic sets.
"""
import json
import os

from . import folders

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CONFIG = os.path.join(REPO, 'configs', 'datasets.json')


def load_roots(config=DEFAULT_CONFIG, overrides=()):
    """{name: {'root', 'train', 'valid'}} from the config file; overrides are 'NAME=PATH' strings
    (a new name is allowed: its root is then used for both splits, train/ and valid/ inside)."""
    try:
        with open(config) as f:
            table = {k: v for k, v in json.load(f).items() if not k.startswith('_')}
    except (OSError, ValueError, AttributeError) as e:
        raise ValueError(f"{config}: cannot read the dataset config ({e})") from None
    for name, entry in table.items():
        if not isinstance(entry, dict) or not isinstance(entry.get('root'), str):
            raise ValueError(f'{config}: dataset {name!r} needs a "root" (and "train"/"valid" split folders), '
                             f'got {entry!r}')
        if not os.path.isabs(entry['root']):
            entry['root'] = os.path.join(REPO, entry['root'])
    for item in overrides:
        name, sep, path = item.partition('=')
        if not sep or not name or not path:
            raise ValueError(f"--dataset-root expects NAME=PATH, got {item!r}")
        table.setdefault(name, {'train': 'train', 'valid': 'valid'})['root'] = os.path.abspath(path)
    return table


def split_dir(roots, name, split):
    """The folder of one split of a named dataset; errors name the dataset, the split and the path."""
    if name not in roots:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(sorted(roots))} "
                         f"(add one with --dataset-root {name}=PATH)")
    entry = roots[name]
    if split not in entry:
        raise ValueError(f"dataset {name!r} has no {split!r} split (root {entry['root']})")
    path = os.path.normpath(os.path.join(entry['root'], entry[split]))
    if not os.path.isdir(path):
        raise ValueError(f"dataset {name!r}: {split} folder {path} not found "
                         f"(set its root in {os.path.relpath(DEFAULT_CONFIG, REPO)} or pass "
                         f"--dataset-root {name}=PATH)")
    return path


def parse_names(spec):
    """'a*20,b' -> [('a', 20), ('b', 1)]: several datasets, each repeated k times to weight it."""
    names = []
    for item in spec.split(','):
        name, _, k = item.strip().partition('*')
        if not name or (k and not k.isdigit()):
            raise ValueError(f"dataset list {spec!r}: expected NAME or NAME*K items separated by commas")
        names.append((name, int(k) if k else 1))
    return names


def matting_split(roots, spec, split, repeat=True):
    """[(fgr, pha, trimap)] of a split of one dataset or of a list 'a*20,b' (repeats only if `repeat`)."""
    return [pair for name, k in parse_names(spec)
            for pair in folders.find_pairs(split_dir(roots, name, split)) * (k if repeat else 1)]


def background_split(roots, spec, split):
    """[path] of a split of one background dataset or of a list 'a,b'."""
    return [path for name, k in parse_names(spec) for path in folders.image_files(split_dir(roots, name, split)) * k]


def available(roots, name, split='train'):
    """True if the split folder exists (run.sh skips stages whose data is absent)."""
    try:
        split_dir(roots, name, split)
        return True
    except ValueError:
        return False
