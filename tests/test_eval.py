"""eval.py end to end on a tiny synthetic PhotoMatte-layout folder: both modes, determinism, resume,
bad files, and the derived-trimap rule. The model is a random-init MattingRefine/MobileNetV2 (quality is not
the point); images are ~64 px and not multiples of 4."""
import csv
import json
import os

import cv2
import numpy as np
import paddle
import pytest

import eval as evaluation
from conftest import build_model, report_rows
from dataset.folders import pair_stem
from evaluation.images import derive_trimap
from utils.io import read_alpha_u8, write_image
from utils.metrics import dim_metrics

SIZES = [(66, 70), (64, 64), (70, 58)]


def soft_blob(h, w, rng):
    yy, xx = np.mgrid[0:h, 0:w]
    d = np.hypot((yy - h * rng.uniform(0.4, 0.6)) / h, (xx - w * rng.uniform(0.4, 0.6)) / w)
    return np.clip((0.3 - d) / 0.08, 0, 1).astype(np.float32)


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    """fgr/ (JPG, PNG, grayscale), pha/ (8- and 16-bit PNG), backgrounds of other sizes, a checkpoint."""
    root = tmp_path_factory.mktemp('eval')
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate(SIZES):
        fgr = rng.uniform(0, 1, (h, w, 3)).astype(np.float32)
        if i == 2:
            fgr = fgr.mean(axis=2)                                          # grayscale foreground file
        write_image(str(root / 'test' / 'fgr' / f'img{i}.{"jpg" if i == 0 else "png"}'), fgr)
        pha = soft_blob(h, w, rng)
        if i == 1:                                                          # 16-bit matte
            os.makedirs(root / 'test' / 'pha', exist_ok=True)
            cv2.imwrite(str(root / 'test' / 'pha' / f'img{i}.png'), np.rint(pha * 65535).astype(np.uint16))
        else:
            write_image(str(root / 'test' / 'pha' / f'img{i}.png'), pha)
    for j, (h, w) in enumerate([(50, 90), (120, 80)]):
        write_image(str(root / 'bgr' / f'b{j}.jpg'), rng.uniform(0, 1, (h, w, 3)))
    paddle.seed(0)
    paddle.save(build_model('mattingrefine', 'mobilenetv2').state_dict(), str(root / 'random.pdparams'))
    return root


def run(data, out, *extra):
    argv = ['--data-dir', str(data / 'test'), '--output-dir', str(out), *extra]
    if '--pred-dir' not in extra:
        argv += ['--bgr-dir', str(data / 'bgr'), '--model-checkpoint', str(data / 'random.pdparams'),
                 '--model-type', 'mattingrefine', '--model-backbone', 'mobilenetv2', '--device', 'cpu']
    return evaluation.main(argv)


def rows(out):
    with open(os.path.join(out, 'metrics.csv'), newline='') as f:
        return {r['name']: r for r in csv.DictReader(f)}


def table(capsys):
    return capsys.readouterr().out.split('results:')[0]          # the table, without the output paths


def test_model_mode_is_deterministic_resumable_and_matches_pred_mode(data, tmp_path, capsys):
    assert run(data, tmp_path / 'a', '--save-pred') == 0
    first = table(capsys)
    assert 'sum/1e3' in first and 'old repro x2' in first and '3 of 3 images scored (0 failed)' in first
    csv_a = (tmp_path / 'a' / 'metrics.csv').read_text()
    assert sorted(rows(tmp_path / 'a')) == ['img0', 'img1', 'img2']
    assert [(int(r['height']), int(r['width'])) for r in rows(tmp_path / 'a').values()] == SIZES
    assert sorted(os.listdir(tmp_path / 'a' / 'trimap')) == ['img0.png', 'img1.png', 'img2.png']

    # a second run from scratch: the same composites, predictions and numbers, to the last digit
    assert run(data, tmp_path / 'b') == 0
    assert table(capsys) == first
    assert (tmp_path / 'b' / 'metrics.csv').read_text() == csv_a

    # the saved predictions scored in --pred-dir mode give the same numbers
    assert run(data, tmp_path / 'p', '--pred-dir', str(tmp_path / 'a' / 'pred')) == 0
    assert table(capsys) == first
    assert rows(tmp_path / 'p') == rows(tmp_path / 'a')

    # resume: a scored image is not read again (its file is now corrupt), a dropped row is re-scored identically
    lines = csv_a.splitlines(keepends=True)
    (tmp_path / 'a' / 'metrics.csv').write_text(''.join(lines[:2] + lines[3:]))   # drop img1
    fgr0 = data / 'test' / 'fgr' / 'img0.jpg'
    saved = fgr0.read_bytes()
    try:
        fgr0.write_bytes(b'not an image')
        assert run(data, tmp_path / 'a') == 0
    finally:
        fgr0.write_bytes(saved)
    assert table(capsys) == first
    assert (tmp_path / 'a' / 'metrics.csv').read_text() == csv_a

    # the report: every image with its four thumbnails (img0's from the first run) and the CSV's numbers
    shown = report_rows(tmp_path / 'a')
    assert [(name, thumbs) for name, thumbs, _ in shown] == [('img0', 4), ('img1', 4), ('img2', 4)]
    for name, _, values in shown:
        assert values['SAD'] == pytest.approx(float(rows(tmp_path / 'a')[name]['SAD']), rel=1e-12)
    chart = cv2.imread(str(tmp_path / 'a' / 'report.png'))
    assert chart is not None and chart.shape[1] == 900 and chart.min() < 100     # drawn on

    # other settings into the same folder are refused instead of mixed
    with pytest.raises(SystemExit, match='seed differ'):
        run(data, tmp_path / 'a', '--seed', '1')


def test_pred_mode_reports_bad_files_and_uses_the_dataset_trimaps(data, tmp_path, capsys):
    test = tmp_path / 'test'
    os.makedirs(test)
    for sub in ('fgr', 'pha'):
        os.symlink(data / 'test' / sub, test / sub, target_is_directory=True)
    rng = np.random.default_rng(1)
    preds = tmp_path / 'preds'
    for i, (h, w) in enumerate(SIZES):
        trimap = np.where(rng.random((h, w)) < 0.5, 128, 255).astype(np.uint8)
        write_image(str(test / 'trimap' / f'img{i}.png'), trimap)
    write_image(str(preds / 'img0.png'), soft_blob(*SIZES[0], rng))
    (preds / 'img1.png').write_bytes(b'\x89PNG truncated')                 # unreadable; img2 is missing
    rc = evaluation.main(['--data-dir', str(test), '--pred-dir', str(preds), '--output-dir', str(tmp_path / 'out')])
    captured = capsys.readouterr()
    assert rc == 1
    assert 'img1.png' in captured.err and 'img2' in captured.err
    summary = json.loads((tmp_path / 'out' / 'summary.json').read_text())
    assert (summary['scored'], summary['failed']) == (1, 2)
    assert sorted(f['name'] for f in summary['failures']) == ['img1', 'img2']
    assert '1 of 3 images scored (2 failed)' in captured.out
    assert not (tmp_path / 'out' / 'trimap').exists()                     # the dataset's trimaps were used
    got = rows(tmp_path / 'out')['img0']
    want = dim_metrics(read_alpha_u8(str(preds / 'img0.png')), read_alpha_u8(str(data / 'test' / 'pha' / 'img0.png')),
                       read_alpha_u8(str(test / 'trimap' / 'img0.png')))
    for key, value in want.items():
        assert float(got[key]) == pytest.approx(value, rel=1e-12)
    assert float(got['old_SAD_x2']) == pytest.approx(2 * want['SAD'])
    assert got['FG_MSE'] == ''                                             # no fgr/ predictions given


def test_derived_trimap_is_the_l1_band_of_the_old_reproduction():
    alpha = np.zeros((30, 36), np.uint8)
    alpha[8:22, 10:27] = 255
    alpha[14, 17] = 100                                  # one soft pixel inside
    radius, (h, w) = 4, alpha.shape
    want = np.empty_like(alpha)
    for y in range(h):                                   # every pixel within L1 distance `radius`
        for x in range(w):
            ys, xs = np.mgrid[max(0, y - radius):y + radius + 1, max(0, x - radius):x + radius + 1]
            inside = (ys < h) & (xs < w) & (np.abs(ys - y) + np.abs(xs - x) <= radius)
            near = alpha[ys[inside], xs[inside]]
            want[y, x] = 255 if (near == 255).all() else 0 if (near == 0).all() else 128
    np.testing.assert_array_equal(derive_trimap(alpha, radius), want)
    assert pair_stem('/d', '/d/fgr/a/b.png') == 'a/b'
    assert pair_stem('/d', '/d/x/fg/b.jpg') == 'x/b' and pair_stem('/d', '/d/c.png') == 'c'


def test_difference_baseline_is_a_row_of_its_own_on_the_same_composites(data, tmp_path, capsys):
    from evaluation.baseline import THRESHOLDS
    out = tmp_path / 'out'
    assert run(data, out, '--baseline', 'difference') == 0
    printed = table(capsys)
    model_row = next(line for line in printed.splitlines() if line.startswith('mean'))
    diff_row = next(line for line in printed.splitlines() if line.startswith('diff t='))
    assert len(diff_row.split()) == len(model_row.split()) + 1            # 'diff', 't=...' and one value a column
    summary = json.load(open(out / 'summary.json'))
    assert summary['baseline']['threshold'] in THRESHOLDS
    baseline = rows(out / 'baseline_difference')
    assert sorted(baseline) == sorted(rows(out)) == ['img0', 'img1', 'img2']
    assert baseline['img0']['SAD'] != rows(out)['img0']['SAD']
    # a given t is used as it is, and the model's results are resumed, not redone
    assert run(data, tmp_path / 'fixed', '--baseline', 'difference', '--baseline-threshold', '0.1') == 0
    assert json.load(open(tmp_path / 'fixed' / 'baseline_difference' / 'settings.json'))['threshold'] == 0.1


def test_difference_matte_and_its_threshold_search():
    from evaluation.baseline import DifferenceMatte, ThresholdSearch
    h, w = 40, 60
    alpha = np.zeros((h, w), np.float32)
    alpha[10:30, 15:45] = 1
    bgr = np.full((h, w, 3), 0.2, np.float32)
    src = bgr.copy()
    src[..., 1] += 0.3 * alpha                                            # 0.3 apart in one channel inside
    out = DifferenceMatte(0.3)(src[None], bgr[None])
    assert out['pha'][0][15:25, 20:40].min() > 0.999 and out['pha'][0][:5].max() == 0   # inside and far outside
    assert np.array_equal(out['fgr'][0], src)
    search = ThresholdSearch()                       # a smooth ramp (which the blur keeps): the true t is 0.3
    ramp = np.broadcast_to(np.linspace(0, 1, w, dtype=np.float32), (h, w))
    search.add(bgr + 0.3 * ramp[..., None] * np.float32([0, 1, 0]), bgr, ramp)
    assert abs(np.log(search.best() / 0.3)) < np.log(1.25)            # the candidate next to it
    with pytest.raises(ValueError, match='> 0'):
        DifferenceMatte(0)


def test_baseline_and_plate_options_need_model_mode_composites(data, tmp_path):
    with pytest.raises(SystemExit, match='^error: --baseline: about the composites of model mode'):
        run(data, tmp_path / 'o', '--pred-dir', str(tmp_path), '--baseline', 'difference')
    with pytest.raises(SystemExit, match='^error: --augment none, --plate-shift: about the composites'):
        run(data, tmp_path / 'o', '--pred-dir', str(tmp_path), '--augment', 'none', '--plate-shift', '2')


def test_plate_options_give_the_composites_they_name(data, tmp_path, capsys):
    """--augment none: the exact background as the plate, so the difference matte recovers the alpha almost
    exactly where the photo differs; a shifted, noisy plate makes it worse; settings record the options."""
    sad = {}
    for name, extra in [('clean', ['--augment', 'none']),
                        ('shifted', ['--augment', 'none', '--plate-shift', '3', '--plate-noise', '0.05'])]:
        out = tmp_path / name
        assert run(data, out, '--baseline', 'difference', '--baseline-threshold', '0.02', *extra) == 0
        capsys.readouterr()
        sad[name] = np.mean([float(r['SAD']) for r in rows(out / 'baseline_difference').values()])
        settings = json.load(open(out / 'settings.json'))
        assert settings['augment'] == 'none' and settings['plate_shift'] == (3 if name == 'shifted' else 0)
    assert sad['shifted'] > 2 * sad['clean']
    with pytest.raises(SystemExit, match='other settings'):             # the folder holds the clean composites
        run(data, tmp_path / 'clean', '--augment', 'none', '--plate-shift', '1')
