"""Read PyTorch checkpoints (``.pt`` / ``.pth``) without torch.

``torch.save`` (PyTorch >= 1.6) writes a zip archive holding ``<name>/data.pkl``
(a pickle describing the object) and one raw little-endian buffer per tensor
storage under ``<name>/data/<key>``. Older releases wrote the legacy format read
here too: consecutive pickles (magic number, protocol, sys_info, the object, the
list of storage keys) followed by each storage as an int64 element count and its
raw elements (byte-swapped when written big-endian). This module replays the
pickles with an unpickler that only knows tensors and plain containers: any other
global (a class, a function, ``os.system`` ...) is refused *before* it can be
called, so reading a checkpoint never runs code from the file (``torch.load``
without ``weights_only=True`` would).

Supported: float16/bfloat16/float32/float64 and int8/16/32/64/uint8/bool storages,
storage offsets and strides (views sharing a storage), ``dict``/``OrderedDict``/
``list``/``tuple`` nesting (e.g. ``{"state_dict": {...}, "epoch": 3}``),
``nn.Parameter`` entries. Not supported: the pre-1.3 tar format, pickled modules,
numpy arrays or other Python objects inside the checkpoint.

Allocation is bounded by the file: every storage must hold exactly its declared
elements; a view may not reach outside its storage nor expand it (stride 0) beyond
:data:`MAX_EXPANSION_BYTES`; a compressed record may not inflate more than
:data:`MAX_INFLATE_RATIO` times (zip bomb); containers may nest at most
:data:`MAX_NESTING` deep. Violations raise a one-line :class:`TorchCheckpointError`
naming the file (and the tensor's key once the pickle is read).

Example (the file is written here by the test helper
:func:`tfrestore.testing.torch_writer.save_torch_state_dict`; real files come from
``torch.save(model.state_dict(), path)``):

>>> import os, tempfile, numpy as np
>>> from tfrestore.convert.torch_checkpoint import load_torch_state_dict
>>> from tfrestore.testing.torch_writer import save_torch_state_dict
>>> path = os.path.join(tempfile.mkdtemp(), "w.pth")
>>> save_torch_state_dict({"conv.weight": np.ones((2, 1, 3, 3), "float32")}, path)
>>> sd = load_torch_state_dict(path)
>>> sd["conv.weight"].shape, sd["conv.weight"].dtype
((2, 1, 3, 3), dtype('float32'))
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import reprlib
import struct
import sys
import zipfile
import zlib

import numpy as np

__all__ = [
    "TorchCheckpointError",
    "UnsafeCheckpointError",
    "load_torch_checkpoint",
    "load_torch_state_dict",
]


# A view may hold more elements than its storage (stride-0 expansion, e.g. a saved
# ``tensor.expand(...)``) only up to this many bytes: beyond it a tiny file could make
# the reader allocate gigabytes.
MAX_EXPANSION_BYTES = 64 * 2**20
# Compressed storage records (torch.save writes them uncompressed) may inflate at most
# this many times once they exceed MAX_EXPANSION_BYTES.
MAX_INFLATE_RATIO = 100
# Containers (dict/list/tuple) may nest this deep: real checkpoints use a handful of
# levels, and deeper ones would exhaust the stack (hashing a deep tuple even crashes).
MAX_NESTING = 100

# Failures of zipfile on damaged archives.
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError,
               NotImplementedError, RuntimeError, struct.error, zlib.error)


class TorchCheckpointError(ValueError):
    """The file is not a readable PyTorch checkpoint (corrupt, truncated, ...)."""


class UnsafeCheckpointError(TorchCheckpointError):
    """The checkpoint's pickle references a global that is not a tensor/container."""


# Legacy (pre-1.6) torch.save files start with a pickled magic number.
_LEGACY_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19"

_STORAGE_DTYPES = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "BFloat16Storage": "bfloat16",
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}
_TORCH_DTYPES = {
    "float64": np.float64, "double": np.float64,
    "float32": np.float32, "float": np.float32,
    "float16": np.float16, "half": np.float16,
    "bfloat16": "bfloat16",
    "int64": np.int64, "long": np.int64,
    "int32": np.int32, "int": np.int32,
    "int16": np.int16, "short": np.int16,
    "int8": np.int8, "uint8": np.uint8, "bool": np.bool_,
}


class _StorageType:
    """Stand-in for ``torch.FloatStorage`` etc.: only records the element dtype."""

    def __init__(self, name, dtype):
        self.name, self.dtype = name, dtype


class _TorchDtype(_StorageType):
    """Stand-in for ``torch.float32`` etc. (used by ``_rebuild_tensor_v3``)."""


class _StateDict(collections.OrderedDict):
    """OrderedDict that tolerates the ``_metadata`` attribute torch pickles with
    state dicts (applied by the pickle BUILD opcode)."""

    def __setstate__(self, state):
        pass


def _bfloat16_to_float32(raw):
    bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
    return bits.view(np.float32)


class _Storage:
    """A storage record, read from the archive on first use (``array``)."""

    __slots__ = ("_load", "_array", "size", "dtype", "name")

    def __init__(self, array=None, *, load=None, size=None, dtype=None, name=None):
        self._array, self._load = array, load
        self.size = int(array.size if array is not None else size)
        self.dtype = np.dtype(array.dtype if array is not None else dtype)
        self.name = name

    @property
    def array(self):
        if self._array is None:
            self._array = self._load()
        return self._array


class _Tensor:
    """A tensor view checked against its storage; built by :func:`_plain`, which knows
    its key (so errors can name it)."""

    __slots__ = ("storage", "offset", "size", "stride")

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def check(self):
        """The view must lie inside its storage and not expand it beyond the limit."""
        size, stride, offset, storage = self.size, self.stride, self.offset, self.storage
        if 0 in size:
            return
        last = offset + sum((n - 1) * s for n, s in zip(size, stride))
        if any(s < 0 for s in stride) or last >= storage.size:
            raise TorchCheckpointError(
                f"corrupt checkpoint: tensor view size={size} stride={stride} offset={offset} "
                f"does not fit its storage of {storage.size} elements"
            )
        numel = 1
        for n in size:
            numel *= n
        nbytes = numel * storage.dtype.itemsize
        if numel > storage.size and nbytes > MAX_EXPANSION_BYTES:
            raise TorchCheckpointError(
                f"view size={size} stride={stride} expands a storage of {storage.size} "
                f"elements to {numel} elements ({nbytes / 2**20:.0f} MiB; stride-0 expansion is "
                f"limited to {MAX_EXPANSION_BYTES // 2**20} MiB); re-save it with "
                "tensor.contiguous() if it is meant to be that large"
            )

    def build(self):
        self.check()
        data = self.storage.array
        if 0 in self.size:
            return np.zeros(self.size, dtype=data.dtype)
        itemsize = data.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            data[self.offset :],
            shape=self.size,
            strides=tuple(s * itemsize for s in self.stride),
            writeable=False,
        )
        return np.array(view, copy=True)  # own, contiguous memory


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
    if not isinstance(storage, _Storage):
        raise TorchCheckpointError("corrupt checkpoint: tensor without a storage record")
    try:
        size = tuple(int(s) for s in size)
        stride = tuple(int(s) for s in stride)
        offset = int(storage_offset)
    except (TypeError, ValueError):
        raise TorchCheckpointError(
            f"corrupt checkpoint: invalid tensor view size={reprlib.repr(size)} "
            f"stride={reprlib.repr(stride)}"
        ) from None
    if len(size) != len(stride) or any(s < 0 for s in size) or offset < 0:
        raise TorchCheckpointError(
            f"corrupt checkpoint: invalid tensor view size={size} stride={stride} "
            f"offset={offset}"
        )
    return _Tensor(storage, offset, size, stride)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, hooks, dtype, *rest):
    if isinstance(dtype, _TorchDtype) and isinstance(storage, _Storage):
        target = np.dtype(np.float32) if dtype.dtype == "bfloat16" else np.dtype(dtype.dtype)
        if storage.dtype != target:
            # untyped (byte) storage: reinterpret with the tensor's dtype
            src, bf16 = storage, dtype.dtype == "bfloat16"
            width = 2 if bf16 else target.itemsize
            if src.size * src.dtype.itemsize % width:
                raise TorchCheckpointError(
                    f"corrupt checkpoint: storage of {src.size * src.dtype.itemsize} bytes is "
                    f"not a whole number of {dtype.name} elements"
                )

            def load(src=src, bf16=bf16, target=target):
                raw = src.array.tobytes()
                return _bfloat16_to_float32(raw) if bf16 else np.frombuffer(raw, dtype=target)

            storage = _Storage(
                load=load,
                size=src.size * src.dtype.itemsize // width,
                dtype=target,
                name=src.name,
            )
    return _rebuild_tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, hooks=None, *state):
    return data


def _rebuild_from_type_v2(func, new_type, args, state):
    return func(*args)


def _reject_call(name):
    def _f(*args, **kwargs):
        raise UnsafeCheckpointError(f"checkpoint calls disallowed {name}")
    return _f


_SAFE_GLOBALS = {
    ("collections", "OrderedDict"): _StateDict,
    ("builtins", "dict"): dict,
    ("builtins", "list"): list,
    ("builtins", "tuple"): tuple,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("__builtin__", "set"): set,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    ("torch", "Size"): tuple,
    # only passed as `new_type` to _rebuild_from_type_v2 (never called)
    ("torch", "Tensor"): _reject_call("torch.Tensor"),
    ("torch._tensor", "Tensor"): _reject_call("torch.Tensor"),
    ("torch.nn.parameter", "Parameter"): _reject_call("torch.nn.Parameter"),
}


# Containers a pickle may build by calling them (REDUCE / OBJ / INST): wrapped so that
# their elements are counted against the file size and their keys checked before hashing.
_CONSTRUCTORS = (dict, list, tuple, set, frozenset, _StateDict)
_HASHING = (dict, set, frozenset, _StateDict)


class _Constructor:
    """``dict``/``list``/... as handed to a pickle: calls go through the unpickler's
    bounds (:meth:`_SafeUnpickler._construct`)."""

    __slots__ = ("_unpickler", "_ctor")

    def __init__(self, unpickler, ctor):
        self._unpickler, self._ctor = unpickler, ctor

    def __call__(self, *args):
        return self._unpickler._construct(self._ctor, *args)


class _SafeUnpickler(pickle._Unpickler):
    """Unpickler that knows only tensors and plain containers.

    Built on the pure-Python unpickler on purpose: the C one sizes its memo from the
    file (an 8-byte pickle with ``LONG_BINPUT 0x10000000`` allocates 4 GB) and cannot be
    bounded. Tuples may nest at most :data:`MAX_NESTING` deep before they are hashed
    (dict keys, set items): CPython's tuple hash recurses unguarded and would crash the
    interpreter. Elements built by calling ``list``/``dict``/... are bounded by the size
    of the pickle, so re-copying one big list cannot blow up memory.

    Subclasses provide storages (:meth:`_new_storage`); this base refuses them, which
    suits the plain header pickles of the legacy format.
    """

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, file, source, budget):
        super().__init__(file, encoding="utf-8")  # as torch.load (Python 2 str -> str)
        self._source = source
        self._budget = int(budget)  # container elements the pickle may still create
        self._heights = {}  # id(tuple) -> (nesting height, tuple kept alive: ids stay unique)
        self._storages, self._views = {}, {}

    # -- globals -----------------------------------------------------------------------
    def find_class(self, module, name):
        key = (module, name)
        if key in _SAFE_GLOBALS:
            obj = _SAFE_GLOBALS[key]
            return _Constructor(self, obj) if obj in _CONSTRUCTORS else obj
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name, _STORAGE_DTYPES[name])
        if module == "torch" and name in ("UntypedStorage", "ByteStorage"):
            return _StorageType(name, np.uint8)
        if module == "torch" and name in _TORCH_DTYPES:
            return _TorchDtype(name, _TORCH_DTYPES[name])
        raise UnsafeCheckpointError(
            f"{self._source}: the checkpoint references the Python global "
            f"`{module}.{name}`, which is not a tensor or plain container. Only state "
            "dicts of tensors (optionally nested in dict/list/tuple) can be read without "
            "torch; arbitrary objects are refused because unpickling them could run code. "
            "Re-save the checkpoint as `torch.save(model.state_dict(), path)`."
        )

    # -- bounded containers ------------------------------------------------------------
    def _spend(self, n):
        self._budget -= n
        if self._budget < 0:
            raise TorchCheckpointError(
                f"{self._source}: corrupt checkpoint, its pickle builds more container "
                "elements than the file holds"
            )

    def _check_hashable(self, obj):
        """Refuse a tuple nested deeper than MAX_NESTING (iterative: no recursion here)."""
        if type(obj) is not tuple or id(obj) in self._heights:
            return
        heights, todo = self._heights, [(obj, False)]
        while todo:
            t, children_done = todo.pop()
            if id(t) in heights:
                continue
            if children_done:
                h = 1 + max((heights[id(c)][0] for c in t if type(c) is tuple), default=0)
                if h > MAX_NESTING:
                    raise TorchCheckpointError(
                        f"{self._source}: corrupt checkpoint, containers nested more than "
                        f"{MAX_NESTING} deep"
                    )
                heights[id(t)] = (h, t)
            else:
                todo.append((t, True))
                todo.extend((c, False) for c in t if type(c) is tuple and id(c) not in heights)

    def _construct(self, ctor, *args):
        if len(args) > 1:
            raise TorchCheckpointError(
                f"{self._source}: corrupt checkpoint, {ctor.__name__} called with {len(args)} "
                "arguments"
            )
        if args and not isinstance(args[0], (list, tuple, dict, set, frozenset, str, bytes)):
            raise TorchCheckpointError(
                f"{self._source}: corrupt checkpoint, {ctor.__name__} called with a "
                f"{type(args[0]).__name__}"
            )
        if args:
            self._spend(len(args[0]))
            if ctor in _HASHING and not isinstance(args[0], dict):
                for item in args[0]:  # set items or dict (key, value) pairs
                    self._check_hashable(item)
                    if type(item) is list:  # dict([[key, value], ...])
                        for x in item:
                            self._check_hashable(x)
        return ctor(*args)

    def _load_setitems(self):
        for key in self.stack[0::2]:
            self._check_hashable(key)
        pickle._Unpickler.load_setitems(self)

    def _load_setitem(self):
        if len(self.stack) >= 2:
            self._check_hashable(self.stack[-2])
        pickle._Unpickler.load_setitem(self)

    def _load_additems(self):
        for item in self.stack:
            self._check_hashable(item)
        pickle._Unpickler.load_additems(self)

    def _load_frozenset(self):
        for item in self.stack:
            self._check_hashable(item)
        pickle._Unpickler.load_frozenset(self)

    def _load_build(self):
        # torch only BUILDs the ``_metadata`` of state dicts; setting attributes of
        # anything else (tensor stand-ins, shared functions) is refused
        if len(self.stack) < 2 or type(self.stack[-2]) is not _StateDict:
            raise TorchCheckpointError(
                f"{self._source}: corrupt checkpoint, sets the state of a non-dict object"
            )
        self.stack.pop()

    dispatch[pickle.SETITEM[0]] = _load_setitem
    dispatch[pickle.SETITEMS[0]] = _load_setitems
    dispatch[pickle.ADDITEMS[0]] = _load_additems
    dispatch[pickle.FROZENSET[0]] = _load_frozenset
    dispatch[pickle.BUILD[0]] = _load_build

    # -- storages ----------------------------------------------------------------------
    def persistent_load(self, pid):
        """``('storage', storage_type, key, location, numel[, view_metadata])``."""
        if not (type(pid) is tuple and len(pid) in (5, 6) and pid[0] == "storage"):
            raise TorchCheckpointError(
                f"{self._source}: unsupported persistent id {reprlib.repr(pid)}"
            )
        _, storage_type, key, _location, numel = pid[:5]
        if not isinstance(storage_type, _StorageType):
            raise TorchCheckpointError(
                f"{self._source}: unsupported storage type {reprlib.repr(storage_type)}"
            )
        if not isinstance(key, (str, int)) or not isinstance(numel, int) or numel < 0:
            raise TorchCheckpointError(
                f"{self._source}: corrupt checkpoint, storage key {reprlib.repr(key)} with "
                f"numel {reprlib.repr(numel)}"
            )
        dtype = storage_type.dtype
        itemsize = 2 if dtype == "bfloat16" else np.dtype(dtype).itemsize
        if storage_type.name == "UntypedStorage":
            itemsize = 1  # numel counts bytes
        if key not in self._storages:
            self._storages[key] = self._new_storage(key, dtype, itemsize, int(numel))
        storage = self._storages[key]
        view = pid[5] if len(pid) == 6 else None
        return storage if view is None else self._view(storage, view)

    def _new_storage(self, key, dtype, itemsize, numel):
        raise TorchCheckpointError(
            f"{self._source}: corrupt checkpoint, a storage is referenced outside the "
            "object pickle"
        )

    def _view(self, root, view):
        """Legacy storage views: elements ``[offset, offset + size)`` of ``root``."""
        if not (
            type(view) is tuple and len(view) == 3
            and isinstance(view[0], (str, int))
            and all(isinstance(v, int) for v in view[1:])
        ):
            raise TorchCheckpointError(
                f"{self._source}: corrupt checkpoint, storage view {reprlib.repr(view)}"
            )
        key, offset, size = view
        if key not in self._views:
            if offset < 0 or size < 0 or offset + size > root.size:
                raise TorchCheckpointError(
                    f"{self._source}: corrupt checkpoint, storage view {key!r} "
                    f"[{offset}:{offset + size}] lies outside {root.name} of {root.size} elements"
                )
            self._views[key] = _Storage(
                load=lambda: root.array[offset : offset + size],
                size=size,
                dtype=root.dtype,
                name=f"{root.name}[{offset}:{offset + size}]",
            )
        return self._views[key]


def _decode_storage(raw, dtype, byteorder):
    """Raw storage bytes -> 1-D array in native byte order (bfloat16 widened)."""
    if dtype == "bfloat16":
        if byteorder != "little":
            raw = np.frombuffer(raw, ">u2").astype("<u2").tobytes()
        return _bfloat16_to_float32(raw)
    arr = np.frombuffer(raw, dtype=np.dtype(dtype))
    return arr.byteswap() if byteorder != sys.byteorder and arr.dtype.itemsize > 1 else arr


class _ZipUnpickler(_SafeUnpickler):
    """``data.pkl`` of a zip checkpoint: storages are lazily read archive records."""

    def __init__(self, file, source, budget, archive, prefix, byteorder):
        super().__init__(file, source, budget)
        self._archive, self._prefix, self._byteorder = archive, prefix, byteorder

    def _new_storage(self, key, dtype, itemsize, numel):
        name = f"{self._prefix}data/{key}"
        try:
            info = self._archive.getinfo(name)
        except KeyError:
            raise TorchCheckpointError(
                f"{self._source}: corrupt checkpoint, storage record {name!r} is missing"
            ) from None
        expected = numel * itemsize
        # torch.save writes exactly the declared bytes: anything else is corruption (a
        # longer record would otherwise be read silently, a shorter one past its end)
        if info.file_size != expected:
            raise TorchCheckpointError(
                f"{self._source}: corrupt checkpoint, storage record {name!r} has "
                f"{info.file_size} bytes but {numel} elements of {itemsize} bytes are declared"
            )
        if (
            info.compress_type != zipfile.ZIP_STORED
            and info.file_size > MAX_EXPANSION_BYTES
            and info.file_size > MAX_INFLATE_RATIO * max(1, info.compress_size)
        ):
            raise TorchCheckpointError(
                f"{self._source}: storage record {name!r} inflates from {info.compress_size} to "
                f"{info.file_size} bytes (more than {MAX_INFLATE_RATIO}x: a zip bomb?); torch.save "
                "writes records uncompressed, re-save the checkpoint with torch.save"
            )
        source, byteorder, archive = self._source, self._byteorder, self._archive

        def load():
            try:
                with archive.open(info) as f:
                    raw = f.read(expected)  # bounded: never more than the declared storage
            except _ZIP_ERRORS as exc:
                raise TorchCheckpointError(
                    f"{source}: corrupt checkpoint, cannot read {name!r} ({exc})"
                ) from exc
            if len(raw) < expected:
                raise TorchCheckpointError(
                    f"{source}: corrupt checkpoint, storage {name!r} has {len(raw)} bytes "
                    f"but {numel} elements of {itemsize} bytes are declared"
                )
            return _decode_storage(raw, dtype, byteorder)

        return _Storage(
            load=load,
            size=numel,
            dtype=np.float32 if dtype == "bfloat16" else dtype,
            name=name,
        )


class _LegacyUnpickler(_SafeUnpickler):
    """Object pickle of a legacy file: storages are filled in by :func:`_load_legacy`
    from the raw records that follow the pickle."""

    def __init__(self, file, source, budget):
        super().__init__(file, source, budget)
        self.pending = {}  # key -> (storage, dtype, itemsize), in first-reference order

    def _new_storage(self, key, dtype, itemsize, numel):
        storage = _Storage(
            load=None,
            size=numel,
            dtype=np.float32 if dtype == "bfloat16" else dtype,
            name=f"storage {key!r}",
        )
        self.pending[key] = (storage, dtype, itemsize)
        return storage


def _unpickle(unpickler, source, what):
    """Run one unpickler; any failure on the untrusted bytes becomes one error line."""
    try:
        return unpickler.load()
    except TorchCheckpointError:
        raise
    except RecursionError:
        raise TorchCheckpointError(
            f"{source}: corrupt checkpoint, {what} nests too deeply to decode"
        ) from None
    except MemoryError:
        raise TorchCheckpointError(
            f"{source}: corrupt checkpoint, {what} does not fit in memory"
        ) from None
    except Exception as exc:  # corrupt bytes surface as many types (EOFError, KeyError, ...)
        raise TorchCheckpointError(
            f"{source}: corrupt checkpoint, cannot decode {what} "
            f"({type(exc).__name__}: {reprlib.repr(str(exc))[1:-1]})"
        ) from exc


_LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


def _load_legacy(data, source):
    """Legacy ``torch.save``: magic, protocol, sys_info and object pickles, the list of
    storage keys, then per key an int64 element count and the raw elements."""
    f = io.BytesIO(data)
    budget = len(data)

    def header(what):
        return _unpickle(_SafeUnpickler(f, source, budget), source, what)

    if header("the magic number") != _LEGACY_MAGIC_NUMBER:
        raise TorchCheckpointError(f"{source} is not a PyTorch checkpoint (bad magic number)")
    version = header("the protocol version")
    if version != _LEGACY_PROTOCOL:
        raise TorchCheckpointError(
            f"{source}: unsupported legacy checkpoint protocol {reprlib.repr(version)} "
            f"(expected {_LEGACY_PROTOCOL}); re-save it with torch >= 1.6"
        )
    sys_info = header("sys_info")
    if not isinstance(sys_info, dict):
        raise TorchCheckpointError(f"{source}: corrupt checkpoint, sys_info is not a dict")
    order = "little" if sys_info.get("little_endian", True) else "big"
    unpickler = _LegacyUnpickler(f, source, budget)
    obj = _unpickle(unpickler, source, "the object pickle")
    keys = header("the storage key list")
    if not (isinstance(keys, list) and all(isinstance(k, (str, int)) for k in keys)):
        raise TorchCheckpointError(f"{source}: corrupt checkpoint, bad storage key list")
    pending, pos = unpickler.pending, f.tell()
    view = memoryview(data)
    for i, key in enumerate(keys):
        if key not in pending:
            # never written by torch; its element size (so where the next record starts)
            # is unknown, which only matters if a referenced storage follows
            later = [k for k in keys[i + 1 :] if k in pending]
            if later:
                raise TorchCheckpointError(
                    f"{source}: corrupt checkpoint, storage {key!r} is listed twice or used "
                    f"by no tensor, so storage {later[0]!r} after it cannot be located"
                )
            break
        storage, dtype, itemsize = pending.pop(key)
        head = bytes(view[pos : pos + 8])
        count = int.from_bytes(head, order, signed=True)
        if count != storage.size and len(head) == 8:
            # torch >= 1.0 writes little-endian records whatever sys_info says; older
            # releases wrote the machine's order: trust the order whose count matches
            other = "big" if order == "little" else "little"
            if int.from_bytes(head, other, signed=True) == storage.size:
                order, count = other, storage.size
        if len(head) == 8 and count != storage.size:
            raise TorchCheckpointError(
                f"{source}: corrupt checkpoint, storage {key!r} holds {count} elements but "
                f"{storage.size} are declared"
            )
        nbytes = storage.size * itemsize
        if len(head) < 8 or pos + 8 + nbytes > len(data):
            raise TorchCheckpointError(
                f"{source}: truncated checkpoint, storage {key!r} needs {nbytes} bytes but "
                f"only {max(0, len(data) - pos - 8)} remain; copy or download the file again"
            )
        storage._array = _decode_storage(view[pos + 8 : pos + 8 + nbytes], dtype, order)
        pos += 8 + nbytes
    if pending:
        raise TorchCheckpointError(
            f"{source}: corrupt checkpoint, storage {next(iter(pending))!r} is used by a "
            "tensor but missing from the storage list"
        )
    return obj


def _source_name(path):
    return repr(os.fspath(path)) if isinstance(path, (str, os.PathLike)) else "checkpoint"


def load_torch_checkpoint(path):
    """Load a PyTorch checkpoint (zip or legacy format) into plain Python containers of
    NumPy arrays.

    Tensors become ``np.ndarray`` (bfloat16 is widened to float32); dicts,
    ``OrderedDict``s, lists, tuples and Python scalars are kept.

    Raises:
        FileNotFoundError: the path does not exist.
        TorchCheckpointError: not a torch checkpoint (corrupt, truncated, the pre-1.3
            tar format) or inconsistent tensor records.
        UnsafeCheckpointError: the pickle references anything but tensors and
            plain containers.
    """
    source = _source_name(path)
    if isinstance(path, (str, os.PathLike)) and not os.path.isfile(path):
        raise FileNotFoundError(f"PyTorch checkpoint {source} does not exist.")
    with open(path, "rb") if isinstance(path, (str, os.PathLike)) else path as f:
        head = f.read(len(_LEGACY_MAGIC))
        f.seek(0)
        if head.startswith(_LEGACY_MAGIC):
            obj = _load_legacy(f.read(), source)
            return _plain(obj, source)
        try:
            archive = zipfile.ZipFile(f)
        except _ZIP_ERRORS as exc:
            raise TorchCheckpointError(
                f"{source} is not a PyTorch zip checkpoint nor a legacy one (corrupt or "
                f"truncated file, or not written by torch.save): {exc}"
            ) from exc
        with archive:
            pkls = [n for n in archive.namelist() if n == "data.pkl" or n.endswith("/data.pkl")]
            pkls = [n for n in pkls if n.count("/") <= 1]
            if len(pkls) != 1:
                raise TorchCheckpointError(
                    f"{source} is a zip file but not a PyTorch checkpoint: expected one "
                    f"'<name>/data.pkl' record, found {len(pkls)}."
                )
            prefix = pkls[0][: -len("data.pkl")]
            info = archive.getinfo(pkls[0])
            if info.file_size > max(MAX_EXPANSION_BYTES, MAX_INFLATE_RATIO * info.compress_size):
                raise TorchCheckpointError(
                    f"{source}: {pkls[0]!r} inflates from {info.compress_size} to "
                    f"{info.file_size} bytes (a zip bomb?); re-save the checkpoint with torch.save"
                )
            try:
                byteorder = "little"
                if f"{prefix}byteorder" in archive.namelist():
                    with archive.open(f"{prefix}byteorder") as b:
                        byteorder = b.read(16).decode("ascii", "replace").strip()
                data = archive.read(info)
            except _ZIP_ERRORS as exc:
                raise TorchCheckpointError(f"{source}: corrupt checkpoint ({exc})") from exc
            if byteorder not in ("little", "big"):
                raise TorchCheckpointError(f"{source}: unknown byte order {byteorder!r}")
            unpickler = _ZipUnpickler(
                io.BytesIO(data), source, len(data), archive, prefix, byteorder
            )
            obj = _unpickle(unpickler, source, pkls[0])
            return _plain(obj, source)


def _plain(obj, source="checkpoint", key="", depth=0):
    """Containers of tensors -> containers of arrays; errors name the tensor's key."""

    def sub(k):
        return f"{key}.{k}" if key else str(k)

    if isinstance(obj, (dict, list, tuple)) and depth >= MAX_NESTING:
        # also ends reference cycles (a list holding itself)
        raise TorchCheckpointError(
            f"{source}: corrupt checkpoint, containers nested more than {MAX_NESTING} deep "
            f"(at {reprlib.repr(key)})"
        )
    d = depth + 1
    if isinstance(obj, _StateDict):
        return collections.OrderedDict((k, _plain(v, source, sub(k), d)) for k, v in obj.items())
    if isinstance(obj, dict):
        return {k: _plain(v, source, sub(k), d) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_plain(v, source, sub(i), d) for i, v in enumerate(obj)]
    if isinstance(obj, tuple):
        return tuple(_plain(v, source, sub(i), d) for i, v in enumerate(obj))
    if isinstance(obj, _Tensor):
        try:
            return obj.build()
        except TorchCheckpointError as exc:
            msg = str(exc)
            msg = msg[len(source) + 2 :] if msg.startswith(f"{source}: ") else msg
            raise TorchCheckpointError(f"{source}: tensor {key or '<root>'!r}: {msg}") from None
        except MemoryError:
            raise TorchCheckpointError(
                f"{source}: tensor {key or '<root>'!r} of shape {obj.size} does not fit in memory"
            ) from None
    if isinstance(obj, (_StorageType, _Storage, _Constructor)):
        raise TorchCheckpointError(f"{source}: checkpoint holds a bare {type(obj).__name__[1:]}, "
                                   "not a tensor")
    return obj


_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "ema", "params", "net", "module")


def _is_tensor_dict(obj):
    return isinstance(obj, dict) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, np.ndarray) for k, v in obj.items()
    )


def _flatten(obj, prefix=""):
    out = {}
    for k, v in obj.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, name + "."))
        elif isinstance(v, np.ndarray):
            out[name] = v
        else:
            raise TorchCheckpointError(f"entry {name!r} is a {type(v).__name__}, not a tensor")
    return out


def load_torch_state_dict(path, key=None):
    """Load the tensor state dict of a PyTorch checkpoint: ``{name: np.ndarray}``.

    Args:
        path: ``.pt`` / ``.pth`` file written by ``torch.save`` (zip or legacy format).
        key: str or None. Entry holding the state dict in a wrapped checkpoint
            (e.g. ``"state_dict"``; dotted paths such as ``"ema.model"`` work).
            Without it, a plain state dict is returned as is; a dict with one of
            the usual wrapper entries (``state_dict``, ``model_state_dict``,
            ``model``, ``ema``, ``params``, ``net``, ``module``) holding tensors is
            unwrapped; nested dicts of tensors are flattened with ``.``.

    Returns:
        ``dict[str, np.ndarray]`` in file order.

    Raises:
        TorchCheckpointError / UnsafeCheckpointError: see :func:`load_torch_checkpoint`;
        also when no state dict can be found (the message lists the top-level keys).
    """
    obj = load_torch_checkpoint(path)
    source = _source_name(path)
    if key is not None:
        for part in str(key).split("."):
            if not isinstance(obj, dict) or part not in obj:
                keys = list(obj) if isinstance(obj, dict) else type(obj).__name__
                raise TorchCheckpointError(
                    f"{source}: no entry {part!r} (from key={key!r}); available: {keys}"
                )
            obj = obj[part]
    if not isinstance(obj, dict):
        raise TorchCheckpointError(
            f"{source} holds a {type(obj).__name__}, not a state dict of tensors."
        )
    if _is_tensor_dict(obj):
        return dict(obj)
    if key is None:
        for wrapper in _WRAPPER_KEYS:
            if _is_tensor_dict(obj.get(wrapper)):
                return dict(obj[wrapper])
    try:
        flat = _flatten(obj)
    except TorchCheckpointError as exc:
        raise TorchCheckpointError(
            f"{source} does not hold a plain state dict ({exc}); top-level entries: "
            f"{list(obj)}. Pass key=<entry> to select the state dict."
        ) from None
    if not flat:
        raise TorchCheckpointError(f"{source} holds no tensors.")
    return flat
