"""DAVIS J&F (utils/vos_metrics.py) against the official DAVIS 2017 toolkit's values (tests/data/vos, copied from
shared/golden/vos), a brute-force boundary F, behaviour at the edges (empty masks, void, too many result
objects); the label PNG I/O of utils/io.py, the dataset readers of dataset/vos.py and the DAVIS protocol of
evaluation/davis.py on a fake DAVIS root."""
import json
import math
import os

import numpy as np
import pytest

from conftest import DATA
from dataset import vos
from evaluation.davis import davis_table, score_davis, write_davis_results
from utils.io import DAVIS_PALETTE, ImageReadError, read_labels, write_image, write_labels
from utils.vos_metrics import (bound_radius, db_eval_boundary, db_eval_iou, db_statistics, disk, evaluate_sequence,
                               seg2bmap, summarize)

GOLDEN = os.path.join(DATA, 'vos')
with open(os.path.join(GOLDEN, 'davis_metrics.json')) as _f:
    G = json.load(_f)
NPZ = np.load(os.path.join(GOLDEN, 'davis_metrics.npz'))
ATOL = 1e-6
PAIRS = list(enumerate(G['pair_names']))


def _read_only(*arrays):
    out = [np.array(a) for a in arrays]
    for a in out:
        a.setflags(write=False)
    return out


def _void(i):
    return NPZ['pair_void'][i] if G['pair_has_void'][i] else None


# ---------------------------------------------------------------- golden values

@pytest.mark.parametrize('i,name', PAIRS)
def test_pair_j_and_f_match_toolkit(i, name):
    gt, pred = _read_only(NPZ['pair_gt'][i], NPZ['pair_pred'][i])
    void = _void(i)
    assert abs(db_eval_iou(gt, pred, void) - G['pair_J'][i]) <= ATOL
    assert abs(db_eval_boundary(gt, pred, void) - G['pair_F'][i]) <= ATOL
    assert abs(db_eval_boundary(gt, pred, void, bound_th=3) - G['pair_F_bound_th_3px'][i]) <= ATOL


def test_big_480p_pair_and_radii():
    assert bound_radius(NPZ['pair_gt'].shape) == G['bound_pix_0.008'] == 2
    assert bound_radius(NPZ['big_gt'].shape) == G['big_bound_pix'] == 8
    gt, pred = NPZ['big_gt'][0], NPZ['big_pred'][0]
    assert abs(db_eval_iou(gt, pred) - G['big_J'][0]) <= ATOL
    assert abs(db_eval_boundary(gt, pred) - G['big_F'][0]) <= ATOL
    np.testing.assert_allclose(db_eval_boundary(NPZ['big_gt'], NPZ['big_pred']), G['big_F'], rtol=0, atol=ATOL)


def test_stacks_give_one_value_per_frame():
    gt, pred = _read_only(NPZ['pair_gt'], NPZ['pair_pred'])
    j, f = db_eval_iou(gt, pred), db_eval_boundary(gt, pred)
    assert j.shape == f.shape == (12,)
    np.testing.assert_allclose(j, G['stack_J'], rtol=0, atol=ATOL)
    np.testing.assert_allclose(f, G['stack_F'], rtol=0, atol=ATOL)


@pytest.mark.parametrize('name', sorted(G['stats']))
def test_statistics_match_toolkit(name):
    case = G['stats'][name]
    np.testing.assert_allclose(db_statistics(np.array(case['values'])), [case['M'], case['R'], case['D']],
                               rtol=0, atol=ATOL)


def test_statistics_uint8_quirk():
    """Informational in the golden data: n > 256 wraps the decay bin edges, so D is NaN."""
    m, r, d = db_statistics(np.linspace(1, 0, 300))
    assert (m, r) == (G['stats_quirk_len300']['M'], G['stats_quirk_len300']['R']) and math.isnan(d)


def _golden_sequences():
    return {name: evaluate_sequence(*_read_only(NPZ[f'seq_{name}_gt'], NPZ[f'seq_{name}_res']))
            for name in G['sequences']['names']}


def test_sequences_per_frame_and_per_object():
    seq = G['sequences']
    results = _golden_sequences()
    for name, r in results.items():
        for measure in ('J', 'F'):
            np.testing.assert_allclose(r[measure], seq['per_frame'][name][measure], rtol=0, atol=ATOL)
            np.testing.assert_allclose(r[measure], NPZ[f'seq_{name}_{measure}_per_frame'], rtol=0, atol=ATOL)
    assert [f'{n}_{k + 1}' for n, r in results.items() for k in range(len(r['J_M']))] == seq['objects']
    for key in ('J_M', 'J_R', 'J_D', 'F_M', 'F_R', 'F_D'):
        np.testing.assert_allclose([v for r in results.values() for v in r[key]], seq[key], rtol=0, atol=ATOL,
                                   err_msg=key)


def test_global_row():
    got = summarize(_golden_sequences())
    assert list(got) == list(G['sequences']['global'])
    for key, value in G['sequences']['global'].items():
        assert abs(got[key] - value) <= ATOL, key


# ---------------------------------------------------------------- independent checks and behaviour

def _brute_f(gt, pred, r):
    """F with the boundary matching done pixel by pair: a boundary pixel matches if one of the other map lies
    within x^2 + y^2 <= r^2."""
    bg, bp = np.argwhere(seg2bmap(gt)), np.argwhere(seg2bmap(pred))
    if len(bg) == 0 or len(bp) == 0:
        p, rc = (1.0 if len(bp) == 0 else 0.0), (1.0 if len(bg) == 0 else 0.0)
    else:
        d2 = ((bp[:, None, :] - bg[None, :, :]) ** 2).sum(-1)
        p, rc = (d2 <= r * r).any(1).mean(), (d2 <= r * r).any(0).mean()
    return 0.0 if p + rc == 0 else 2 * p * rc / (p + rc)


@pytest.mark.parametrize('seed', range(6))
def test_boundary_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    h, w = rng.integers(8, 40, 2)
    gt = rng.random((h, w)) < rng.uniform(0.05, 0.6)
    pred = gt ^ (rng.random((h, w)) < 0.05)
    pred[:rng.integers(0, h)] = False                   # part of the object missed: boundaries far apart
    for th in (0.008, 2, 5):
        assert abs(db_eval_boundary(gt, pred, bound_th=th) - _brute_f(gt, pred, bound_radius(gt.shape, th))) < 1e-12


def test_disk_and_boundary_map():
    np.testing.assert_array_equal(disk(1), [[0, 1, 0], [1, 1, 1], [0, 1, 0]])
    assert disk(8).shape == (17, 17) and disk(8).sum() == 197 and disk(8).dtype == np.uint8
    assert not seg2bmap(np.ones((5, 7))).any()            # a full mask has no boundary
    m = np.zeros((5, 7), bool)
    m[1:3, 2:4] = True
    b = seg2bmap(m)
    expected = np.zeros((5, 7), bool)                     # outside on the top/left, inside on the bottom/right
    expected[0, 1:4] = expected[2, 1:4] = expected[1, 1] = expected[1, 3] = True
    np.testing.assert_array_equal(b, expected)
    edge = np.zeros((4, 4), bool)
    edge[2:, 2:] = True                                   # touches the bottom and right edges
    np.testing.assert_array_equal(np.argwhere(seg2bmap(edge)), [[1, 1], [1, 2], [1, 3], [2, 1], [3, 1]])


def test_empty_masks():
    empty, dot = np.zeros((30, 40), np.uint8), np.zeros((30, 40), np.uint8)
    dot[10, 10] = 1
    assert db_eval_iou(empty, empty) == 1.0 and db_eval_boundary(empty, empty) == 1.0
    assert db_eval_iou(dot, empty) == 0.0 and db_eval_boundary(dot, empty) == 0.0     # P = 1, R = 0
    assert db_eval_iou(empty, dot) == 0.0 and db_eval_boundary(empty, dot) == 0.0     # P = 0, R = 1
    np.testing.assert_array_equal(db_eval_iou(np.zeros((3, 4, 4)), np.zeros((3, 4, 4))), [1, 1, 1])


def test_void_pixels_are_ignored():
    gt = np.zeros((40, 50), bool)
    gt[10:30, 10:30] = True
    pred = gt.copy()
    pred[10:30, 30:40] = True                             # wrong only inside the void band
    void = np.zeros_like(gt)
    void[:, 30:45] = True
    assert db_eval_iou(gt, pred) < 1 and db_eval_boundary(gt, pred, bound_th=1) < 1
    assert db_eval_iou(gt, pred, void) == 1.0 and db_eval_boundary(gt, pred, void, bound_th=1) == 1.0
    with pytest.raises(ValueError, match='void_pixels'):
        db_eval_iou(gt, pred, void[:-1])


def _sequence(t=5, n=2):
    gt = np.zeros((t, 24, 32), np.uint8)
    for k in range(1, n + 1):
        gt[:, 4 * k:4 * k + 3, 5:20] = k
    return gt


def test_sequence_rules():
    gt = _sequence()
    res = gt.copy()
    res[0], res[-1] = 7, 9                               # first and last frames are never scored
    gt_void = gt.copy()
    gt_void[[0, 2], 20:, :] = 255                        # GT void counts as background, also for N
    out = evaluate_sequence(gt_void, res)
    assert out['J'].shape == out['F'].shape == (2, 3) and (out['J'] == 1).all() and out['J_M'] == [1.0, 1.0]
    res[2][res[2] == 2] = 0                              # object 2 missed in one frame; labels padded to N
    res[1:-1][res[1:-1] == 2] = 0
    out = evaluate_sequence(gt, res)
    assert out['J_M'][1] == 0 and out['F_M'][1] == 0 and out['J_M'][0] == 1
    assert len(out['J_M']) == len(out['F_D']) == 2


def test_more_result_objects_than_gt_is_an_error():
    gt, res = _sequence(n=2), _sequence(n=3)
    with pytest.raises(ValueError, match=r'label 3 \(first in frame 1\).*only 2 object'):
        evaluate_sequence(gt, res)
    with pytest.raises(ValueError, match='at least 3 frames'):
        evaluate_sequence(gt[:2], gt[:2])
    with pytest.raises(ValueError, match='one shape'):
        evaluate_sequence(gt, gt[:, :-1])


def test_evaluate_sequence_speed_480p():
    """Vectorised: a 480p frame with two objects in well under 0.1 s (about 15 ms on the project's CPU)."""
    import time
    gt = np.zeros((6, 480, 854), np.uint8)
    gt[:, 100:300, 200:500], gt[:, 320:400, 600:800] = 1, 2
    res = np.roll(gt, 6, axis=2)
    start = time.perf_counter()
    evaluate_sequence(gt, res)
    assert (time.perf_counter() - start) / 4 < 0.1


# ---------------------------------------------------------------- label PNGs

def test_palette_and_label_round_trip(tmp_path):
    assert DAVIS_PALETTE.shape == (256, 3)
    assert DAVIS_PALETTE[:5].tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0], [0, 0, 128]]
    assert DAVIS_PALETTE[255].tolist() == [224, 224, 192] and len({tuple(c) for c in DAVIS_PALETTE}) == 256
    labels = np.random.default_rng(0).integers(0, 8, (21, 33)).astype(np.uint8)
    labels[0, :3] = 255
    path = str(tmp_path / 'seq' / '00000.png')
    write_labels(path, labels)
    assert os.listdir(tmp_path / 'seq') == ['00000.png']          # atomic: no temporary left
    from PIL import Image
    with Image.open(path) as image:
        assert image.mode == 'P' and image.getpalette()[:12] == [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0]
        image.convert('RGB').save(tmp_path / 'rgb.png')
    np.testing.assert_array_equal(read_labels(path), labels)
    np.testing.assert_array_equal(read_labels(str(tmp_path / 'rgb.png')), labels)   # colours -> indices
    write_image(str(tmp_path / 'gray.png'), (labels > 0).astype(np.uint8) * 255)
    np.testing.assert_array_equal(read_labels(str(tmp_path / 'gray.png')), (labels > 0) * 255)
    with pytest.raises(ImageReadError, match='missing.png'):
        read_labels(str(tmp_path / 'missing.png'))
    with pytest.raises(ValueError, match='0..255'):
        write_labels(str(tmp_path / 'bad.png'), labels.astype(np.int32) + 250)


def test_rgb_colour_outside_palette_is_an_error(tmp_path):
    rgb = np.zeros((4, 4, 3), np.float32)
    rgb[1, 1] = (0.2, 0.5, 0.1)
    write_image(str(tmp_path / 'c.png'), rgb)
    with pytest.raises(ImageReadError, match=r'c\.png: colour RGB .* not in the label palette'):
        read_labels(str(tmp_path / 'c.png'))


# ---------------------------------------------------------------- dataset readers and the DAVIS protocol

def _fake_davis(root, sequences, image_set='2017/val'):
    """A DAVIS root: JPEGImages/480p, Annotations/480p (palette PNGs) and ImageSets/<image_set>.txt."""
    for name, gt in sequences.items():
        for t, labels in enumerate(gt):
            write_labels(os.path.join(root, 'Annotations', '480p', name, f'{t:05d}.png'), labels)
            write_image(os.path.join(root, 'JPEGImages', '480p', name, f'{t:05d}.jpg'),
                        np.repeat((labels[..., None] * 40).astype(np.uint8), 3, axis=2))
    os.makedirs(os.path.join(root, 'ImageSets', image_set.split('/')[0]), exist_ok=True)
    with open(os.path.join(root, 'ImageSets', image_set + '.txt'), 'w') as f:
        f.write(''.join(name + '\n' for name in sequences))


def _write_predictions(pred_dir, sequences):
    for name, res in sequences.items():
        for t, labels in enumerate(res):
            write_labels(os.path.join(pred_dir, name, f'{t:05d}.png'), labels)


def test_davis_protocol_reproduces_golden_global_row(tmp_path):
    names = G['sequences']['names']
    root, pred = str(tmp_path / 'davis'), str(tmp_path / 'pred')
    _fake_davis(root, {n: NPZ[f'seq_{n}_gt'] for n in names})
    _write_predictions(pred, {n: NPZ[f'seq_{n}_res'] for n in names})
    for n in names:                                   # the first and last predictions are never read
        os.remove(os.path.join(pred, n, '00000.png'))
    assert vos.davis_sequences(root) == names and vos.davis_sequences(root, 'val') == names
    assert [f for f, _ in vos.davis_frames(root, 'seqa')] == [f'{t:05d}' for t in range(10)]
    results = score_davis(root, pred, progress=False)
    for key, value in G['sequences']['global'].items():
        assert abs(results['global'][key] - value) <= ATOL, key
    assert [r['Sequence'] for r in results['objects']] == G['sequences']['objects']
    np.testing.assert_allclose([r['J-Mean'] for r in results['objects']], G['sequences']['J_M'], atol=ATOL)
    np.testing.assert_allclose(results['per_frame']['seqb']['F'], NPZ['seq_seqb_F_per_frame'], atol=ATOL)
    assert results['per_frame']['seqb']['frames'] == [f'{t:05d}' for t in range(1, 6)]
    assert [r['sequence'] for r in results['sequences']] == names
    text = davis_table(results)
    assert 'J&F-Mean' in text and f"{G['sequences']['global']['J&F-Mean']:.3f}" in text
    files = write_davis_results(str(tmp_path / 'out'), results)
    assert sorted(os.listdir(tmp_path / 'out')) == sorted(files)
    with open(tmp_path / 'out' / 'global_results-val.csv') as f:
        header, row = f.read().split()
    assert header.split(',')[0] == 'J&F-Mean' and abs(float(row.split(',')[0]) - results['global']['J&F-Mean']) < 1e-12


def test_davis_protocol_errors(tmp_path):
    root, pred = str(tmp_path / 'davis'), str(tmp_path / 'pred')
    gt = _sequence(t=4, n=2)
    _fake_davis(root, {'bear': gt})
    _write_predictions(pred, {'bear': gt})
    os.remove(os.path.join(pred, 'bear', '00002.png'))
    with pytest.raises(ValueError, match=r'00002\.png: prediction missing \(sequence bear, frame 00002\)'):
        score_davis(root, pred, progress=False)
    _write_predictions(pred, {'bear': _sequence(t=4, n=3)})
    with pytest.raises(ValueError, match=r'bear: the result holds object label 3'):
        score_davis(root, pred, progress=False)
    with pytest.raises(ValueError, match=r'ImageSets.2017.test-dev\.txt: image set not found.*found 2017/val'):
        score_davis(root, pred, 'test-dev', progress=False)
    with pytest.raises(ValueError, match=r'nothere: DAVIS nothere frames folder not found'):
        vos.davis_frames(root, 'nothere')


def test_davis_2016_masks_are_binary(tmp_path):
    root, pred = str(tmp_path / 'davis'), str(tmp_path / 'pred')
    gt = (_sequence(t=4, n=1) > 0).astype(np.uint8) * 255            # DAVIS 2016 masks: 0/255
    _fake_davis(root, {'cows': gt}, image_set='2016/val')
    _write_predictions(pred, {'cows': gt})
    results = score_davis(root, pred, '2016/val', progress=False)
    assert results['global']['J&F-Mean'] == 1.0 and len(results['objects']) == 1


def test_youtube_vos_layout(tmp_path):
    root = str(tmp_path)
    labels = np.zeros((3, 6, 8), np.uint8)
    labels[0, 1:3, 1:3] = 1
    labels[1, 1:3, 1:3], labels[1, 4:, 5:] = 1, 2                  # object 2 first appears in the second frame
    for t, frame in enumerate(['00000', '00005', '00010']):
        write_image(os.path.join(root, 'valid', 'JPEGImages', 'v1', frame + '.jpg'), np.zeros((6, 8, 3)))
        write_image(os.path.join(root, 'valid_all_frames', 'JPEGImages', 'v1', f'{t:05d}.jpg'), np.zeros((6, 8, 3)))
        if t < 2:
            write_labels(os.path.join(root, 'valid', 'Annotations', 'v1', frame + '.png'), labels[t])
    assert vos.youtube_videos(root) == ['v1']                        # no meta.json: the JPEGImages folders
    assert vos.youtube_first_frames(root, 'valid', 'v1') == {1: '00000', 2: '00005'}
    meta = {'videos': {'v1': {'objects': {'1': {'category': 'cat', 'frames': ['00000', '00005']},
                                          '2': {'category': 'dog', 'frames': ['00005', '00010']}}}}}
    with open(os.path.join(root, 'valid', 'meta.json'), 'w') as f:
        json.dump(meta, f)
    assert vos.youtube_meta(root)['v1'][2] == {'category': 'dog', 'frames': ['00005', '00010']}
    assert vos.youtube_first_frames(root, 'valid', 'v1') == {1: '00000', 2: '00005'}
    assert [f for f, _ in vos.youtube_frames(root, 'valid', 'v1')] == ['00000', '00005', '00010']
    assert len(vos.youtube_frames(root, 'valid', 'v1', all_frames=True)) == 3
    with pytest.raises(ValueError, match=r'train: YouTube-VOS train folder not found'):
        vos.youtube_videos(root, 'train')
    with open(os.path.join(root, 'valid', 'meta.json'), 'w') as f:
        f.write('{"videos": [')
    with pytest.raises(ValueError, match=r'meta\.json: not a readable JSON file'):
        vos.youtube_meta(root)
