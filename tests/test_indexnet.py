"""IndexNet Matting: parity with the official network (seeded weights, through the converter from the official
checkpoint wrapping), the inference protocol, the loss, backends, trimap input checks, training samples."""
import collections
import os
import subprocess
import sys

import cv2
import numpy as np
import paddle
import pytest

import eval as evaluation
import predict
from conftest import DATA, ROOT, report_rows
from dataset.trimap import TrimapCollate, TrimapDataset, composite, crop_origin
from families.indexnet import IndexNetRunner
from inference.backends import DygraphBackend, create_backend
from model import IndexNetMatting
from seeded import load_entries, make_weights
from torch_writer import save_torch_legacy
from utils.losses import indexnet_loss
from utils.metrics import dim_metrics
from utils.trimap import trimap_from_alpha

GOLDEN_DIR = os.path.join(DATA, 'indexnet')
KEYS = os.path.join(GOLDEN_DIR, 'indexnet_m2o_dw_nl_ctx_keys.json')
GOLDEN = np.load(os.path.join(GOLDEN_DIR, 'indexnet_m2o_dw_nl_ctx_golden.npz'))


def count(network):
    return sum(int(p.size) for p in network.parameters() if p.trainable)


@pytest.mark.parametrize('options, params', [
    ({}, 5_953_515), ({'index_mode': 'o2o'}, 3_776_971), ({'index_mode': 'holistic'}, 4_791_243),
    ({'use_nonlinear': False, 'use_context': False}, 4_270_379),
    ({'index_mode': 'holistic', 'use_nonlinear': False, 'use_context': False}, 3_758_251)])
def test_parameter_counts_of_the_official_configurations(options, params):
    """spec/indexnet.md 1.6, counted on the official code."""
    assert count(IndexNetMatting(**options)) == params


@pytest.fixture(scope='module')
def official(tmp_path_factory):
    """The seeded weights saved as the official indexnet_matting.pth.tar is (legacy torch.save of a dict with
    'state_dict', keys behind DDP's 'module.'), converted by tools/convert_weights.py; the same with pred.1
    negated for the protocol case. -> {name: .pdparams path}."""
    weights = make_weights(load_entries(KEYS))
    folder = tmp_path_factory.mktemp('indexnet')
    out = {}
    for name, flip in (('seeded', 1), ('protocol', -1)):
        sd = collections.OrderedDict()
        for key, value in weights.items():
            sd['module.' + key] = value * flip if key == 'pred.1.weight' else value
            if key.endswith('running_var'):
                sd['module.' + key[:-len('running_var')] + 'num_batches_tracked'] = np.array(0, np.int64)
        src, dst = str(folder / f'{name}.pth.tar'), str(folder / f'{name}.pdparams')
        save_torch_legacy({'epoch': 30, 'best_pred': 0.1, 'state_dict': sd}, src)
        result = subprocess.run([sys.executable, os.path.join(ROOT, 'tools', 'convert_weights.py'), src, dst],
                                capture_output=True, text=True, cwd=ROOT)
        assert result.returncode == 0 and 'indexnet / mobilenetv2' in result.stdout, result.stderr
        assert '5,953,515' in result.stdout
        out[name] = dst
    return out


def assert_close(actual, expected, name):
    """The golden README's criterion: |d| <= 5e-5 * max(1, max|ref|) + 1e-4 |ref| element-wise."""
    assert actual.shape == expected.shape, name
    d = np.abs(actual.astype(np.float64) - expected)
    tol = 5e-5 * max(1.0, float(np.abs(expected).max())) + 1e-4 * np.abs(expected)
    assert (d <= tol).all(), (name, float(d.max()))


def test_network_matches_the_official_one_module_by_module(official):
    network = IndexNetMatting()
    network.set_state_dict(paddle.load(official['seeded']))
    network.eval()
    caught = {}

    def keep(name):
        return lambda layer, inputs, out: caught.__setitem__(name, out)
    hooks = [getattr(network, n).register_forward_post_hook(keep(n)) for n in
             ['layer0'] + [f'layer{i}' for i in range(1, 8)] + ['dconv_pp'] +
             [f'decoder_layer{i}' for i in range(7)] + [f'index{i}' for i in (0, 2, 3, 4, 6)]]
    with paddle.no_grad():
        output = network(paddle.to_tensor(GOLDEN['input'])).numpy()
    for hook in hooks:
        hook.remove()
    assert_close(output, GOLDEN['output'], 'output')
    for name in [f'layer{i}' for i in range(1, 8)] + ['dconv_pp'] + [f'decoder_layer{i}' for i in range(1, 7)]:
        assert_close(caught[name].numpy(), GOLDEN[name], name)
    for i in (2, 3, 4, 6):
        for part, tensor in zip(('en', 'de'), caught[f'index{i}']):
            assert_close(tensor.numpy(), GOLDEN[f'index{i}_{part}'], f'index{i}_{part}')
    full = {'layer0': caught['layer0'], 'index0_en': caught['index0'][0], 'index0_de': caught['index0'][1],
            'decoder_layer0': caught['decoder_layer0']}
    for name, tensor in full.items():              # stored partly at full resolution
        t = tensor.numpy()
        assert_close(t[:, :4], GOLDEN[f'{name}_c0to3'], name)
        np.testing.assert_allclose(t.mean(axis=(0, 2, 3)), GOLDEN[f'{name}_chan_mean'], rtol=1e-3, atol=1e-5)
        np.testing.assert_allclose(np.abs(t).mean(axis=(0, 2, 3)), GOLDEN[f'{name}_chan_absmean'], rtol=1e-3,
                                   atol=1e-5)


def test_predict_follows_the_official_inference_protocol(official, tmp_path):
    case = np.load(os.path.join(GOLDEN_DIR, 'protocol_shared.npz'))
    cv2.imwrite(str(tmp_path / 'photo.png'), case['image_uint8'][..., ::-1])
    cv2.imwrite(str(tmp_path / 'photo_trimap.png'), case['trimap_uint8'])
    assert predict.main(['--model-type', 'indexnet', '--model-checkpoint', official['protocol'], '--src',
                         str(tmp_path / 'photo.png'), '--trimap', str(tmp_path / 'photo_trimap.png'),
                         '--output-dir', str(tmp_path / 'out')]) == 0
    alpha = cv2.imread(str(tmp_path / 'out' / 'pha' / 'photo.png'), cv2.IMREAD_UNCHANGED).astype(int)
    diff = np.abs(alpha - case['alpha_uint8'])
    assert diff.max() <= 1 and (diff > 0).mean() <= 0.005
    known = case['trimap_uint8'] != 128
    assert np.array_equal(alpha[known], case['trimap_uint8'][known])
    com = cv2.imread(str(tmp_path / 'out' / 'com' / 'photo.png'), cv2.IMREAD_UNCHANGED)
    assert com.shape == (187, 245, 4) and np.array_equal(com[..., 3], alpha.astype(np.uint8))


def test_runner_batches_any_size_and_the_exported_backends_agree(official, tmp_path):
    network = IndexNetMatting()
    network.set_state_dict(paddle.load(official['protocol']))
    network.eval()
    rng = np.random.default_rng(0)
    images = rng.random((2, 70, 100, 3), dtype=np.float32)
    trimaps = np.choose(rng.integers(0, 3, (2, 70, 100)), [0, 128, 255]).astype(np.uint8)
    runner = IndexNetRunner(DygraphBackend(network), ('pha', 'fgr'))
    batch = runner(images, trimaps)
    assert batch['pha'].shape == (2, 70, 100) and batch['fgr'].shape == (2, 70, 100, 3)
    for i in range(2):
        np.testing.assert_allclose(runner(images[i:i + 1], trimaps[i:i + 1])['pha'][0], batch['pha'][i], atol=1 / 255)
    inputs = runner.prepare(images, trimaps)
    assert inputs.shape == (2, 4, 96, 128)                          # resized, not padded, to multiples of 32
    expected = DygraphBackend(network)(inputs)[0]
    from families.indexnet import INPUT_SPEC
    from inference.backends import has_pir
    # Paddle Inference on the legacy graph (oneDNN) and on PIR; ONNX Runtime (converted from the PIR graph)
    for name, fmt in [('inference', 'pdmodel')] + ([('inference', 'json'), ('onnxruntime', 'json')] if has_pir()
                                                    else [('onnxruntime', 'pdmodel')]):
        if name == 'onnxruntime':
            pytest.importorskip('onnxruntime')
            pytest.importorskip('paddle2onnx')
        backend = create_backend(name, network, spec=INPUT_SPEC, fmt=fmt)
        np.testing.assert_allclose(backend(inputs)[0], expected, atol=1e-4, err_msg=f'{name} {fmt}')


def test_trimaps_are_checked(official, tmp_path, capsys):
    cv2.imwrite(str(tmp_path / 'a.png'), np.full((40, 60, 3), 128, np.uint8))
    cv2.imwrite(str(tmp_path / 'small.png'), np.full((30, 60), 128, np.uint8))
    blurry = np.full((40, 60), 128, np.uint8)
    blurry[:5] = 200
    cv2.imwrite(str(tmp_path / 'blurry.png'), blurry)
    common = ['--model-type', 'indexnet', '--model-checkpoint', official['seeded'], '--src', str(tmp_path / 'a.png'),
              '--output-dir', str(tmp_path / 'out')]
    with pytest.raises(SystemExit, match='--trimap is required with --src: IndexNet Matting needs a trimap'):
        predict.main(common)
    with pytest.raises(SystemExit, match='takes no --bgr'):
        predict.main(common + ['--bgr', str(tmp_path / 'a.png')])
    assert predict.main(common + ['--trimap', str(tmp_path / 'small.png')]) == 1
    assert predict.main(common + ['--trimap', str(tmp_path / 'blurry.png')]) == 1
    err = capsys.readouterr().err
    assert 'small.png: trimap is 60x30 but its image is 60x40' in err
    assert 'blurry.png: a trimap holds only 0, 128 and 255; 300 pixels hold other values (200' in err


def test_loss_matches_the_official_weighted_loss():
    case = np.load(os.path.join(GOLDEN_DIR, 'loss_shared.npz'))
    for wl, suffix in ((0.5, ''), (0.25, '_wl025')):
        inputs = {k: paddle.to_tensor(case[k]) for k in ('pred', 'alpha', 'fg', 'bg', 'merged', 'mask')}
        inputs['pred'].stop_gradient = False
        total, alpha_term, comp_term = indexnet_loss(**inputs, wl=wl, eps=float(case['eps']))
        total.backward()
        for name, value in (('total', total), ('alpha_term', alpha_term), ('comp_term', comp_term)):
            assert float(value) == pytest.approx(float(case[name + suffix]), rel=1e-4), name + suffix
        grad, ref = inputs['pred'].grad.numpy(), case['grad_pred' + suffix]
        assert np.abs(grad - ref).max() <= 1e-4 * np.abs(ref).max()


def test_training_trimaps_composites_and_crops():
    alpha = np.zeros((40, 50), np.uint8)
    alpha[10:30, 10:30] = 255
    alpha[10:30, 29] = 128                                      # a one-pixel fractional edge
    for k in (1, 5):
        trimap = trimap_from_alpha(alpha, k)
        ys, xs = np.nonzero(trimap == 128)
        assert set(np.unique(trimap)) == {0, 128, 255}
        assert xs.min() == 29 - k and xs.max() == 29 + k         # Euclidean band of k pixels around the edge
        assert np.all(trimap[alpha == 0][np.abs(np.nonzero(alpha == 0)[1] - 29) > k] == 0)
    fgr = np.full((40, 50, 3), 1.0, np.float32)
    bgr = np.random.default_rng(0).random((20, 30, 3), dtype=np.float32)      # smaller: upscaled, cropped
    merged, fitted = composite(fgr, alpha / np.float32(255), bgr)
    assert fitted.shape == (40, 50, 3) and np.array_equal(merged * 255, np.floor(merged * 255 + 1e-3))
    large = np.random.default_rng(1).random((80, 90, 3), dtype=np.float32)
    assert np.array_equal(composite(fgr, alpha / np.float32(255), large)[1], large[:40, :50])   # top left
    rng = np.random.default_rng(0)
    top, left = crop_origin(trimap_from_alpha(alpha, 1), 16, rng)
    window = trimap_from_alpha(alpha, 1)[top:top + 16, left:left + 16]
    assert window[8, 8] == 128 and 0 <= top <= 24 and 0 <= left <= 34


def test_trimap_samples_are_deterministic_and_sized(tmp_path):
    pairs = [(os.path.join(ROOT, 'dataset', 'demo', 'train', 'fgr', f'GT0{i}.jpg'),
              os.path.join(ROOT, 'dataset', 'demo', 'train', 'pha', f'GT0{i}.png'), None) for i in (1, 2)]
    backgrounds = [os.path.join(ROOT, 'dataset', 'demo', 'backgrounds', 'train', 'kodim01.jpg')]
    ds = TrimapDataset(64, True, 3, pairs, backgrounds)
    a, b = ds[(1, 0)], ds[(1, 0)]
    assert all(np.array_equal(x, y) for x, y in zip(a[1:6], b[1:6]))
    assert not np.array_equal(a.alpha, ds[(2, 0)].alpha)
    x, alpha, fgr, bgr, merged, mask = TrimapCollate()([a, ds[(1, 1)]])
    assert x.shape == (2, 4, 64, 64) and mask.shape == alpha.shape == (2, 1, 64, 64) and mask.max() == 1
    np.testing.assert_allclose(x[:, 3], np.stack([a.trimap, ds[(1, 1)].trimap]) / 255, atol=1e-6)


def test_loss_falls_when_the_task_trains_on_one_batch():
    import config
    import train
    from training.loader import load_batch
    from utils.checkpoint import read_card
    args = train.parser().parse_args(['--model-type', 'indexnet', '--dataset-name', 'demo', '--background-name',
                                      'demo_backgrounds', '--resolution', '64', '--batch-size', '2'])
    model = config.resolve_model(args, read_card, demo=False)
    data, run, options = config.resolve_train(args, model)
    task = model.spec.trainer('indexnet')
    train_set, sampler, collate, valid, _ = task.datasets(data, run, options, 0, 1)
    batch = [paddle.to_tensor(a) for a in load_batch(train_set, collate, next(iter(sampler)))[0]]
    paddle.seed(0)
    network = model.spec.build(model)
    task.train_mode(network, False, options)
    optimizer = task.optimizer(network, options)
    task.start_epoch(optimizer, options, 0)
    assert optimizer.get_lr() == 0.01
    losses = []
    for _ in range(8):
        loss, terms = task.loss(task.forward(network, batch), batch, options)
        loss.backward()
        optimizer.step()
        optimizer.clear_grad()
        losses.append(float(loss))
    assert losses[-1] < 0.8 * losses[0], losses
    task.start_epoch(optimizer, options, 26)
    assert optimizer.get_lr() == pytest.approx(1e-4)


def test_trimap_protocol_scores_predictions_as_the_metrics_do(official, tmp_path, capsys):
    test = os.path.join(ROOT, 'dataset', 'demo', 'trimap_valid')
    assert evaluation.main(['--model-type', 'indexnet', '--model-checkpoint', official['protocol'], '--data-dir',
                            test, '--output-dir', str(tmp_path / 'a'), '--save-pred']) == 0
    first = capsys.readouterr().out
    assert '3 of 3 images scored (0 failed)' in first and 'py_Grad' in first
    assert evaluation.main(['--model-type', 'indexnet', '--data-dir', test, '--pred-dir', str(tmp_path / 'a' / 'pred'),
                            '--output-dir', str(tmp_path / 'b')]) == 0
    assert capsys.readouterr().out.split('results:')[0] == first.split('results:')[0]
    pred = cv2.imread(str(tmp_path / 'a' / 'pred' / 'pha' / 'GT08.png'), cv2.IMREAD_UNCHANGED)
    gt = cv2.imread(os.path.join(test, 'alpha', 'GT08.png'), cv2.IMREAD_UNCHANGED)
    trimap = cv2.imread(os.path.join(test, 'trimap', 'GT08.png'), cv2.IMREAD_UNCHANGED)
    import csv
    with open(tmp_path / 'a' / 'metrics.csv', newline='') as f:
        row = next(r for r in csv.DictReader(f) if r['name'] == 'GT08')
    assert float(row['SAD']) == pytest.approx(dim_metrics(pred, gt, trimap)['SAD'], rel=1e-9)
    shown = report_rows(tmp_path / 'a')
    assert [(name, thumbs) for name, thumbs, _ in shown] == [('GT08', 4), ('GT11', 4), ('GT14', 4)]
    assert shown[0][2]['SAD'] == pytest.approx(float(row['SAD']), rel=1e-12)


def test_composition_tool_writes_a_resumable_set_that_training_and_eval_read(tmp_path, capsys):
    from dataset.folders import trimap_triples
    from dataset.trimap import composite_rows, fit_background
    from tools import compose_trimap_set
    from utils.io import read_alpha, read_image, write_image
    aim, backgrounds = tmp_path / 'AIM-500', tmp_path / 'train2014'
    rng = np.random.default_rng(0)
    for i in range(3):
        alpha = cv2.GaussianBlur((rng.random((40, 50)) > 0.5).astype(np.float32), (7, 7), 0)
        write_image(str(aim / 'original' / f'p{i}.jpg'), rng.random((40, 50, 3)))
        write_image(str(aim / 'mask' / f'p{i}.png'), alpha)
        write_image(str(aim / 'trimap' / f'p{i}.png'), trimap_from_alpha(np.rint(alpha * 255).astype(np.uint8), 2))
    for j in range(6):
        write_image(str(backgrounds / f'COCO_{j}.jpg'), rng.random((30 + 10 * j, 45, 3)))
    argv = ['--images', str(aim), '--backgrounds', str(backgrounds), '--out', str(tmp_path / 'out'),
            '--train-backgrounds', '2', '--valid-backgrounds', '1', '--valid-count', '1']
    assert compose_trimap_set.main(argv + ['--estimate-only']) == 0
    assert '5 composites (2 training and 1 validation images)' in capsys.readouterr().out
    assert not (tmp_path / 'out' / 'train').exists()
    assert compose_trimap_set.main(argv) == 0
    rows = composite_rows(str(tmp_path / 'out' / 'train'))
    assert len(rows) == 4 and len({r[3] for r in rows}) == 4                      # no background twice
    merged, alpha, fg, bg = rows[0]
    a = read_alpha(alpha)
    expected = np.floor((read_image(fg) * a[..., None] + fit_background(read_image(bg), *a.shape) *
                         (1 - a[..., None])) * 255)
    assert np.abs(read_image(merged) * 255 - expected).max() <= 1e-3
    stamp = os.path.getmtime(merged)
    assert compose_trimap_set.main(argv) == 0 and os.path.getmtime(merged) == stamp        # resumed, kept
    triples = trimap_triples(str(tmp_path / 'out' / 'validation'))
    assert len(triples) == 1 and all(os.path.isfile(p) for p in triples[0][1:])
    assert len(TrimapDataset(64, True, 0, rows=rows)[(0, 1)].merged) == 64
    with pytest.raises(SystemExit, match=r'6 backgrounds, 21 needed \(2 x 10 \+ 1 x 1\)'):
        compose_trimap_set.main(argv + ['--train-backgrounds', '10'])
