"""Write PyTorch checkpoints without torch, for tests.

:func:`save_torch_state_dict` produces exactly the layout of ``torch.save``
(protocol-2 pickle, one raw buffer per storage): the zip format, or with
``legacy=True`` the pre-1.6 one, readable by ``torch.load`` and
:func:`tfrestore.convert.load_torch_state_dict`. The lower-level ``_PickleWriter`` /
``_TensorRecord`` / ``_GlobalCall`` / ``_write_legacy`` let tests craft unusual or
hostile files (views, strides, foreign globals) for the reader's safety checks.

>>> import os, tempfile, numpy as np
>>> from tfrestore.convert import load_torch_state_dict
>>> path = os.path.join(tempfile.mkdtemp(), "w.pth")
>>> save_torch_state_dict({"b": np.arange(3, dtype="int64")}, path)
>>> load_torch_state_dict(path)["b"].tolist()
[0, 1, 2]
>>> save_torch_state_dict({"b": np.arange(3, dtype="int64")}, path, legacy=True)
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
    """A tensor in the pickle. ``legacy=True`` writes the 6-element persistent id of the
    legacy format, whose ``view=(view_key, offset, size)`` selects a slice of the
    storage (the tensor's ``offset`` then counts from the slice)."""

    def __init__(self, key, storage_name, numel, offset, size, stride, view=None, legacy=False):
        self.key, self.storage_name, self.numel = key, storage_name, numel
        self.offset, self.size, self.stride = offset, size, stride
        self.view, self.legacy = view, legacy or view is not None

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
        if self.legacy:
            p.save(None if self.view is None else tuple(self.view))
        p.w(b"tQ")
        p.save(int(self.offset))
        p.save(tuple(int(s) for s in self.size))
        p.save(tuple(int(s) for s in self.stride))
        p.save(False)
        p.glob("collections", "OrderedDict")
        p.w(b")R")
        p.w(b"tR")


_LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C


def _write_legacy(path, obj, storages, byteorder="little", records_byteorder=None):
    """Write the legacy (pre-1.6) ``torch.save`` layout.

    ``obj`` is pickled as is (use ``_TensorRecord(..., legacy=True)``); ``storages`` maps
    each storage key, in file order, to a 1-D array written as an int64 element count
    and the raw elements. ``byteorder`` goes into sys_info; ``records_byteorder``
    (default: the same) is the order the counts and elements are written in.
    """
    order = "<" if (records_byteorder or byteorder) == "little" else ">"
    sys_info = {
        "protocol_version": 1001,
        "little_endian": byteorder == "little",
        "type_sizes": {"short": 2, "int": 4, "long": 4},
    }
    with open(path, "wb") as f:
        for header in (_LEGACY_MAGIC_NUMBER, 1001, sys_info):
            f.write(_PickleWriter().dump(header))
        f.write(_PickleWriter().dump(obj))
        f.write(_PickleWriter().dump(list(storages)))
        for arr in storages.values():
            arr = np.asarray(arr).reshape(-1)
            f.write(struct.pack(order + "q", arr.size))
            f.write(arr.astype(arr.dtype.newbyteorder(order)).tobytes())


def save_torch_state_dict(obj, path, archive_name="archive", legacy=False, byteorder="little"):
    """Write ``obj`` (nested dict/list/tuple of NumPy arrays and scalars) as
    ``torch.save`` would, readable by ``torch.load`` and :func:`load_torch_state_dict`.

    Tensors are written contiguously (row-major) with their own storage, in
    ``byteorder`` (``"little"`` or ``"big"``). ``legacy=True`` writes the pre-1.6
    format instead of the zip archive (``archive_name`` is then unused).
    """
    if byteorder not in ("little", "big"):
        raise ValueError(f"byteorder must be 'little' or 'big', not {byteorder!r}")
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
            return _TensorRecord(
                key, _WRITE_STORAGE[arr.dtype], arr.size, 0, arr.shape, stride, legacy=legacy
            )
        if isinstance(o, collections.OrderedDict):
            return collections.OrderedDict((k, convert(v)) for k, v in o.items())
        if isinstance(o, dict):
            return collections.OrderedDict((k, convert(v)) for k, v in o.items())
        if isinstance(o, list):
            return [convert(v) for v in o]
        if isinstance(o, tuple):
            return tuple(convert(v) for v in o)
        return o

    obj = convert(obj)
    if legacy:
        _write_legacy(path, obj, dict(storages), byteorder=byteorder)
        return
    pickled = _PickleWriter().dump(obj)
    order = "<" if byteorder == "little" else ">"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr(f"{archive_name}/data.pkl", pickled)
        z.writestr(f"{archive_name}/byteorder", byteorder)
        for key, arr in storages:
            raw = arr.astype(arr.dtype.newbyteorder(order)).tobytes()
            z.writestr(f"{archive_name}/data/{key}", raw)
        z.writestr(f"{archive_name}/version", "3\n")
