"""Write PyTorch zip-format checkpoints without torch, for tests.

:func:`save_torch_state_dict` produces exactly the layout of ``torch.save``
(protocol-2 pickle, one raw little-endian buffer per storage), readable by
``torch.load`` and :func:`tfrestore.convert.load_torch_state_dict`. The lower-level
``_PickleWriter`` / ``_TensorRecord`` / ``_GlobalCall`` let tests craft unusual or
hostile files (views, strides, foreign globals) for the reader's safety checks.

>>> import os, tempfile, numpy as np
>>> from tfrestore.convert import load_torch_state_dict
>>> path = os.path.join(tempfile.mkdtemp(), "w.pth")
>>> save_torch_state_dict({"b": np.arange(3, dtype="int64")}, path)
>>> load_torch_state_dict(path)["b"].tolist()
[0, 1, 2]
"""

from __future__ import annotations

import collections
import io
import struct
import zipfile

import numpy as np

__all__ = ["save_torch_state_dict"]


_WRITE_STORAGE = {
    np.dtype(np.float64): "DoubleStorage",
    np.dtype(np.float32): "FloatStorage",
    np.dtype(np.float16): "HalfStorage",
    np.dtype(np.int64): "LongStorage",
    np.dtype(np.int32): "IntStorage",
    np.dtype(np.int16): "ShortStorage",
    np.dtype(np.int8): "CharStorage",
    np.dtype(np.uint8): "ByteStorage",
    np.dtype(np.bool_): "BoolStorage",
}


class _PickleWriter:
    """Minimal protocol-2 pickle emitter for str/int/float/bool/None, dict,
    list, tuple and tensors (``_TensorRecord``); enough for ``torch.save`` layout."""

    def __init__(self):
        self.out = io.BytesIO()

    def w(self, b):
        self.out.write(b)

    def glob(self, module, name):
        self.w(b"c" + module.encode() + b"\n" + name.encode() + b"\n")

    def dump(self, obj):
        self.w(b"\x80\x02")
        self.save(obj)
        self.w(b".")
        return self.out.getvalue()

    def save(self, obj):
        if obj is None:
            self.w(b"N")
        elif obj is True:
            self.w(b"\x88")
        elif obj is False:
            self.w(b"\x89")
        elif isinstance(obj, int):
            if 0 <= obj < 2**31:
                self.w(b"J" + struct.pack("<i", obj))
            else:
                data = obj.to_bytes((obj.bit_length() + 8) // 8, "little", signed=True)
                self.w(b"\x8a" + bytes([len(data)]) + data)
        elif isinstance(obj, float):
            self.w(b"G" + struct.pack(">d", obj))
        elif isinstance(obj, str):
            data = obj.encode("utf-8")
            self.w(b"X" + struct.pack("<I", len(data)) + data)
        elif isinstance(obj, _TensorRecord):
            obj.save(self)
        elif isinstance(obj, _GlobalCall):
            self.glob(obj.module, obj.name)
            self.save(tuple(obj.args))
            self.w(b"R")
        elif isinstance(obj, dict):
            if isinstance(obj, collections.OrderedDict):
                self.glob("collections", "OrderedDict")
                self.w(b")R")
            else:
                self.w(b"}")
            if obj:
                self.w(b"(")
                for k, v in obj.items():
                    self.save(k)
                    self.save(v)
                self.w(b"u")
        elif isinstance(obj, list):
            self.w(b"]")
            if obj:
                self.w(b"(")
                for v in obj:
                    self.save(v)
                self.w(b"e")
        elif isinstance(obj, tuple):
            self.w(b"(")
            for v in obj:
                self.save(v)
            self.w(b"t")
        else:
            raise TypeError(f"cannot write {type(obj).__name__} into a torch checkpoint")


class _GlobalCall:
    """``module.name(*args)`` in the written pickle (tests use it to craft files)."""

    def __init__(self, module, name, args=()):
        self.module, self.name, self.args = module, name, args


class _TensorRecord:
    def __init__(self, key, storage_name, numel, offset, size, stride):
        self.key, self.storage_name, self.numel = key, storage_name, numel
        self.offset, self.size, self.stride = offset, size, stride

    def save(self, p):
        p.glob("torch._utils", "_rebuild_tensor_v2")
        p.w(b"(")
        # persistent id ('storage', torch.<X>Storage, key, 'cpu', numel)
        p.w(b"(")
        p.save("storage")
        p.glob("torch", self.storage_name)
        p.save(self.key)
        p.save("cpu")
        p.save(int(self.numel))
        p.w(b"tQ")
        p.save(int(self.offset))
        p.save(tuple(int(s) for s in self.size))
        p.save(tuple(int(s) for s in self.stride))
        p.save(False)
        p.glob("collections", "OrderedDict")
        p.w(b")R")
        p.w(b"tR")


def save_torch_state_dict(obj, path, archive_name="archive"):
    """Write ``obj`` (nested dict/list/tuple of NumPy arrays and scalars) in the
    PyTorch zip format, readable by ``torch.load`` and :func:`load_torch_state_dict`.

    Tensors are written contiguously (row-major) with their own storage.
    """
    storages = []

    def convert(o):
        if isinstance(o, np.ndarray):
            arr = np.array(o, order="C", copy=True)  # ascontiguousarray would make 0-d 1-d
            if arr.dtype not in _WRITE_STORAGE:
                raise TypeError(f"unsupported tensor dtype {arr.dtype}")
            key = str(len(storages))
            storages.append((key, arr))
            stride, acc = [], 1
            for n in reversed(arr.shape):
                stride.insert(0, acc)
                acc *= n
            return _TensorRecord(key, _WRITE_STORAGE[arr.dtype], arr.size, 0, arr.shape, stride)
        if isinstance(o, collections.OrderedDict):
            return collections.OrderedDict((k, convert(v)) for k, v in o.items())
        if isinstance(o, dict):
            return collections.OrderedDict((k, convert(v)) for k, v in o.items())
        if isinstance(o, list):
            return [convert(v) for v in o]
        if isinstance(o, tuple):
            return tuple(convert(v) for v in o)
        return o

    pickled = _PickleWriter().dump(convert(obj))
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr(f"{archive_name}/data.pkl", pickled)
        z.writestr(f"{archive_name}/byteorder", "little")
        for key, arr in storages:
            little = arr.astype(arr.dtype.newbyteorder("<"))
            z.writestr(f"{archive_name}/data/{key}", little.tobytes())
        z.writestr(f"{archive_name}/version", "3\n")
