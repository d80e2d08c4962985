"""BGMv2 parity with the official PyTorch model (golden vectors made with seeded weights) and behaviour."""
import hashlib
import json
import os

import numpy as np
import paddle
import pytest

from conftest import DATA, build_model
from model import MattingBase, MattingRefine
from model.bgmv2 import Base
from model.static_ops import resize
from seeded import make_weights, to_paddle_names

GOLDEN = os.path.join(DATA, 'bgmv2')
INPUTS = np.load(os.path.join(GOLDEN, 'inputs.npz'))

# spec/bgmv2.md section 1.7, counted on the official model
PARAMS = {'mobilenetv2': (4_991_395, 5_006_839), 'resnet50': (40_232_259, 40_247_703),
          'resnet101': (59_224_387, 59_239_831)}
STATE_ENTRIES = {'mobilenetv2': 319, 'resnet50': 329, 'resnet101': 584}


def entries(backbone):
    with open(os.path.join(GOLDEN, f'keys_mattingrefine_{backbone}.json'), encoding='utf-8') as f:
        return json.load(f)['entries']


def seeded_state(backbone):
    return to_paddle_names(make_weights([(k, s, kind) for k, s, kind, _ in entries(backbone)]))


def tensor(name):
    return paddle.to_tensor(INPUTS[name].astype(np.float32) / np.float32(255))


def seeded_model(backbone, model_type='mattingrefine', **options):
    model = build_model(model_type, backbone, **options)
    state = seeded_state(backbone)
    model.set_state_dict({k: v for k, v in state.items() if k in model.state_dict()})
    model.eval()
    return model


def run(model, inp):
    with paddle.no_grad():
        return [t.numpy() for t in model(tensor(f'{inp}__src_u8'), tensor(f'{inp}__bgr_u8'))]


def assert_raw(actual, expected):
    """Raw (pre-clamp) arrays: within 2e-4 of their largest magnitude (golden README)."""
    assert actual.shape == expected.shape
    assert np.abs(actual - expected).max() <= 2e-4 * np.abs(expected).max()


def assert_clamped(actual, expected, backbone):
    assert actual.shape == expected.shape
    diff = np.abs(actual - expected)
    if backbone == 'mobilenetv2':
        assert diff.max() <= 1e-3
    else:
        assert diff.max() <= 2e-2 and (diff > 1e-3).mean() <= 1e-3


def test_seeded_weights_are_the_golden_ones():
    for backbone in ('mobilenetv2', 'resnet50'):
        spec = entries(backbone)
        weights = make_weights([(k, s, kind) for k, s, kind, _ in spec])
        for key, _, _, sha in spec:
            assert hashlib.sha256(weights[key].astype('<f4').tobytes()).hexdigest() == sha, key


@pytest.mark.parametrize('backbone', ['mobilenetv2', 'resnet50', 'resnet101'])
def test_parameter_counts_and_names(backbone):
    counts = []
    for model_type in ('mattingbase', 'mattingrefine'):
        model = build_model(model_type, backbone)
        counts.append(sum(int(np.prod(p.shape)) for p in model.parameters() if not p.stop_gradient))
    assert tuple(counts) == PARAMS[backbone]
    state = model.state_dict()
    assert len(state) == STATE_ENTRIES[backbone]
    if backbone != 'resnet101':
        golden = {k: tuple(s) for k, s in
                  ((k, s) for k, s, _, _ in entries(backbone))}
        assert {k: tuple(v.shape) for k, v in state.items()} == to_paddle_names(golden)


def test_mattingbase_matches_golden():
    golden = np.load(os.path.join(GOLDEN, 'mobilenetv2.npz'))
    model = seeded_model('mobilenetv2', 'mattingbase')
    for inp in ('small', 'large'):
        pha, fgr, err, hid = run(model, inp)
        for name, value in (('pha', pha), ('fgr', fgr), ('err', err)):
            assert_clamped(value, golden[f'base__{inp}__{name}'], 'mobilenetv2')
        step = 4 if inp == 'small' else 8
        assert_raw(hid[:, :, ::step, ::step], golden[f'base__{inp}__hid_s{step}'])
    with paddle.no_grad():
        raw = Base.forward(model, paddle.concat([tensor('small__src_u8'), tensor('small__bgr_u8')], axis=1))
    assert_raw(raw[:, :5].numpy(), golden['base__small__raw5'])


def capture_refiner(model):
    """Record the refiner's outputs (pre-clamp pha and fgr residual)."""
    seen = {}
    model.refiner.register_forward_post_hook(lambda layer, inputs, outputs: seen.update(out=outputs))
    return seen


def check_refine_case(golden, backbone, inp, scale, mode, prefix='refine__'):
    key = f'{prefix}{inp}__s{scale}'
    pixels = int(golden[f'{key}__sampling__sample_pixels'])
    model = seeded_model(backbone, backbone_scale=float(scale), refine_mode=mode, refine_sample_pixels=pixels,
                         refine_threshold=0.1)
    seen = capture_refiner(model)
    pha, fgr, pha_sm, fgr_sm, err_sm, ref_sm = run(model, inp)
    for name, value in (('pha_sm', pha_sm), ('fgr_sm', fgr_sm), ('err_sm', err_sm)):
        assert_clamped(value, golden[f'{key}__{name}'], backbone)
    fragile = golden.get(f'{key}__{mode}__fragile', np.zeros_like(ref_sm, np.uint8)).astype(bool)
    expected_ref = golden[f'{key}__{mode}__ref_sm']
    assert ref_sm.shape == expected_ref.shape
    assert np.array_equal(ref_sm[~fragile], expected_ref[~fragile].astype(np.float32))
    # skip the 4x4 full-resolution blocks of fragile positions
    keep = ~np.repeat(np.repeat(fragile, 4, axis=2), 4, axis=3)
    assert_clamped(pha[keep], golden[f'{key}__{mode}__pha'][keep], backbone)
    keep3 = np.broadcast_to(keep, fgr.shape)
    assert_clamped(fgr[keep3], golden[f'{key}__{mode}__fgr'][keep3], backbone)
    if f'{key}__{mode}__pha_raw' in golden:
        assert_raw(seen['out'][0].numpy(), golden[f'{key}__{mode}__pha_raw'])
        assert_raw(seen['out'][1].numpy(), golden[f'{key}__{mode}__fgr_raw'])


@pytest.mark.parametrize('mode', ['full', 'sampling', 'thresholding'])
@pytest.mark.parametrize('inp,scale', [('small', '0.25'), ('small', '0.5'), ('large', '0.25')])
def test_mattingrefine_matches_golden(inp, scale, mode):
    golden = dict(np.load(os.path.join(GOLDEN, 'mobilenetv2.npz')))
    check_refine_case(golden, 'mobilenetv2', inp, scale, mode)


def test_mattingrefine_coarse_raw_matches_golden():
    golden = np.load(os.path.join(GOLDEN, 'mobilenetv2.npz'))
    model = seeded_model('mobilenetv2')
    src, bgr = tensor('small__src_u8'), tensor('small__bgr_u8')
    with paddle.no_grad():
        raw = Base.forward(model, paddle.concat([resize(src, [32, 40]), resize(bgr, [32, 40])], axis=1))
    assert_raw(raw[:, :5].numpy(), golden['refine__small__s0.25__raw5_sm'])


def test_resnet50_matches_golden():
    golden = dict(np.load(os.path.join(GOLDEN, 'resnet50.npz')))
    pha, fgr, err, _ = run(seeded_model('resnet50', 'mattingbase'), 'small')
    for name, value in (('pha', pha), ('fgr', fgr), ('err', err)):
        assert_clamped(value, golden[f'base__small__{name}'], 'resnet50')
    check_refine_case(golden, 'resnet50', 'small', '0.25', 'sampling')


def random_pair(shape, seed=0):
    rng = np.random.default_rng(seed)
    bgr = rng.random(shape, dtype=np.float32)
    src = bgr.copy()
    src[..., shape[2] // 4: shape[2] // 2, shape[3] // 4: 3 * shape[3] // 4] = 0.8
    return paddle.to_tensor(src), paddle.to_tensor(bgr)


def outputs(model, src, bgr):
    with paddle.no_grad():
        return [t.numpy() for t in model(src, bgr)]


@pytest.mark.parametrize('kernel_size', [1, 3])
def test_full_equals_thresholding_everything(kernel_size):
    src, bgr = random_pair([2, 3, 96, 128])
    full = outputs(seeded_model('mobilenetv2', refine_mode='full', refine_kernel_size=kernel_size), src, bgr) \
        if kernel_size == 3 else None
    if full is None:   # kernel size 1 has no seeded golden weights: share random ones
        model = build_model('mattingrefine', 'mobilenetv2', refine_mode='full', refine_kernel_size=1)
        model.eval()
        full = outputs(model, src, bgr)
        model.refiner.mode, model.refiner.threshold = 'thresholding', -1.0
        every = outputs(model, src, bgr)
    else:
        every = outputs(seeded_model('mobilenetv2', refine_mode='thresholding', refine_threshold=-1.0), src, bgr)
    for a, b in zip(full, every):        # the patch path sums its convolutions in another order: rounding
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=2e-6)
    assert every[5].min() == 1


def test_sampling_more_than_the_map_refines_every_positive_error():
    # 80,000 pixels = 5,000 patches > 24 x 32 quarter-resolution positions: no error, every err > 0 patch
    src, bgr = random_pair([1, 3, 96, 128], seed=1)
    sampling = outputs(seeded_model('mobilenetv2', refine_mode='sampling', refine_sample_pixels=80_000), src, bgr)
    positive = outputs(seeded_model('mobilenetv2', refine_mode='thresholding', refine_threshold=0.0), src, bgr)
    for a, b in zip(sampling, positive):
        np.testing.assert_allclose(a, b, rtol=0, atol=2e-6)


def test_empty_selection_upsamples_the_coarse_result():
    src, bgr = random_pair([2, 3, 64, 96], seed=2)
    model = seeded_model('mobilenetv2', refine_mode='thresholding', refine_threshold=2.0)
    pha, fgr, pha_sm, fgr_sm, _, ref_sm = outputs(model, src, bgr)
    assert ref_sm.max() == 0
    expected = np.clip(resize(paddle.to_tensor(pha_sm), [64, 96]).numpy(), 0, 1)
    np.testing.assert_allclose(pha, expected, atol=1e-6)


def test_batch_equals_single_images_and_static_graph():
    """Batch > 1 patch crop/replace lands in the right image; to_static (export path) agrees with dygraph."""
    src, bgr = random_pair([2, 3, 96, 128], seed=3)
    model = seeded_model('mobilenetv2', refine_mode='thresholding', refine_threshold=0.3)
    batch = outputs(model, src, bgr)
    assert 0 < batch[5].mean() < 1
    for i in range(2):
        single = outputs(model, src[i:i + 1], bgr[i:i + 1])
        for a, b in zip(batch, single):
            np.testing.assert_allclose(a[i:i + 1], b, atol=2e-6)
    static = paddle.jit.to_static(seeded_model('mobilenetv2', refine_mode='thresholding', refine_threshold=0.3),
                                  full_graph=True)
    for a, b in zip(batch, outputs(static, src, bgr)):      # the PIR graph splits decoder.conv4: other rounding
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-6)


def test_any_size_for_base_and_odd_coarse_sizes_for_refine():
    src, bgr = random_pair([1, 3, 67, 93])
    pha, *_ = outputs(seeded_model('mobilenetv2', 'mattingbase'), src, bgr)
    assert pha.shape == (1, 1, 67, 93)
    src, bgr = random_pair([1, 3, 252, 188])   # 63 x 47 coarse: odd sizes through the decoder
    out = outputs(seeded_model('mobilenetv2', backbone_scale=0.25), src, bgr)
    assert out[0].shape == (1, 1, 252, 188) and out[2].shape == (1, 1, 63, 47) and out[5].shape == (1, 1, 63, 47)


@pytest.mark.parametrize('make,message', [
    (lambda: MattingRefine('mobilenetv2', backbone_scale=0.6), 'backbone_scale'),
    (lambda: MattingBase('vgg16'), 'unknown backbone'),
    (lambda: MattingRefine('resnet50', refine_mode='everything'), 'unknown refine mode'),
    (lambda: MattingRefine('mobilenetv2', refine_kernel_size=5), 'kernel size'),
    (lambda: build_model('mattingbm', 'resnet50'), 'unknown model type'),
])
def test_bad_options_raise(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize('src_shape,bgr_shape,message', [
    ([1, 3, 64, 64], [1, 3, 64, 68], 'same shape'),
    ([1, 3, 66, 64], [1, 3, 66, 64], 'divisible by 4'),
    ([1, 4, 64, 64], [1, 4, 64, 64], 'B x 3 x H x W'),
])
def test_bad_inputs_raise(src_shape, bgr_shape, message):
    model = build_model('mattingrefine', 'mobilenetv2')
    model.eval()
    with pytest.raises(ValueError, match=message):
        model(paddle.zeros(src_shape), paddle.zeros(bgr_shape))
