"""2-D convolutions and bilinear resizes on CPU through oneDNN, the library inside Paddle's wheel, called with
ctypes.

Paddle's dygraph conv2d runs its own CPU kernels (im2col and GEMM on plain NCHW); oneDNN's convolutions, in the
blocked layouts they choose themselves, do the same work 1.6-7x faster on this project's machine, and its
resampling has a 6x faster backward than Paddle's bilinear interpolation (a MattingBase 256x4 training step
5.1 s -> 1.8 s with both). Paddle ships libdnnl.so.3 but no way to call it from dygraph, and no headers, so this
module binds the few functions of oneDNN's stable C API (3.x) it needs. Nothing is compiled. Its kernels run on
every core this process may use (cpu_threads), whatever OpenMP team size Paddle leaves to its own.

`accelerate(network)` routes every plain `nn.Conv2D` of a network through `conv2d`, and the resizes and concatenated
convolutions of its forward (model/static_ops, where `routes` says so) through `resample` and `conv2d`; each layer
falls back to Paddle's own kernel for anything outside float32 NCHW zero-padded convolutions in dygraph on CPU, and
everything does when the library is missing, is not 3.x, or fails a self-check against Paddle's result. A routed
convolution's gradients come from `loss.backward()` or from `paddle.grad` asked for every input of it that needs one
(a PyLayer cannot tell which of them a partial `paddle.grad` wants).
"""
import collections
import contextlib
import ctypes
import os
import threading
import types

import numpy as np
import paddle
from paddle.autograd import PyLayer

from utils.device import usable_cpus

# oneDNN 3.x C API values (dnnl_types.h, dnnl_common_types.h); fixed across 3.x releases: they are the ABI
SUCCESS, CPU_ENGINE, F32, STREAM_IN_ORDER = 0, 1, 3, 1
TAG_ANY, TAG_A, TAG_ABCD, TAG_ABCDE, TAG_ACDB = 1, 2, 5, 6, 22     # acdb: NHWC
FORWARD_TRAINING, FORWARD_INFERENCE, CONVOLUTION_DIRECT = 64, 96, 1
RESAMPLING = {'nearest': 0x2fff0, 'bilinear': 0x2fff1}
QUERY_SRC, QUERY_DIFF_SRC, QUERY_WEIGHTS, QUERY_DIFF_WEIGHTS, QUERY_DST, QUERY_DIFF_DST = 129, 130, 131, 132, 133, 134
ARG_SRC, ARG_DST, ARG_WEIGHTS, ARG_BIAS = 1, 17, 33, 41
ARG_DIFF_SRC, ARG_DIFF_DST, ARG_DIFF_WEIGHTS, ARG_DIFF_BIAS = 129, 145, 161, 169
MAX_NDIMS = 12
PLANS_KEPT = 512                    # geometries with their primitives kept (a network has ~50-150)

Dims = ctypes.c_int64 * MAX_NDIMS
Handle = ctypes.c_void_p


class ExecArg(ctypes.Structure):
    _fields_ = [('arg', ctypes.c_int), ('memory', Handle)]


class Version(ctypes.Structure):
    _fields_ = [('major', ctypes.c_int), ('minor', ctypes.c_int), ('patch', ctypes.c_int),
                ('hash', ctypes.c_char_p), ('cpu_runtime', ctypes.c_uint), ('gpu_runtime', ctypes.c_uint)]


class OneDNNError(RuntimeError):
    pass


def cpu_threads():
    """oneDNN's threads: OMP_NUM_THREADS when set above 1, else every core this process may use (usable_cpus;
    Paddle sets an unset OMP_NUM_THREADS to 1 at import, so a 1 there is Paddle's, not the user's)."""
    requested = os.environ.get('OMP_NUM_THREADS', '')
    if requested.isdigit() and int(requested) > 1:
        return int(requested)
    return usable_cpus()


def openmp_runtimes():
    """The OpenMP libraries already loaded that libdnnl may be bound to: Paddle's libiomp5 (first in libpaddle's
    dependencies, so it serves libdnnl's omp_* calls) and the system's libgomp (libdnnl's own dependency)."""
    runtimes = []
    for name in (os.path.join(os.path.dirname(paddle.__file__), 'libs', 'libiomp5.so'), 'libgomp.so.1'):
        try:
            runtime = ctypes.CDLL(name, mode=os.RTLD_NOLOAD)
        except (OSError, AttributeError):
            continue
        runtime.omp_get_max_threads.restype = ctypes.c_int
        runtime.omp_set_num_threads.argtypes = [ctypes.c_int]
        runtimes.append(runtime)
    return runtimes


class Library:
    """The C functions, one CPU engine and one in-order stream."""

    SIGNATURES = {
        'dnnl_engine_create': [ctypes.POINTER(Handle), ctypes.c_int, ctypes.c_size_t],
        'dnnl_stream_create': [ctypes.POINTER(Handle), Handle, ctypes.c_uint],
        'dnnl_stream_wait': [Handle],
        'dnnl_memory_desc_create_with_tag': [ctypes.POINTER(Handle), ctypes.c_int, Dims, ctypes.c_int, ctypes.c_int],
        'dnnl_memory_desc_destroy': [Handle],
        'dnnl_convolution_forward_primitive_desc_create': [ctypes.POINTER(Handle), Handle, ctypes.c_int, ctypes.c_int,
                                                           Handle, Handle, Handle, Handle, Dims, Dims, Dims, Dims,
                                                           Handle],
        'dnnl_convolution_backward_data_primitive_desc_create': [ctypes.POINTER(Handle), Handle, ctypes.c_int, Handle,
                                                                 Handle, Handle, Dims, Dims, Dims, Dims, Handle,
                                                                 Handle],
        'dnnl_convolution_backward_weights_primitive_desc_create': [ctypes.POINTER(Handle), Handle, ctypes.c_int,
                                                                    Handle, Handle, Handle, Handle, Dims, Dims, Dims,
                                                                    Dims, Handle, Handle],
        'dnnl_resampling_forward_primitive_desc_create': [ctypes.POINTER(Handle), Handle, ctypes.c_int, ctypes.c_int,
                                                          Handle, Handle, Handle, Handle],
        'dnnl_resampling_backward_primitive_desc_create': [ctypes.POINTER(Handle), Handle, ctypes.c_int, Handle,
                                                           Handle, Handle, Handle, Handle],
        'dnnl_reorder_primitive_desc_create': [ctypes.POINTER(Handle), Handle, Handle, Handle, Handle, Handle],
        'dnnl_primitive_desc_destroy': [Handle],
        'dnnl_primitive_create': [ctypes.POINTER(Handle), Handle],
        'dnnl_primitive_destroy': [Handle],
        'dnnl_primitive_execute': [Handle, Handle, ctypes.c_int, ctypes.POINTER(ExecArg)],
        'dnnl_memory_create': [ctypes.POINTER(Handle), Handle, Handle, Handle],
        'dnnl_memory_set_data_handle': [Handle, Handle],
        'dnnl_memory_destroy': [Handle],
    }

    def __init__(self, path):
        self.lib = ctypes.CDLL(path)
        self.lib.dnnl_version.restype = ctypes.POINTER(Version)
        version = self.lib.dnnl_version().contents
        self.version = (version.major, version.minor, version.patch)
        if version.major != 3:
            raise OneDNNError(f'{path}: oneDNN {version.major}.{version.minor}, this binding knows 3.x')
        for name, argtypes in self.SIGNATURES.items():
            function = getattr(self.lib, name)
            function.argtypes, function.restype = argtypes, ctypes.c_int
        self.lib.dnnl_primitive_desc_query_md.argtypes = [Handle, ctypes.c_int, ctypes.c_int]
        self.lib.dnnl_primitive_desc_query_md.restype = Handle
        self.lib.dnnl_memory_desc_equal.argtypes = [Handle, Handle]
        self.lib.dnnl_memory_desc_equal.restype = ctypes.c_int
        self.lib.dnnl_memory_desc_get_size.argtypes = [Handle]
        self.lib.dnnl_memory_desc_get_size.restype = ctypes.c_size_t
        self.engine, self.stream = Handle(), Handle()
        self.call('dnnl_engine_create', ctypes.byref(self.engine), CPU_ENGINE, 0)
        self.call('dnnl_stream_create', ctypes.byref(self.stream), self.engine, STREAM_IN_ORDER)
        self.threads, self.openmp = cpu_threads(), openmp_runtimes()

    @contextlib.contextmanager
    def parallel(self):
        """The calling thread's OpenMP team size set to self.threads, as it was afterwards. A primitive keeps the
        size it was created with, and Paddle leaves 1 (its OMP_NUM_THREADS): oneDNN on one core of two took 2.6 s
        of a MattingBase 256x4 training step, 1.8 s on both."""
        previous = [runtime.omp_get_max_threads() for runtime in self.openmp]
        for runtime in self.openmp:
            runtime.omp_set_num_threads(self.threads)
        try:
            yield
        finally:
            for runtime, threads in zip(self.openmp, previous):
                runtime.omp_set_num_threads(threads)

    def call(self, name, *args):
        status = getattr(self.lib, name)(*args)
        if status != SUCCESS:
            raise OneDNNError(f'{name} failed with oneDNN status {status}')

    def create(self, name, *args):
        """Call a dnnl_*_create function and return the handle it made."""
        handle = Handle()
        self.call(name, ctypes.byref(handle), *args)
        return handle

    def memory_desc(self, dims, tag):
        return self.create('dnnl_memory_desc_create_with_tag', len(dims), Dims(*dims), F32, tag)

    def memory(self, desc):
        """A memory object without data; execute() points it at a buffer each call."""
        return self.create('dnnl_memory_create', desc, self.engine, None)


class Reorder:
    """Copy between two layouts of one tensor (ARG_SRC -> ARG_DST), or nothing when the layouts are the same."""

    def __init__(self, lib, source, target):
        self.lib = lib
        self.source_size, self.target_size = (lib.lib.dnnl_memory_desc_get_size(d) for d in (source, target))
        self.needed = not lib.lib.dnnl_memory_desc_equal(source, target)
        if self.needed:
            pd = lib.create('dnnl_reorder_primitive_desc_create', source, lib.engine, target, lib.engine, None)
            self.primitive = lib.create('dnnl_primitive_create', pd)
            lib.call('dnnl_primitive_desc_destroy', pd)
            self.memories = {ARG_SRC: lib.memory(source), ARG_DST: lib.memory(target)}

    def close(self):
        if self.needed:
            self.lib.call('dnnl_primitive_destroy', self.primitive)
            for memory in self.memories.values():
                self.lib.call('dnnl_memory_destroy', memory)


class Primitive:
    """One primitive with a memory object per argument ({arg: memory desc}), pointed at a buffer when executed."""

    def __init__(self, lib, pd, args):
        self.lib, self.pd = lib, pd
        self.primitive = lib.create('dnnl_primitive_create', pd)
        self.memories = {arg: lib.memory(desc) for arg, desc in args.items()}

    def desc(self, query):
        return self.lib.lib.dnnl_primitive_desc_query_md(self.pd, query, 0)

    def close(self):
        for memory in self.memories.values():
            self.lib.call('dnnl_memory_destroy', memory)
        self.lib.call('dnnl_primitive_destroy', self.primitive)
        self.lib.call('dnnl_primitive_desc_destroy', self.pd)


class Executor:
    """Runs primitives and reorders on buffers given as addresses; blocked-layout buffers are numpy scratch."""

    def __init__(self, lib):
        self.lib = lib
        self.keep = []                                     # scratch arrays alive until the stream is done
        self.pending = []                                  # results to copy into their plain layout at finish()

    def scratch(self, size):
        array = np.empty(size + 64, np.uint8)
        self.keep.append(array)
        return array.ctypes.data + (-array.ctypes.data) % 64

    def reorder(self, reorder, source):
        """Address of the data in reorder.target's layout, copying `source` when the layouts differ."""
        if not reorder.needed:
            return source
        target = self.scratch(reorder.target_size)
        self.execute(reorder, {ARG_SRC: source, ARG_DST: target})
        return target

    def reorder_into(self, reorder, target):
        """Scratch for a result in reorder.source's layout, copied to `target` by finish()."""
        if not reorder.needed:
            return target
        source = self.scratch(reorder.source_size)
        self.pending.append((reorder, source, target))
        return source

    def execute(self, primitive, addresses):
        """primitive: a Primitive or a needed Reorder; addresses: {arg: buffer address}."""
        args = (ExecArg * len(addresses))()
        for slot, (arg, address) in zip(args, addresses.items()):
            memory = primitive.memories[arg]
            self.lib.call('dnnl_memory_set_data_handle', memory, address)
            slot.arg, slot.memory = arg, memory
        self.lib.call('dnnl_primitive_execute', primitive.primitive, self.lib.stream, len(addresses), args)

    def finish(self):
        for reorder, source, target in self.pending:
            self.execute(reorder, {ARG_SRC: source, ARG_DST: target})
        self.lib.call('dnnl_stream_wait', self.lib.stream)
        self.keep, self.pending = [], []


class ConvolutionPlan:
    """The primitives of one convolution geometry: forward, and on first need backward-data and -weights."""

    def __init__(self, lib, x_shape, w_shape, stride, padding, dilation, groups, bias, training):
        n, c, h, w = x_shape
        k, _, kh, kw = w_shape
        top, bottom, left, right = padding
        oh = (h + top + bottom - dilation[0] * (kh - 1) - 1) // stride[0] + 1
        ow = (w + left + right - dilation[1] * (kw - 1) - 1) // stride[1] + 1
        self.lib, self.bias, self.out_shape = lib, bias, [n, k, oh, ow]
        weights = [groups, k // groups] + list(w_shape[1:]) if groups > 1 else list(w_shape)
        self.geometry = [Dims(*stride), Dims(*[d - 1 for d in dilation]), Dims(top, left), Dims(bottom, right)]
        # plain layouts of the Paddle tensors; groups are the outer dimension of Paddle's [K, C/g, kh, kw]
        self.user = {'src': lib.memory_desc(x_shape, TAG_ABCD), 'dst': lib.memory_desc(self.out_shape, TAG_ABCD),
                     'wei': lib.memory_desc(weights, TAG_ABCDE if groups > 1 else TAG_ABCD),
                     'bias': lib.memory_desc([k], TAG_A) if bias else None}
        self.any = {name: lib.memory_desc(shape, TAG_ANY) for name, shape in
                    (('src', x_shape), ('dst', self.out_shape), ('wei', weights))}
        pd = lib.create('dnnl_convolution_forward_primitive_desc_create', lib.engine,
                        FORWARD_TRAINING if training else FORWARD_INFERENCE, CONVOLUTION_DIRECT, self.any['src'],
                        self.any['wei'], self.user['bias'], self.any['dst'], *self.geometry, None)
        self.forward_pd = pd
        self.fwd = Primitive(lib, pd, self.arguments(pd, {ARG_SRC: QUERY_SRC, ARG_WEIGHTS: QUERY_WEIGHTS,
                                                          ARG_DST: QUERY_DST}, ARG_BIAS))
        self.fwd_reorders = (Reorder(lib, self.user['src'], self.fwd.desc(QUERY_SRC)),
                             Reorder(lib, self.user['wei'], self.fwd.desc(QUERY_WEIGHTS)),
                             Reorder(lib, self.fwd.desc(QUERY_DST), self.user['dst']))
        self.backward_parts = None

    def arguments(self, pd, queries, bias_arg):
        args = {arg: self.lib.lib.dnnl_primitive_desc_query_md(pd, query, 0) for arg, query in queries.items()}
        if self.bias and bias_arg:
            args[bias_arg] = self.user['bias']
        return args

    def forward(self, x, weight, bias, out):
        """x, weight, bias, out: addresses of contiguous float32 buffers."""
        run = Executor(self.lib)
        src_r, wei_r, dst_r = self.fwd_reorders
        addresses = {ARG_SRC: run.reorder(src_r, x), ARG_WEIGHTS: run.reorder(wei_r, weight),
                     ARG_DST: run.reorder_into(dst_r, out)}
        if self.bias:
            addresses[ARG_BIAS] = bias
        run.execute(self.fwd, addresses)
        run.finish()

    def backward(self, x, weight, dout, dx, dw, db):
        """Gradients into dx (backward-data) and dw, db (backward-weights); None skips one."""
        data, weights = self.backward_primitives()
        run = Executor(self.lib)
        ddst = None
        if dx is not None:
            prim, (ddst_r, wei_r, dsrc_r) = data
            ddst = run.reorder(ddst_r, dout)
            run.execute(prim, {ARG_DIFF_DST: ddst, ARG_WEIGHTS: run.reorder(wei_r, weight),
                               ARG_DIFF_SRC: run.reorder_into(dsrc_r, dx)})
        if dw is not None:
            prim, (src_r, ddst_r, dwei_r) = weights
            if ddst is None or not self.shared_diff_dst:                 # one copy of dout when both take one layout
                ddst = run.reorder(ddst_r, dout)
            addresses = {ARG_SRC: run.reorder(src_r, x), ARG_DIFF_DST: ddst,
                         ARG_DIFF_WEIGHTS: run.reorder_into(dwei_r, dw)}
            if self.bias:
                addresses[ARG_DIFF_BIAS] = db
            run.execute(prim, addresses)
        run.finish()

    def backward_primitives(self):
        if self.backward_parts is None:
            lib = self.lib
            pd = lib.create('dnnl_convolution_backward_data_primitive_desc_create', lib.engine, CONVOLUTION_DIRECT,
                            self.any['src'], self.any['wei'], self.any['dst'], *self.geometry, self.forward_pd, None)
            data = Primitive(lib, pd, self.arguments(pd, {ARG_DIFF_DST: QUERY_DIFF_DST, ARG_WEIGHTS: QUERY_WEIGHTS,
                                                          ARG_DIFF_SRC: QUERY_DIFF_SRC}, None))
            pd = lib.create('dnnl_convolution_backward_weights_primitive_desc_create', lib.engine,
                            CONVOLUTION_DIRECT, self.any['src'], self.any['wei'], self.user['bias'], self.any['dst'],
                            *self.geometry, self.forward_pd, None)
            weights = Primitive(lib, pd, self.arguments(pd, {ARG_SRC: QUERY_SRC, ARG_DIFF_DST: QUERY_DIFF_DST,
                                                             ARG_DIFF_WEIGHTS: QUERY_DIFF_WEIGHTS}, ARG_DIFF_BIAS))
            self.backward_parts = (
                (data, (Reorder(lib, self.user['dst'], data.desc(QUERY_DIFF_DST)),
                        Reorder(lib, self.user['wei'], data.desc(QUERY_WEIGHTS)),
                        Reorder(lib, data.desc(QUERY_DIFF_SRC), self.user['src']))),
                (weights, (Reorder(lib, self.user['src'], weights.desc(QUERY_SRC)),
                           Reorder(lib, self.user['dst'], weights.desc(QUERY_DIFF_DST)),
                           Reorder(lib, weights.desc(QUERY_DIFF_WEIGHTS), self.user['wei']))))
            shared = lib.lib.dnnl_memory_desc_equal(data.desc(QUERY_DIFF_DST), weights.desc(QUERY_DIFF_DST))
            self.shared_diff_dst = bool(shared)
        return self.backward_parts

    def close(self):
        parts = [(self.fwd, self.fwd_reorders)] + list(self.backward_parts or ())
        for primitive, reorders in parts:
            for reorder in reorders:
                reorder.close()
            primitive.close()
        for desc in list(self.user.values()) + list(self.any.values()):
            if desc is not None:
                self.lib.call('dnnl_memory_desc_destroy', desc)


class ResamplingPlan:
    """Resizing of one shape: bilinear (align_corners=False: oneDNN's linear resampling, the same half-pixel rule)
    or nearest (the same pixels as Paddle's at whole upscaling factors only: resample() is used so). It runs in
    channels-last (NHWC), where oneDNN's kernel is vectorised; 6x faster backward than NCHW."""

    def __init__(self, lib, x_shape, size, mode):
        self.lib, self.out_shape = lib, list(x_shape[:2]) + list(size)
        self.user = [lib.memory_desc(x_shape, TAG_ABCD), lib.memory_desc(self.out_shape, TAG_ABCD)]
        self.nhwc = [lib.memory_desc(x_shape, TAG_ACDB), lib.memory_desc(self.out_shape, TAG_ACDB)]
        src, dst = self.nhwc
        pd = lib.create('dnnl_resampling_forward_primitive_desc_create', lib.engine, FORWARD_TRAINING,
                        RESAMPLING[mode], None, src, dst, None)
        self.fwd = Primitive(lib, pd, {ARG_SRC: src, ARG_DST: dst})
        pd = lib.create('dnnl_resampling_backward_primitive_desc_create', lib.engine, RESAMPLING[mode], None,
                        src, dst, pd, None)
        self.bwd = Primitive(lib, pd, {ARG_DIFF_DST: dst, ARG_DIFF_SRC: src})
        (user_src, user_dst), (src, dst) = self.user, self.nhwc
        self.reorders = (Reorder(lib, user_src, src), Reorder(lib, dst, user_dst),
                         Reorder(lib, user_dst, dst), Reorder(lib, src, user_src))

    def forward(self, x, out):
        run = Executor(self.lib)
        run.execute(self.fwd, {ARG_SRC: run.reorder(self.reorders[0], x),
                               ARG_DST: run.reorder_into(self.reorders[1], out)})
        run.finish()

    def backward(self, dout, dx):
        run = Executor(self.lib)
        run.execute(self.bwd, {ARG_DIFF_DST: run.reorder(self.reorders[2], dout),
                               ARG_DIFF_SRC: run.reorder_into(self.reorders[3], dx)})
        run.finish()

    def close(self):
        for reorder in self.reorders:
            reorder.close()
        self.fwd.close()
        self.bwd.close()
        for desc in self.user + self.nhwc:
            self.lib.call('dnnl_memory_desc_destroy', desc)


class Kernels:
    """The library and its plans by kind and geometry (least recently used dropped beyond PLANS_KEPT); one call
    at a time. Tensors in and out are contiguous float32 Paddle tensors on CPU."""

    def __init__(self, lib):
        self.lib, self.plans, self.lock = lib, collections.OrderedDict(), threading.Lock()

    def plan(self, kind, *key):
        plan = self.plans.get((kind,) + key)
        if plan is None:
            plan = self.plans[(kind,) + key] = kind(self.lib, *key)
            if len(self.plans) > PLANS_KEPT:
                self.plans.popitem(last=False)[1].close()
        self.plans.move_to_end((kind,) + key)
        return plan

    def conv_forward(self, x, weight, bias, stride, padding, dilation, groups, training):
        with self.lock, self.lib.parallel():
            plan = self.plan(ConvolutionPlan, tuple(x.shape), tuple(weight.shape), tuple(stride), tuple(padding),
                             tuple(dilation), groups, bias is not None, training)
            out = paddle.empty(plan.out_shape, dtype='float32')
            plan.forward(x.data_ptr(), weight.data_ptr(), address(bias), out.data_ptr())
        return out

    def conv_backward(self, x, weight, bias, dout, stride, padding, dilation, groups, wants):
        """wants: (dx, dw, db) booleans; returns the three gradients, None where not wanted."""
        with self.lock, self.lib.parallel():
            plan = self.plan(ConvolutionPlan, tuple(x.shape), tuple(weight.shape), tuple(stride), tuple(padding),
                             tuple(dilation), groups, bias is not None, True)
            dx = paddle.empty(x.shape, dtype='float32') if wants[0] else None
            dw = paddle.empty(weight.shape, dtype='float32') if wants[1] or wants[2] else None
            db = paddle.empty(bias.shape, dtype='float32') if bias is not None and dw is not None else None
            plan.backward(x.data_ptr(), weight.data_ptr(), dout.data_ptr(), address(dx), address(dw), address(db))
        return dx, dw if wants[1] else None, db if wants[2] else None

    def resize_forward(self, x, size, mode):
        with self.lock, self.lib.parallel():
            plan = self.plan(ResamplingPlan, tuple(x.shape), tuple(size), mode)
            out = paddle.empty(plan.out_shape, dtype='float32')
            plan.forward(x.data_ptr(), out.data_ptr())
        return out

    def resize_backward(self, x_shape, dout, mode):
        with self.lock, self.lib.parallel():
            plan = self.plan(ResamplingPlan, tuple(x_shape), tuple(dout.shape[2:]), mode)
            dx = paddle.empty(x_shape, dtype='float32')
            plan.backward(dout.data_ptr(), dx.data_ptr())
        return dx


def address(tensor):
    return None if tensor is None else tensor.data_ptr()


class ConvolutionFunction(PyLayer):
    """conv2d with oneDNN's forward and backward; the geometry travels as a tuple argument."""

    @staticmethod
    def forward(ctx, x, weight, *bias_and_geometry):
        *bias, geometry = bias_and_geometry
        bias = bias[0] if bias else None
        ctx.geometry, ctx.has_bias = geometry, bias is not None
        ctx.wants = (not x.stop_gradient, not weight.stop_gradient, bias is not None and not bias.stop_gradient)
        ctx.save_for_backward(x, weight, bias)
        return KERNELS.conv_forward(x, weight, bias, *geometry, training=True)

    @staticmethod
    def backward(ctx, dout):
        x, weight, bias = ctx.saved_tensor()
        dx, dw, db = KERNELS.conv_backward(x, weight, bias, contiguous(dout), *ctx.geometry, ctx.wants)
        return (dx, dw, db) if ctx.has_bias else (dx, dw)


def contiguous(tensor):
    return tensor if tensor.is_contiguous() else tensor.contiguous()


def conv2d(x, weight, bias=None, stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1), groups=1):
    """F.conv2d for float32 NCHW on CPU; padding (top, bottom, left, right)."""
    x, weight = contiguous(x), contiguous(weight)
    geometry = (list(stride), list(padding), list(dilation), groups)
    frozen = x.stop_gradient and weight.stop_gradient and (bias is None or bias.stop_gradient)
    needs_grad = paddle.is_grad_enabled() and not frozen
    if not needs_grad:
        return KERNELS.conv_forward(x, weight, bias, *geometry, training=False)
    return ConvolutionFunction.apply(x, weight, *([bias] if bias is not None else []), geometry)


class ResizeFunction(PyLayer):
    @staticmethod
    def forward(ctx, x, size, mode):
        ctx.x_shape, ctx.mode = list(x.shape), mode
        return KERNELS.resize_forward(x, size, mode)

    @staticmethod
    def backward(ctx, dout):
        return KERNELS.resize_backward(ctx.x_shape, contiguous(dout), ctx.mode)


def resample(x, size, mode='bilinear'):
    """F.interpolate(x, size, mode='bilinear', align_corners=False) for float32 NCHW on CPU; mode='nearest' only
    for sizes that are whole multiples of x's (elsewhere oneDNN's nearest pixel differs from Paddle's)."""
    x, size = contiguous(x), [int(v) for v in size]
    if mode == 'nearest' and (size[0] % x.shape[2] or size[1] % x.shape[3]):
        raise ValueError(f'nearest resampling of {list(x.shape[2:])} to {size}: not a whole upscaling factor')
    if paddle.is_grad_enabled() and not x.stop_gradient:
        return ResizeFunction.apply(x, size, mode)
    return KERNELS.resize_forward(x, size, mode)


def routes(x):
    """Whether model/static_ops sends x to oneDNN (resize, repeat_pixels, conv_of_concat): inside the forward of an
    accelerated network (the networks do all their resizes through those), in dygraph, float32 NCHW on CPU."""
    return (getattr(SCOPE, 'active', False) and paddle.in_dynamic_mode() and x.ndim == 4
            and x.dtype == paddle.float32 and x.place.is_cpu_place() and not autocast_enabled())


def routable_padding(layer):
    """(top, bottom, left, right) of an nn.Conv2D that conv2d can run (explicit zero padding, NCHW, float32
    weights), else None."""
    padding = layer._updated_padding
    if (layer._padding_mode != 'zeros' or layer._padding_algorithm != 'EXPLICIT' or not isinstance(padding, list)
            or layer._data_format != 'NCHW' or layer.weight.dtype != paddle.float32):
        return None
    if len(padding) == 2:
        return [padding[0], padding[0], padding[1], padding[1]]
    return padding if len(padding) == 4 else None


def autocast_enabled():
    check = getattr(paddle.amp, 'is_autocast_enabled', None)           # Paddle 3; 2.6 autocasts only on GPU
    return bool(check and check())


@paddle.jit.not_to_static
def routed_forward(layer, x):
    """nn.Conv2D.forward through conv2d where it applies. Traced as written: dy2static's rewrite of it, once per
    layer, doubled an export's tracing time (RVM mobilenetv3 2.8 -> 5.0 s)."""
    padding = routable_padding(layer)
    if (padding is None or not paddle.in_dynamic_mode() or x.ndim != 4 or x.dtype != paddle.float32
            or not x.place.is_cpu_place() or autocast_enabled()):
        return paddle.nn.Conv2D.forward(layer, x)
    return conv2d(x, layer.weight, layer.bias, layer._stride, padding, layer._dilation, layer._groups)


def library_path():
    return os.path.join(os.path.dirname(paddle.__file__), 'libs', 'libdnnl.so.3')


def self_check():
    """oneDNN's results on a small grouped, strided, dilated convolution and a resize equal Paddle's, gradients
    too."""
    rng = np.random.default_rng(0)
    x = paddle.to_tensor(rng.standard_normal((2, 4, 9, 11)).astype('float32'), stop_gradient=False)
    w = paddle.to_tensor(rng.standard_normal((6, 2, 3, 3)).astype('float32'), stop_gradient=False)
    b = paddle.to_tensor(rng.standard_normal(6).astype('float32'), stop_gradient=False)

    def results(conv, resize):
        y = conv(x, w, b, (2, 1), [1, 2, 2, 1], (1, 2), 2)
        z = resize(y, [7, 9])
        return [z] + list(paddle.grad((z * z).sum(), [x, w, b]))

    ours = results(conv2d, resample)
    theirs = results(paddle.nn.functional.conv2d,
                     lambda y, size: paddle.nn.functional.interpolate(y, size, mode='bilinear', align_corners=False))
    return all(np.allclose(a.numpy(), e.numpy(), rtol=1e-4, atol=1e-4 * float(e.abs().max()))
               for a, e in zip(ours, theirs))


KERNELS = None
STATUS = None               # why the library is not used, once tried
SCOPE = threading.local()   # active: an accelerated network's forward runs in this thread (routes)


def available():
    """True when oneDNN loads and passes self_check(); tried once per process."""
    global KERNELS, STATUS
    if STATUS is None:
        try:
            KERNELS = Kernels(Library(library_path()))
            STATUS = 'ok' if self_check() else 'its convolution differs from Paddle\'s in the self-check'
        except (OSError, AttributeError, OneDNNError) as error:
            STATUS = str(error)
        if STATUS != 'ok':
            KERNELS = None
    return STATUS == 'ok'


def status():
    """'ok', or why oneDNN is not used."""
    available()
    return STATUS


def enter_scope(layer, inputs):
    SCOPE.active = True


def leave_scope(layer, inputs, outputs):
    SCOPE.active = False


def accelerate(network, device='cpu', kernels='onednn'):
    """Route the network's nn.Conv2D layers and the bilinear resizes of its forward (routes) through
    oneDNN when running on CPU with kernels 'onednn'; returns how many layers, 0 when oneDNN is not available."""
    if device != 'cpu' or kernels != 'onednn' or not available():
        return 0
    # hooks, not a wrapped forward: tracing for export reads forward's signature (an exception inside forward
    # leaves the scope on until the next accelerated forward ends: a resize elsewhere then merely runs on oneDNN)
    network.register_forward_pre_hook(enter_scope)
    network.register_forward_post_hook(leave_scope)
    layers = [layer for layer in network.sublayers(include_self=True)
              if isinstance(layer, paddle.nn.Conv2D) and type(layer).forward is paddle.nn.Conv2D.forward]
    for layer in layers:
        layer.forward = types.MethodType(routed_forward, layer)
    return len(layers)
