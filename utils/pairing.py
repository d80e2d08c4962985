"""Finding input files and pairing them by name: the one place where files are discovered and matched.

A file's *stem* is its path relative to the folder searched, without the extension, with '/' separators
(`clip/0001` for `clip/0001.jpg`), so a .jpg foreground pairs with a .png matte of the same name. Predict,
eval and every dataset reader pair their files here; a file without a partner is an error that lists it,
never a silent shift of every later pair (the official code only compared counts).
"""
import glob
import os

from .io import IMAGE_EXTENSIONS, is_video

LISTED = 10          # files named per category in an unpaired-files message


def list_images(root):
    """Image files under `root`, recursively, sorted by relative path (hidden files left out)."""
    if not os.path.isdir(root):
        raise ValueError(f"{root}: no such folder")
    found = []
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = [d for d in subdirs if not d.startswith('.')]
        found += [os.path.join(directory, f) for f in files
                  if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith('.')]
    return sorted(found, key=lambda p: os.path.relpath(p, root))


def list_videos(root):
    return sorted((os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs
                   if is_video(f) and not f.startswith('.')), key=lambda p: os.path.relpath(p, root))


def discover(pattern):
    """A file, a folder (searched recursively) or a glob -> (root, files): images and videos, sorted; `root`
    is the folder the files' relative paths (and so their stems and output paths) start from."""
    if os.path.isdir(pattern):
        return pattern, list_images(pattern) + list_videos(pattern)
    if os.path.isfile(pattern):
        return os.path.dirname(pattern), [pattern]
    files = sorted(f for f in glob.glob(pattern, recursive=True)
                   if os.path.isfile(f) and (f.lower().endswith(IMAGE_EXTENSIONS) or is_video(f)))
    if not files:
        raise ValueError(f"{pattern}: no such file or folder, and no image or video matches it")
    static = pattern.split('*')[0].split('?')[0].split('[')[0]
    return (static if static.endswith(os.sep) else os.path.dirname(static)) or '.', files


def stem(root, path, suffixes=()):
    """Relative path without extension ('/'-separated), without the first of `suffixes` it ends with."""
    name = os.path.splitext(os.path.relpath(path, root))[0].replace(os.sep, '/')
    for suffix in suffixes:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[:-len(suffix)]
    return name


def by_stem(root, files=None, suffixes=()):
    """{stem: path} of `files` (default: the images under `root`); two files of one stem are an error."""
    table = {}
    for path in list_images(root) if files is None else files:
        key = stem(root, path, suffixes)
        if key in table:
            raise ValueError(f"{root}: {os.path.relpath(table[key], root)} and {os.path.relpath(path, root)} "
                             f"have the same name; cannot tell which one pairs")
        table[key] = path
    return table


class UnpairedError(ValueError):
    """Files without a partner; the message lists them by folder."""


def pair_up(tables, keys=None, exact=(), where=''):
    """Pair files across named tables ({label: {stem: path}}) -> [(stem, {label: path})] in stem order.

    `keys`: the stems to pair (default: those of the first table). Every table must hold every key; a table
    whose label is in `exact` must also hold nothing else. Otherwise UnpairedError names each file without a
    partner and where the partner is missing (one line, at most LISTED files per table)."""
    labels = list(tables)
    keys = sorted(tables[labels[0]] if keys is None else keys)
    wanted = set(keys)
    problems = []
    for label in labels:
        missing = [k for k in keys if k not in tables[label]]
        named = [next((t[k] for t in tables.values() if k in t), k) for k in missing]
        problems += [f"{name} has no partner in {label}" for name in named[:LISTED]]
        if label in exact:
            extra = sorted(set(tables[label]) - wanted)
            problems += [f"{tables[label][k]} has no partner in {labels[0]}" for k in extra[:LISTED]]
            missing += extra
        if len(missing) > LISTED:
            problems.append(f"... {len(missing)} files in all without a partner in or from {label}")
    if problems:
        raise UnpairedError(f"{where + ': ' if where else ''}files that do not pair up by name: " +
                            '; '.join(problems))
    return [(k, {label: tables[label][k] for label in labels}) for k in keys]


def listing_rows(listing, root, columns, extra=False):
    """The rows of a `a|b|c` listing file (such as data.txt) as tuples of paths (relative to `root` unless
    absolute); blank lines skipped. `columns` names the fields for the error; `extra`: longer rows are allowed and
    cut to the named fields (the MindSpore port's lists carry more)."""
    rows = []
    with open(listing, encoding='utf-8') as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            fields = [os.path.join(root, p.strip()) for p in line.strip().split('|')]
            if len(fields) < len(columns) or (len(fields) > len(columns) and not extra):
                raise ValueError(f"{listing}: line {number}: expected {'|'.join(columns)}, got {line.strip()!r}")
            rows.append(tuple(fields[:len(columns)]))
    return rows
