"""Result files shared by the evaluation protocols: CSV rows (rewritten atomically, read back to resume),
the JSON summary, the settings a results folder belongs to, the console table and the progress bar."""
import csv
import json
import math
import os
import sys

from tqdm import tqdm

from utils.io import atomic_path, make_dirs

INTEGER_FIELDS = ('height', 'width', 'unknown_pixels', 'index', 'frames')
TEXT_FIELDS = ('name', 'clip', 'frame')


def present(value):
    return value != '' and not math.isnan(value)


def mean(values):
    return sum(values) / len(values) if values else None


def progress(total, initial, unit):
    return tqdm(total=total, initial=initial, unit=unit, desc='eval', dynamic_ncols=True)


def report_failure(key, name, error):
    tqdm.write(f"failed: {name}: {error}", file=sys.stderr)
    return {key: name, 'error': str(error)}


def read_rows(path, fields):
    """Rows already scored, in file order (numbers parsed, '' for absent values)."""
    if not os.path.isfile(path):
        return []
    with open(path, newline='') as f:
        rows = list(csv.DictReader(f))
    if rows and list(rows[0]) != fields:
        raise ValueError(f"{path}: not a results file of this version of eval.py (columns {list(rows[0])})")
    parse = lambda k, v: v if v == '' or k in TEXT_FIELDS else (int if k in INTEGER_FIELDS else float)(v)  # noqa
    try:
        return [{k: parse(k, v) for k, v in r.items()} for r in rows]
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: damaged results file ({e}); delete it to score again") from None


def write_rows(path, fields, rows):
    """Replace the CSV file atomically."""
    with atomic_path(path) as tmp, open(tmp, 'w', newline='') as f:
        writer = csv.DictWriter(f, fields, lineterminator='\n')
        writer.writeheader()
        writer.writerows(rows)


def write_json(path, obj):
    with atomic_path(path) as tmp, open(tmp, 'w') as f:
        json.dump(obj, f, indent=1, allow_nan=True)
        f.write('\n')


def start_output(output_dir, settings):
    """Create the results folder; refuse one that holds results of other settings. Returns the settings."""
    make_dirs(output_dir)
    path = os.path.join(output_dir, 'settings.json')
    if os.path.isfile(path):
        try:
            with open(path) as f:
                old = json.load(f)
        except ValueError as e:
            raise ValueError(f"{path}: unreadable ({e}); delete it or use another --output-dir") from None
        changed = sorted(k for k in settings.keys() | old.keys() if settings.get(k) != old.get(k))
        if changed:
            raise ValueError(f"{output_dir} holds results of other settings ({', '.join(changed)} differ); "
                             f"use another --output-dir or delete it")
    write_json(path, settings)
    return settings


def table(head, spec, means, others=()):
    """The console table: a header line, then one line of names, one of scalings, one of means, and one per
    (label, means) of `others` (a reference method scored alike)."""
    rows = [('mean', means)] + list(others)
    value = lambda m, name, digits: '-' if m[name]['mean'] is None else f"{m[name]['mean']:.{digits}f}"  # noqa
    cells = [(name, scale) + tuple(value(m, name, digits) for _, m in rows) for name, scale, digits in spec]
    labels = ['', 'scale'] + [label for label, _ in rows]
    width = max(6, max(len(label) for label in labels) + 1)
    widths = [max(len(c) for c in cell) + 2 for cell in cells]
    lines = [''.join(c[i].rjust(w) for c, w in zip(cells, widths)) for i in range(len(labels))]
    return '\n'.join([head] + [label.ljust(width) + line for label, line in zip(labels, lines)])


def score_cases(output_dir, fields, names, make_scorer, unit='image'):
    """Score each of `names` not yet in <output_dir>/metrics.csv: `make_scorer(count)` (called only when there is
    something to score, so a finished run needs no model) returns score(index, name) -> CSV row. A ValueError is
    a failure of that case (reported by name, counted); the CSV is rewritten after every case, so an interrupted
    run resumes where it stopped. -> (rows in name order, failures)."""
    csv_path = os.path.join(output_dir, 'metrics.csv')
    rows = {r['name']: r for r in read_rows(csv_path, fields)}
    todo = [(i, name) for i, name in enumerate(names) if name not in rows]
    failed = []
    score = make_scorer(len(todo)) if todo else None
    with progress(len(names), len(names) - len(todo), unit) as bar:
        for index, name in todo:
            try:
                rows[name] = score(index, name)
            except ValueError as e:         # unreadable/missing file or mismatched sizes: count, go on
                failed.append(report_failure('name', name, e))
            else:
                write_rows(csv_path, fields, [rows[n] for n in sorted(rows)])
            bar.update()
    ordered = [rows[n] for n in sorted(rows)]
    write_rows(csv_path, fields, ordered)
    return ordered, failed


def column_means(rows, columns, unit='images'):
    """Plain mean over the rows of each column; NaN/absent values are left out and counted."""
    out = {}
    for column in columns:
        values = [v for v in (r[column] for r in rows) if present(v)]
        out[column] = {'mean': mean(values), unit: len(values)}
    return out
