"""The DAVIS protocol: semi-supervised video object segmentation scored as the DAVIS 2017 toolkit
(`davis2017-evaluation`, `evaluation_method.py --task semi-supervised`) scores it.

Ground truth: a DAVIS root (dataset/vos.py: `ImageSets/<year>/<split>.txt`, `Annotations/480p/<seq>/*.png`).
Predictions: `<pred-dir>/<seq>/<frame>.png`, indexed label PNGs of the same size and file names (the palette
does not matter, utils.io.write_labels writes the DAVIS one). For each sequence (utils/vos_metrics.py):
the objects are the labels of the first annotation, the first and the last frame are not scored (their
predictions are not even read), GT void (255) counts as background, and per object J (region IoU) and F
(boundary F-measure) are averaged over the frames, with recall (frames > 0.5) and decay. The global row is the
mean over all objects of all sequences, J&F-Mean = (J-Mean + F-Mean) / 2. DAVIS 2016 image sets
(`2016/val`) read annotations and predictions as binary masks (nonzero = the object).

Results (`write_davis_results`): the toolkit's `global_results-<split>.csv` and `per-sequence_results-<split>.csv`
(one row per object `<seq>_<k>`, at full precision), `sequences.csv` (per sequence: the mean over its
objects) and `summary.json`. Model mode (`evaluate` with a runner) first segments every sequence from its first
annotation into `<output-dir>/pred/<seq>/<frame>.png` (a sequence whose predictions are complete is not redone:
an interrupted run resumes), then scores that folder.
"""
import os

import numpy as np

from dataset.vos import DAVIS_RESOLUTION, davis_annotations, davis_frames, davis_image_set, davis_labels, \
    davis_sequences, is_davis_2016
from utils.io import read_image, read_labels, write_labels
from utils.vos_metrics import MEASURES, evaluate_sequence, summarize

from .results import progress as progress_bar
from .results import start_output, table, write_json, write_rows

OBJECT_FIELDS = ['Sequence', 'J-Mean', 'F-Mean', 'J-Recall', 'J-Decay', 'F-Recall', 'F-Decay']
SEQUENCE_FIELDS = ['sequence', 'objects', 'frames', 'J&F-Mean', 'J-Mean', 'F-Mean']
DAVIS_TABLE = [(name, 'objects', 3) for name in MEASURES]
COLUMNS = {
    'J': 'region similarity: |pred and gt| / |pred or gt| of one object in one frame (1 if both are empty)',
    'F': 'boundary accuracy: F-measure of the one-pixel boundaries matched within a disk of ceil(0.008 x image '
         'diagonal) pixels (8 at 480p); 1 if both boundaries are empty',
    'Mean': 'per object: the mean over the frames other than the first and the last',
    'Recall': 'per object: the fraction of those frames with a value > 0.5',
    'Decay': 'per object: mean of the first quarter of those frames minus the last quarter (toolkit bins)',
    'global': 'each measure: the mean over all objects of all sequences; J&F-Mean = (J-Mean + F-Mean) / 2',
}


def read_predictions(pred_dir, sequence, frames, shape, binary=False):
    """T x H x W uint8 labels of <pred_dir>/<sequence>/<frame>.png for `frames` (all T of the sequence); the
    first and the last frame are left 0, as the toolkit never reads them. shape: the annotations' (T, H, W)."""
    res = np.zeros(shape, np.uint8)
    for t, frame in enumerate(frames[1:-1], 1):
        path = os.path.join(pred_dir, sequence, frame + '.png')
        if not os.path.isfile(path):
            raise ValueError(f"{path}: prediction missing (sequence {sequence}, frame {frame})")
        labels = read_labels(path)
        if labels.shape != shape[1:]:
            raise ValueError(f"{path}: prediction is {labels.shape[1]}x{labels.shape[0]} but the annotation of "
                             f"{sequence} frame {frame} is {shape[2]}x{shape[1]}")
        res[t] = labels > 0 if binary else labels
    return res


def score_sequence(data_dir, pred_dir, sequence, resolution=DAVIS_RESOLUTION, binary=False):
    """(frame names, evaluate_sequence result) of one sequence; errors name the sequence."""
    frames, gt = davis_labels(data_dir, sequence, resolution, binary)
    if len(frames) < 3:
        raise ValueError(f"{os.path.join(data_dir, 'Annotations', resolution, sequence)}: {len(frames)} annotated "
                         f"frame(s); scoring needs 3 or more (the first and last are not scored; test-dev has "
                         f"only the first, it is scored by the challenge server)")
    res = read_predictions(pred_dir, sequence, frames, gt.shape, binary)
    try:
        return frames, evaluate_sequence(gt, res)
    except ValueError as e:
        raise ValueError(f"{os.path.join(pred_dir, sequence)}: {e}") from None


def score_davis(data_dir, pred_dir, image_set='2017/val', progress=True, resolution=DAVIS_RESOLUTION):
    """Score every sequence of `image_set` -> {'image_set', 'global': {measure: value} (MEASURES),
    'objects': [OBJECT_FIELDS rows, one per object], 'sequences': [SEQUENCE_FIELDS rows],
    'per_frame': {sequence: {'frames': scored frame names, 'J', 'F': objects x frames arrays}}}.
    A missing or mismatched file is a ValueError naming it (the toolkit stops too: a partial score would
    not be the dataset's)."""
    if not os.path.isdir(pred_dir):
        raise ValueError(f"{pred_dir}: prediction folder not found (laid out <pred-dir>/<sequence>/<frame>.png)")
    image_set = davis_image_set(image_set)
    sequences = davis_sequences(data_dir, image_set)
    binary = is_davis_2016(image_set)
    scored, objects, rows, per_frame = {}, [], [], {}
    bar = progress_bar(len(sequences), 0, 'sequence') if progress else None
    try:
        for sequence in sequences:
            frames, r = score_sequence(data_dir, pred_dir, sequence, resolution, binary)
            scored[sequence] = r
            per_frame[sequence] = {'frames': frames[1:-1], 'J': r['J'], 'F': r['F']}
            for k in range(len(r['J_M'])):
                objects.append({'Sequence': f'{sequence}_{k + 1}', 'J-Mean': r['J_M'][k], 'F-Mean': r['F_M'][k],
                                'J-Recall': r['J_R'][k], 'J-Decay': r['J_D'][k], 'F-Recall': r['F_R'][k],
                                'F-Decay': r['F_D'][k]})
            j, f = (float(np.mean(r[key])) if r[key] else float('nan') for key in ('J_M', 'F_M'))
            rows.append({'sequence': sequence, 'objects': len(r['J_M']), 'frames': len(frames) - 2,
                         'J&F-Mean': (j + f) / 2, 'J-Mean': j, 'F-Mean': f})
            if bar is not None:
                bar.update()
    finally:
        if bar is not None:
            bar.close()
    return {'image_set': image_set, 'global': summarize(scored), 'objects': objects, 'sequences': rows,
            'per_frame': per_frame}


def davis_table(results):
    """The console text: the global row (results.table) and one line per sequence."""
    g = results['global']
    head = (f"DAVIS {results['image_set']}: {len(results['sequences'])} sequences, {len(results['objects'])} "
            f"objects; semi-supervised, first and last frames not scored, means over all objects")
    lines = [table(head, DAVIS_TABLE, {name: {'mean': g[name]} for name in MEASURES}), '',
             f"{'sequence':<24}{'objects':>8}{'J&F':>8}{'J':>8}{'F':>8}"]
    lines += [f"{r['sequence']:<24}{r['objects']:>8}{r['J&F-Mean']:>8.3f}{r['J-Mean']:>8.3f}{r['F-Mean']:>8.3f}"
              for r in results['sequences']]
    return '\n'.join(lines)


def write_davis_results(output_dir, results, settings=None):
    """Write the result files into output_dir (module docstring) -> their names."""
    split = results['image_set'].split('/')[-1]
    names = [f'global_results-{split}.csv', f'per-sequence_results-{split}.csv', 'sequences.csv', 'summary.json']
    write_rows(os.path.join(output_dir, names[0]), list(MEASURES), [results['global']])
    write_rows(os.path.join(output_dir, names[1]), OBJECT_FIELDS, results['objects'])
    write_rows(os.path.join(output_dir, names[2]), SEQUENCE_FIELDS, results['sequences'])
    write_json(os.path.join(output_dir, names[3]), {
        'protocol': 'davis', 'image_set': results['image_set'], 'sequences': len(results['sequences']),
        'objects': len(results['objects']), 'global': results['global'], 'columns': COLUMNS,
        'settings': settings or {}})
    return names


def predict_sequences(data_dir, image_set, pred_dir, segmenter_for):
    """Segment every sequence of the image set from its first annotation into <pred_dir>/<seq>/<frame>.png;
    sequences with every prediction written already are skipped. `segmenter_for(first labels)` gives a callable
    frame (H x W x 3 RGB in [0, 1]) -> labels."""
    sequences = davis_sequences(data_dir, image_set)
    frames = {seq: davis_frames(data_dir, seq) for seq in sequences}        # [(name, jpg)]
    todo = [seq for seq in sequences
            if not all(os.path.isfile(os.path.join(pred_dir, seq, name + '.png')) for name, _ in frames[seq])]
    bar = progress_bar(sum(len(frames[s]) for s in sequences), sum(len(frames[s]) for s in sequences if s not in todo),
                       'frame')
    try:
        for seq in todo:
            first = read_labels(davis_annotations(data_dir, seq)[0][1])
            if is_davis_2016(image_set):
                first = (first > 0).astype(np.uint8)
            segment = segmenter_for(first)
            for name, path in frames[seq]:
                write_labels(os.path.join(pred_dir, seq, name + '.png'), segment(read_image(path)))
                bar.update()
    finally:
        bar.close()


def evaluate(cfg, settings, make_runner=None, plates=False):
    """eval.py's DAVIS protocol: segment the sequences with `make_runner(frames)` (a first-labels -> segmenter
    factory; None: score cfg.pred_dir), score them, write the result files -> (summary, console text, files)."""
    image_set = davis_image_set(cfg.image_set)
    settings = start_output(cfg.output_dir, settings)
    pred_dir = cfg.pred_dir
    if make_runner is not None:
        pred_dir = os.path.join(cfg.output_dir, 'pred')
        predict_sequences(cfg.data_dir, image_set, pred_dir, make_runner(None))
    results = score_davis(cfg.data_dir, pred_dir, image_set)
    files = write_davis_results(cfg.output_dir, results, settings)
    summary = {'protocol': 'davis', 'failed': 0, 'global': results['global']}
    return summary, davis_table(results), files
