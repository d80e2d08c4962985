"""eval.py's video protocol on a tiny composited clip layout (2 clips x 3 frames, 64x64, as the official
generators write it): RVM model mode with random weights, prediction mode against direct metric calls averaged
the official way and against the official evaluator's golden clip, the --hr definitions, determinism, resume,
bad files and the protocol choice."""
import csv
import json
import os
import shutil

import numpy as np
import paddle
import pytest

import eval as evaluation
import config
from dataset.clips import clip_frames
from conftest import build_model, report_rows
from evaluation.video import official_means
from utils.checkpoint import read_card
from utils.io import read_alpha, read_image, write_image
from utils.pairing import UnpairedError
from utils.metrics import foreground_metrics, video_matte_metrics

CLIPS, FRAMES, SIZE = ['motion/0001', 'static/0000'], ['0000', '0001', '0002'], 64
METRICS = ['MAD', 'MSE', 'Grad', 'Conn', 'dtSSD', 'FG_MSE', 'FG_MAD']


def blob(t, rng):
    """A soft ellipse that moves 3 px per frame."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    d = np.hypot((yy - 30 - rng.uniform(-2, 2)) / 20, (xx - 24 - 3 * t) / 14)
    return np.clip((1 - d) / 0.3, 0, 1).astype(np.float32)


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    """test/<clip>/{com,fgr,pha,bgr}/<frame>.png, and random RVM and MattingBase weights."""
    root = tmp_path_factory.mktemp('video')
    rng = np.random.default_rng(0)
    for clip in CLIPS:
        still = rng.uniform(0, 1, (SIZE, SIZE, 3)).astype(np.float32)
        for t, frame in enumerate(FRAMES):
            fgr = rng.uniform(0, 1, (SIZE, SIZE, 3)).astype(np.float32)
            pha = np.round(blob(t, rng) * 255) / 255
            bgr = still if clip.startswith('static') else rng.uniform(0, 1, (SIZE, SIZE, 3)).astype(np.float32)
            com = fgr * pha[..., None] + bgr * (1 - pha[..., None])
            for part, image in dict(com=com, fgr=fgr, pha=pha, bgr=bgr).items():
                write_image(str(root / 'test' / clip / part / f'{frame}.png'), image)
    paddle.seed(0)
    paddle.save(build_model('rvm', 'mobilenetv3').state_dict(), str(root / 'rvm.pdparams'))
    paddle.save(build_model('mattingbase', 'mobilenetv2').state_dict(), str(root / 'base.pdparams'))
    return root


def run(data, out, *extra, model='rvm'):
    argv = ['--data-dir', str(data / 'test'), '--output-dir', str(out), *extra]
    if '--pred-dir' not in extra:
        weights = {'rvm': 'rvm.pdparams', 'mattingbase': 'base.pdparams'}[model]
        argv += ['--model-type', model, '--model-checkpoint', str(data / weights), '--device', 'cpu']
    return evaluation.main(argv)


def frame_rows(out):
    with open(os.path.join(out, 'frames.csv'), newline='') as f:
        return list(csv.DictReader(f))


def table(capsys):
    return capsys.readouterr().out.split('results:')[0]          # the table, without the output paths


def summary_means(out):
    return {k: v['mean'] for k, v in json.loads((out / 'summary.json').read_text())['mean'].items()}


def test_rvm_model_mode_is_deterministic_resumable_and_matches_pred_mode(data, tmp_path, capsys):
    assert run(data, tmp_path / 'a', '--save-pred') == 0
    first = table(capsys)
    assert '2 of 2 clips scored (0 failed), 6 frames' in first and 'evaluate_lr.py' in first
    assert all(scale in first for scale in ('mean x1e3', 'sum/1e3', 'rms x1e2'))
    rows = frame_rows(tmp_path / 'a')
    assert [(r['clip'], r['frame'], r['index']) for r in rows] == \
        [(c, f, str(i)) for c in CLIPS for i, f in enumerate(FRAMES)]
    assert [float(r['dtSSD']) == 0 for r in rows] == [True, False, False] * 2     # 0 only on each first frame
    assert all(float(r[m]) > 0 for r in rows for m in ('MAD', 'MSE', 'Grad', 'Conn', 'FG_MSE', 'FG_MAD'))
    for clip in CLIPS:
        for part in ('pha', 'fgr'):
            assert sorted(os.listdir(tmp_path / 'a' / 'pred' / clip / part)) == [f + '.png' for f in FRAMES]
    csv_a = (tmp_path / 'a' / 'frames.csv').read_text()
    assert [(clip, thumbs) for clip, thumbs, _ in report_rows(tmp_path / 'a')] == [(c, 4) for c in CLIPS]

    # a second run from scratch prints the same numbers to the last digit
    assert run(data, tmp_path / 'b') == 0
    assert table(capsys) == first and (tmp_path / 'b' / 'frames.csv').read_text() == csv_a

    # the recurrent state carries across chunks (2 + 1 frames per call: same mattes; without the state the
    # later frames differ by ~5 %), and --downsample-ratio reaches the model (the default is 1 at 64x64)
    assert run(data, tmp_path / 'chunk', '--seq-chunk', '2') == 0
    for r, c in zip(rows, frame_rows(tmp_path / 'chunk')):
        for m in METRICS:
            assert float(c[m]) == pytest.approx(float(r[m]), rel=1e-3, abs=1e-3)
    assert run(data, tmp_path / 'half', '--downsample-ratio', '0.5') == 0
    assert [r['MAD'] for r in frame_rows(tmp_path / 'half')] != [r['MAD'] for r in rows]
    assert json.loads((tmp_path / 'half' / 'settings.json').read_text())['downsample_ratio'] == 0.5
    capsys.readouterr()

    # the saved predictions scored in --pred-dir mode give the same rows and table
    assert run(data, tmp_path / 'p', '--pred-dir', str(tmp_path / 'a' / 'pred')) == 0
    assert table(capsys) == first and (tmp_path / 'p' / 'frames.csv').read_text() == csv_a

    # resume: a scored clip is not read again (its composite is now corrupt), a dropped clip is re-scored
    lines = csv_a.splitlines(keepends=True)
    (tmp_path / 'a' / 'frames.csv').write_text(''.join(l for l in lines if not l.startswith(CLIPS[1])))
    com = data / 'test' / CLIPS[0] / 'com' / '0001.png'
    saved = com.read_bytes()
    try:
        com.write_bytes(b'not an image')
        assert run(data, tmp_path / 'a') == 0
    finally:
        com.write_bytes(saved)
    assert table(capsys) == first and (tmp_path / 'a' / 'frames.csv').read_text() == csv_a

    # other settings into the same folder are refused instead of mixed
    with pytest.raises(SystemExit, match='hr differ'):
        run(data, tmp_path / 'a', '--hr')


def write_predictions(data, pred_dir, perturb):
    for c, clip in enumerate(CLIPS):
        for t, frame in enumerate(FRAMES):
            pha = read_alpha(str(data / 'test' / clip / 'pha' / f'{frame}.png'))
            fgr = read_image(str(data / 'test' / clip / 'fgr' / f'{frame}.png'))
            if perturb:
                rng = np.random.default_rng([c, t])
                pha = np.clip(np.roll(pha, t - c, axis=1) + rng.normal(0, 0.03, pha.shape), 0, 1)
                fgr = np.clip(fgr + rng.normal(0, 0.05, fgr.shape), 0, 1)
            write_image(str(pred_dir / clip / 'pha' / f'{frame}.png'), pha)
            write_image(str(pred_dir / clip / 'fgr' / f'{frame}.png'), fgr)


def expected(data, pred_dir, hr):
    """Direct metric calls on the files, averaged by hand as the official spreadsheet: per frame position
    over the clips, then over the positions. -> (per-frame table [clip][frame] of dicts, means)."""
    table = []
    for clip in CLIPS:
        read = lambda root, part, frame, f=read_alpha: f(str(root / clip / part / f'{frame}.png'))
        rows, prev = [], (None, None)
        for frame in FRAMES:
            pred, true = read(pred_dir, 'pha', frame), read(data / 'test', 'pha', frame)
            m = video_matte_metrics(pred, true, *prev, hr=hr)
            m.setdefault('dtSSD', 0.0)
            fg = foreground_metrics(read(pred_dir, 'fgr', frame, read_image), read(data / 'test', 'fgr', frame,
                                                                                     read_image), true)
            rows.append({**m, 'FG_MSE': fg['MSE'], 'FG_MAD': fg['MAD']})
            prev = (pred, true)
        table.append(rows)
    means = {}
    for m in METRICS:
        if m in table[0][0]:
            per_position = [np.mean([table[c][t][m] for c in range(len(CLIPS))]) for t in range(len(FRAMES))]
            means[m] = np.mean(per_position)
    return table, means


@pytest.mark.parametrize('hr', [False, True])
def test_pred_mode_matches_direct_metric_calls_averaged_officially(data, tmp_path, capsys, hr):
    flags = ['--hr'] if hr else []
    write_predictions(data, tmp_path / 'truth', perturb=False)
    assert run(data, tmp_path / 'zero', '--pred-dir', str(tmp_path / 'truth'), *flags) == 0
    zero = summary_means(tmp_path / 'zero')
    assert zero == {m: (None if hr and m == 'Conn' else 0.0) for m in METRICS}
    capsys.readouterr()

    write_predictions(data, tmp_path / 'pred', perturb=True)
    assert run(data, tmp_path / 'out', '--pred-dir', str(tmp_path / 'pred'), *flags) == 0
    printed = table(capsys)
    assert ('evaluate_hr.py' in printed) == hr
    want_rows, want_means = expected(data, tmp_path / 'pred', hr)
    got_rows = frame_rows(tmp_path / 'out')
    for got, want in zip(got_rows, [r for rows in want_rows for r in rows]):
        assert got['Conn'] == '' if hr else float(got['Conn']) == pytest.approx(want['Conn'], rel=1e-12)
        for m, value in want.items():
            assert float(got[m]) == pytest.approx(value, rel=1e-12, abs=1e-15)
    got_means = summary_means(tmp_path / 'out')
    assert set(m for m in got_means if got_means[m] is not None) == set(want_means)
    for m, value in want_means.items():
        assert got_means[m] == pytest.approx(value, rel=1e-12)
        assert f'{value:.3f}' in printed
    with open(tmp_path / 'out' / 'clips.csv', newline='') as f:
        clips = list(csv.DictReader(f))
    assert [r['clip'] for r in clips] == CLIPS and [r['frames'] for r in clips] == ['3', '3']
    assert float(clips[0]['MAD']) == pytest.approx(np.mean([r['MAD'] for r in want_rows[0]]), rel=1e-12)


def test_official_average_is_over_positions_then_clips():
    """Clips of unequal length: the mean of the per-position means, not the grand mean; NaN left out."""
    rows = [{'index': i, **{m: '' for m in METRICS}, 'MAD': v, 'FG_MSE': f}
            for i, (v, f) in enumerate([(1.0, 1.0), (2.0, float('nan')), (3.0, 3.0)])]
    rows.append({'index': 0, **{m: '' for m in METRICS}, 'MAD': 5.0, 'FG_MSE': 5.0})
    means = official_means(rows)
    assert means['MAD'] == {'mean': pytest.approx((3 + 2 + 3) / 3), 'frames': 4}
    assert means['FG_MSE'] == {'mean': pytest.approx((3 + 3) / 2), 'frames': 3}
    assert means['Conn'] == {'mean': None, 'frames': 0}


def test_bad_files_fail_their_clip_only_and_are_named(data, tmp_path, capsys):
    write_predictions(data, tmp_path / 'pred', perturb=True)
    bad = tmp_path / 'pred' / CLIPS[0] / 'pha' / '0001.png'
    bad.write_bytes(b'\x89PNG truncated')
    shutil.rmtree(tmp_path / 'pred' / CLIPS[1] / 'fgr')               # no foreground predictions: FG empty
    assert run(data, tmp_path / 'out', '--pred-dir', str(tmp_path / 'pred')) == 1
    captured = capsys.readouterr()
    assert str(bad) in captured.err and '1 of 2 clips scored (1 failed), 3 frames' in captured.out
    summary = json.loads((tmp_path / 'out' / 'summary.json').read_text())
    assert [f['clip'] for f in summary['failures']] == [CLIPS[0]] and str(bad) in summary['failures'][0]['error']
    assert summary['mean']['FG_MSE'] == {'mean': None, 'frames': 0} and summary['mean']['MAD']['frames'] == 3
    assert [r['clip'] for r in frame_rows(tmp_path / 'out')] == [CLIPS[1]] * 3

    # a missing frame is named by its path
    os.remove(tmp_path / 'pred' / CLIPS[1] / 'pha' / '0002.png')
    with pytest.raises(UnpairedError, match=os.path.join(CLIPS[1]) + '.*0002 has no partner in pha'):
        clip_frames(str(tmp_path / 'pred' / CLIPS[1]), ('pha',), frames=FRAMES)


def test_bgmv2_model_gets_the_clip_backgrounds_as_plates(data, tmp_path, capsys):
    assert run(data, tmp_path / 'out', '--protocol', 'video', model='mattingbase') == 0
    assert '2 of 2 clips scored (0 failed), 6 frames' in capsys.readouterr().out
    settings = json.loads((tmp_path / 'out' / 'settings.json').read_text())
    assert (settings['protocol'], settings['model_type']) == ('video', 'mattingbase')


def test_protocol_choice_and_misplaced_options(data, tmp_path):
    with pytest.raises(SystemExit, match='video protocol needs --data-dir'):
        evaluation.main(['--model-type', 'rvm', '--model-checkpoint', str(data / 'rvm.pdparams'), '--output-dir',
                         str(tmp_path)])
    with pytest.raises(SystemExit, match='evaluated with the video protocol'):
        run(data, tmp_path, '--protocol', 'image')
    with pytest.raises(SystemExit, match='--resolution: not an option of the video protocol'):
        run(data, tmp_path, '--resolution', '32')
    def protocol(*argv):
        args = evaluation.parser().parse_args(list(argv))
        return config.resolve_eval(args, config.resolve_model(args, read_card, demo=False)).protocol
    assert protocol('--data-dir', str(data / 'test'), '--pred-dir', str(tmp_path)) == 'video'   # found com/ folders
    assert protocol('--data-dir', str(data / 'test' / CLIPS[0] / 'pha'), '--pred-dir', str(tmp_path)) == 'image'


@pytest.mark.parametrize('hr', [False, True])
def test_golden_clip_gives_the_official_evaluator_numbers(tmp_path, capsys, hr):
    """The 5-frame golden sequence of the official metric classes, written as a clip: eval.py's per-frame
    values and clip average are those of evaluate_lr.py / evaluate_hr.py (shared/golden/metrics)."""
    golden = np.load(os.path.join(os.path.dirname(__file__), 'data', 'metrics', 'rvm_metrics.npz'))
    with open(os.path.join(os.path.dirname(__file__), 'data', 'metrics', 'rvm_metrics.json')) as f:
        want = json.load(f)
    for t, (pred, true) in enumerate(zip(golden['seq_pred'], golden['seq_true'])):
        write_image(str(tmp_path / 'truth' / 'clip' / 'pha' / f'{t:04d}.png'), true)
        write_image(str(tmp_path / 'pred' / 'clip' / 'pha' / f'{t:04d}.png'), pred)
    argv = ['--protocol', 'video', '--data-dir', str(tmp_path / 'truth'), '--pred-dir', str(tmp_path / 'pred'),
            '--output-dir', str(tmp_path / 'out')] + (['--hr'] if hr else [])
    assert evaluation.main(argv) == 0
    capsys.readouterr()
    prefix = 'seq_hr_' if hr else 'seq_lr_'
    means, rows = summary_means(tmp_path / 'out'), frame_rows(tmp_path / 'out')
    for m in ['MAD', 'MSE', 'Grad', 'dtSSD'] + ([] if hr else ['Conn']):
        key = prefix + m.lower()
        np.testing.assert_allclose([float(r[m]) for r in rows], want[key], rtol=1e-5, atol=1e-6)
        assert means[m] == pytest.approx(want['seq_clip_average'][key], rel=1e-5)
