"""Read MatConvNet ``simplenn`` networks saved as MATLAB v7.3 files, without MATLAB.

A v7.3 ``.mat`` file is HDF5: ``net.layers`` is a cell array of references to structs
with a ``type`` (``conv``, ``relu``, ``SubP``, ``concat``, ...), a ``name``, a cell
``weights`` and numeric options (``pad``, ``stride``, ``dilate``, ``leak``, ``scale``).
The file is read with h5py as plain data: nothing in it is executed, every array is
size-checked against :data:`MAX_ARRAY_BYTES` before it is read, and a damaged or
unexpected file raises :class:`MatConvNetError` naming the file and the layer.

MATLAB stores arrays column-major and drops trailing singleton dimensions, so h5py
returns the reversed shape: a convolution bank ``H x W x in x out`` reads as
``(out, in, W, H)``, or ``(in, W, H)`` when ``out == 1``. :func:`conv_kernel` restores
``(H, W, in, out)``, which is Keras' ``Conv2D`` layout: MatConvNet's ``vl_nnconv``
is a cross-correlation, like Keras'.

>>> import numpy as np
>>> conv_kernel(np.zeros((64, 3, 3), "float32")).shape  # a 3x3, 64 -> 1 bank as h5py reads it
(3, 3, 64, 1)
>>> subpixel_order(1, 2)  # MatConvNet SubP channel of each TensorFlow space_to_depth channel
array([0, 2, 1, 3])
"""

from __future__ import annotations

import os

import numpy as np

__all__ = [
    "MatConvNetError",
    "MAX_ARRAY_BYTES",
    "load_simplenn",
    "conv_kernel",
    "subpixel_order",
]

#: No single array of a network file may be larger than this (a crafted HDF5 header could
#: declare a huge compressed dataset in a small file).
MAX_ARRAY_BYTES = 1 << 30

_NUMERIC_OPTIONS = ("pad", "stride", "dilate", "leak", "scale")


class MatConvNetError(ValueError):
    """The file is not a readable MatConvNet ``simplenn`` network."""


def _text(dataset):
    """A MATLAB char array (uint16 code units) as ``str``."""
    codes = np.asarray(dataset).ravel()
    return "".join(chr(int(c)) for c in codes)


def _is_empty(obj):
    return int(obj.attrs.get("MATLAB_empty", 0)) == 1


def _array(dataset, source, what):
    import h5py

    if not isinstance(dataset, h5py.Dataset):
        raise MatConvNetError(f"{source}: {what} is not an array")
    if dataset.dtype.kind not in "fiub":
        raise MatConvNetError(f"{source}: {what} has data type {dataset.dtype}, not numbers")
    nbytes = int(np.prod(dataset.shape, dtype=np.int64)) * dataset.dtype.itemsize
    if nbytes > MAX_ARRAY_BYTES:
        raise MatConvNetError(
            f"{source}: {what} declares {nbytes / 2**20:.0f} MiB (limit "
            f"{MAX_ARRAY_BYTES >> 20} MiB): not a restoration network file"
        )
    return np.array(dataset, dtype=np.float32 if dataset.dtype.kind == "f" else dataset.dtype)


def _cell(file, group, key, source, what):
    """The arrays referenced by a MATLAB cell array (``[]`` when empty or absent)."""
    if key not in group or _is_empty(group[key]):
        return []
    refs = group[key]
    if refs.dtype != object:
        raise MatConvNetError(f"{source}: {what}.{key} is not a cell array")
    out = []
    for i, ref in enumerate(np.asarray(refs).ravel()):
        try:
            target = file[ref]
        except (ValueError, KeyError, TypeError) as exc:
            raise MatConvNetError(f"{source}: {what}.{key}{{{i + 1}}} is a broken reference") from exc
        out.append(_array(target, source, f"{what}.{key}{{{i + 1}}}"))
    return out


def load_simplenn(path):
    """The layers of a MatConvNet ``simplenn`` network, in order.

    Returns:
        A list of dicts, one per layer: ``type`` and ``name`` (str), ``weights`` (list of
        float32 arrays in h5py order; use :func:`conv_kernel` for a convolution bank) and
        the numeric options present (``pad``, ``stride``, ``dilate``, ``leak``, ``scale``)
        as tuples of floats.

    Raises:
        FileNotFoundError: no such file.
        MatConvNetError: not a v7.3 ``.mat`` file holding ``net.layers`` (an older MATLAB
            format, another struct, a damaged file, an oversized array).
    """
    import h5py

    source = repr(os.fspath(path))
    if not os.path.isfile(path):
        raise FileNotFoundError(f"MatConvNet file {source} does not exist.")
    try:
        file = h5py.File(path, "r")
    except OSError as exc:
        raise MatConvNetError(
            f"{source} is not a MATLAB v7.3 (HDF5) file ({exc}); re-save it in MATLAB with "
            "save(path, 'net', '-v7.3')"
        ) from exc
    with file:
        try:
            return _read_layers(file, source)
        except MatConvNetError:
            raise
        except (OSError, KeyError, ValueError, TypeError, RuntimeError, IndexError) as exc:
            # h5py reports damage inside the file (a broken B-tree, a failing filter, an
            # address past the end) with these; the remedy is another copy of the file.
            reason = " ".join(str(exc).split())[:200]
            raise MatConvNetError(
                f"{source} is damaged ({type(exc).__name__}: {reason}); copy or download it "
                "again"
            ) from None


def _read_layers(file, source):
    """The layers of an open file (see :func:`load_simplenn`)."""
    import h5py

    try:
        refs = file["net"]["layers"]
    except (KeyError, TypeError):
        raise MatConvNetError(
            f"{source} holds no MatConvNet simplenn network (no `net.layers`); top-level "
            f"entries: {sorted(k for k in file.keys() if not k.startswith('#'))}"
        ) from None
    if not isinstance(refs, h5py.Dataset) or refs.dtype != object:
        raise MatConvNetError(f"{source}: `net.layers` is not a cell array of layers")
    layers = []
    for i, ref in enumerate(np.asarray(refs).ravel()):
        where = f"net.layers{{{i + 1}}}"
        try:
            group = file[ref]
            kind = _text(group["type"])
            name = _text(group["name"]) if "name" in group else f"layer{i + 1}"
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise MatConvNetError(f"{source}: {where} is not a layer struct ({exc})") from None
        layer = {"type": kind, "name": name}
        layer["weights"] = _cell(file, group, "weights", source, f"{where} ({name})")
        for option in _NUMERIC_OPTIONS:
            if option in group and not _is_empty(group[option]):
                value = _array(group[option], source, f"{where}.{option}")
                layer[option] = tuple(float(v) for v in value.ravel())
        layers.append(layer)
    if not layers:
        raise MatConvNetError(f"{source}: `net.layers` is empty")
    return layers


def conv_kernel(weight):
    """A MatConvNet convolution bank as read by h5py → Keras ``(H, W, in, out)``."""
    a = np.asarray(weight, dtype=np.float32).T  # back to MATLAB's H x W x in x out
    if a.ndim > 4:
        raise MatConvNetError(f"a convolution bank has 4 dimensions at most, got shape {a.shape}")
    return np.ascontiguousarray(a.reshape(a.shape + (1,) * (4 - a.ndim)))


def subpixel_order(channels, scale=2):
    """For each channel of TensorFlow's ``space_to_depth`` (``(i * scale + j) * C + c``
    for row offset i, column offset j), the index of the same sub-image in MatConvNet's
    ``SubP`` layer, which puts channel c first and lets the row offset vary fastest
    (``(c * scale + j) * scale + i``)."""
    order = np.empty(channels * scale * scale, dtype=np.int64)
    for i in range(scale):
        for j in range(scale):
            for c in range(channels):
                order[(i * scale + j) * channels + c] = (c * scale + j) * scale + i
    return order
