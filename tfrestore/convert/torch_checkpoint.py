"""Read PyTorch zip-format checkpoints (``.pt`` / ``.pth``) without torch.

``torch.save`` (PyTorch >= 1.6) writes a zip archive holding ``<name>/data.pkl``
(a pickle describing the object) and one raw little-endian buffer per tensor
storage under ``<name>/data/<key>``. This module replays the pickle with an
unpickler that only knows tensors and plain containers: any other global (a
class, a function, ``os.system`` ...) is refused *before* it can be called, so
reading a checkpoint never runs code from the file (``torch.load`` without
``weights_only=True`` would).

Supported: float16/bfloat16/float32/float64 and int8/16/32/64/uint8/bool storages,
storage offsets and strides (views sharing a storage), ``dict``/``OrderedDict``/
``list``/``tuple`` nesting (e.g. ``{"state_dict": {...}, "epoch": 3}``),
``nn.Parameter`` entries. Not supported: the legacy pre-1.6 (non-zip) format,
pickled modules, numpy arrays or other Python objects inside the checkpoint.

Allocation is bounded by the file: a view may not reach outside its storage nor
expand it (stride 0) beyond :data:`MAX_EXPANSION_BYTES`; a compressed storage
record may not inflate more than :data:`MAX_INFLATE_RATIO` times (zip bomb). Both
raise :class:`TorchCheckpointError` naming the tensor's key. Tensors are built
after the pickle is read, so errors name the state-dict key.

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
import struct
import sys
import zipfile

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


class TorchCheckpointError(ValueError):
    """The file is not a readable PyTorch zip checkpoint (corrupt, legacy, ...)."""


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
            f"corrupt checkpoint: invalid tensor view size={size!r} stride={stride!r}"
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


class _SafeUnpickler(pickle.Unpickler):
    def __init__(self, file, archive, prefix, byteorder, source):
        super().__init__(file)
        self._archive, self._prefix = archive, prefix
        self._byteorder, self._source = byteorder, source
        self._storages = {}

    def find_class(self, module, name):
        key = (module, name)
        if key in _SAFE_GLOBALS:
            return _SAFE_GLOBALS[key]
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

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise TorchCheckpointError(f"{self._source}: unsupported persistent id {pid!r}")
        _, storage_type, key, _location, numel = pid[:5]
        if not isinstance(storage_type, _StorageType):
            raise TorchCheckpointError(
                f"{self._source}: unsupported storage type {storage_type!r}"
            )
        cache_key = str(key)
        if cache_key in self._storages:
            return self._storages[cache_key]
        name = f"{self._prefix}data/{key}"
        dtype = storage_type.dtype
        itemsize = 2 if dtype == "bfloat16" else np.dtype(dtype).itemsize
        if isinstance(storage_type, _StorageType) and storage_type.name == "UntypedStorage":
            itemsize = 1  # numel counts bytes
        try:
            numel = int(numel)
            info = self._archive.getinfo(name)
        except KeyError:
            raise TorchCheckpointError(
                f"{self._source}: corrupt checkpoint, storage record {name!r} is missing"
            ) from None
        except (TypeError, ValueError):
            raise TorchCheckpointError(
                f"{self._source}: corrupt checkpoint, storage {name!r} has numel {numel!r}"
            ) from None
        expected = numel * itemsize
        if numel < 0 or info.file_size < expected:
            raise TorchCheckpointError(
                f"{self._source}: corrupt checkpoint, storage {name!r} has {info.file_size} bytes "
                f"but {numel} elements of {itemsize} bytes are declared"
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
                with archive.open(name) as f:
                    raw = f.read(expected)  # bounded: never more than the declared storage
            except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as exc:
                raise TorchCheckpointError(
                    f"{source}: corrupt checkpoint, cannot read {name!r} ({exc})"
                ) from exc
            if len(raw) < expected:
                raise TorchCheckpointError(
                    f"{source}: corrupt checkpoint, storage {name!r} has {len(raw)} bytes "
                    f"but {numel} elements of {itemsize} bytes are declared"
                )
            if dtype == "bfloat16":
                if byteorder != "little":
                    raw = np.frombuffer(raw, ">u2").astype("<u2").tobytes()
                return _bfloat16_to_float32(raw)
            arr = np.frombuffer(raw, dtype=np.dtype(dtype))
            return arr.byteswap() if byteorder != sys.byteorder else arr

        storage = _Storage(
            load=load,
            size=numel,
            dtype=np.float32 if dtype == "bfloat16" else dtype,
            name=name,
        )
        self._storages[cache_key] = storage
        return storage


def _source_name(path):
    return repr(os.fspath(path)) if isinstance(path, (str, os.PathLike)) else "checkpoint"


def load_torch_checkpoint(path):
    """Load a PyTorch zip checkpoint into plain Python containers of NumPy arrays.

    Tensors become ``np.ndarray`` (bfloat16 is widened to float32); dicts,
    ``OrderedDict``s, lists, tuples and Python scalars are kept.

    Raises:
        FileNotFoundError: the path does not exist.
        TorchCheckpointError: not a zip checkpoint (corrupt, truncated, legacy
            pre-1.6 format) or inconsistent tensor records.
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
            raise TorchCheckpointError(
                f"{source} is a legacy (pre-PyTorch-1.6, non-zip) checkpoint, which cannot "
                "be read without torch. Re-save it with torch >= 1.6: "
                "`torch.save(torch.load(path), new_path)`."
            )
        try:
            archive = zipfile.ZipFile(f)
        except (zipfile.BadZipFile, EOFError, OSError) as exc:
            raise TorchCheckpointError(
                f"{source} is not a PyTorch zip checkpoint (corrupt or truncated file, or "
                f"not written by torch.save): {exc}"
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
            byteorder = "little"
            if f"{prefix}byteorder" in archive.namelist():
                byteorder = archive.read(f"{prefix}byteorder").decode("ascii", "replace").strip()
                if byteorder not in ("little", "big"):
                    raise TorchCheckpointError(f"{source}: unknown byte order {byteorder!r}")
            try:
                data = archive.read(pkls[0])
            except (zipfile.BadZipFile, EOFError, OSError) as exc:
                raise TorchCheckpointError(f"{source}: corrupt checkpoint ({exc})") from exc
            unpickler = _SafeUnpickler(io.BytesIO(data), archive, prefix, byteorder, source)
            try:
                obj = unpickler.load()
            except TorchCheckpointError:
                raise
            except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError,
                    KeyError, AttributeError, struct.error) as exc:
                raise TorchCheckpointError(
                    f"{source}: corrupt checkpoint, cannot decode data.pkl "
                    f"({type(exc).__name__}: {exc})"
                ) from exc
            return _plain(obj, source)


def _plain(obj, source="checkpoint", key=""):
    """Containers of tensors -> containers of arrays; errors name the tensor's key."""

    def sub(k):
        return f"{key}.{k}" if key else str(k)

    if isinstance(obj, _StateDict):
        return collections.OrderedDict((k, _plain(v, source, sub(k))) for k, v in obj.items())
    if isinstance(obj, dict):
        return {k: _plain(v, source, sub(k)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_plain(v, source, sub(i)) for i, v in enumerate(obj)]
    if isinstance(obj, tuple):
        return tuple(_plain(v, source, sub(i)) for i, v in enumerate(obj))
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
    if isinstance(obj, (_StorageType, _Storage)):
        raise TorchCheckpointError("checkpoint holds a bare storage, not a tensor")
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
    """Load the tensor state dict of a PyTorch zip checkpoint: ``{name: np.ndarray}``.

    Args:
        path: ``.pt`` / ``.pth`` file written by ``torch.save`` (zip format).
        key: optional entry holding the state dict in a wrapped checkpoint
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
