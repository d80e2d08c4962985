"""Write PyTorch checkpoints (`torch.save` files) without torch, for the converter tests.

The pickle is emitted opcode by opcode: pickle.Pickler would need the real torch globals to exist.
"""
import collections
import os
import pickle
import struct
import zipfile

import numpy as np

from utils.io import atomic_path
from utils.torch_format import LEGACY_MAGIC, LEGACY_PROTOCOL, STORAGE_DTYPES


STORAGE_NAMES = {np.dtype(v): k for k, v in STORAGE_DTYPES.items() if v != 'bf16'}


def _op_global(module, name):
    return b'c' + module.encode() + b'\n' + name.encode() + b'\n'


def _op_tuple(items):
    return b'(' + b''.join(items) + b't'


def _op_value(obj, storages, legacy=False):
    if obj is None:
        return b'N'
    if isinstance(obj, bool):
        return b'\x88' if obj else b'\x89'
    if isinstance(obj, int):                          # the opcodes pickle itself uses
        if 0 <= obj < 256:
            return b'K' + bytes([obj])
        if -2 ** 31 <= obj < 2 ** 31:
            return b'J' + struct.pack('<i', obj)
        data = obj.to_bytes(obj.bit_length() // 8 + 1, 'little', signed=True)
        return b'\x8a' + bytes([len(data)]) + data
    if isinstance(obj, float):
        return b'G' + struct.pack('>d', obj)
    if isinstance(obj, str):
        data = obj.encode('utf-8')
        return b'X' + struct.pack('<I', len(data)) + data
    if isinstance(obj, (list, tuple)):
        items = [_op_value(v, storages, legacy) for v in obj]
        return _op_tuple(items) if isinstance(obj, tuple) else b']' + b'(' + b''.join(items) + b'e'
    if isinstance(obj, dict):
        start = _op_global('collections', 'OrderedDict') + b')R' if isinstance(obj, collections.OrderedDict) else b'}'
        items = [_op_value(k, storages) + _op_value(v, storages, legacy) for k, v in obj.items()]
        return start + b'(' + b''.join(items) + b'u'
    if isinstance(obj, np.ndarray):
        return _op_tensor(obj, storages, legacy)
    raise ValueError(f"cannot write {type(obj).__name__} into a torch checkpoint")


def _op_tensor(array, storages, legacy):
    array = np.array(array, dtype=array.dtype.newbyteorder('<'), order='C')
    if array.dtype not in STORAGE_NAMES:
        raise ValueError(f"no torch storage type for dtype {array.dtype}")
    key = str(len(storages))
    storages.append((key, array))
    strides = [s // array.itemsize for s in array.strides]
    pid = [_op_value('storage', None), _op_global('torch', STORAGE_NAMES[array.dtype]),
           _op_value(key, None), _op_value('cpu', None), _op_value(array.size, None)]
    pid = _op_tuple(pid + [b'N'] if legacy else pid)     # legacy ids end with view metadata (None)
    args = [pid + b'Q', _op_value(0, None), _op_value(tuple(array.shape), None), _op_value(tuple(strides), None),
            b'\x89', _op_global('collections', 'OrderedDict') + b')R']
    return _op_global('torch._utils', '_rebuild_tensor_v2') + _op_tuple(args) + b'R'


def save_torch_zip(obj, path):
    """Write `obj` (dicts, lists, tuples, scalars, strings, numpy arrays as tensors) as a zip-format .pth
    that torch.load accepts: data.pkl (protocol 2), data/<key> little-endian storages, byteorder, version."""
    storages = []
    data = b'\x80\x02' + _op_value(obj, storages) + b'.'
    folder = ''.join(c if c.isalnum() or c == '_' else '_' for c in os.path.splitext(os.path.basename(path))[0])
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, 'w', zipfile.ZIP_STORED) as archive:
        archive.writestr(f'{folder}/data.pkl', data)
        archive.writestr(f'{folder}/byteorder', 'little')
        for key, array in storages:
            archive.writestr(f'{folder}/data/{key}', array.tobytes())
        archive.writestr(f'{folder}/version', '3\n')


def save_torch_legacy(obj, path):
    """Write `obj` in the pre-1.6 torch.save stream format (magic, protocol, sys info, pickle, storage keys,
    then per storage its int64 element count and little-endian bytes)."""
    storages = []
    data = b'\x80\x02' + _op_value(obj, storages, legacy=True) + b'.'
    sys_info = {'protocol_version': LEGACY_PROTOCOL, 'little_endian': True,
                'type_sizes': {'short': 2, 'int': 4, 'long': 4}}
    with atomic_path(path) as tmp, open(tmp, 'wb') as f:
        for header in (LEGACY_MAGIC, LEGACY_PROTOCOL, sys_info):
            f.write(pickle.dumps(header, protocol=2))
        f.write(data)
        f.write(pickle.dumps([key for key, _ in storages], protocol=2))
        for _, array in storages:
            f.write(struct.pack('<q', array.size) + array.tobytes())
