"""Backends that run a network: the dygraph model, an exported model in Paddle Inference, or its ONNX
conversion in ONNX Runtime. Each is called the same way,

    outputs = backend(src, bgr)      # float32 N x 3 x H x W numpy arrays in, a tuple of numpy arrays out

with the outputs in the order of the network's forward (its named output type gives the names: a family's
runner wraps them, families/), so predict.py, eval.py and tools/speed_test.py can swap them freely.

export_model() writes the exported files (tools/export.py is its command line); create_backend() without an
export folder exports the given model to a temporary one first.
"""
import contextlib
import copy
import hashlib
import json
import os
import shutil
import sys
import tempfile
from importlib.util import find_spec

import numpy as np
import paddle
from paddle.static import InputSpec

from utils.io import make_dirs

BACKENDS = ('dygraph', 'inference', 'onnxruntime')


def installed(name):
    """Whether backend `name` can run here: ONNX Runtime needs onnxruntime, and paddle2onnx for its export."""
    return name != 'onnxruntime' or all(find_spec(m) for m in ('onnxruntime', 'paddle2onnx'))


def has_pir():
    """Paddle 3 saves PIR (.json) graphs; 2.6 only the legacy .pdmodel (a develop build reports 0.0.0)."""
    major = int(paddle.__version__.split('.')[0])
    return major >= 3 or major == 0


def ir_guard(legacy):
    """Static-graph flavour for to_static/jit.save: legacy ProgramDesc (.pdmodel) or PIR (.json)."""
    if not has_pir():
        if not legacy:
            raise ValueError('the json (PIR) format needs Paddle 3')
        return contextlib.nullcontext()
    return paddle.pir_utils.OldIrGuard() if legacy else paddle.pir_utils.IrGuard()


def input_spec(layer):
    """InputSpecs with dynamic batch, height and width: a layer's own (MattingNetworkStep), else src and bgr."""
    if hasattr(layer, 'input_spec'):
        return layer.input_spec()
    return [InputSpec([None, 3, None, None], 'float32', name) for name in ('src', 'bgr')]


def save_static(layer, prefix, legacy, spec=None):
    """paddle.jit.save of a copy of `layer` (to_static converts a Layer in place); `spec`: its InputSpecs."""
    layer = copy.deepcopy(layer)
    layer.eval()                                   # returns None in Paddle 2.6
    with ir_guard(legacy):
        paddle.jit.save(paddle.jit.to_static(layer, input_spec=spec or input_spec(layer), full_graph=True), prefix)


def export_model(layer, output, fmt='pdmodel', onnx=False, opset=11, spec=None):
    """Write `layer` as output/model.pdmodel|json + model.pdiparams (+ model.onnx). Each file appears whole or
    not at all; files of an earlier export in another format are removed.

    fmt 'pdmodel' is the legacy static graph that oneDNN runs on CPU (Paddle 3.3 cannot use oneDNN with
    bilinear resizes in .json graphs, PaddlePaddle/Paddle#79749); 'json' is the PIR format of Paddle 3."""
    make_dirs(output)
    with tempfile.TemporaryDirectory(dir=output, prefix='.export-') as tmp:
        save_static(layer, os.path.join(tmp, 'model'), fmt == 'pdmodel', spec)
        if onnx:
            # paddle2onnx 2.1 converts the legacy graph of this model wrongly (wrong mattes): use a PIR graph
            source = os.path.join(tmp, 'model')
            if fmt == 'pdmodel' and has_pir():
                source = os.path.join(tmp, 'pir', 'model')
                save_static(layer, source, legacy=False, spec=spec)
            graph = source + ('.json' if os.path.isfile(source + '.json') else '.pdmodel')
            to_onnx(graph, source + '.pdiparams', os.path.join(tmp, 'model.onnx'), opset)
        written = [n for n in os.listdir(tmp) if n.startswith('model')]
        for name in written:
            os.replace(os.path.join(tmp, name), os.path.join(output, name))
    for name in ('model.pdmodel', 'model.pdiparams.info', 'model.json', 'model.onnx'):
        if name not in written and os.path.exists(os.path.join(output, name)):
            os.remove(os.path.join(output, name))


@contextlib.contextmanager
def silent_stdout():
    """paddle2onnx prints progress lines to the process's stdout (some from C++): they would mix
    with a tool's own output (predict.py's summary, eval.py's table). Errors still raise."""
    sys.stdout.flush()
    saved = os.dup(1)
    with open(os.devnull, 'w') as devnull, contextlib.redirect_stdout(devnull):
        os.dup2(devnull.fileno(), 1)
        try:
            yield
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)


def to_onnx(graph, params, path, opset):
    try:
        import paddle2onnx
    except ImportError:
        raise ValueError('ONNX export needs `pip install paddle2onnx onnxruntime`') from None
    # no constant folding by paddle2onnx (ONNX Runtime folds when it loads the model): its default, polygraphy,
    # took 1-3 s of each export for the same graph speed, and pip-installs what it misses (sympy,
    # onnx_graphsurgeon) at run time
    with silent_stdout():
        paddle2onnx.export(graph, params, path, opset_version=opset, auto_upgrade_opset=True, verbose=False,
                           optimize_tool='None')
    if not os.path.isfile(path):
        raise ValueError(f'paddle2onnx did not write {path}')
    import onnx
    model = onnx.load(path)
    transpose_before_resize(model.graph)
    drop_unused(model.graph)
    onnx.save(model, path)


def drop_unused(graph):
    """Remove the nodes no output depends on and the constants no remaining node reads (paddle2onnx leaves some;
    ONNX Runtime warns of each when it loads the model). Nodes are in topological order: walk them backwards."""
    needed = {out.name for out in graph.output}
    kept = []
    for node in reversed(graph.node):
        if any(name in needed for name in node.output):
            kept.append(node)
            needed.update(node.input)
    del graph.node[:]
    graph.node.extend(reversed(kept))
    constants = [t for t in graph.initializer if t.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(constants)


def transpose_before_resize(graph):
    """Rewrite each Resize whose only use is a transpose to pixel-major order (perm 0, 2, 3, 1) in an ONNX graph
    as the transpose followed by a resize of axes 1 and 2: the same numbers, with the transpose on the smaller
    map of an upsampling (static_ops.upsampled_pixels) and ONNX Runtime's pixel-major resize, 2-4x faster
    (BGMv2's 36 coarse channels to half of HD: 18 -> 4-8 ms). paddle2onnx cannot write such a resize itself."""
    from onnx import helper, numpy_helper
    uses = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    for out in graph.output:
        uses[out.name] = uses.get(out.name, 0) + 1
    made = {o: n for n in graph.node for o in n.output}
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    constants.update({n.output[0]: numpy_helper.to_array(a.t) for n in graph.node if n.op_type == 'Constant'
                      for a in n.attribute if a.name == 'value'})
    moved = set()
    nodes = []
    for node in graph.node:
        perm = next((list(a.ints) for a in node.attribute if a.name == 'perm'), None)
        resize = made.get(node.input[0]) if node.op_type == 'Transpose' and perm == [0, 2, 3, 1] else None
        modes = {a.name: a.s for a in resize.attribute} if resize is not None and resize.op_type == 'Resize' else None
        if (modes is None or uses[resize.output[0]] != 1 or len(resize.input) < 3
                or modes.get('coordinate_transformation_mode') == b'tf_crop_and_resize'):
            nodes.append(node)
            continue
        moved.add(id(resize))
        stem = resize.output[0] + '_pixels'                     # unique: a map may be resized twice
        transposed = stem + '_input'
        inputs = [transposed, resize.input[1]]
        for name in resize.input[2:]:                           # scales or sizes: B C H W -> B H W C
            values = constants.get(name)
            if not name or (values is not None and values.size == 0):          # the unused one
                inputs.append(name)
            elif values is not None:
                graph.initializer.append(numpy_helper.from_array(values[[0, 2, 3, 1]], stem + '_' + name))
                inputs.append(stem + '_' + name)
            else:
                order = stem + '_order'
                graph.initializer.append(numpy_helper.from_array(np.array([0, 2, 3, 1], np.int64), order))
                nodes.append(helper.make_node('Gather', [name, order], [stem + '_' + name], axis=0))
                inputs.append(stem + '_' + name)
        nodes.append(helper.make_node('Transpose', [resize.input[0]], [transposed], perm=[0, 2, 3, 1]))
        nodes.append(helper.make_node('Resize', inputs, list(node.output), name=resize.name + '_pixels',
                                      **{a.name: helper.get_attribute_value(a) for a in resize.attribute}))
    kept = [n for n in nodes if id(n) not in moved]
    del graph.node[:]
    graph.node.extend(kept)
    gone = {n for n in made if id(made[n]) in moved}
    kept_info = [v for v in graph.value_info if v.name not in gone]
    del graph.value_info[:]
    graph.value_info.extend(kept_info)


class DygraphBackend:
    """The Paddle Layer itself (eval mode, no_grad); fp16 through AMP on GPU."""

    def __init__(self, model, precision='fp32'):
        self.model = model
        model.eval()
        self.fp16 = precision == 'fp16'

    def __call__(self, *inputs):
        with paddle.no_grad(), paddle.amp.auto_cast(enable=self.fp16, level='O1'):
            outputs = self.model(*[paddle.to_tensor(np.ascontiguousarray(x)) for x in inputs])
        outputs = (outputs,) if isinstance(outputs, paddle.Tensor) else outputs
        return tuple(t.astype('float32').numpy() for t in outputs)


def model_files(prefix):
    """Exported model prefix -> (graph file, params file). Prefers the legacy .pdmodel, which oneDNN can run."""
    for ext in ('.pdmodel', '.json'):
        if os.path.isfile(prefix + ext) and os.path.isfile(prefix + '.pdiparams'):
            return prefix + ext, prefix + '.pdiparams'
    raise ValueError(f"{prefix}: no exported model (.pdmodel or .json with .pdiparams); run tools/export.py")


class PaddleInferenceBackend:
    """paddle.inference predictor. CPU: oneDNN (legacy .pdmodel only: Paddle 3.3 fails on bilinear resizes in
    .json graphs with oneDNN, PaddlePaddle/Paddle#79749). GPU: optionally TensorRT, fp16."""

    def __init__(self, prefix, device='cpu', threads=2, precision='fp32', onednn=True, tensorrt=False,
                 trt_max_shape=(1, 1080, 1920)):
        from paddle import inference
        graph, params = model_files(prefix)
        legacy = graph.endswith('.pdmodel')
        config = inference.Config(graph, params)
        if device == 'gpu':
            half = precision == 'fp16'
            config.enable_use_gpu(256, 0, inference.PrecisionType.Half if half else inference.PrecisionType.Float32)
            if tensorrt:
                config.enable_tensorrt_engine(
                    workspace_size=1 << 30, max_batch_size=trt_max_shape[0], min_subgraph_size=3,
                    precision_mode=inference.PrecisionType.Half if half else inference.PrecisionType.Float32,
                    use_static=False, use_calib_mode=False)
                n, h, w = trt_max_shape
                shapes = lambda *s: {name: list(s) for name in ('src', 'bgr')}
                config.set_trt_dynamic_shape_info(shapes(1, 3, 32, 32), shapes(n, 3, h, w), shapes(n, 3, h, w))
        else:
            config.disable_gpu()
            config.set_cpu_math_library_num_threads(threads)
            if onednn and legacy:
                config.enable_mkldnn()
                config.set_mkldnn_cache_capacity(16)   # primitives per input shape; the patch count varies
            else:
                config.disable_mkldnn()
        if legacy:
            config.enable_memory_optim()                # fails for .json graphs in Paddle 3.3
        config.switch_ir_optim(True)
        config.disable_glog_info()
        self.predictor = inference.create_predictor(config)
        self.inputs = self.predictor.get_input_names()
        self.outputs = self.predictor.get_output_names()
        self.input_shapes = [[d if d > 0 else None for d in self.predictor.get_input_handle(n).shape()]
                             for n in self.inputs]

    def __call__(self, *inputs):
        for name, x in zip(self.inputs, inputs):
            handle = self.predictor.get_input_handle(name)
            handle.reshape(x.shape)
            handle.copy_from_cpu(np.ascontiguousarray(x, dtype=np.float32))
        self.predictor.run()
        return tuple(self.predictor.get_output_handle(name).copy_to_cpu() for name in self.outputs)


class OnnxRuntimeBackend:
    """ONNX Runtime session on the model.onnx that tools/export.py --onnx writes (pip install onnxruntime).
    Like PaddleInferenceBackend it lists its input names and shapes (input_shapes, None where dynamic)."""

    def __init__(self, path, device='cpu', threads=2):
        try:
            import onnxruntime
        except ImportError as e:
            raise ValueError("the onnxruntime backend needs `pip install onnxruntime` "
                             "(onnxruntime-gpu for --device gpu)") from e
        if not os.path.isfile(path):
            raise ValueError(f"{path}: no ONNX model; run tools/export.py --onnx")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3                   # errors only: its notes would mix with our output
        # idle workers sleep instead of spinning: a video's decoding and encoding threads need the cores (same
        # latency alone: 188.7 vs 188.5 ms for RVM at 1080p, 0.31 vs 0.37 CPU seconds)
        options.add_session_config_entry('session.intra_op.allow_spinning', '0')
        providers = ['CUDAExecutionProvider', 'CPUExecutionProvider'] if device == 'gpu' else ['CPUExecutionProvider']
        self.session = onnxruntime.InferenceSession(path, options, providers=providers)
        self.inputs = [i.name for i in self.session.get_inputs()]
        # None for a dynamic dimension of the graph's InputSpec
        self.input_shapes = [[d if isinstance(d, int) and d > 0 else None for d in i.shape]
                             for i in self.session.get_inputs()]

    def __call__(self, *inputs):
        feed = {name: np.ascontiguousarray(x, dtype=np.float32) for name, x in zip(self.inputs, inputs)}
        return tuple(self.session.run(None, feed))


def cache_root():
    """Where exports made on the fly are kept between runs: $MATTING_CACHE_DIR, else ~/.cache/bgmv2-paddle."""
    return os.environ.get('MATTING_CACHE_DIR') or os.path.join(os.path.expanduser('~'), '.cache', 'bgmv2-paddle')


def cached_export(layer, identity, fmt, onnx, spec):
    """The folder of `layer` exported once per `identity` (plain values that pin the weights and the graph: the
    checkpoint with its mtime, the options, the input size) and per Paddle / paddle2onnx version; written whole
    (a temporary folder renamed) so an interrupted export is never used."""
    versions = [paddle.__version__]
    if onnx:
        import paddle2onnx
        versions.append(paddle2onnx.__version__)
    digest = hashlib.sha1(json.dumps([identity, fmt, onnx, versions], sort_keys=True, default=str).encode())
    folder = os.path.join(cache_root(), 'graphs', digest.hexdigest()[:20])
    if not os.path.isdir(folder):
        make_dirs(os.path.dirname(folder))
        tmp = tempfile.mkdtemp(dir=os.path.dirname(folder), prefix='.export-')
        try:
            export_model(layer, tmp, fmt, onnx=onnx, spec=spec)
            with open(os.path.join(tmp, 'identity.json'), 'w', encoding='utf-8') as f:
                json.dump(identity, f, default=str)
            os.replace(tmp, folder)
        except OSError:
            if not os.path.isdir(folder):          # not a concurrent run that finished first
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def create_backend(name, model=None, export_dir=None, device='cpu', threads=2, precision='fp32', spec=None,
                   fmt='pdmodel', **options):
    """name in BACKENDS. dygraph runs `model`; inference and onnxruntime load the folder tools/export.py wrote,
    or, without one, export `model` to a temporary folder first (a few seconds)."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; expected one of {', '.join(BACKENDS)}")
    if name == 'dygraph':
        return DygraphBackend(model, precision)
    if export_dir is None:
        if model is None:
            raise ValueError(f"the {name} backend needs a model or an exported model folder (tools/export.py)")
        with tempfile.TemporaryDirectory() as tmp:        # predictors read the files when they are created
            export_model(model, tmp, fmt, onnx=name == 'onnxruntime', spec=spec)
            return create_backend(name, None, tmp, device, threads, precision, **options)
    if name == 'inference':
        return PaddleInferenceBackend(os.path.join(export_dir, 'model'), device, threads, precision, **options)
    return OnnxRuntimeBackend(os.path.join(export_dir, 'model.onnx'), device, threads)
