"""The evaluation report: report.html (self-contained: a sortable table, one row per image or clip, with
thumbnails of the input, the prediction, the ground truth and the error) and report.png (each metric's
per-image values, worst named), so a user sees at a glance which images fail.

Thumbnails are written when a case is scored (<output-dir>/thumbs/<name>/*.jpg), so a resumed run's report still
shows the cases an earlier run scored; the report embeds them as data URIs.
"""
import base64
import html
import math
import os

import cv2
import numpy as np

from utils.io import atomic_path, to_uint8, write_image

THUMB = 160                  # longer side of a thumbnail
PARTS = ('input', 'prediction', 'truth', 'error')


def thumbnail(image):
    h, w = image.shape[:2]
    s = min(1.0, THUMB / max(h, w))
    return cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


def save_thumbnails(output_dir, name, image, pred, truth):
    """image: H x W x 3 RGB in [0, 1]; pred, truth: H x W mattes (uint8 or [0, 1]). The error map is |pred - truth|
    in a colour map (black: none, bright: large)."""
    pred, truth = (np.asarray(a, np.float32) / (255 if np.asarray(a).dtype == np.uint8 else 1) for a in (pred, truth))
    error = cv2.applyColorMap(to_uint8(np.abs(pred - truth)), cv2.COLORMAP_INFERNO)[..., ::-1]
    for part, picture in zip(PARTS, (image, pred, truth, error)):
        write_image(os.path.join(output_dir, 'thumbs', name, part + '.jpg'), thumbnail(to_uint8(picture)), quality=85)


def data_uri(path, kind='jpeg'):
    with open(path, 'rb') as f:
        return f'data:image/{kind};base64,' + base64.b64encode(f.read()).decode()


def chart(rows, columns, path, label='name', width=900, panel=110):
    """report.png: one panel per metric, every case a tick at its value, the mean a line, the worst three named."""
    columns = [c for c in columns if any(isinstance(r.get(c), (int, float)) and not math.isnan(r[c]) for r in rows)]
    canvas = np.full((max(1, len(columns)) * panel + 10, width, 3), 255, np.uint8)
    left, right = 90, width - 20
    for k, column in enumerate(columns):
        top = 10 + k * panel
        values = [(r[column], r[label]) for r in rows if isinstance(r.get(column), (int, float))
                  and not math.isnan(r[column])]
        lo, hi = min(v for v, _ in values), max(v for v, _ in values)
        span = hi - lo or 1.0
        x = lambda v: int(left + (v - lo) / span * (right - left))  # noqa: E731
        axis = top + panel - 35
        cv2.line(canvas, (left, axis), (right, axis), (120, 120, 120), 1)
        cv2.putText(canvas, column, (5, axis - 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        for v, _ in values:
            cv2.line(canvas, (x(v), axis - 18), (x(v), axis), (200, 90, 30), 2)
        mean = float(np.mean([v for v, _ in values]))
        cv2.line(canvas, (x(mean), axis - 28), (x(mean), axis + 4), (30, 30, 200), 1)
        for text, at in ((f'{lo:.4g}', left), (f'{hi:.4g}', right - 60), (f'mean {mean:.4g}', x(mean) + 4)):
            cv2.putText(canvas, text, (at, axis + 16), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (60, 60, 60), 1, cv2.LINE_AA)
        for rank, (v, name) in enumerate(sorted(values, reverse=True)[:3]):
            cv2.putText(canvas, str(name)[:24], (min(x(v), right - 120), top + 12 + 12 * rank),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.35, (200, 90, 30), 1, cv2.LINE_AA)
    write_image(path, canvas)


SORT_SCRIPT = '''
<script>
document.querySelectorAll('th').forEach((th, column) => th.addEventListener('click', () => {
  const body = th.closest('table').tBodies[0], rows = Array.from(body.rows);
  const up = th.dataset.order !== 'up'; th.dataset.order = up ? 'up' : 'down';
  const key = r => { const t = r.cells[column].dataset.value ?? r.cells[column].textContent;
                     const n = parseFloat(t); return isNaN(n) ? t : n; };
  rows.sort((a, b) => (key(a) > key(b) ? 1 : key(a) < key(b) ? -1 : 0) * (up ? 1 : -1));
  rows.forEach(r => body.appendChild(r));
}));
</script>'''


def write_report(output_dir, summary, rows, columns, label='name', title='evaluation'):
    """report.html and report.png of scored `rows` (dicts with `label` and the metric `columns`)."""
    chart(rows, list(columns)[:6], os.path.join(output_dir, 'report.png'), label)
    head = ''.join(f'<th title="{html.escape(columns[c])}">{html.escape(c)}</th>' for c in columns)
    lines = []
    for r in rows:
        folder = os.path.join(output_dir, 'thumbs', str(r[label]))
        pictures = ''.join(f'<td><img src="{data_uri(os.path.join(folder, p + ".jpg"))}" alt="{p}"></td>'
                           if os.path.isfile(os.path.join(folder, p + '.jpg')) else '<td></td>' for p in PARTS)
        cells = ''.join(f'<td data-value="{r[c]}">{r[c]:.5g}</td>' if isinstance(r.get(c), (int, float)) else
                        f'<td>{html.escape(str(r.get(c, "")))}</td>' for c in columns)
        lines.append(f'<tr><td>{html.escape(str(r[label]))}</td>{pictures}{cells}</tr>')
    failures = ''.join(f'<li>{html.escape(str(f.get(label, "")))}: {html.escape(f["error"])}</li>'
                       for f in summary.get('failures', []))
    means = ', '.join(f"{c} {m['mean']:.5g}" for c, m in summary['mean'].items() if m['mean'] is not None)
    page = f'''<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:1em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;
padding:2px 6px;text-align:right}}th{{cursor:pointer;background:#eee}}img{{display:block;max-height:{THUMB}px}}</style>
</head><body><h1>{html.escape(title)}</h1><p>{summary['scored']} scored, {summary['failed']} failed. Means: {means}.
Click a column to sort.</p><img src="{data_uri(os.path.join(output_dir, 'report.png'), 'png')}" alt="metrics">
{f'<h2>Failed</h2><ul>{failures}</ul>' if failures else ''}
<table><thead><tr><th>{html.escape(label)}</th>{''.join(f'<th>{p}</th>' for p in PARTS)}{head}</tr></thead>
<tbody>{''.join(lines)}</tbody></table>{SORT_SCRIPT}</body></html>'''
    with atomic_path(os.path.join(output_dir, 'report.html')) as tmp, open(tmp, 'w', encoding='utf-8') as f:
        f.write(page)
