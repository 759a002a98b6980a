"""Tiled inference: restore images larger than the accelerator memory allows.

The image is cut into overlapping tiles, each tile is run through the model and
the outputs are blended back with per-tile weights. Accumulation happens in host
(NumPy) memory, so only ``batch_size`` tiles are on the device at a time.

Exactness. A fully convolutional network with receptive field ``RF`` computes
an output pixel from the input pixels within ``r = RF // 2`` of it. A tile's
output is therefore exact (equal to whole-image inference) everywhere except in
a band of width ``r`` along its *interior* edges (edges that are image borders
behave exactly as in whole-image inference). When ``receptive_field`` is given,
the blending weights are zero in that band, so the result equals whole-image
inference exactly as soon as ``overlap >= receptive_field - 1``. Without it the
weights ramp linearly across the whole overlap, which hides seams but is only
approximately equal.

Networks that downsample by ``2**k`` are translation equivariant only for shifts
that are multiples of ``2**k``: pass ``align=2**k`` so tile sizes and positions
are multiples of it (an image whose size is not a multiple of ``align`` is
reflect-padded at the bottom/right, as whole-image inference must do too).

Example (a 3-layer 3x3 conv net has receptive field 7):

>>> import numpy as np, keras
>>> net = keras.Sequential([keras.Input((None, None, 1))] +
...     [keras.layers.Conv2D(1, 3, padding="same") for _ in range(3)])
>>> img = np.random.default_rng(0).random((40, 50, 1), dtype="float32")
>>> full = net.predict(img[None], verbose=0)[0]
>>> tiled = tiled_predict(net, img, tile_size=16, overlap=6, receptive_field=7)
>>> tiled.shape, bool(np.abs(tiled - full).max() < 1e-5)
((40, 50, 1), True)
"""

from __future__ import annotations

import math
import numbers

import numpy as np

__all__ = ["tiled_predict", "tile_starts", "blend_window", "receptive_field"]

_BLENDS = ("linear", "none")


def _pair(value, name):
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value), int(value)
    if (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in value)
    ):
        return int(value[0]), int(value[1])
    raise TypeError(f"`{name}` must be an int or a pair of ints (height, width), got {value!r}.")


def tile_starts(length, tile, overlap, align=1):
    """Tile layout along one axis.

    Returns ``(starts, tile, padded_length)``: the start offsets, the tile size
    actually used (clipped to the image) and the length the image must be
    padded to. The last tile is flush with the end. With ``align > 1`` the tile
    size and stride are multiples of ``align`` and the length is padded up to
    a multiple of ``align`` (what whole-image inference needs as well).

    >>> tile_starts(100, 40, 10)
    ([0, 30, 60], 40, 100)
    >>> tile_starts(30, 40, 10)
    ([0], 30, 30)
    >>> tile_starts(100, 32, 8, align=8)
    ([0, 24, 48, 72], 32, 104)
    """
    if tile <= 0:
        raise ValueError(f"`tile_size` must be positive, got {tile}.")
    if overlap < 0:
        raise ValueError(f"`overlap` must be >= 0, got {overlap}.")
    if align > 1:
        padded = int(math.ceil(length / align) * align)
        tile = min(tile // align * align, padded)
        if tile <= 0:
            raise ValueError(f"`tile_size` ({tile}) must be at least `align` ({align}).")
    else:
        padded = length
        tile = min(tile, length)
    if tile >= padded:
        return [0], padded, padded
    stride = tile - overlap
    if align > 1:
        stride = stride // align * align
    if stride <= 0:
        raise ValueError(
            f"`overlap` ({overlap}) must be smaller than `tile_size` ({tile})"
            + (f" by at least `align` ({align})" if align > 1 else "")
            + "."
        )
    # The last tile is flush with the (padded) end; with align > 1 every start is still a
    # multiple of align because stride, tile and padded length are.
    starts = list(range(0, padded - tile, stride)) + [padded - tile]
    return starts, tile, padded


def blend_window(size, left_interior, right_interior, margin, ramp):
    """1-D blending weights across one tile.

    On interior sides the first ``margin`` pixels get weight 0 (they are
    inexact), followed by a linear ramp of ``ramp`` pixels up to 1; the ramps of
    two neighbouring tiles sum to 1. Image-border sides get weight 1 up to the
    edge.

    >>> blend_window(8, True, False, margin=1, ramp=2).tolist()
    [0.0, 0.25, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0]
    """
    centres = np.arange(size, dtype=np.float64) + 0.5

    def side(pos):
        if ramp > 0:
            return np.clip((pos - margin) / ramp, 0.0, 1.0)
        return (pos >= margin).astype(np.float64)

    w = np.ones(size, np.float64)
    if left_interior:
        w = np.minimum(w, side(centres))
    if right_interior:
        w = np.minimum(w, side(size - centres))
    return w.astype(np.float32)


def _as_predict_fn(model):
    import keras

    if isinstance(model, keras.Model):
        if len(getattr(model, "inputs", None) or []) > 1:
            raise ValueError(
                f"model {model.name!r} takes {len(model.inputs)} inputs; pass a callable mapping "
                "an image batch to the output (tfrestore.inference.predict_image does this)"
            )
        return lambda x: model(x, training=False)
    if not callable(model):
        raise TypeError(f"`model` must be a keras.Model or a callable, got {type(model).__name__}.")
    return model


def _to_numpy(x):
    if hasattr(x, "numpy"):
        x = x.numpy()
    return np.asarray(x, dtype=np.float32)


def tiled_predict(
    model,
    image,
    tile_size=256,
    overlap=32,
    *,
    receptive_field=None,
    blend="linear",
    align=1,
    batch_size=4,
    pad_mode="reflect",
    callback=None,
):
    """Run ``model`` over ``image`` tile by tile and blend the outputs.

    Args:
        model: a ``keras.Model`` or a callable mapping a float32 batch
            ``(N, th, tw, C)`` to ``(N, th*s, tw*s, C_out)``; the integer scale
            ``s`` (1 for denoising, 2/3/4 for super-resolution) is inferred.
        image: ``(H, W, C)`` or ``(1, H, W, C)`` array (any real dtype; cast to
            float32, no rescaling).
        tile_size: int or (int, int). Tile height/width in input pixels;
            clipped to the image size.
        overlap: int or (int, int). Overlap of neighbouring tiles in input pixels.
        receptive_field: int or None. The model's receptive field in input
            pixels, if known (see :func:`receptive_field`). Blending then ignores the
            inexact border band of each tile, making the result exact when
            ``overlap >= receptive_field - 1``.
        blend: str. ``"linear"`` (ramp over the overlap) or ``"none"`` (hard seam
            at the middle of the overlap).
        align: int. Tile sizes/offsets are multiples of this (``2**k`` for
            networks that downsample ``k`` times); the image is reflect-padded
            at the bottom/right and the output cropped back.
        batch_size: int. Tiles per model call.
        pad_mode: str. ``numpy.pad`` mode used when ``align > 1`` needs padding.
        callback: callable or None. ``callback(done, total)`` called after each batch.

    Returns:
        ``float32`` array ``(H*s, W*s, C_out)`` (batched input gives a batched
        output).
    """
    arr = np.asarray(image)
    batched = arr.ndim == 4
    if batched:
        if arr.shape[0] != 1:
            raise ValueError(
                f"`image` batch must have size 1 for tiled inference, got shape {arr.shape}."
            )
        arr = arr[0]
    if arr.ndim != 3:
        raise ValueError(
            f"`image` must have shape (H, W, C) or (1, H, W, C), got shape {np.shape(image)}."
        )
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise TypeError(f"`image` must be a real-valued array, got dtype {arr.dtype}.")
    arr = arr.astype(np.float32, copy=False)
    if blend not in _BLENDS:
        raise ValueError(f"`blend` must be one of {_BLENDS}, got {blend!r}.")
    th, tw = _pair(tile_size, "tile_size")
    oh, ow = _pair(overlap, "overlap")
    if isinstance(align, bool) or not isinstance(align, numbers.Integral) or align < 1:
        raise ValueError(f"`align` must be a positive int, got {align!r}.")
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, numbers.Integral)
        or batch_size < 1
    ):
        raise ValueError(f"`batch_size` must be a positive int, got {batch_size!r}.")
    if receptive_field is not None and (
        isinstance(receptive_field, bool)
        or not isinstance(receptive_field, numbers.Integral)
        or receptive_field < 1
    ):
        raise ValueError(
            f"`receptive_field` must be a positive int or None, got {receptive_field!r}."
        )
    predict = _as_predict_fn(model)

    H, W, _ = arr.shape
    ys, th, Hp = tile_starts(H, th, oh, align)
    xs, tw, Wp = tile_starts(W, tw, ow, align)
    if (Hp, Wp) != (H, W):
        if pad_mode == "reflect" and (Hp - H >= H or Wp - W >= W):
            pad_mode = "symmetric"  # reflect needs the pad to be shorter than the image
        arr = np.pad(arr, ((0, Hp - H), (0, Wp - W), (0, 0)), mode=pad_mode)

    radius = (receptive_field // 2) if receptive_field else 0
    boxes = [(y, x) for y in ys for x in xs]
    out = wsum = None
    scale = None
    done = 0
    for i in range(0, len(boxes), batch_size):
        chunk = boxes[i : i + batch_size]
        tiles = np.stack([arr[y : y + th, x : x + tw] for y, x in chunk])
        pred = _to_numpy(predict(tiles))
        if pred.ndim != 4 or pred.shape[0] != len(chunk):
            raise ValueError(
                f"the model must return a batch (N, h, w, C); for input {tiles.shape} it returned "
                f"{pred.shape}."
            )
        if scale is None:
            sh, sw = pred.shape[1] / th, pred.shape[2] / tw
            if sh != sw or sh != int(sh) or sh < 1:
                raise ValueError(
                    f"the model's output size {pred.shape[1:3]} is not an integer multiple (>= 1, "
                    "same in "
                    f"both axes) of its input size {(th, tw)}; tiled inference needs a fully "
                    "convolutional "
                    "model."
                )
            scale = int(sh)
            out = np.zeros((Hp * scale, Wp * scale, pred.shape[3]), np.float32)
            wsum = np.zeros((Hp * scale, Wp * scale, 1), np.float32)
            wy_cache, wx_cache = {}, {}

            def window(cache, start, last_start, size, ov):
                key = (start == 0, start == last_start)
                if key not in cache:
                    # Zero band of `radius` (the inexact border), ramp over the rest.
                    m = min(radius, ov // 2) if blend == "linear" else ov // 2
                    ramp = ov - 2 * m
                    cache[key] = blend_window(
                        size * scale, start != 0, start != last_start, m * scale, ramp * scale
                    )
                return cache[key]

        for (y, x), p in zip(chunk, pred):
            wy = window(wy_cache, y, ys[-1], th, oh)
            wx = window(wx_cache, x, xs[-1], tw, ow)
            w2 = (wy[:, None] * wx[None, :])[..., None]
            ys_, xs_ = y * scale, x * scale
            out[ys_ : ys_ + th * scale, xs_ : xs_ + tw * scale] += p * w2
            wsum[ys_ : ys_ + th * scale, xs_ : xs_ + tw * scale] += w2
        done += len(chunk)
        if callback is not None:
            callback(done, len(boxes))
    if np.any(wsum <= 0):  # cannot happen with the windows above; guard against silent black pixels
        raise RuntimeError(
            "tiled_predict left pixels without any tile weight; please report this bug."
        )
    out /= wsum
    out = out[: H * scale, : W * scale]
    return out[None] if batched else out


def _probe_inputs(rng, hw, channels):
    """A batch of random images at several scales and offsets: a ReLU that is off for one of
    them (zero gradient, although a different input would pass the signal) is on for another,
    so the union of their gradients' supports covers the model's dependence."""
    base = rng.standard_normal((len(_PROBES), *hw, channels)).astype(np.float32)
    scale = np.array([p[0] for p in _PROBES], np.float32)[:, None, None, None]
    shift = np.array([p[1] for p in _PROBES], np.float32)[:, None, None, None]
    return base * scale + shift


#: (scale, offset) of the probe images of :func:`receptive_field`
_PROBES = ((1.0, 0.0), (4.0, 0.5))


def receptive_field(model, channels=None, max_size=4096, seed=0, block=16, multiple=1):
    """Empirical receptive field (in input pixels) of a fully convolutional model.

    Back-propagates from a ``block x block`` patch of output pixels (so that
    every phase of a strided network is covered) to a random input and measures
    how far the non-zero gradient reaches beyond the patch (plus ``multiple - 1``:
    outputs of different phases reach differently). Each axis is
    measured on a strip (long along that axis, narrow across it, which keeps the
    cost low), doubling its length until the gradient no longer touches its ends.
    Returns an odd int ``2 * r + 1`` (``r``: the largest reach, in input
    pixels), or ``None`` if it still touches them at ``max_size`` (a global
    operation: tiling cannot be exact).

    ``model``: a single-input ``keras.Model`` or a callable on a float32 batch
    ``(1, H, W, channels)``; ``multiple``: input sizes the model needs (height and
    width divisible by it).

    >>> import keras
    >>> net = keras.Sequential([keras.Input((None, None, 1))] +
    ...     [keras.layers.Conv2D(2, 3, padding="same") for _ in range(4)])
    >>> receptive_field(net)
    9
    """
    import tensorflow as tf

    if channels is None:
        shape = getattr(model, "input_shape", None)
        if isinstance(shape, list):
            shape = shape[0]
        channels = shape[-1] if shape and shape[-1] else 3
    predict = _as_predict_fn(model)
    multiple = max(int(multiple), 1)
    block = -(-max(int(block), multiple) // multiple) * multiple
    thin = -(-max(64, 2 * block, 4 * multiple) // multiple) * multiple

    @tf.function(reduce_retracing=True)
    def grad(x, mask):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = predict(x)
            if isinstance(y, (list, tuple)):
                y = y[0]
            target = tf.reduce_sum(tf.cast(y, tf.float32) * mask)
        return tape.gradient(target, x), tf.shape(y)

    rng = np.random.default_rng(seed)
    probe = predict(tf.zeros((1, thin, thin, channels)))
    probe = probe[0] if isinstance(probe, (list, tuple)) else probe
    s = probe.shape[1] / thin
    if s != probe.shape[2] / thin or s != int(s) or s < 1:
        raise ValueError(
            f"the model's output size {tuple(probe.shape[1:3])} is not an integer multiple of its "
            f"input size {(thin, thin)}; cannot measure a receptive field"
        )
    s = int(s)
    reach = 0
    for axis in (0, 1):
        size = -(-64 // multiple) * multiple
        while True:
            hw = [thin, thin]
            hw[axis] = size
            x = tf.constant(_probe_inputs(rng, hw, channels))
            # the output block at the centre (first in input pixels, phase-aligned)
            lo = [(n // 2 - block // 2) // multiple * multiple for n in hw]
            mask = np.zeros((1, hw[0] * s, hw[1] * s, 1), np.float32)  # same for every probe
            mask[0, lo[0] * s : (lo[0] + block) * s, lo[1] * s : (lo[1] + block) * s] = 1.0
            g, _ = grad(x, tf.constant(mask))
            if g is None:
                raise ValueError(
                    "the model output does not depend on its input; cannot measure a receptive "
                    "field."
                )
            nz = np.abs(g.numpy()).sum((0, -1)) > 0
            idx = np.nonzero(nz.any(1 - axis))[0]
            if idx.size == 0:
                raise ValueError(
                    "zero gradient at the centre pixels; cannot measure a receptive field."
                )
            if idx[0] > 0 and idx[-1] < size - 1:
                a = lo[axis]
                reach = max(reach, a - idx[0], idx[-1] - (a + block - 1))
                break
            if size >= max_size:
                return None
            size *= 2
    # The reach is measured from the block's edges, but an output of phase p inside the block
    # (p < multiple) can reach up to p pixels further than the block's first output.
    return int(2 * (reach + multiple - 1) + 1)
