"""Memory budget of inference: how much a model needs for an image, and how much there is.

:func:`activation_profile` traces the model's inference graph at two image sizes and walks
its operations in order, keeping every tensor whose size grows with the image alive until its
last consumer has run. The peak of that live set, per input pixel, times a factor measured on
the CPU (:data:`CALIBRATION`: TensorFlow's allocator, oneDNN's reordered copies) predicts the
activation memory of graph-mode inference (:func:`estimate_bytes`). The same trace gives the
largest downsampling factor of the network (tiles of a network that downsamples by ``2**k``
must start at multiples of ``2**k``).

:func:`memory_budget` resolves the budget: an explicit value, else ``TFRESTORE_MAX_MEMORY``,
else half the available RAM (and at most 70 % of the GPU's memory when a GPU is used).

>>> parse_memory("4G"), parse_memory("512M"), parse_memory("1.5GiB"), parse_memory(2048)
(4294967296, 536870912, 1610612736, 2048)
>>> format_bytes(3 * 2**30), format_bytes(300 * 2**20)
('3.0 GB', '300 MB')
"""

from __future__ import annotations

import math
import numbers
import os
import re
import weakref

__all__ = [
    "CALIBRATION",
    "ENV_VAR",
    "parse_memory",
    "format_bytes",
    "available_memory",
    "gpu_memory",
    "memory_budget",
    "activation_profile",
    "estimate_bytes",
]

ENV_VAR = "TFRESTORE_MAX_MEMORY"

#: Measured peak RSS increase / traced live-set peak (graph mode, CPU); see bench/bench_memory.py
#: (``--calibrate``). Measured at 512-1024 px: DnCNN 0.96-1.01, FFDNet 1.12-1.18, UNet 1.24,
#: LiuDenoiser 1.40-1.43, EDSR x2 1.55-1.56; the factor keeps a margin above the largest.
CALIBRATION = 1.7
#: Fixed working memory of one model call (allocator and oneDNN scratch; dominates below
#: 0.1 Mpx, where the ratios above reach 1.75).
OVERHEAD = 32 * 2**20

_UNITS = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
_MEM_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)(i?b)?\s*$", re.IGNORECASE)


def parse_memory(value):
    """Bytes from ``4G``, ``512M``, ``1.5GiB``, ``300MB`` or a plain number of bytes."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        if value <= 0:
            raise ValueError(f"a memory size must be positive, got {value!r}")
        return int(value)
    m = _MEM_RE.match(str(value))
    if not m:
        raise ValueError(
            f"cannot read the memory size {value!r}; write e.g. 4G, 512M or 1.5G (binary units)"
        )
    size = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if size <= 0:
        raise ValueError(f"a memory size must be positive, got {value!r}")
    return size


def format_bytes(n):
    """``1.5 GB`` / ``300 MB`` (binary units)."""
    n = float(n)
    if n >= 2**30:
        return f"{n / 2**30:.1f} GB"
    return f"{max(n, 0) / 2**20:.0f} MB"


def _cgroup_free():
    """Bytes left under this process's cgroup (v2 or v1) memory limit, or None."""
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        ),
    ):
        try:
            with open(limit_file) as f:
                limit = f.read().strip()
            if limit == "max" or int(limit) >= 2**60:
                return None
            with open(usage_file) as f:
                return max(int(limit) - int(f.read().strip()), 0)
        except (OSError, ValueError):
            continue
    return None


def available_memory():
    """Bytes of RAM available to this process (``psutil``/``/proc/meminfo``, cgroup limit)."""
    avail = None
    try:
        import psutil

        avail = int(psutil.virtual_memory().available)
    except Exception:  # noqa: BLE001 - psutil missing or unsupported platform
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemAvailable:"):
                        avail = int(line.split()[1]) * 1024
                        break
        except OSError:
            pass
    cg = _cgroup_free()
    if cg is not None:
        avail = cg if avail is None else min(avail, cg)
    return avail


def gpu_memory():
    """Memory limit in bytes of the first GPU TensorFlow uses, or None without a GPU."""
    import tensorflow as tf

    if not tf.config.list_physical_devices("GPU"):
        return None
    from tfrestore.utils.keras_compat import gpu_memory_limit

    return gpu_memory_limit()


def memory_budget(max_memory=None):
    """``(bytes, where_from)``: the inference memory budget.

    ``max_memory`` (bytes or ``"4G"``) wins; else ``TFRESTORE_MAX_MEMORY``; else half the
    available RAM, capped at 70 % of the GPU's memory when a GPU is present.
    """
    if max_memory is not None:
        return parse_memory(max_memory), "--max-memory"
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        try:
            return parse_memory(env), ENV_VAR
        except ValueError as e:
            raise ValueError(f"{ENV_VAR}: {e}") from None
    avail = available_memory() or 4 * 2**30
    budget, source = avail // 2, "half the available RAM"
    try:
        gpu = gpu_memory()
    except Exception:  # noqa: BLE001 - no usable GPU runtime
        gpu = None
    if gpu and int(gpu * 0.7) < budget:
        budget, source = int(gpu * 0.7), "70% of the GPU memory"
    return int(budget), source


class Profile:
    """Per-input-pixel memory of a model's inference graph.

    ``bytes_per_pixel``: peak live-set bytes per input pixel (uncalibrated);
    ``downsample``: the largest spatial downsampling factor inside the network;
    ``scale``: output pixels per input pixel along one axis (SR scale);
    ``out_channels``: channels of the output.
    """

    def __init__(self, bytes_per_pixel, downsample, scale, out_channels):
        self.bytes_per_pixel = float(bytes_per_pixel)
        self.downsample = int(downsample)
        self.scale = int(scale)
        self.out_channels = int(out_channels)

    def __repr__(self):
        return (
            f"Profile(bytes_per_pixel={self.bytes_per_pixel:.0f}, downsample={self.downsample}, "
            f"scale={self.scale}, out_channels={self.out_channels})"
        )


_PROFILES = weakref.WeakKeyDictionary()


def _tensor_sizes(graph):
    """``{tensor name: (bytes, dim1)}`` for tensors with a fully known shape."""
    sizes = {}
    for op in graph.get_operations():
        for t in op.outputs:
            shape = t.shape
            if shape.rank is None or not shape.is_fully_defined():
                continue
            try:
                itemsize = t.dtype.size
            except Exception:  # noqa: BLE001 - variant/resource tensors
                continue
            n = math.prod(shape.as_list()) if shape.rank else 1
            sizes[t.name] = (n * itemsize, shape[1] if shape.rank == 4 else None)
    return sizes


def activation_profile(fn, channels, multiple=1, offset=0, key=None):
    """Trace ``fn`` (a ``tf.function`` mapping ``(1, H, W, channels)`` to the restored batch) at
    two sizes and return a :class:`Profile`; cached under ``key`` (e.g. the model)."""
    import tensorflow as tf

    if key is not None:
        try:
            cached = _PROFILES.get(key)
        except TypeError:
            cached = None
        if cached is not None:
            return cached
    step = max(int(multiple), 1)
    s1 = offset + step * max(1, -(-64 // step))
    s2 = offset + step * max(2, -(-128 // step))
    graphs, outs = [], []
    for s in (s1, s2):
        cf = fn.get_concrete_function(tf.TensorSpec((1, s, s, channels), tf.float32))
        graphs.append(cf.graph)
        outs.append(cf.structured_outputs)
    small, big = (_tensor_sizes(g) for g in graphs)
    dpx = float(s2 * s2 - s1 * s1)
    slope, down = {}, 1
    for name, (b2, d2) in big.items():
        if name not in small:
            continue
        b1, d1 = small[name]
        if b2 > b1:
            slope[name] = (b2 - b1) / dpx
            if d1 is not None and d2 is not None and d2 > d1:
                ratio = (s2 - s1) / (d2 - d1)
                if ratio > 1.01:
                    down = max(down, int(round(ratio)))
    # Liveness walk over the big graph in creation order (a valid topological order).
    ops = graphs[1].get_operations()
    index = {op.name: i for i, op in enumerate(ops)}
    last_use = {}
    for op in ops:
        for t in op.outputs:
            if t.name in slope:
                uses = [index.get(c.name, len(ops)) for c in t.consumers()]
                last_use[t.name] = max(uses, default=index[op.name])
    live = peak = 0.0
    frees = {}
    for name, i in last_use.items():
        frees.setdefault(i, []).append(name)
    for i, op in enumerate(ops):
        for t in op.outputs:
            if t.name in slope:
                live += slope[t.name]
        peak = max(peak, live)
        for name in frees.get(i, ()):
            live -= slope[name]
    out = outs[1]
    out = out[0] if isinstance(out, (list, tuple)) else out
    scale = max(int(round(out.shape[1] / s2)), 1) if out.shape[1] else 1
    profile = Profile(peak, down, scale, out.shape[-1] or channels)
    if key is not None:
        try:
            _PROFILES[key] = profile
        except TypeError:
            pass
    return profile


def estimate_bytes(profile, height, width, channels, *, tile=None, batch_size=1):
    """Predicted peak memory (bytes) of inference on an ``height x width`` image.

    Whole image (``tile=None``): calibrated activations of the whole image plus the input and
    output copies. Tiled: activations of ``batch_size`` tiles of ``tile`` (int or ``(h, w)``)
    plus the host buffers of :func:`~tfrestore.inference.tiling.tiled_predict` (padded input,
    blended output, weight sum).
    """
    s2 = profile.scale**2
    px = float(height) * float(width)
    image_io = px * 4 * (channels + 2 * s2 * profile.out_channels)  # input copy, output + copy
    if tile is None:
        return int(CALIBRATION * profile.bytes_per_pixel * px + image_io + OVERHEAD)
    th, tw = (tile, tile) if isinstance(tile, numbers.Integral) else tile
    acts = CALIBRATION * profile.bytes_per_pixel * th * tw * batch_size
    tile_io = th * tw * batch_size * 4 * (2 * channels + 3 * s2 * profile.out_channels)
    buffers = px * 4 * (2 * channels + s2 * (profile.out_channels + 1))
    return int(acts + tile_io + buffers + OVERHEAD)
