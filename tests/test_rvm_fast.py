"""RVM's fast backends: the graph of MattingNetworkCoefficients in Paddle Inference / ONNX Runtime with the
full-resolution ends in OpenCV (inference/guided_filter.py) give the official outputs (golden vectors) and the
dygraph ones, frame by frame over a clip with the states carried, for one clip and for a batch of clips."""
from importlib.util import find_spec

import numpy as np
import paddle
import pytest

import config
from conftest import build_model
from families.rvm import RVM, FastRVMRunner, RVMRunner
from inference.backends import create_backend
from inference.guided_filter import downsample, guided_upsample
from model.rvm import MattingNetworkCoefficients
from model.static_ops import downsample as network_downsample
from test_rvm import GOLDEN, assert_close, seeded, seeded_model  # noqa: F401 (seeded is a fixture)

BACKENDS = ['inference', pytest.param('onnxruntime', marks=pytest.mark.skipif(
    not (find_spec('onnxruntime') and find_spec('paddle2onnx')), reason='needs onnxruntime and paddle2onnx'))]


def backend_config(name):
    return config.BackendConfig(backend=name, threads=2, precision='fp32', export_dir=None, tensorrt=False)


def fast_runner(network, name, ratio):
    """Exports on the fly (random or seeded weights: no checkpoint, so nothing is kept on disk)."""
    family = RVM()
    model = config.ModelConfig(model_type='rvm', backbone='mobilenetv3', device='cpu', family='rvm',
                               options=family.options())
    return FastRVMRunner(lambda h, w, refine: family.graph(network, model, name, backend_config(name), h, w, refine),
                         ratio)


@pytest.mark.parametrize('height,width,ratio', [(101, 77, 0.3), (200, 360, 0.25), (90, 120, 1 / 3)])
def test_opencv_downsample_is_the_networks(height, width, ratio):
    """Whole products (OpenCV's resize) and fractional ones (scale_factor sampling) alike."""
    frame = np.random.default_rng(1).random((height, width, 3), dtype=np.float32)
    expected = network_downsample(paddle.to_tensor(frame.transpose(2, 0, 1)[None]), ratio).numpy()[0]
    actual = downsample(frame, ratio)
    assert actual.shape == expected.transpose(1, 2, 0).shape
    np.testing.assert_allclose(actual, expected.transpose(1, 2, 0), atol=2e-6)


@pytest.mark.parametrize('refiner,ratio', [('deep_guided_filter', 0.25), ('fast_guided_filter', 0.4),
                                           ('deep_guided_filter', 1)])
def test_coefficients_and_guided_upsample_are_the_network(refiner, ratio):
    """MattingNetworkCoefficients + guided_upsample == MattingNetwork.forward, in dygraph (no export)."""
    paddle.seed(3)
    network = build_model('rvm', 'mobilenetv3', refiner=refiner)
    network.eval()
    frame = np.random.default_rng(2).random((96, 160, 3), dtype=np.float32)
    with paddle.no_grad():
        out = network(paddle.to_tensor(frame.transpose(2, 0, 1)[None]), downsample_ratio=ratio)
        small = downsample(frame, ratio) if ratio != 1 else frame
        coef = MattingNetworkCoefficients(network, ratio != 1)(paddle.to_tensor(small.transpose(2, 0, 1)[None]),
                                                                *[None] * 4)
    fgr, pha = guided_upsample(frame, coef.a.numpy()[0].transpose(1, 2, 0), coef.b.numpy()[0].transpose(1, 2, 0))
    np.testing.assert_allclose(fgr, out.fgr.numpy()[0].transpose(1, 2, 0), atol=2e-5)
    np.testing.assert_allclose(pha, out.pha.numpy()[0, 0], atol=2e-5)
    for k in range(4):
        np.testing.assert_allclose(coef[2 + k].numpy(), out[2 + k].numpy(), atol=2e-5)


@pytest.mark.parametrize('name', BACKENDS)
@pytest.mark.parametrize('variant', ['mobilenetv3', 'resnet50'])
def test_fast_backends_give_the_official_clip(seeded, variant, name):  # noqa: F811
    """The golden odd-size clip at ratio 0.4, one frame per call with the states carried: the official
    (clamped) outputs and final states within the golden tolerances."""
    if variant == 'resnet50' and name == 'inference':
        pytest.skip('one backend suffices for the second variant (the export takes a while)')
    network = seeded_model(seeded, variant)
    frames = GOLDEN['src_odd'][0].transpose(0, 2, 3, 1)            # T x H x W x 3
    runner = fast_runner(network, name, 0.4)
    prefix = f'{variant}_odd_ds04_'
    for t, frame in enumerate(frames):
        out = runner(frame[None])
        assert_close(out['fgr'][0].transpose(2, 0, 1)[None], prefix + 'rawfgr',
                     np.clip(GOLDEN[prefix + 'rawfgr'][:, t], 0, 1))
        assert_close(out['pha'][0][None, None], prefix + 'rawpha', np.clip(GOLDEN[prefix + 'rawpha'][:, t], 0, 1))
    for k, state in enumerate(runner.state, 1):
        assert_close(state, f'{prefix}r{k}')


@pytest.mark.parametrize('name', BACKENDS)
def test_fast_backends_follow_dygraph_through_a_clip_in_chunks(name):
    """Chunks of frames, a reset between clips, the automatic ratio: as the dygraph runner, frame by frame."""
    paddle.seed(4)
    network = build_model('rvm', 'mobilenetv3')
    network.eval()
    rng = np.random.default_rng(5)
    clips = [rng.random((5, 135, 240, 3), dtype=np.float32), rng.random((3, 600, 200, 3), dtype=np.float32)]
    dygraph, fast = RVMRunner(network, None, 'fp32'), fast_runner(network, name, None)
    for clip in clips:
        dygraph.reset()
        fast.reset()
        for chunk in (clip[:2], clip[2:]):
            expected, actual = dygraph(chunk), fast(chunk)
            for key in ('pha', 'fgr'):
                diff = np.abs(actual[key] - expected[key])
                assert diff.max() < 1e-4 and diff.mean() < 1e-6, (key, diff.max(), diff.mean())


@pytest.mark.parametrize('name', BACKENDS)
def test_exported_coefficients_take_a_batch_of_clips(name):
    """Two clips side by side in one call (batch 2) equal each clip alone in dygraph."""
    paddle.seed(6)
    network = build_model('rvm', 'mobilenetv3')
    network.eval()
    h, w = 36, 64
    graph = create_backend(name, MattingNetworkCoefficients(network), device='cpu', threads=2,
                           spec=MattingNetworkCoefficients.input_spec(h, w),
                           fmt='json' if name == 'onnxruntime' else 'pdmodel')
    frames = np.random.default_rng(7).random((3, 2, 3, h, w), dtype=np.float32)   # T x B x 3 x h x w
    states = [np.zeros((1, 1, 1, 1), np.float32)] * 4
    expected_states = [[None] * 4, [None] * 4]
    for batch in frames:
        a, b, *states = graph(batch, *states)
        for clip in range(2):
            with paddle.no_grad():
                out = MattingNetworkCoefficients(network)(paddle.to_tensor(batch[clip:clip + 1]),
                                                          *expected_states[clip])
            expected_states[clip] = list(out[2:])
            np.testing.assert_allclose(a[clip], out.a.numpy()[0], atol=1e-4)
            np.testing.assert_allclose(b[clip], out.b.numpy()[0], atol=1e-4)
