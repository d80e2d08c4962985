"""Exported BGMv2 (inference/backends.py, tools/export.py) gives the dygraph model's outputs on every backend and
at every batch size, including an empty patch selection and more patches requested than the map has."""
import json
import os
import subprocess
import sys

import numpy as np
import paddle
import pytest

from conftest import ROOT, build_model
from utils.checkpoint import save_atomic
from inference.backends import DygraphBackend, PaddleInferenceBackend, create_backend, export_model, has_pir

ATOL = 1e-4      # oneDNN and ONNX Runtime convolutions sum in another order than Paddle's dygraph kernels


def seeded_model(model_type='mattingrefine', **options):
    paddle.seed(0)
    model = build_model(model_type, 'mobilenetv2', **options)
    model.eval()
    return model


def pair(n, h, w, seed=0):
    """src = bgr with a differing blob, so the error map has a clear region to refine."""
    rng = np.random.default_rng(seed)
    bgr = rng.random((n, 3, h, w), dtype=np.float32)
    src = bgr.copy()
    src[:, :, h // 4:h // 2, w // 3:w // 2] = rng.random((n, 3, h // 2 - h // 4, w // 2 - w // 3))
    return src, bgr


def assert_outputs_close(actual, expected, atol=ATOL):
    """MattingRefine outputs. A patch decision can flip where err_sm is within float noise of the threshold:
    compare ref_sm and, full-resolution, the blocks where both made the same decision."""
    agree = actual[5] == expected[5]
    assert agree.mean() > 0.99
    same_block = np.kron(agree, np.ones((1, 1, 4, 4), bool))
    for a, e in zip(actual[:2], expected[:2]):
        assert a.shape == e.shape
        assert np.abs(a - e)[np.broadcast_to(same_block, a.shape)].max() <= atol
    for a, e in zip(actual[2:5], expected[2:5]):
        assert a.shape == e.shape and np.abs(a - e).max() <= atol


def assert_batch_is_per_image(backend, src, bgr):
    batch = backend(src, bgr)
    for i in range(len(src)):
        for a, b in zip(batch, backend(src[i:i + 1], bgr[i:i + 1])):
            np.testing.assert_allclose(a[i:i + 1], b, atol=1e-5)


@pytest.fixture(scope='module')
def thresholding(tmp_path_factory):
    model = seeded_model(refine_mode='thresholding', refine_threshold=0.1)
    folder = str(tmp_path_factory.mktemp('thresholding'))
    try:
        import paddle2onnx  # noqa: F401
        onnx = True
    except ImportError:
        onnx = False
    export_model(model, folder, onnx=onnx)
    return model, folder


def test_onnx_export_downloads_nothing(tmp_path):
    """paddle2onnx's default constant folding (polygraphy) pip-installs what it misses at run time (sympy for its
    shape inference, onnx_graphsurgeon) by running POLYGRAPHY_INSTALL_CMD, here a command that records its call.
    Both are hidden (sys.modules[name] = None) as in an environment without them."""
    pytest.importorskip('paddle2onnx')
    marker = tmp_path / 'installs.txt'
    hide = '; '.join(f"sys.modules[{name!r}] = None" for name in ('sympy', 'onnx_graphsurgeon'))
    script = f"""import sys
{hide}
sys.path.insert(0, {ROOT!r})
import paddle
from conftest import build_model
from inference.backends import export_model
export_model(build_model('mattingbase', 'mobilenetv2'), {str(tmp_path / 'out')!r}, onnx=True)
"""
    recorder = tmp_path / 'record.py'              # the command is split on spaces: a script, no quoting
    recorder.write_text(f"import sys\nopen({str(marker)!r}, 'a').write(str(sys.argv))\n")
    env = dict(os.environ, POLYGRAPHY_INSTALL_CMD=f'{sys.executable} {recorder}',
               PYTHONPATH=os.path.join(ROOT, 'tests'))
    result = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert not marker.exists(), marker.read_text()
    assert (tmp_path / 'out' / 'model.onnx').is_file()


def test_onnx_export_keeps_only_what_the_outputs_read(thresholding):
    """paddle2onnx leaves nodes no output needs and unread constants (ONNX Runtime warned of each when loading):
    the export drops them."""
    onnx = pytest.importorskip('onnx')
    path = os.path.join(thresholding[1], 'model.onnx')
    if not os.path.isfile(path):
        pytest.skip('paddle2onnx is not installed')
    graph = onnx.load(path).graph
    read = {name for node in graph.node for name in node.input} | {out.name for out in graph.output}
    assert [t.name for t in graph.initializer if t.name not in read] == []
    assert [node.name for node in graph.node if not any(o in read for o in node.output)] == []


@pytest.mark.parametrize('name', ['inference', 'onnxruntime'])
def test_exported_equals_dygraph_and_batch_equals_single(thresholding, name):
    model, folder = thresholding
    if name == 'onnxruntime' and not os.path.exists(os.path.join(folder, 'model.onnx')):
        pytest.skip('paddle2onnx / onnxruntime not installed')
    pytest.importorskip('onnxruntime') if name == 'onnxruntime' else None
    backend = create_backend(name, export_dir=folder)
    src, bgr = pair(2, 96, 128)
    expected = DygraphBackend(model)(src, bgr)
    assert 0 < expected[5].mean() < 1                      # some patches refined, not all
    assert_outputs_close(backend(src, bgr), expected)
    assert_batch_is_per_image(backend, src, bgr)
    src, bgr = pair(1, 68, 44, seed=1)                      # another size, same graph
    assert_outputs_close(backend(src, bgr), DygraphBackend(model)(src, bgr))


def test_full_refinement_exports_to_onnx(tmp_path):
    """refine_full pads its inputs: through static_ops.zero_pad, not F.pad (a random border in ONNX)."""
    pytest.importorskip('onnxruntime')
    pytest.importorskip('paddle2onnx')
    model = seeded_model(refine_mode='full')
    src, bgr = pair(2, 64, 96, seed=5)
    actual = create_backend('onnxruntime', model)(src, bgr)
    for a, e in zip(actual, DygraphBackend(model)(src, bgr)):
        np.testing.assert_allclose(a, e, atol=ATOL)


def test_sampling_more_patches_than_the_map(tmp_path):
    # 4096 patches requested, 8 x 12 = 96 in the map: every patch with err > 0 is refined
    model = seeded_model(refine_mode='sampling', refine_sample_pixels=65536)
    backend = create_backend('inference', model)             # exports to a temporary folder first
    src, bgr = pair(2, 32, 48, seed=2)
    expected = DygraphBackend(model)(src, bgr)
    np.testing.assert_array_equal(expected[5], (expected[4] > 0).astype(np.float32))
    assert_outputs_close(backend(src, bgr), expected)
    assert_batch_is_per_image(backend, src, bgr)


def test_export_cli_with_empty_selection(tmp_path):
    checkpoint, out = str(tmp_path / 'w.pdparams'), str(tmp_path / 'export')
    model = seeded_model(refine_mode='sampling', refine_sample_pixels=0)     # nothing is ever refined
    save_atomic(model.state_dict(), checkpoint)
    result = subprocess.run([sys.executable, os.path.join(ROOT, 'tools', 'export.py'), '--output', out,
                             '--model-checkpoint', checkpoint, '--model-refine-sample-pixels', '0'],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    with open(os.path.join(out, 'export.json'), encoding='utf-8') as f:
        meta = json.load(f)
    assert meta['model_type'] == 'mattingrefine' and meta['refine_sample_pixels'] == 0
    assert meta['format'] == 'pdmodel' and os.path.isfile(os.path.join(out, 'model.pdmodel'))
    src, bgr = pair(2, 64, 96, seed=3)
    actual, expected = PaddleInferenceBackend(os.path.join(out, 'model'))(src, bgr), DygraphBackend(model)(src, bgr)
    assert expected[5].max() == 0
    assert_outputs_close(actual, expected)


@pytest.mark.skipif(not has_pir(), reason='the PIR (.json) format needs Paddle 3')
def test_base_in_the_pir_format(tmp_path):
    model = seeded_model('mattingbase')
    export_model(model, str(tmp_path), fmt='json')
    assert sorted(os.listdir(tmp_path)) == ['model.json', 'model.pdiparams']
    backend = PaddleInferenceBackend(str(tmp_path / 'model'))   # oneDNN is off for .json graphs
    src, bgr = pair(2, 36, 52, seed=4)                            # MattingBase takes any size
    for a, e in zip(backend(src, bgr), DygraphBackend(model)(src, bgr)):
        np.testing.assert_allclose(a, e, atol=ATOL)


def test_missing_export_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match='tools/export.py'):
        create_backend('inference', export_dir=str(tmp_path))
    with pytest.raises(ValueError, match='unknown backend'):
        create_backend('tensorflow', export_dir=str(tmp_path))


@pytest.mark.parametrize('backend', ['dygraph', 'inference'])
def test_speed_test_reports_latency_and_split(backend, capsys):
    from tools.speed_test import main
    extra = ['--profile'] if backend == 'dygraph' else []
    assert main(['--resolution', '96', '64', '--backend', backend, '--warmup', '0', '--repeats', '2',
                 '--model-refine-sample-pixels', '320', '--batch-size', '2'] + extra) == 0
    out = capsys.readouterr().out
    assert 'mattingrefine mobilenetv2 96x64 batch 2' in out and 'ms per frame' in out and 'frames/s' in out
    if backend == 'dygraph':
        for section in ('base', 'refiner convs', 'patch crop', 'patch replace', 'resizes'):
            assert section in out
