"""The video protocol: Robust Video Matting's evaluation on the composited VideoMatte240K test clips
(spec/rvm.md section 4). eval.py's docstring states the protocol; the columns below their scaling."""
import os

import numpy as np

from dataset.clips import clip_frames, find_clips, frame_count
from utils.io import read_alpha, read_image, to_uint8, write_image
from utils.metrics import foreground_metrics, video_matte_metrics

from .report import save_thumbnails, write_report
from .results import mean, present, progress, read_rows, report_failure, start_output, table, write_json, write_rows

# CSV column -> what it is; the console table shows the same scaling in its headers
VIDEO_COLUMNS = {
    'MAD': 'mean over all pixels of |pred - true|, alpha in [0, 1], x 1000',
    'MSE': 'mean over all pixels of (pred - true)^2 x 1000',
    'Grad': 'sum over all pixels of (|grad true| - |grad pred|)^2 / 1000; 9x9 Gaussian-derivative filter, '
            'sigma 1.4, L2-normalised, replicated borders, each matte min-max stretched to [0, 1] first '
            '(evaluate_lr.py); with --hr not stretched (evaluate_hr.py). A sum: it grows with the frame size',
    'Conn': 'sum over all pixels of |phi(pred) - phi(true)| / 1000; step 0.1, theta 0.15, 4-connected largest '
            'component, an empty threshold excludes all remaining pixels (evaluate_lr.py; empty with --hr)',
    'dtSSD': 'sqrt(mean over pixels of ((pred_t - pred_t-1) - (true_t - true_t-1))^2) x 100; 0 for the first '
             'frame of a clip, as the evaluator writes it',
    'FG_MSE': 'mean over pixels with true alpha > 0 and all 3 channels of (pred_fgr - true_fgr)^2 x 1000 '
              '(empty without foreground predictions)',
    'FG_MAD': 'mean over the same pixels and channels of |pred_fgr - true_fgr| x 1000',
}
VIDEO_TABLE = [('MAD', 'mean x1e3', 3), ('MSE', 'mean x1e3', 3), ('Grad', 'sum/1e3', 3), ('Conn', 'sum/1e3', 3),
               ('dtSSD', 'rms x1e2', 3), ('FG_MSE', 'mean x1e3', 3), ('FG_MAD', 'mean x1e3', 3)]
VIDEO_FIELDS = ['clip', 'frame', 'index', 'height', 'width'] + list(VIDEO_COLUMNS)
CLIP_FIELDS = ['clip', 'frames'] + list(VIDEO_COLUMNS)


# ---------------------------------------------------------------- predictions

class ClipModel:
    """Runs the model over a clip's composites in frame order, `chunk` frames per call, from a fresh
    recurrent state; BGMv2 gets the clip's bgr/ frames as plates. Yields 8-bit predictions (as saved PNGs)."""

    def __init__(self, runner, chunk, plates, save_dir):
        self.runner, self.chunk, self.save_dir = runner, chunk, save_dir
        self.inputs = ('com', 'bgr') if plates else ('com',)

    def __call__(self, clip, frames):
        self.runner.reset()
        size = None
        for start in range(0, len(frames), self.chunk):
            chunk = frames[start:start + self.chunk]
            inputs = {}
            for part in self.inputs:
                images = [read_image(paths[part]) for _, paths in chunk]
                for (_, paths), image in zip(chunk, images):
                    size = size or image.shape
                    if image.shape != size:
                        raise ValueError(f"{paths[part]}: {image.shape[1]}x{image.shape[0]}, but the clip's first "
                                         f"frame is {size[1]}x{size[0]}")
                inputs[part] = np.stack(images)
            out = self.runner(inputs['com'], inputs.get('bgr'))
            for i, (frame, paths) in enumerate(chunk):
                pha, fgr = to_uint8(out['pha'][i]), to_uint8(out['fgr'][i])
                if self.save_dir:
                    write_image(os.path.join(self.save_dir, clip, 'pha', frame + '.png'), pha)
                    write_image(os.path.join(self.save_dir, clip, 'fgr', frame + '.png'), fgr)
                yield frame, paths, pha, fgr


class ClipFolder:
    """Reads `<pred-dir>/<clip>/pha/<frame>.*` and, if that folder exists, `<pred-dir>/<clip>/fgr/<frame>.*`."""
    inputs = ()         # no ground-truth file is needed beyond the alpha and foreground

    def __init__(self, pred_dir):
        self.pred_dir = pred_dir

    def __call__(self, clip, frames):
        preds = clip_frames(os.path.join(self.pred_dir, clip), ('pha',), ('fgr',), [frame for frame, _ in frames])
        for (frame, paths), (_, pred) in zip(frames, preds):
            yield frame, paths, read_alpha(pred['pha']), read_image(pred['fgr']) if 'fgr' in pred else None


# ---------------------------------------------------------------- scoring

def score_clip(clip, predictions, hr, thumbs_dir=None):
    """CSV rows of a clip's frames, in order: the evaluator's per-frame metrics, dtSSD against the previous
    frame (0 for the first). `predictions` yields (frame, ground-truth paths, pred alpha, pred fgr or None);
    thumbnails of the first frame go to `thumbs_dir` (the report's)."""
    previous = (None, None)
    for index, (frame, paths, pha, fgr) in enumerate(predictions):
        true_pha = read_alpha(paths['pha'])
        if index == 0 and thumbs_dir:
            shown = read_image(paths['com']) if 'com' in paths else np.repeat(true_pha[..., None], 3, axis=2)
            save_thumbnails(thumbs_dir, clip, shown, pha, true_pha)
        true_fgr = read_image(paths['fgr']) if fgr is not None and 'fgr' in paths else None
        try:
            alpha = video_matte_metrics(pha, true_pha, *previous, hr=hr)
            fg = {} if true_fgr is None else foreground_metrics(fgr, true_fgr, true_pha)
        except ValueError as e:             # sizes that do not fit: name the frame
            raise ValueError(f"{paths['pha']}: {e}") from None
        previous = (pha, true_pha)
        yield {'clip': clip, 'frame': frame, 'index': index, 'height': pha.shape[0], 'width': pha.shape[1],
               'MAD': alpha['MAD'], 'MSE': alpha['MSE'], 'Grad': alpha['Grad'], 'Conn': alpha.get('Conn', ''),
               'dtSSD': alpha.get('dtSSD', 0.0), 'FG_MSE': fg.get('MSE', ''), 'FG_MAD': fg.get('MAD', '')}


def official_means(rows):
    """The official evaluator's average of each column: over the clips at each frame position (one
    spreadsheet column per position), then over the positions. Absent/NaN values are left out and counted."""
    out = {}
    for column in VIDEO_COLUMNS:
        at = {}
        for r in rows:
            if present(r[column]):
                at.setdefault(r['index'], []).append(r[column])
        out[column] = {'mean': mean([mean(at[i]) for i in sorted(at)]), 'frames': sum(map(len, at.values()))}
    return out


def clip_means(clip, rows):
    """One clips.csv row: the plain mean of each column over the clip's frames."""
    row = {'clip': clip, 'frames': len(rows)}
    for column in VIDEO_COLUMNS:
        values = [v for v in (r[column] for r in rows) if present(v)]
        row[column] = '' if not values else mean(values)
    return row


def evaluate(cfg, settings, make_runner=None, plates=False):
    """Score every clip under cfg.data_dir not yet in <cfg.output_dir>/frames.csv; write the result files.
    `make_runner(frames)` gives the model's runner (None: score cfg.pred_dir); `plates`: give it the clips'
    bgr/ frames. -> (summary, console table, result file names)."""
    clips = find_clips(cfg.data_dir)
    if not clips:
        raise ValueError(f"{cfg.data_dir}: no clips (folders with pha/, laid out <clip>/{{com,fgr,pha,bgr}}/)")
    settings = start_output(cfg.output_dir, settings)
    csv_path = os.path.join(cfg.output_dir, 'frames.csv')
    done = {}
    for r in read_rows(csv_path, VIDEO_FIELDS):
        done.setdefault(r['clip'], []).append(r)
    todo = [(name, directory) for name, directory in clips if name not in done]
    lengths = {name: frame_count(directory) for name, directory in todo}
    if todo:        # a finished run only reprints its results: no model needed
        predict = ClipFolder(cfg.pred_dir) if cfg.pred_dir else ClipModel(
            make_runner(sum(lengths.values())), cfg.seq_chunk, plates,
            os.path.join(cfg.output_dir, 'pred') if cfg.save_pred else None)
    failed = []
    total = sum(lengths.values()) + sum(map(len, done.values()))
    with progress(total, total - sum(lengths.values()), 'frame') as bar:
        for name, directory in todo:
            rows = []
            try:
                frames = clip_frames(directory, ('pha',) + predict.inputs, optional=('fgr',))
                for row in score_clip(name, predict(name, frames), cfg.hr, cfg.output_dir):
                    rows.append(row)
                    bar.update()
            except ValueError as e:         # unreadable/missing file or mismatched sizes: count, go on
                failed.append(report_failure('clip', name, e))
                bar.update(lengths[name] - len(rows))
            else:
                done[name] = rows
                write_rows(csv_path, VIDEO_FIELDS, [r for n in sorted(done) for r in done[n]])  # resumes here
    ordered = [r for n in sorted(done) for r in done[n]]
    write_rows(csv_path, VIDEO_FIELDS, ordered)
    write_rows(os.path.join(cfg.output_dir, 'clips.csv'), CLIP_FIELDS, [clip_means(n, done[n]) for n in sorted(done)])
    evaluator = 'evaluate_hr.py (no min-max in Grad, no Conn)' if cfg.hr else 'evaluate_lr.py'
    summary = {'protocol': 'video', 'definitions': evaluator, 'clips': len(clips), 'scored': len(done),
               'failed': len(failed), 'frames': len(ordered), 'failures': failed, 'mean': official_means(ordered),
               'averaging': 'per metric: mean over clips at each frame position, then over positions (the official '
                            'evaluator\'s spreadsheet); NaN/absent values left out',
               'columns': VIDEO_COLUMNS, 'settings': settings}
    write_json(os.path.join(cfg.output_dir, 'summary.json'), summary)
    write_report(cfg.output_dir, summary, [clip_means(n, done[n]) for n in sorted(done)], VIDEO_COLUMNS, 'clip',
                 f'video protocol: {cfg.data_dir}')
    head = (f"{summary['scored']} of {summary['clips']} clips scored ({summary['failed']} failed), "
            f"{summary['frames']} frames; RVM {evaluator} metrics over whole frames, averaged over clips at each "
            f"frame position, then over positions")
    return summary, table(head, VIDEO_TABLE, summary['mean']), ['frames.csv', 'clips.csv', 'summary.json',
                                                                'report.html']
