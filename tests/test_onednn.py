"""oneDNN convolutions (utils/onednn.py) against Paddle's own kernels: outputs and all three gradients."""
import os

import numpy as np
import paddle
import pytest

from utils import onednn

pytestmark = pytest.mark.skipif(not onednn.available(), reason=f'oneDNN not usable here: {onednn.status()}')

# (input shape, weight shape, stride, padding top/bottom/left/right, dilation, groups, bias)
GEOMETRIES = [
    ((2, 8, 17, 13), (16, 8, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, True),
    ((2, 8, 17, 13), (8, 1, 3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 8, False),        # depthwise, stride 2
    ((1, 12, 20, 20), (6, 12, 3, 3), (1, 1), (3, 3, 3, 3), (3, 3), 1, False),      # ASPP-style dilation
    ((3, 6, 9, 11), (10, 3, 1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 2, True),         # grouped 1x1
    ((2, 4, 10, 12), (5, 4, 3, 5), (2, 1), (0, 2, 1, 3), (2, 1), 1, True),         # asymmetric everything
]


def tensors(geometry, seed=0):
    shape, wshape, *_, bias = geometry
    rng = np.random.default_rng(seed)
    x = paddle.to_tensor(rng.standard_normal(shape).astype('float32'), stop_gradient=False)
    w = paddle.to_tensor(rng.standard_normal(wshape).astype('float32'), stop_gradient=False)
    b = paddle.to_tensor(rng.standard_normal(wshape[0]).astype('float32'), stop_gradient=False) if bias else None
    return x, w, b


def outputs_and_gradients(conv, x, w, b):
    y = conv(x, w, b)
    target = paddle.to_tensor(np.random.default_rng(1).standard_normal(y.shape).astype('float32'))
    inputs = [x, w] + ([b] if b is not None else [])
    return [y.numpy()] + [g.numpy() for g in paddle.grad((y * target).sum(), inputs)]


@pytest.mark.parametrize('geometry', GEOMETRIES)
def test_conv2d_equals_paddle_with_gradients(geometry):
    _, _, stride, padding, dilation, groups, _ = geometry
    x, w, b = tensors(geometry)
    ours = outputs_and_gradients(lambda x, w, b: onednn.conv2d(x, w, b, stride, padding, dilation, groups), x, w, b)
    theirs = outputs_and_gradients(
        lambda x, w, b: paddle.nn.functional.conv2d(x, w, b, stride, list(padding), dilation, groups), x, w, b)
    assert ours[0].shape == theirs[0].shape
    for a, e in zip(ours, theirs):
        np.testing.assert_allclose(a, e, rtol=1e-4, atol=1e-4 * np.abs(e).max())


def test_inference_and_frozen_inputs():
    """No graph under no_grad; a frozen input (the photo) gets no gradient, the weights still do."""
    geometry = GEOMETRIES[0]
    x, w, b = tensors(geometry)
    with paddle.no_grad():
        y = onednn.conv2d(x, w, b, (1, 1), (1, 1, 1, 1))
    assert y.stop_gradient
    np.testing.assert_allclose(y.numpy(), paddle.nn.functional.conv2d(x, w, b, padding=1).numpy(), rtol=1e-4,
                               atol=1e-4)
    x.stop_gradient = True
    grads = []
    for conv in (lambda: onednn.conv2d(x, w, b, (1, 1), (1, 1, 1, 1)),
                 lambda: paddle.nn.functional.conv2d(x, w, b, padding=1)):
        conv().square().sum().backward()
        grads.append((w.grad.numpy(), b.grad.numpy()))
        w.clear_gradient(), b.clear_gradient()
    assert x.grad is None
    for a, e in zip(*grads):
        np.testing.assert_allclose(a, e, rtol=1e-4, atol=1e-4 * np.abs(e).max())


def test_non_contiguous_input():
    """A slice of a larger tensor (a view with an offset) is read as its own values."""
    x, w, b = tensors(GEOMETRIES[0])
    view = x[:, 2:6]
    w4 = w[:, :4]
    np.testing.assert_allclose(onednn.conv2d(view, w4, b, padding=(1, 1, 1, 1)).numpy(),
                               paddle.nn.functional.conv2d(view, w4, b, padding=1).numpy(), rtol=1e-4, atol=1e-4)


class Small(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.a = paddle.nn.Conv2D(3, 8, 3, padding=1)
        self.b = paddle.nn.Conv2D(8, 8, 3, padding=2, dilation=2, groups=4, bias_attr=False)
        self.c = paddle.nn.Conv2D(8, 4, 3, padding=1, padding_mode='reflect')    # stays on Paddle's kernel
        self.d = paddle.nn.Conv2D(4, 2, 1, data_format='NCHW')

    def forward(self, x):
        return self.d(paddle.nn.functional.relu(self.c(self.b(self.a(x)))))


def test_accelerate_routes_layers_and_keeps_results():
    paddle.seed(3)
    net = Small()
    x = paddle.to_tensor(np.random.default_rng(2).random((2, 3, 16, 16)).astype('float32'))
    y = net(x)
    grads = paddle.grad(y.square().sum(), net.parameters())
    assert onednn.accelerate(net, 'cpu', 'paddle') == 0 and onednn.accelerate(net, 'gpu') == 0
    assert 'forward' not in vars(net.a)
    assert onednn.accelerate(net) == 4
    assert 'forward' in vars(net.a)
    y2 = net(x)
    grads2 = paddle.grad(y2.square().sum(), net.parameters())
    np.testing.assert_allclose(y2.numpy(), y.numpy(), rtol=1e-4, atol=1e-5)
    for a, e in zip(grads2, grads):
        np.testing.assert_allclose(a.numpy(), e.numpy(), rtol=1e-4, atol=1e-4 * float(e.abs().max()))


def test_accelerated_mattingrefine_matches_paddle_with_gradients():
    """The refiner's patch path on oneDNN (bilinear and nearest resampling, convolutions): the same outputs and
    parameter gradients as on Paddle's kernels, with hundreds of patches. BatchNorm keeps its running statistics:
    batch statistics of an untrained network amplify float rounding (1e-7 -> 1e-3 through the base network)."""
    from model import MattingRefine
    paddle.seed(7)
    plain = MattingRefine('mobilenetv2', refine_sample_pixels=4000)
    fast = MattingRefine('mobilenetv2', refine_sample_pixels=4000)
    fast.set_state_dict(plain.state_dict())
    assert onednn.accelerate(fast) > 0
    rng = np.random.default_rng(8)
    src, bgr = [paddle.to_tensor(rng.random((2, 3, 96, 128)).astype('float32')) for _ in range(2)]
    results = []
    for net in (plain, fast):
        net.eval()
        out = net(src, bgr)
        ((out.pha * out.pha).sum() + (out.fgr * src).sum() + out.err_sm.sum()).backward()
        results.append([out.pha, out.fgr] + [p.grad for p in net.parameters() if p.grad is not None])
    assert len(results[0]) == len(results[1]) > 100
    assert float(out.ref_sm.sum()) == 2 * 250                                   # 4000 / 16 patches per image
    for a, e in zip(results[1], results[0]):
        np.testing.assert_allclose(a.numpy(), e.numpy(), rtol=1e-4, atol=1e-4 * max(float(e.abs().max()), 1e-3))


def test_accelerated_network_still_exports(tmp_path):
    """Tracing (to_static, jit.save) takes Paddle's kernels: the graph has no Python call in it."""
    paddle.seed(3)
    net = Small()
    net.eval()
    x = paddle.to_tensor(np.random.default_rng(2).random((1, 3, 16, 16)).astype('float32'))
    expected = net(x).numpy()
    onednn.accelerate(net)
    static = paddle.jit.to_static(net, input_spec=[paddle.static.InputSpec([1, 3, 16, 16], 'float32')],
                                  full_graph=True)
    paddle.jit.save(static, str(tmp_path / 'small'))
    loaded = paddle.jit.load(str(tmp_path / 'small'))
    np.testing.assert_allclose(loaded(x).numpy(), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('shape, size', [((2, 5, 16, 16), (32, 32)), ((1, 3, 33, 17), (64, 40)),
                                         ((2, 4, 64, 48), (16, 20)), ((1, 2, 7, 9), (7, 9))])
def test_resize_equals_paddle_with_gradient(shape, size):
    x = paddle.to_tensor(np.random.default_rng(4).standard_normal(shape).astype('float32'), stop_gradient=False)

    def interpolate(x, size):
        return paddle.nn.functional.interpolate(x, size, mode='bilinear', align_corners=False)

    target = paddle.to_tensor(np.random.default_rng(1).standard_normal(shape[:2] + size).astype('float32'))
    ours, theirs = [(fn(x, size), paddle.grad((fn(x, size) * target).sum(), [x])[0])
                    for fn in (onednn.resample, interpolate)]
    assert ours[0].shape == theirs[0].shape == list(shape[:2] + size)
    for a, e in zip(ours, theirs):
        np.testing.assert_allclose(a.numpy(), e.numpy(), rtol=1e-5, atol=1e-5 * float(e.abs().max()))


@pytest.mark.parametrize('shape, factor', [((7, 16, 4, 4), 2), ((2, 3, 5, 6), 3), ((1, 2, 3, 3), 1)])
def test_nearest_upscaling_equals_paddle_with_gradient(shape, factor):
    x = paddle.to_tensor(np.random.default_rng(5).standard_normal(shape).astype('float32'), stop_gradient=False)
    size = (shape[2] * factor, shape[3] * factor)
    target = paddle.to_tensor(np.random.default_rng(2).standard_normal(shape[:2] + size).astype('float32'))

    def nearest(x, size):
        return paddle.nn.functional.interpolate(x, size, mode='nearest')

    ours, theirs = [(fn(x, size), paddle.grad((fn(x, size) * target).sum(), [x])[0])
                    for fn in (lambda x, size: onednn.resample(x, size, 'nearest'), nearest)]
    np.testing.assert_array_equal(ours[0].numpy(), theirs[0].numpy())          # the same pixels, copied
    np.testing.assert_allclose(ours[1].numpy(), theirs[1].numpy(), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match='not a whole upscaling factor'):
        onednn.resample(x, (shape[2] * factor + 1, shape[3] * factor), 'nearest')


class Resizing(paddle.nn.Layer):
    """Records whether each resize of its forward is routed."""

    def __init__(self):
        super().__init__()
        self.conv = paddle.nn.Conv2D(3, 3, 3, padding=1)
        self.routed = []

    def forward(self, x):
        from model.static_ops import resize
        self.routed += [onednn.routes(x), onednn.routes(x.astype('float64'))]
        return resize(self.conv(x), [16, 12])


def test_resizes_route_inside_an_accelerated_forward_only():
    x = paddle.rand([1, 3, 8, 8])
    plain, accelerated = Resizing(), Resizing()
    accelerated.set_state_dict(plain.state_dict())
    onednn.accelerate(accelerated)
    expected = plain(x)
    np.testing.assert_allclose(accelerated(x).numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)
    assert plain.routed == [False, False] and accelerated.routed == [True, False]
    assert not onednn.routes(x)                    # outside any accelerated forward


class ConcatConv(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.conv = paddle.nn.Conv2D(7, 5, 3, padding=1)

    def forward(self, a, b):
        from model.static_ops import conv_of_concat
        return conv_of_concat(self.conv, [a, b])


def test_conv_of_concat_is_the_convolution_of_the_concatenation():
    """Routed: one convolution per input over its slice of the weight; the same output and gradients (the weight's,
    the bias's and the input's that needs one) as Paddle's convolution of the concatenated tensor."""
    paddle.seed(4)
    plain, fast = ConcatConv(), ConcatConv()
    fast.set_state_dict(plain.state_dict())
    onednn.accelerate(fast)
    rng = np.random.default_rng(5)
    a = paddle.to_tensor(rng.random((2, 4, 9, 10)).astype('float32'), stop_gradient=False)
    b = paddle.to_tensor(rng.random((2, 3, 9, 10)).astype('float32'))             # needs no gradient
    results = []
    for net in (plain, fast):
        out = net(a, b)
        results.append([out] + paddle.grad((out * out).sum(), [net.conv.weight, net.conv.bias, a]))
    for ours, expected in zip(results[1], results[0]):
        np.testing.assert_allclose(ours.numpy(), expected.numpy(), rtol=1e-5, atol=1e-5 * float(expected.abs().max()))
    calls = []
    original = onednn.KERNELS.conv_forward
    onednn.KERNELS.conv_forward = lambda x, *rest, **options: calls.append(x.shape) or original(x, *rest, **options)
    try:
        fast(a, b)
    finally:
        onednn.KERNELS.conv_forward = original
    assert calls == [[2, 4, 9, 10], [2, 3, 9, 10]]                           # no concatenation


def test_kernels_use_every_core_and_leave_the_callers_openmp_setting(monkeypatch):
    lib = onednn.KERNELS.lib
    assert lib.openmp, 'no OpenMP runtime found beside libdnnl'
    assert lib.threads == onednn.cpu_threads()
    seen = []
    forward = onednn.ConvolutionPlan.forward

    def recording(plan, *args):
        seen.append([runtime.omp_get_max_threads() for runtime in lib.openmp])
        return forward(plan, *args)
    monkeypatch.setattr(onednn.ConvolutionPlan, 'forward', recording)
    for runtime in lib.openmp:
        runtime.omp_set_num_threads(1)
    x, w, _ = tensors(GEOMETRIES[0])
    onednn.conv2d(x, w, None, (1, 1), (1, 1, 1, 1))
    assert seen == [[lib.threads] * len(lib.openmp)]
    assert [runtime.omp_get_max_threads() for runtime in lib.openmp] == [1] * len(lib.openmp)


def test_thread_count_follows_a_users_omp_num_threads(monkeypatch):
    monkeypatch.setenv('OMP_NUM_THREADS', '3')
    assert onednn.cpu_threads() == 3
    monkeypatch.setenv('OMP_NUM_THREADS', '1')             # what Paddle writes when it was unset
    assert onednn.cpu_threads() == len(os.sched_getaffinity(0))
