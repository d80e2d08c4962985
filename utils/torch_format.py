"""Read PyTorch checkpoints (`torch.save` files) without torch (tests/torch_writer.py writes them for tests).

A `.pth` file is a pickle, and unpickling calls whatever the file names. The unpickler here resolves
only the few names a state_dict needs, each to a function of this module, and refuses everything else,
so an untrusted checkpoint cannot execute code. Tensors come back as numpy arrays.

Formats: the zip archive of torch >= 1.6 (`<folder>/data.pkl` + `<folder>/data/<key>` storages; the
folder name varies between torch versions) and the legacy stream of torch < 1.6 (five pickles and the
raw storages in one file, also written by `torch.save(..., _use_new_zipfile_serialization=False)`).
"""
import collections
import os
import pickle
import struct
import zipfile

import numpy as np


LEGACY_MAGIC = 0x1950a86a20f9469cfc6c
LEGACY_PROTOCOL = 1001
STORAGE_DTYPES = {
    'FloatStorage': 'f4', 'DoubleStorage': 'f8', 'HalfStorage': 'f2', 'BFloat16Storage': 'bf16',
    'LongStorage': 'i8', 'IntStorage': 'i4', 'ShortStorage': 'i2', 'CharStorage': 'i1',
    'ByteStorage': 'u1', 'BoolStorage': '?',
}


class StorageType(collections.namedtuple('StorageType', 'name dtype')):
    """Stands in for `torch.FloatStorage` & co. inside a storage reference."""


class StorageRef(collections.namedtuple('StorageRef', 'key type view')):
    """A persistent storage id; the bytes are read after unpickling (the legacy format stores them after the pickle)."""


class TensorRef(collections.namedtuple('TensorRef', 'storage offset size stride')):
    """A tensor whose storage bytes are not read yet."""


def _rebuild_tensor(storage, offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    return TensorRef(storage, offset, tuple(size), tuple(stride))


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
    return data


TORCH_GLOBALS = {
    ('collections', 'OrderedDict'): collections.OrderedDict,
    ('torch._utils', '_rebuild_tensor'): _rebuild_tensor,          # torch < 0.4
    ('torch._utils', '_rebuild_tensor_v2'): _rebuild_tensor,
    ('torch._utils', '_rebuild_parameter'): _rebuild_parameter,
    ('torch._utils', '_rebuild_parameter_with_state'): _rebuild_parameter,
    **{('torch', name): StorageType(name, dtype) for name, dtype in STORAGE_DTYPES.items()},
}


class RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler that only resolves the globals in `allowed` ({(module, name): object})."""

    def __init__(self, file, allowed, persistent_load=None, source=''):
        super().__init__(file)
        self.allowed, self.source, self._persistent_load = allowed, source, persistent_load

    def find_class(self, module, name):
        if (module, name) not in self.allowed:
            raise ValueError(f"{self.source}: refusing to load '{module}.{name}': a checkpoint may only hold "
                             f"tensors and plain containers (this file would run code if unpickled)")
        return self.allowed[(module, name)]

    def persistent_load(self, pid):
        if self._persistent_load is None:
            raise ValueError(f"{self.source}: unexpected persistent id {pid!r}")
        return self._persistent_load(pid)


def _storage_ref(source):
    def load(pid):
        # zip: ('storage', type, key, location, numel); legacy: the same plus view metadata
        view = pid[5] if isinstance(pid, tuple) and len(pid) == 6 else None
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == 'storage'
                and isinstance(pid[1], StorageType)) or not (
                view is None or isinstance(view, tuple) and len(view) == 3
                and all(isinstance(v, int) and v >= 0 for v in view[1:])):
            raise ValueError(f"{source}: unsupported persistent id {pid!r}")
        return StorageRef(str(pid[2]), pid[1], view)
    return load


def _storage_array(raw, storage_type, byteorder, source):
    """Raw storage bytes -> 1-D native numpy array (bfloat16 widened to float32)."""
    order = '<' if byteorder == 'little' else '>'
    code = 'u2' if storage_type.dtype == 'bf16' else storage_type.dtype
    dtype = np.dtype(code).newbyteorder(order)
    if len(raw) % dtype.itemsize:
        raise ValueError(f"{source}: storage of {len(raw)} bytes is not a whole number of {storage_type.name} elements")
    array = np.frombuffer(raw, dtype).astype(dtype.newbyteorder('='))
    if storage_type.dtype == 'bf16':
        array = (array.astype(np.uint32) << 16).view(np.float32)
    return array


def _tensor_array(ref, storages, source):
    """Materialise a TensorRef from its storage, honouring offset, size and stride, within bounds."""
    if not isinstance(ref.storage, StorageRef):
        raise ValueError(f"{source}: malformed tensor (storage is a {type(ref.storage).__name__})")
    storage = storages(ref.storage)
    values = (ref.offset,) + ref.size + ref.stride
    if len(ref.size) != len(ref.stride) or not all(isinstance(v, int) and v >= 0 for v in values):
        raise ValueError(f"{source}: malformed tensor (offset {ref.offset}, size {ref.size}, stride {ref.stride})")
    if 0 in ref.size:
        return np.zeros(ref.size, storage.dtype)
    last = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride))
    if last >= storage.size:
        raise ValueError(f"{source}: tensor of size {ref.size} reads past its storage of {storage.size} elements")
    view = np.lib.stride_tricks.as_strided(storage[ref.offset:], ref.size,
                                           [s * storage.itemsize for s in ref.stride])
    return view.copy()                           # C order; keeps 0-d tensors 0-d


def _materialise(obj, storages, source):
    """Replace every TensorRef inside dicts, lists and tuples by a numpy array."""
    if isinstance(obj, TensorRef):
        return _tensor_array(obj, storages, source)
    if isinstance(obj, dict):
        out = type(obj)() if isinstance(obj, collections.OrderedDict) else {}
        for key, value in obj.items():
            out[key] = _materialise(value, storages, source)
        return out
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialise(v, storages, source) for v in obj)
    return obj


def _cached(read):
    cache = {}
    def storages(ref):
        if ref.key not in cache:
            cache[ref.key] = read(ref)
        array = cache[ref.key]
        if ref.view is not None:                 # legacy views: (view_key, offset, size) into the storage
            _, offset, size = ref.view
            array = array[offset:offset + size]
        return array
    return storages


def _load_zip(path):
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = sorted((n for n in names if n.endswith('data.pkl')), key=lambda n: n.count('/'))
        if not pickles:
            raise ValueError(f"{path}: a zip file but not a torch checkpoint (no data.pkl)")
        prefix = pickles[0][:-len('data.pkl')]
        if any(n.startswith(prefix + 'code/') for n in names):
            raise ValueError(f"{path}: a TorchScript model, not a state_dict; use the released pytorch_<backbone>.pth")
        byteorder = 'little'
        if prefix + 'byteorder' in names:
            byteorder = archive.read(prefix + 'byteorder').decode().strip()
        with archive.open(pickles[0]) as f:
            obj = RestrictedUnpickler(f, TORCH_GLOBALS, _storage_ref(path), path).load()

        def read(ref):
            name = f'{prefix}data/{ref.key}'
            if name not in names:
                raise ValueError(f"{path}: storage {name} is missing")
            return _storage_array(archive.read(name), ref.type, byteorder, path)
        return _materialise(obj, _cached(read), path)


def _load_legacy(path):
    with open(path, 'rb') as f:
        header = [RestrictedUnpickler(f, {}, source=path).load() for _ in range(3)]
        if header[0] != LEGACY_MAGIC or header[1] != LEGACY_PROTOCOL:
            raise ValueError(f"{path}: not a torch checkpoint")
        refs = {}
        def record(pid):
            ref = _storage_ref(path)(pid)
            refs[ref.key] = ref.type
            return ref
        obj = RestrictedUnpickler(f, TORCH_GLOBALS, record, path).load()
        keys = RestrictedUnpickler(f, {}, source=path).load()
        # then per storage: int64 element count and the raw little-endian elements
        arrays = {}
        for key in keys:
            if key not in refs:
                raise ValueError(f"{path}: storage {key!r} is not referenced")
            numel, = struct.unpack('<q', f.read(8))
            itemsize = 2 if refs[key].dtype == 'bf16' else np.dtype(refs[key].dtype).itemsize
            raw = f.read(numel * itemsize)
            if numel < 0 or len(raw) != numel * itemsize:
                raise ValueError(f"{path}: truncated storage {key!r}")
            arrays[key] = _storage_array(raw, refs[key], 'little', path)

    def read(ref):
        if ref.key not in arrays:
            raise ValueError(f"{path}: storage {ref.key!r} is missing")
        return arrays[ref.key]
    return _materialise(obj, _cached(read), path)


def is_torch_checkpoint(path):
    """True for a zip-format torch archive or a legacy torch pickle stream (checked by content, not name)."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            return any(n.endswith('data.pkl') for n in archive.namelist())
    with open(path, 'rb') as f:
        head = f.read(16)
    # protocol 2 pickle of the legacy magic number: PROTO 2, LONG1 of 10 bytes
    return head[:4] == b'\x80\x02\x8a\x0a' and int.from_bytes(head[4:14], 'little') == LEGACY_MAGIC


def load_torch(path):
    """Unpickle a torch checkpoint safely: tensors become numpy arrays, containers stay as they are."""
    if not os.path.isfile(path):
        raise ValueError(f"{path}: no such file")
    try:
        if zipfile.is_zipfile(path):
            return _load_zip(path)
        return _load_legacy(path)
    except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, struct.error, KeyError, TypeError,
            AttributeError, IndexError) as e:
        raise ValueError(f"{path}: corrupt or unsupported torch checkpoint ({e})") from e
