"""The static-graph and export workarounds of model/static_ops.py: each equals the plain formulation in dygraph,
and under to_static; zero_pad also through ONNX (paddle2onnx 2.1 fills F.pad's border with whatever is in memory,
so a test of F.pad itself passes when that memory happens to be zero)."""
import math

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

from model import static_ops as ops


def tensor(array):
    return paddle.to_tensor(np.ascontiguousarray(array))


def test_topk_mask_marks_the_k_largest_even_beyond_the_row():
    flat = np.array([[0.3, 0.9, 0.1, 0.5], [0.0, 0.2, 0.0, 0.7]], np.float32)
    np.testing.assert_array_equal(ops.topk_mask(tensor(flat), 2).numpy(), [[0, 1, 0, 1], [0, 1, 0, 1]])
    np.testing.assert_array_equal(ops.topk_mask(tensor(flat), 9).numpy(), np.ones_like(flat))   # k > N


def test_scaled_size_floors_like_torch():
    assert ops.scaled_size(1081, 1917, 0.25) == [math.floor(1081 * 0.25), math.floor(1917 * 0.25)] == [270, 479]
    h, w = paddle.to_tensor(1081), paddle.to_tensor(1917)
    assert [int(v) for v in ops.scaled_size(h, w, 0.25)] == [270, 479]


def test_gather_and_scatter_patches_against_numpy():
    rng = np.random.default_rng(0)
    x = rng.random((2, 3, 8, 12), dtype=np.float32)
    idx = np.array([[0, 1, 2], [1, 0, 0], [1, 1, 2]], np.int64)
    patches = ops.gather_patches(ops.pixels(tensor(x)), tensor(idx), 4, 1).numpy()       # 3 x 3 x 6 x 6
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    for p, (b, y, x0) in zip(patches, idx):
        np.testing.assert_array_equal(p, padded[b, :, y * 4:y * 4 + 6, x0 * 4:x0 * 4 + 6])
    new = rng.random((4, 3, 4, 4), dtype=np.float32)                                     # 3 patches + the dummy
    out = ops.scatter_patches(tensor(x), tensor(new), ops.with_dummy(tensor(idx))).numpy()
    expected = x.copy()
    for p, (b, y, x0) in zip(new[:3], idx):
        expected[b, :, y * 4:y * 4 + 4, x0 * 4:x0 * 4 + 4] = p
    np.testing.assert_array_equal(out, expected)                   # the dummy (last) patch is written nowhere
    empty = ops.with_dummy(paddle.zeros([0, 3], 'int64'))
    np.testing.assert_array_equal(ops.scatter_patches(tensor(x), tensor(new[:1]), empty).numpy(), x)


class Padding(paddle.nn.Layer):
    def __init__(self, pad, plain=False):
        super().__init__()
        self.pad, self.plain = pad, plain

    def forward(self, x):
        return F.pad(x, [self.pad] * 4) if self.plain else ops.zero_pad(x, self.pad)


@pytest.mark.parametrize('pad', [0, 1, 3])
def test_zero_pad_is_f_pad_also_in_static_graphs(pad):
    x = tensor(np.random.default_rng(1).random((2, 3, 2, 5), dtype=np.float32))
    expected = F.pad(x, [pad] * 4).numpy()
    np.testing.assert_array_equal(ops.zero_pad(x, pad).numpy(), expected)
    static = paddle.jit.to_static(Padding(pad), full_graph=True,
                                  input_spec=[paddle.static.InputSpec([None, 3, None, None], 'float32')])
    np.testing.assert_array_equal(static(x).numpy(), expected)


def test_zero_pad_exports_to_onnx(tmp_path):
    pytest.importorskip('paddle2onnx')
    pytest.importorskip('onnxruntime')
    from inference.backends import OnnxRuntimeBackend, export_model

    paddle.seed(0)
    block = paddle.nn.Sequential(Padding(1), paddle.nn.Conv2D(3, 8, 1))    # a conv after the padding
    x = np.random.default_rng(2).random((1, 3, 5, 6), dtype=np.float32)
    expected = block(tensor(x)).numpy()
    for trial in range(3):         # the F.pad fill value is random memory: one export may pass by luck
        export_model(block, str(tmp_path / str(trial)), 'json', onnx=True,
                     spec=[paddle.static.InputSpec([None, 3, None, None], 'float32', 'x')])
        np.testing.assert_allclose(OnnxRuntimeBackend(str(tmp_path / str(trial) / 'model.onnx'))(x)[0], expected,
                                   atol=1e-5)


def test_downsample_uses_explicit_sizes_for_whole_products():
    assert ops.whole_size([1080, 1920], 0.25) == [270, 480]
    assert ops.whole_size([1081, 1920], 0.25) is None
    x = tensor(np.random.default_rng(3).random((1, 3, 16, 20), dtype=np.float32))
    np.testing.assert_allclose(ops.downsample(x, 0.25).numpy(), ops.resize(x, [4, 5]).numpy())


def test_repeat_pixels_is_nearest_upsampling_with_its_gradient():
    x = paddle.to_tensor(np.random.default_rng(5).random((7, 3, 4, 2), dtype=np.float32), stop_gradient=False)
    ours = ops.repeat_pixels(x, 2)
    theirs = F.interpolate(x, size=[8, 4], mode='nearest')
    np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    weights = paddle.to_tensor(np.random.default_rng(6).random(ours.shape, dtype=np.float32))
    grads = [paddle.grad((y * weights).sum(), [x])[0].numpy() for y in (ours, theirs)]
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-6)
    np.testing.assert_array_equal(paddle.jit.to_static(
        doubled, input_spec=[paddle.static.InputSpec([None, 3, 4, 2], 'float32')], full_graph=True)(x).numpy(),
        theirs.numpy())


def doubled(x):
    return ops.repeat_pixels(x, 2)


class FeaturesAndPhoto(paddle.nn.Layer):
    """conv_of_concat over channel groups of one input: `pieces` of features, then the 3 of a photo."""

    def __init__(self, pieces):
        super().__init__()
        self.ends = np.cumsum([0, *pieces, 3]).tolist()
        self.conv = paddle.nn.Conv2D(self.ends[-1], 8, 3, padding=1)

    def forward(self, x):
        return ops.conv_of_concat(self.conv, [x[:, a:b] for a, b in zip(self.ends, self.ends[1:])])


@pytest.mark.parametrize('pieces, convs', [((32,), [32, 3]), ((24, 8), [32, 3]), ((30,), [32, 3]),
                                           ((16, 20), [48, 3]), ((16, 3), [16, 6]), ((8,), [11])])
def test_exported_conv_of_concat_sets_the_photo_apart_from_whole_blocks(tmp_path, pieces, convs):
    """In the ONNX export (from a PIR graph) 16 channels of features or more + 3 channels of the photo are two
    convolutions summed (32 + 3; 24 + 8 + 3, as RVM's upsampling blocks; 30 + 3 and 16 + 20 + 3 with the features
    zero-padded to 32 and 48; 16 + 3 + 3, BGMv2's conv3, as 16 and 6), and 8 + 3 stays one; the outputs are the
    dygraph convolution's of the concatenation either way. `convs`: the input channels of each convolution."""
    pytest.importorskip('paddle2onnx')
    pytest.importorskip('onnxruntime')
    onnx = pytest.importorskip('onnx')
    from inference.backends import OnnxRuntimeBackend, export_model, has_pir

    paddle.seed(1)
    block = FeaturesAndPhoto(pieces)
    channels = block.ends[-1]
    x = np.random.default_rng(3).random((2, channels, 9, 12), dtype=np.float32)
    expected = block.conv(tensor(x)).numpy()
    export_model(block, str(tmp_path), 'json' if has_pir() else 'pdmodel', onnx=True,
                 spec=[paddle.static.InputSpec([None, channels, None, None], 'float32', 'x')])
    np.testing.assert_allclose(OnnxRuntimeBackend(str(tmp_path / 'model.onnx'))(x)[0], expected, atol=1e-5)
    import onnxruntime
    options = onnxruntime.SessionOptions()          # its constant folding computes the padded weights
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(tmp_path / 'folded.onnx')
    onnxruntime.InferenceSession(str(tmp_path / 'model.onnx'), options, providers=['CPUExecutionProvider'])
    graph = onnx.load(str(tmp_path / 'folded.onnx')).graph
    weights = {t.name: list(t.dims) for t in graph.initializer}
    found = sorted((weights[node.input[1]][1] for node in graph.node if node.op_type == 'Conv'), reverse=True)
    assert found == (sorted(convs, reverse=True) if has_pir() else [channels])


def test_gather_planes_is_gather_patches_of_the_map_as_it_is():
    rng = np.random.default_rng(7)
    x = rng.random((2, 3, 8, 12), dtype=np.float32)
    idx = np.array([[0, 0, 0], [1, 1, 2], [0, 1, 1], [1, 0, 2]], np.int64)      # corners and the inside
    for size, padding in ((4, 2), (2, 3), (4, 0)):
        planes = ops.gather_planes(tensor(x), tensor(idx), size, padding).numpy()
        k = size + 2 * padding
        padded = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
        assert planes.shape == (len(idx), 3, k, k)
        for p, (b, y, x0) in zip(planes, idx):
            np.testing.assert_array_equal(p, padded[b, :, y * size:y * size + k, x0 * size:x0 * size + k])
        np.testing.assert_array_equal(planes, ops.gather_patches(ops.pixels(tensor(x)), tensor(idx), size,
                                                                 padding).numpy())


def test_conv_of_padded_is_the_conv_of_the_unpadded_concatenation():
    paddle.seed(2)
    conv = paddle.nn.Conv2D(7, 5, 3)
    rng = np.random.default_rng(8)
    a, b = rng.random((3, 4, 6, 6), dtype=np.float32), rng.random((3, 3, 6, 6), dtype=np.float32)
    a_padded = np.concatenate([a, np.zeros((3, 12, 6, 6), np.float32)], axis=1)     # 16 channels
    expected = conv(tensor(np.concatenate([a, b], axis=1))).numpy()
    np.testing.assert_allclose(ops.conv_of_padded(conv, [tensor(a_padded), tensor(b)], [4, 3]).numpy(), expected,
                               rtol=1e-5, atol=1e-6)


class Upsampling(paddle.nn.Layer):
    """upsampled_pixels to twice the input's size (dynamic) and to a fixed size."""

    def forward(self, x):
        return ops.upsampled_pixels(x, [x.shape[2] * 2, x.shape[3] * 2]), ops.upsampled_pixels(x, [9, 10])


def test_onnx_export_transposes_before_the_upsampling(tmp_path):
    """backends.transpose_before_resize: the resize of an upsampled_pixels runs on the transposed (smaller) map
    in the ONNX file, with the numbers of dygraph."""
    pytest.importorskip('paddle2onnx')
    pytest.importorskip('onnxruntime')
    onnx = pytest.importorskip('onnx')
    from inference.backends import OnnxRuntimeBackend, export_model, has_pir

    x = np.random.default_rng(9).random((2, 5, 4, 6), dtype=np.float32)
    expected = [y.numpy() for y in Upsampling()(tensor(x))]
    export_model(Upsampling(), str(tmp_path), 'json' if has_pir() else 'pdmodel', onnx=True,
                 spec=[paddle.static.InputSpec([None, 5, None, None], 'float32', 'x')])
    for ours, theirs in zip(OnnxRuntimeBackend(str(tmp_path / 'model.onnx'))(x), expected):
        assert ours.shape == theirs.shape
        np.testing.assert_allclose(ours, theirs, atol=1e-6)
    graph = onnx.load(str(tmp_path / 'model.onnx')).graph
    made = {o: n.op_type for n in graph.node for o in n.output}
    resizes = [n for n in graph.node if n.op_type == 'Resize']
    assert len(resizes) == 2 and all(made[n.input[0]] == 'Transpose' for n in resizes)


class Crops(paddle.nn.Layer):
    """gather_patches and gather_planes of a map at given positions, 4 px cores with 2 px of context."""

    def forward(self, x, idx):
        return ops.gather_patches(ops.pixels(x), idx, 4, 2), ops.gather_planes(x, idx, 4, 2)


def test_patch_crops_export_to_onnx(tmp_path):
    """The ONNX-bound crops (a mask instead of a zero row) give the padded crops, at the borders too."""
    pytest.importorskip('paddle2onnx')
    pytest.importorskip('onnxruntime')
    from inference.backends import OnnxRuntimeBackend, export_model, has_pir

    x = np.random.default_rng(10).random((2, 5, 8, 12), dtype=np.float32)
    idx = np.array([[0, 0, 0], [1, 1, 2], [0, 1, 1], [1, 0, 2]], np.int64)
    padded = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)))
    expected = np.stack([padded[b, :, y * 4:y * 4 + 8, x0 * 4:x0 * 4 + 8] for b, y, x0 in idx])
    export_model(Crops(), str(tmp_path), 'json' if has_pir() else 'pdmodel', onnx=True,
                 spec=[paddle.static.InputSpec([None, 5, None, None], 'float32', 'x'),
                       paddle.static.InputSpec([None, 3], 'int64', 'idx')])
    session = OnnxRuntimeBackend(str(tmp_path / 'model.onnx'))
    feed = dict(zip(session.inputs, (x, idx)))
    for out in session.session.run(None, feed):
        np.testing.assert_array_equal(out, expected)
