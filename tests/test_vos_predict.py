"""Video object segmentation end to end: the streaming propagation against the official core, the memory cap,
predict.py on a clip (palette masks, overlay, resume), eval.py's DAVIS protocol in model and prediction mode."""
import json
import os

import numpy as np
import paddle
import pytest

import eval as eval_tool
import predict
from inference.vos import ClipSegmenter
from model import STCN, InferenceCore
from model.vos import Propagator, pad_divide_by
from tools import make_synthetic_data
from utils.io import read_labels

paddle.seed(0)
NET = STCN()        # random weights: behaviour, not quality (parity is tests/test_vos.py)
NET.eval()


@pytest.fixture(scope='module')
def davis(tmp_path_factory):
    root = tmp_path_factory.mktemp('davis')
    make_synthetic_data.main(['--out', str(root), '--layout', 'davis', '--num-train', '1', '--num-valid', '2',
                              '--frames', '7', '--size', '64'])
    return root


@pytest.fixture(scope='module')
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp('w') / 'stcn.pdparams'
    paddle.save(NET.state_dict(), str(path))
    return str(path)


def clip(t=7, h=64, w=96, k=2):
    rng = np.random.default_rng(0)
    images = paddle.to_tensor(rng.standard_normal((1, t, 3, h, w)).astype(np.float32))
    masks = np.zeros((k, 1, h, w), np.float32)
    masks[0, 0, 8:30, 10:40], masks[1, 0, 30:60, 50:90] = 1, 1
    return images, paddle.to_tensor(masks)


def test_streaming_propagation_is_the_official_core():
    images, masks = clip()
    core = InferenceCore(NET, images, 2, top_k=4, mem_every=2)
    core.interact(masks, 0, images.shape[1])
    stream = Propagator(NET, 2, top_k=4, mem_every=2, max_memory_frames=64)
    with paddle.no_grad():
        probs = [stream.first(pad_divide_by(images[:, 0])[0], masks)]
        probs += [stream.next(pad_divide_by(images[:, t])[0]) for t in range(1, images.shape[1])]
    np.testing.assert_allclose(np.stack([p.numpy() for p in probs], axis=1), core.prob.numpy(), atol=1e-6)


def test_memory_cap_keeps_the_first_and_newest_frames():
    images, masks = clip(t=9)
    stream = Propagator(NET, 2, top_k=4, mem_every=1, max_memory_frames=3)
    with paddle.no_grad():
        first = stream.first(images[:, 0], masks)
        for t in range(1, 9):
            stream.next(images[:, t])
    bank = stream.mem_bank
    positions = bank.frame_positions
    assert bank.mem_k.shape[2] == 3 * positions and bank.mem_v.shape[2] == 3 * positions
    assert first.shape == [3, 1, 64, 96]


def test_segmenter_keeps_labels_and_size():
    first = np.zeros((50, 70), np.uint8)
    first[5:20, 5:30], first[25:45, 30:65] = 3, 7            # label values are kept, not renumbered
    segment = ClipSegmenter(NET, first, top_k=4, mem_every=5, size=32)
    frames = np.random.default_rng(1).random((3, 50, 70, 3), dtype=np.float32)
    out = [segment(f) for f in frames]
    assert all(o.shape == (50, 70) and o.dtype == np.uint8 and set(np.unique(o)) <= {0, 3, 7} for o in out)
    with pytest.raises(ValueError, match='no object'):
        ClipSegmenter(NET, np.zeros((4, 4), np.uint8), 4, 5)


def test_predict_writes_palette_masks_and_overlay_and_resumes(davis, weights, tmp_path, capsys):
    src = davis / 'JPEGImages' / '480p' / 'val000'
    mask = davis / 'Annotations' / '480p' / 'val000' / '00000.png'
    args = ['--model-type', 'stcn', '--model-checkpoint', weights, '--src', str(src), '--mask', str(mask),
            '--output-dir', str(tmp_path), '--top-k', '4', '--vos-resolution', '0']
    assert predict.main(args) == 0
    masks = sorted(os.listdir(tmp_path / 'val000' / 'masks'))
    assert masks == sorted(f.replace('.jpg', '.png') for f in os.listdir(src))
    assert (tmp_path / 'val000' / 'overlay.mp4').stat().st_size > 0
    first = read_labels(str(tmp_path / 'val000' / 'masks' / masks[0]))
    np.testing.assert_array_equal(first, read_labels(str(mask)))            # frame 0 is the given mask
    from PIL import Image
    with Image.open(tmp_path / 'val000' / 'masks' / masks[3]) as image:
        assert image.mode == 'P'
    assert predict.main(args + ['--resume']) == 0
    assert '1 already finished' in capsys.readouterr().out
    with pytest.raises(SystemExit, match='exists already'):
        predict.main(args)
    with pytest.raises(SystemExit, match='--mask is required'):
        predict.main(args[:6] + args[8:] + ['-y'])


def test_davis_protocol_scores_ground_truth_as_perfect_and_runs_a_model(davis, weights, tmp_path):
    gt_as_pred = davis / 'Annotations' / '480p'
    assert eval_tool.main(['--model-type', 'stcn', '--data-dir', str(davis), '--pred-dir', str(gt_as_pred),
                           '--output-dir', str(tmp_path / 'gt')]) == 0
    summary = json.loads((tmp_path / 'gt' / 'summary.json').read_text())
    assert summary['global']['J&F-Mean'] == 1.0 and summary['objects'] >= 2
    out = tmp_path / 'model'
    args = ['--model-type', 'stcn', '--model-checkpoint', weights, '--data-dir', str(davis), '--output-dir',
            str(out), '--top-k', '4', '--vos-resolution', '0']
    assert eval_tool.main(args) == 0
    for seq in ('val000', 'val001'):
        assert len(os.listdir(out / 'pred' / seq)) == 7
    first = json.loads((out / 'summary.json').read_text())['global']
    assert 0 <= first['J&F-Mean'] <= 1
    stamp = os.path.getmtime(out / 'pred' / 'val001' / '00003.png')
    assert eval_tool.main(args) == 0                        # resumed: nothing segmented again, same numbers
    assert os.path.getmtime(out / 'pred' / 'val001' / '00003.png') == stamp
    assert json.loads((out / 'summary.json').read_text())['global'] == first
    with pytest.raises(SystemExit, match='other settings'):
        eval_tool.main(args[:-1] + ['480'])


def test_exported_per_frame_graphs_equal_dygraph(weights, tmp_path):
    from inference.backends import create_backend
    from tools import export
    assert export.main(['--model-type', 'stcn', '--model-checkpoint', weights, '--output', str(tmp_path)]) == 0
    meta = json.loads((tmp_path / 'export.json').read_text())
    assert list(meta['graphs']) == ['encode_key', 'encode_value', 'decode']
    rng = np.random.default_rng(3)
    frame = rng.standard_normal((1, 3, 64, 96)).astype(np.float32)
    masks = (rng.random((2, 1, 64, 96)) > 0.5).astype(np.float32)
    graph = {name: create_backend('inference', export_dir=str(tmp_path / name)) for name in meta['graphs']}
    with paddle.no_grad():
        key = [t.numpy() for t in NET.encode_key(paddle.to_tensor(frame))]
        value = NET.encode_value(paddle.to_tensor(frame), paddle.to_tensor(key[2]), paddle.to_tensor(masks))
        readout = paddle.to_tensor(rng.standard_normal((2, 512, 4, 6)).astype(np.float32))
        prob = NET.decode(readout, *(paddle.to_tensor(key[i]) for i in (1, 3, 4)))
    for got, want in zip(graph['encode_key'](frame), key):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    others = masks[::-1].copy()                                   # two objects: each one's other is the other
    got, = graph['encode_value'](np.repeat(frame, 2, 0), np.repeat(key[2], 2, 0), masks, others)
    np.testing.assert_allclose(got, value.numpy()[:, :, 0], rtol=1e-4, atol=1e-4)
    got, = graph['decode'](readout.numpy(), key[1], key[3], key[4])
    np.testing.assert_allclose(got, prob.numpy(), rtol=1e-4, atol=1e-5)
