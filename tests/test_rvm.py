"""RVM parity with the official PyTorch model (golden vectors made with seeded weights) and behaviour."""
import hashlib
import json
import os

import numpy as np
import paddle
import pytest

from conftest import DATA, build_model
from model import MattingNetwork
from model.rvm import MattingNetworkStep
from model.static_ops import downsample
from seeded import load_entries, make_weights, to_paddle_names

GOLDEN_DIR = os.path.join(DATA, 'rvm')
GOLDEN = np.load(os.path.join(GOLDEN_DIR, 'golden.npz'))
with open(os.path.join(GOLDEN_DIR, 'tolerances.json'), encoding='utf-8') as f:
    TOLERANCES = json.load(f)['tolerances']

# spec/rvm.md section 1.8, counted on the official model: (DGF, FGF) and state_dict entries
PARAMS = {'mobilenetv3': (3_748_633, 3_747_825), 'resnet50': (26_890_461, 26_889_653)}
STATE_ENTRIES = {'mobilenetv3': 326, 'resnet50': 329}


def keys_file(variant):
    return os.path.join(GOLDEN_DIR, f'keys_{variant}.json')


@pytest.fixture(scope='module')
def seeded():
    """variant -> seeded weights, torch names (built once: resnet50 takes a while)."""
    cache = {}

    def get(variant):
        if variant not in cache:
            cache[variant] = make_weights(load_entries(keys_file(variant)))
        return cache[variant]
    return get


def seeded_model(seeded, variant, refiner='deep_guided_filter'):
    model = MattingNetwork(variant, refiner)
    own = model.state_dict()
    model.set_state_dict({k: v for k, v in to_paddle_names(seeded(variant)).items() if k in own})
    model.eval()
    return model


def run(model, src, ratio, states=(None,) * 4, **kwargs):
    """Outputs as numpy plus the pre-clamp (fgr_residual + src, pha) captured at the refiner / projection."""
    captured = []
    layer = model.refiner if ratio != 1 else model.project_mat
    hook = layer.register_forward_post_hook(lambda _, inputs, out: captured.append(out))
    try:
        with paddle.no_grad():
            out = model(paddle.to_tensor(src), *states, downsample_ratio=ratio, **kwargs)
    finally:
        hook.remove()
    out = [t.numpy() for t in out]
    if kwargs.get('segmentation_pass'):
        return out, None
    raw = [t.numpy() for t in captured[-1]] if ratio != 1 else np.split(captured[-1].numpy(), [3], axis=1)
    raw = [r.reshape(src.shape[:-3] + r.shape[-3:]) for r in raw]   # folded frames -> src's rank
    return out, (raw[0] + src, raw[1])


def assert_close(actual, name, expected=None):
    """Both criteria of shared/golden/rvm/tolerances.json: max and mean absolute difference."""
    expected = GOLDEN[name] if expected is None else expected
    max_tol, mean_tol = TOLERANCES[name]
    assert actual.shape == expected.shape, name
    diff = np.abs(actual.astype(np.float64) - expected)
    assert diff.max() <= max_tol and diff.mean() <= mean_tol, (name, diff.max(), max_tol, diff.mean(), mean_tol)


def test_seeded_weights_are_the_golden_ones(seeded):
    for variant in PARAMS:
        with open(keys_file(variant), encoding='utf-8') as f:
            sha = json.load(f)['weights_sha256']
        weights = seeded(variant)
        assert hashlib.sha256(b''.join(v.astype('<f4').tobytes() for v in weights.values())).hexdigest() == sha


@pytest.mark.parametrize('variant', ['mobilenetv3', 'resnet50'])
def test_parameter_counts_and_names(variant):
    counts = []
    for refiner in ('deep_guided_filter', 'fast_guided_filter'):
        model = build_model('rvm', variant, refiner=refiner)
        counts.append(sum(int(np.prod(p.shape)) for p in model.parameters() if not p.stop_gradient))
    assert tuple(counts) == PARAMS[variant]
    # the FGF model has exactly the DGF keys minus the refiner's
    golden = {k: tuple(s) for k, s, _ in load_entries(keys_file(variant))}
    state = MattingNetwork(variant).state_dict()
    assert len(state) == STATE_ENTRIES[variant]
    assert {k: tuple(v.shape) for k, v in state.items()} == to_paddle_names(golden)


def test_box_filter_is_trained_and_starts_as_mean():
    refiner = MattingNetwork('mobilenetv3').refiner
    assert any(p is refiner.box_filter.weight for p in refiner.parameters())
    assert not refiner.box_filter.weight.stop_gradient
    np.testing.assert_allclose(refiner.box_filter.weight.numpy(), np.full([4, 1, 3, 3], 1 / 9), rtol=1e-6)


@pytest.mark.parametrize('variant', ['mobilenetv3', 'resnet50'])
def test_odd_size_sequence_matches_golden(seeded, variant):
    """(1, 2, 3, 100, 130) at ratio 0.4: low-res 40x52, ceil-mode pyramid 20x26 .. 3x4, upsample-then-crop,
    deep guided filter back to full size."""
    model = seeded_model(seeded, variant)
    (fgr, pha, *states), (raw_fgr, raw_pha) = run(model, GOLDEN['src_odd'], 0.4)
    prefix = f'{variant}_odd_ds04_'
    assert_close(raw_fgr, prefix + 'rawfgr')
    assert_close(raw_pha, prefix + 'rawpha')
    assert_close(fgr, prefix + 'fgr', np.clip(GOLDEN[prefix + 'rawfgr'], 0, 1))
    assert_close(pha, prefix + 'pha', np.clip(GOLDEN[prefix + 'rawpha'], 0, 1))
    for k, state in enumerate(states, 1):
        assert_close(state, f'{prefix}r{k}')


def test_fast_guided_filter_single_frame_matches_golden(seeded):
    """A 4-D frame at ratio 0.5 through the FGF model: frame 0 of the golden sequence (zero initial state)."""
    model = seeded_model(seeded, 'mobilenetv3', 'fast_guided_filter')
    (fgr, pha, *states), (raw_fgr, raw_pha) = run(model, GOLDEN['src_frame0'], 0.5)
    assert fgr.shape == (1, 3, 144, 176) and pha.shape == (1, 1, 144, 176)
    assert_close(raw_fgr, 'fgf_ds05_rawfgr_frame0')
    assert_close(raw_pha, 'fgf_ds05_rawpha_frame0')
    for k, state in enumerate(states, 1):   # same backbone and decoder weights as the DGF golden model
        assert_close(state, f'mobilenetv3_ds05_frame0_r{k}')


def test_segmentation_pass_matches_golden(seeded):
    model = seeded_model(seeded, 'mobilenetv3')
    (seg, *states), _ = run(model, GOLDEN['src_frame0'], 1, segmentation_pass=True)
    assert_close(seg, 'mobilenetv3_seg_ds1_seg_frame0')
    # the matting pass runs the same backbone and decoder, so it returns the same states
    (_, _, *matting_states), _ = run(model, GOLDEN['src_frame0'], 1)
    for state, matting_state in zip(states, matting_states):
        np.testing.assert_array_equal(state, matting_state)
    # seg stays at the downsampled resolution, a logit (no refiner, no sigmoid)
    (seg, *_), _ = run(model, GOLDEN['src_frame0'], 0.5, segmentation_pass=True)
    assert seg.shape == (1, 1, 72, 88) and seg.min() < 0 and seg.max() > 1


def tensors(states):
    return [paddle.to_tensor(s) for s in states]


def test_frame_by_frame_equals_sequence_and_chunks(seeded):
    """The whole 5-D sequence, 4-D frames with recycled states and 5-D one-frame chunks agree."""
    model = seeded_model(seeded, 'mobilenetv3')
    src = GOLDEN['src_odd']
    (fgr, pha, *states), _ = run(model, src, 0.4)
    (fgr0, pha0, *frame_states), _ = run(model, src[:, 0], 0.4)
    (fgr1, pha1, *frame_states), _ = run(model, src[:, 1], 0.4, tensors(frame_states))
    (chunk_fgr0, chunk_pha0, *chunk_states), _ = run(model, src[:, :1], 0.4)
    (chunk_fgr1, chunk_pha1, *chunk_states), _ = run(model, src[:, 1:], 0.4, tensors(chunk_states))
    prefix = 'mobilenetv3_odd_ds04_'
    for other_fgr, other_pha, other_states in [(np.stack([fgr0, fgr1], 1), np.stack([pha0, pha1], 1), frame_states),
                                               (np.concatenate([chunk_fgr0, chunk_fgr1], 1),
                                                np.concatenate([chunk_pha0, chunk_pha1], 1), chunk_states)]:
        assert_close(other_fgr, prefix + 'fgr', fgr)
        assert_close(other_pha, prefix + 'pha', pha)
        for k, (state, other) in enumerate(zip(states, other_states), 1):
            assert_close(other, f'{prefix}r{k}', state)


def test_broadcast_zero_state_equals_none(seeded):
    """Exported models take a [1, 1, 1, 1] zero tensor as the first frame's state (official ONNX convention)."""
    model = seeded_model(seeded, 'mobilenetv3')
    src = GOLDEN['src_odd'][:, 0]
    out_none, _ = run(model, src, 0.4)
    out_zero, _ = run(model, src, 0.4, [paddle.zeros([1, 1, 1, 1])] * 4)
    for a, b in zip(out_none, out_zero):
        np.testing.assert_array_equal(a, b)


def test_state_shapes_at_hd():
    """1080x1920 at ratio 0.25: low-res 270x480, states at 1/2 .. 1/16 with ceil division (135 -> 68 rows)."""
    model = MattingNetwork('mobilenetv3')
    model.eval()
    with paddle.no_grad():
        fgr, pha, *states = model(paddle.rand([1, 3, 1080, 1920]), downsample_ratio=0.25)
    assert fgr.shape == [1, 3, 1080, 1920] and pha.shape == [1, 1, 1080, 1920]
    assert [s.shape for s in states] == [[1, 16, 135, 240], [1, 20, 68, 120], [1, 40, 34, 60], [1, 64, 17, 30]]
    assert 0 <= float(pha.min()) and float(pha.max()) <= 1 and 0 <= float(fgr.min()) and float(fgr.max()) <= 1


def torch_bilinear_rows(size, ratio):
    """Interpolation matrix of torch's bilinear resize with a scale factor (align_corners=False, no recompute)."""
    out = int(np.floor(size * ratio))
    src = np.maximum((np.arange(out) + 0.5) / ratio - 0.5, 0)
    low = np.floor(src).astype(int)
    high, frac = np.minimum(low + 1, size - 1), src - low
    matrix = np.zeros((out, size))
    np.add.at(matrix, (np.arange(out), low), 1 - frac)
    np.add.at(matrix, (np.arange(out), high), frac)
    return matrix


@pytest.mark.parametrize('height,width,ratio', [(101, 77, 0.3), (100, 130, 0.4), (1080, 1920, 0.25)])
def test_downsample_samples_like_torch_scale_factor(height, width, ratio):
    """floor(H*r) outputs sampled at (dst + 0.5) / r - 0.5, whether or not H*r is whole (101 * 0.3 is not)."""
    image = np.random.default_rng(0).random((1, 1, height, width)).astype(np.float32)
    expected = torch_bilinear_rows(height, ratio) @ image[0, 0].astype(np.float64) @ torch_bilinear_rows(width, ratio).T
    actual = downsample(paddle.to_tensor(image), ratio).numpy()[0, 0]
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, atol=1e-5)   # float32 sample coordinates, as torch


@pytest.mark.parametrize('make,message', [
    (lambda: MattingNetwork('mobilenetv2'), 'unknown RVM variant'),
    (lambda: MattingNetwork('resnet50', refiner='box'), 'unknown RVM refiner'),
    (lambda: MattingNetwork()(paddle.zeros([1, 3, 32, 32]), downsample_ratio=1.5), 'downsample_ratio'),
    (lambda: MattingNetwork()(paddle.zeros([1, 3, 32, 32]), downsample_ratio=0), 'downsample_ratio'),
])
def test_bad_options_raise(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_static_graph_step_matches_dygraph(seeded):
    """The export form (fixed ratio, explicit states, dynamic shapes) computes what the dygraph model does."""
    model = seeded_model(seeded, 'mobilenetv3')
    src = GOLDEN['src_odd']
    (fgr, pha, *states), _ = run(model, src, 0.4)
    step = paddle.jit.to_static(MattingNetworkStep(model, 0.4), input_spec=MattingNetworkStep.input_spec(),
                                full_graph=True)
    step_states = [paddle.zeros([1, 1, 1, 1])] * 4
    prefix = 'mobilenetv3_odd_ds04_'
    for t in range(src.shape[1]):
        with paddle.no_grad():
            step_fgr, step_pha, *step_states = step(paddle.to_tensor(src[:, t]), *step_states)
        assert_close(step_fgr.numpy(), prefix + 'fgr', fgr[:, t])
        assert_close(step_pha.numpy(), prefix + 'pha', pha[:, t])
    for k, (state, step_state) in enumerate(zip(states, step_states), 1):
        assert_close(step_state.numpy(), f'{prefix}r{k}', state)
