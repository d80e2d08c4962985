"""The trimap protocol: IndexNet's evaluation on composited test images with their trimaps (Composition-1k
merged/ alpha/ trimaps/, AIM-500 original/ mask/ trimap/, or the MindSpore port's data.txt), the official
inference protocol, the Deep Image Matting metrics (MATLAB scaling) and, labelled py_*, the Python metrics the
official training script and the MindSpore port print. eval.py's docstring states the protocol."""
import os

from dataset.folders import trimap_triples
from utils.io import read_alpha_u8, read_image, read_trimap, to_uint8, write_image
from utils.metrics import dim_metrics, indexnet_python_metrics

from .images import IMAGE_COLUMNS, FolderPredictor
from .report import save_thumbnails, write_report
from .results import column_means, score_cases, start_output, table, write_json

COLUMNS = {**{k: IMAGE_COLUMNS[k] for k in ('SAD', 'MSE', 'Grad', 'Conn')},
           'py_SAD': 'IndexNet/MindSpore Python metric: pred and gt min-max stretched, sum over unknown pixels of '
                     '|pred - gt| / 1000 (MindSpore README: 21.51 on its own validation composites)',
           'py_MSE': 'the same stretch, mean over unknown pixels of (pred - gt)^2 (MindSpore: 0.0096)',
           'py_Grad': 'the same stretch, Gaussian derivative (sigma 1.4, 4-sigma kernel), sum / 10 (MindSpore: 13.43)',
           'py_Conn': 'the same stretch, connectivity as Conn (MindSpore: 20.43)'}
TABLE = [('SAD', 'sum/1e3', 3), ('MSE', 'mean', 6), ('Grad', 'sum/1e3', 3), ('Conn', 'sum/1e3', 3),
         ('py_SAD', 'python', 3), ('py_MSE', 'python', 6), ('py_Grad', 'python /10', 3), ('py_Conn', 'python', 3)]
FIELDS = ['name', 'height', 'width', 'unknown_pixels'] + list(COLUMNS)


def evaluate(cfg, settings, make_runner=None, plates=False):
    """Score every test image of cfg.data_dir not yet in <cfg.output_dir>/metrics.csv; write the result files.
    `make_runner(frames)` gives the model's runner (None: score cfg.pred_dir). -> (summary, table, file names)."""
    triples = {name: paths for name, *paths in trimap_triples(cfg.data_dir)}
    settings = start_output(cfg.output_dir, settings)

    def make_scorer(count):
        folder = FolderPredictor(cfg.pred_dir) if cfg.pred_dir else None
        runner = None if folder else make_runner(count)

        def score(index, name):
            image_path, alpha_path, trimap_path = triples[name]
            alpha = read_alpha_u8(alpha_path)
            trimap = read_trimap(trimap_path, alpha.shape)
            image = read_image(image_path)
            if folder:
                pred = folder(index, name, None, alpha)[0]
            else:
                if image.shape[:2] != alpha.shape:
                    raise ValueError(f"{image_path} is {image.shape[1]}x{image.shape[0]} but its alpha "
                                     f"{alpha_path} is {alpha.shape[1]}x{alpha.shape[0]}")
                pred = to_uint8(runner(image[None], trimap[None])['pha'][0])
                if cfg.save_pred:
                    write_image(os.path.join(cfg.output_dir, 'pred', 'pha', name + '.png'), pred)
            save_thumbnails(cfg.output_dir, name, image, pred, alpha)
            python = indexnet_python_metrics(pred, alpha, trimap)
            return {'name': name, 'height': alpha.shape[0], 'width': alpha.shape[1],
                    'unknown_pixels': int((trimap == 128).sum()), **dim_metrics(pred, alpha, trimap),
                    **{'py_' + k: v for k, v in python.items()}}
        return score

    ordered, failed = score_cases(cfg.output_dir, FIELDS, list(triples), make_scorer)
    summary = {'protocol': 'trimap', 'images': len(triples), 'scored': len(ordered), 'failed': len(failed),
               'failures': failed, 'mean': column_means(ordered, COLUMNS), 'columns': COLUMNS, 'settings': settings}
    write_json(os.path.join(cfg.output_dir, 'summary.json'), summary)
    write_report(cfg.output_dir, summary, ordered, COLUMNS, title=f'trimap protocol: {cfg.data_dir}')
    head = (f"{summary['scored']} of {summary['images']} images scored ({summary['failed']} failed); DIM metrics "
            f"over the trimap's unknown region; py_*: IndexNet's Python metrics (the MindSpore port's scale)")
    return summary, table(head, TABLE, summary['mean']), ['metrics.csv', 'summary.json', 'report.html']
