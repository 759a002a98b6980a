"""Load a trained restoration model and run it on whole images.

:func:`predict_image` handles what whole-image inference needs beyond
``model(x)``: padding to the size multiple the architecture requires (read from
its ``InputCheck`` layer), the extra noise-level input of two-input models
(FFDNet), and optional tiling (:func:`tfrestore.inference.tiling.tiled_predict`).

>>> import numpy as np, keras
>>> net = keras.Sequential([keras.Input((None, None, 3)),
...                           keras.layers.Conv2D(3, 3, padding="same")])
>>> out = predict_image(net, np.zeros((20, 30, 3), "float32"), tile_size=16, overlap=4)
>>> out.shape
(20, 30, 3)
"""

from __future__ import annotations

import math
import numbers
import os
import warnings
import weakref

import numpy as np

from tfrestore.inference.tiling import receptive_field as measure_receptive_field
from tfrestore.inference.tiling import tiled_predict
from tfrestore.utils.validation import check_noise_level

__all__ = [
    "ModelFileError",
    "load_model",
    "find_model_file",
    "input_requirements",
    "InferencePlan",
    "plan_inference",
    "measured_receptive_field",
    "predict_image",
    "save_image",
    "supports_16_bit",
    "supports_alpha",
    "to_grey",
]

_RUN_DIR_CANDIDATES = ("best.keras", "final.keras")


class ModelFileError(ValueError):
    """A model file exists but cannot be loaded (truncated, corrupt, not a Keras model)."""


def find_model_file(path):
    """``path`` itself if it is a file, else ``best.keras``/``final.keras`` in a run directory."""
    if os.path.isfile(path):
        return path
    if os.path.isdir(path):
        for name in _RUN_DIR_CANDIDATES:
            p = os.path.join(path, name)
            if os.path.isfile(p):
                return p
        raise FileNotFoundError(
            f"{path} is a directory without {' or '.join(_RUN_DIR_CANDIDATES)}; pass a .keras "
            "file or a "
            "training run directory"
        )
    raise FileNotFoundError(
        f"model file or run directory not found: {path} (nor a preset name: see "
        "tfrestore.models.list_presets())"
    )


def load_model(path):
    """Load a ``.keras`` model, a run directory's best/final model, or a preset by name
    (:func:`tfrestore.models.list_presets`, e.g. ``"ffdnet_color"``) for inference.

    Compiled losses are not rebuilt (``compile=False``): inference needs no
    loss weights such as VGG. A path that exists wins over a preset of the same name.
    """
    import keras

    import tfrestore.losses  # noqa: F401  (register custom objects)
    import tfrestore.metrics  # noqa: F401
    import tfrestore.models  # noqa: F401

    import zipfile

    from tfrestore.models.presets import PRESETS, from_preset

    if not os.path.exists(path) and path in PRESETS:
        return from_preset(path)
    if not os.path.exists(path) and os.sep not in path and "." not in path:
        import difflib

        close = difflib.get_close_matches(path, list(PRESETS), n=1)
        if close:
            raise FileNotFoundError(
                f"no model file, run directory or preset called {path!r}; did you mean the "
                f"preset {close[0]!r}?"
            )
    path = find_model_file(path)
    if not path.endswith(".keras"):
        raise ModelFileError(f"expected a .keras model file, got {path!r}")
    if not zipfile.is_zipfile(path):
        # Keras reports this case as "File not found", which misleads for a file that exists.
        raise ModelFileError(
            f"model file {path!r} ({os.path.getsize(path)} bytes) is not a valid .keras archive: "
            "it is truncated or corrupt; copy it again or re-save the model"
        )
    try:
        return keras.saving.load_model(path, compile=False)
    except (zipfile.BadZipFile, EOFError, OSError, KeyError, ValueError, TypeError) as e:
        reason = " ".join(str(e).split())[:300] or type(e).__name__
        raise ModelFileError(
            f"cannot load model file {path!r} ({type(e).__name__}: {reason}); the file is "
            "damaged or was saved by an incompatible tfrestore/Keras version"
        ) from e


def input_requirements(model):
    """``(multiple, offset)``: height/width minus ``offset`` must be divisible by
    ``multiple`` (from the model's ``InputCheck`` layers; ``(1, 0)`` if none)."""
    multiple, offset = 1, 0
    for layer in getattr(model, "layers", []):
        if type(layer).__name__ == "InputCheck":
            m = int(getattr(layer, "multiple", 1) or 1)
            multiple = int(np.lcm(multiple, m))
            offset = max(offset, int(getattr(layer, "offset", 0) or 0))
        elif hasattr(layer, "layers"):
            m, o = input_requirements(layer)
            multiple, offset = int(np.lcm(multiple, m)), max(offset, o)
    return multiple, offset


def _pad_layers(model):
    """``(multiple, numpy pad mode)`` of the model's own ``PadToMultiple`` layers, or None."""
    found = None
    for layer in getattr(model, "layers", []):
        if type(layer).__name__ == "PadToMultiple":
            mode = {"SYMMETRIC": "symmetric", "REFLECT": "reflect", "CONSTANT": "constant"}.get(
                str(getattr(layer, "mode", "")).upper(), "symmetric"
            )
            m = int(getattr(layer, "multiple", 1) or 1)
            found = (m if found is None else int(np.lcm(found[0], m)), mode)
        elif hasattr(layer, "layers"):
            inner = _pad_layers(layer)
            if inner is not None:
                found = inner if found is None else (int(np.lcm(found[0], inner[0])), found[1])
    return found


_FUNCTIONS = weakref.WeakKeyDictionary()


def _graph_function(model, kind, n_extra=0):
    """A cached ``tf.function`` running ``model`` for inference.

    Graph mode frees each activation once its consumers have run; a functional Keras model
    called eagerly keeps every intermediate tensor until the call returns (measured: 7x the
    memory and 6x the time of graph mode for an 8-layer DnCNN on a 1 Mpx image).

    ``kind``: ``"plain"`` ``f(x)``; ``"sigma"`` ``f(x, sigma)`` builds the noise-level input of a
    two-input model from a scalar; ``"extra"`` ``f(x, *extras)``; ``"packed"`` ``f(xp, *scalars)``
    where the image's channels are followed by those of ``n_extra`` spatial extra inputs (tiled
    inference cuts them into tiles together).
    """
    import tensorflow as tf

    key = (kind, n_extra)
    try:
        cache = _FUNCTIONS.setdefault(model, {})
    except TypeError:
        cache = {}
    if key in cache:
        return cache[key]
    inputs = getattr(model, "inputs", None) or []

    def first(out):
        return out[0] if isinstance(out, (list, tuple)) else out

    if kind == "plain":

        def f(x):
            return first(model(x, training=False))

    elif kind == "sigma":
        rank = len(inputs[1].shape)

        def f(x, sigma):
            shape = tf.shape(x)
            dims = [shape[0], 1] if rank == 2 else [shape[0], shape[1], shape[2], 1]
            return first(model([x, tf.fill(dims, tf.cast(sigma, x.dtype))], training=False))

    elif kind == "extra":

        def f(x, *extras):
            return first(model([x, *extras], training=False))

    else:  # packed
        channels = inputs[0].shape[-1]
        widths = [int(t.shape[-1]) for t in inputs[1 : 1 + n_extra]]

        def f(xp, *scalars):
            parts, at = [xp[..., :channels]], channels
            for w in widths:
                parts.append(xp[..., at : at + w])
                at += w
            n = tf.shape(xp)[0]
            parts += [tf.repeat(v, n, axis=0) for v in scalars]
            return first(model(parts, training=False))

    fn = tf.function(f, reduce_retracing=True)
    cache[key] = fn
    return fn


class InferencePlan:
    """How :func:`predict_image` runs a model on an image (see :func:`plan_inference`).

    ``tile_size`` (None: whole image), ``overlap``, ``batch_size``, ``receptive_field``,
    ``align`` (tile offsets are multiples of it), ``estimate`` (predicted bytes), ``budget``
    (bytes), ``notes`` (one-line messages for the user: what was decided and why).
    """

    def __init__(self, tile_size, overlap, batch_size, receptive_field, align, estimate,
                 budget, notes):
        self.tile_size, self.overlap, self.batch_size = tile_size, overlap, batch_size
        self.receptive_field, self.align = receptive_field, align
        self.estimate, self.budget, self.notes = estimate, budget, list(notes)

    def __repr__(self):
        return (
            f"InferencePlan(tile_size={self.tile_size}, overlap={self.overlap}, "
            f"batch_size={self.batch_size}, receptive_field={self.receptive_field}, "
            f"align={self.align}, estimate={self.estimate}, budget={self.budget})"
        )


_RECEPTIVE_FIELDS = weakref.WeakKeyDictionary()


def _measured_receptive_field(model, fn, channels, align, key):
    try:
        cache = _RECEPTIVE_FIELDS.setdefault(model, {})
    except TypeError:
        cache = {}
    if key not in cache:
        cache[key] = measure_receptive_field(fn, channels=channels, multiple=align)
    return cache[key]


def _image_call(model, sigma=None):
    """``(kind, fn(x))``: the graph function of ``model`` on an image batch alone."""
    kind = "sigma" if len(getattr(model, "inputs", None) or []) >= 2 else "plain"
    fn = _graph_function(model, kind)
    if kind == "plain":
        return kind, fn
    level = np.float32(0.0 if sigma is None else sigma)  # only shapes matter without a sigma
    return kind, (lambda x: fn(x, level))


def _profile(model, channels):
    """:func:`~tfrestore.inference.memory.activation_profile` of ``model`` (cached)."""
    import tensorflow as tf

    from tfrestore.inference import memory

    multiple, offset = input_requirements(model)
    two_inputs = len(getattr(model, "inputs", None) or []) >= 2

    def f(x):  # the model's ops in one graph (a nested tf.function would hide them)
        if two_inputs:
            rank = len(model.inputs[1].shape)
            dims = [1, 1] if rank == 2 else [1, tf.shape(x)[1], tf.shape(x)[2], 1]
            out = model([x, tf.fill(dims, 0.0)], training=False)
        else:
            out = model(x, training=False)
        return out[0] if isinstance(out, (list, tuple)) else out

    return memory.activation_profile(tf.function(f), channels, multiple, offset, key=model)


def _alignment(model, prof):
    """Tile offsets must be multiples of this: size multiple, downsampling, own padding."""
    multiple, _ = input_requirements(model)
    align = int(np.lcm(multiple, prof.downsample))
    pads = _pad_layers(model)
    if pads is not None:
        align = int(np.lcm(align, pads[0]))
    return align


def measured_receptive_field(model, sigma=None, channels=None):
    """The receptive field (px) that tiling ``model`` uses: measured with
    :func:`~tfrestore.inference.tiling.receptive_field` on tiles aligned as
    :func:`predict_image` aligns them (cached per model); None if unbounded."""
    channels = channels or model.inputs[0].shape[-1] or 3
    kind, call = _image_call(model, sigma)
    align = _alignment(model, _profile(model, channels))
    return _measured_receptive_field(model, call, channels, align, (kind, align))


def _check_tiling_allowed(model):
    multiple, offset = input_requirements(model)
    if offset:
        raise ValueError(
            f"model {model.name!r} changes the image size (valid padding, offset {offset}); tiled "
            "inference needs a size-preserving ('same'-padded) model"
        )


def plan_inference(
    model,
    image_shape,
    *,
    tile_size="auto",
    overlap=None,
    receptive_field=None,
    batch_size=None,
    max_memory=None,
    sigma=None,
):
    """Decide between whole-image and tiled inference of ``model`` on an image of
    ``image_shape`` ``(H, W, C)``; returns an :class:`InferencePlan`.

    ``tile_size="auto"``: the whole image when its predicted memory
    (:func:`~tfrestore.inference.memory.estimate_bytes`) fits the budget
    (:func:`~tfrestore.inference.memory.memory_budget` of ``max_memory``), else the
    largest tiles that fit, overlapping by the receptive field so that the result equals
    the whole-image result. ``tile_size=None``: the whole image. An int: tiles of that
    side; an ``overlap`` smaller than the receptive field minus one is raised to it (the
    plan's notes say so), since a smaller one changes the result near the seams.
    ``receptive_field``: None measures it (:func:`~tfrestore.inference.tiling.receptive_field`).
    """
    from tfrestore.inference import memory

    h, w, c = (int(v) for v in image_shape)
    multiple, offset = input_requirements(model)
    pads = _pad_layers(model)
    kind, call = _image_call(model, sigma)
    budget, source = memory.memory_budget(max_memory)
    notes = []

    def profile():
        return _profile(model, c)

    if tile_size is None or (
        isinstance(tile_size, str) and tile_size.lower() in ("off", "none", "whole")
    ):
        prof = profile()
        est = memory.estimate_bytes(prof, h, w, c)
        if est > budget:
            notes.append(
                f"whole-image inference of this {w}x{h} image needs about "
                f"{memory.format_bytes(est)}, more than the {memory.format_bytes(budget)} budget "
                f"({source})"
            )
        return InferencePlan(None, 0, 1, None, multiple, est, budget, notes)
    auto = isinstance(tile_size, str)
    if auto and tile_size.lower() != "auto":
        raise ValueError(f"`tile_size` must be 'auto', None or a positive int, got {tile_size!r}")
    prof = profile()
    align = _alignment(model, prof)
    if auto:
        est = memory.estimate_bytes(prof, h, w, c)
        if est <= budget:
            return InferencePlan(None, 0, 1, None, multiple, est, budget, notes)
    _check_tiling_allowed(model)
    rf = receptive_field
    if rf is None:
        rf = _measured_receptive_field(model, call, c, align, (kind, align))
    if rf is None:
        what = "this image needs more memory than the budget, but " if auto else ""
        raise ValueError(
            f"{what}model {model.name!r} has an unbounded receptive field (global operations), "
            "so tiles cannot give the whole-image result"
            + ("; raise --max-memory" if auto else "; omit --tile")
        )
    need = rf - 1
    if auto:
        batch = batch_size or 1
        per_tile_px = memory.estimate_bytes(
            prof, 0, 0, c, tile=1, batch_size=batch
        ) - memory.estimate_bytes(prof, 0, 0, c, tile=(0, 0))
        fixed = memory.estimate_bytes(prof, h, w, c, tile=(0, 0))
        room = budget - fixed
        side = int(math.sqrt(max(room, 0) / max(per_tile_px, 1)))
        side = side // align * align
        smallest = -(-(need + align) // align) * align  # stride >= align
        if side < smallest:
            least = memory.estimate_bytes(prof, h, w, c, tile=smallest, batch_size=batch)
            raise ValueError(
                f"the memory budget {memory.format_bytes(budget)} ({source}) is too small for "
                f"this {w}x{h} image: exact tiles of model {model.name!r} (receptive field {rf} "
                f"px) need at least about {memory.format_bytes(least)}; raise --max-memory"
            )
        th = min(side, -(-h // align) * align)
        tw = min(side, -(-w // align) * align)
        ov = need
        est = memory.estimate_bytes(prof, h, w, c, tile=(th, tw), batch_size=batch)
        whole = memory.estimate_bytes(prof, h, w, c)
        notes.append(
            f"the whole {w}x{h} image would need about {memory.format_bytes(whole)}, over the "
            f"{memory.format_bytes(budget)} memory budget ({source}): restoring it in {tw}x{th} "
            f"px tiles overlapping by {ov} px (receptive field {rf} px), which gives the "
            "whole-image result"
        )
        return InferencePlan((th, tw), ov, batch, rf, align, est, budget, notes)
    if isinstance(tile_size, bool) or not isinstance(tile_size, (numbers.Integral, tuple, list)):
        raise ValueError(f"`tile_size` must be 'auto', None or a positive int, got {tile_size!r}")
    th, tw = (tile_size, tile_size) if isinstance(tile_size, numbers.Integral) else tile_size
    if min(th, tw) < 1:
        raise ValueError(f"`tile_size` must be positive, got {tile_size!r}")
    batch = batch_size or 4
    ov = need if overlap is None else int(overlap)
    if ov < need:
        notes.append(
            f"overlap raised from {ov} to {need} px: the model's receptive field is {rf} px "
            "and a smaller overlap changes the result near the tile seams"
        )
        ov = need
    for t, n in ((th, h), (tw, w)):
        t_al = min(t // align * align, -(-n // align) * align)
        if t_al < -(-n // align) * align and t_al - ov < align:
            least = -(-(ov + align) // align) * align
            raise ValueError(
                f"tile size {t} px is too small for model {model.name!r}: tiles overlap by {ov} px "
                f"(its receptive field is {rf} px)"
                + (f" and must be multiples of {align} px" if align > 1 else "")
                + f"; use tiles of at least {least} px (or let the memory budget choose)"
            )
    est = memory.estimate_bytes(prof, h, w, c, tile=(th, tw), batch_size=batch)
    return InferencePlan((th, tw), ov, batch, rf, align, est, budget, notes)


def predict_image(
    model,
    image,
    *,
    tile_size="auto",
    overlap=None,
    receptive_field=None,
    batch_size=None,
    sigma=None,
    extra_inputs=None,
    pad_mode="reflect",
    max_memory=None,
    on_note=None,
    plan=None,
):
    """Restore one ``(H, W, C)`` image (float32 in [0, 1]); returns ``(H*s, W*s, C)``.

    Args:
        model: keras.Model. The restoration model.
        image: float array (H, W, C). The image in [0, 1].
        tile_size: int, "auto" or None. Tile side in pixels; "auto" (default) tiles
            only when the predicted memory exceeds ``max_memory``; None: whole image
            (see :func:`plan_inference`).
        overlap: int or None. Tile overlap (default and minimum: the receptive field
            minus one).
        receptive_field: int or None. The model's receptive field; None measures it
            when tiling.
        batch_size: int or None. Tiles per model call (default 4 for a given
            ``tile_size``, 1 for auto).
        sigma: float or None. Noise level for two-input (FFDNet-style) models.
        extra_inputs: list of arrays or None. Explicit extra model inputs (e.g. the
            ``sigma_map`` a degradation produced), with batch axis; maps of the
            image's size are tiled with it.
        pad_mode: str. ``numpy.pad`` mode for padding to the required size multiple.
        max_memory: int, str or None. Memory budget (bytes or ``"4G"``); default
            ``TFRESTORE_MAX_MEMORY``, else half the available RAM
            (:func:`tfrestore.inference.memory.memory_budget`).
        on_note: callable or None. Called with each one-line note of the plan (tiling
            chosen, overlap raised); by default notes that change what was asked for
            are issued as warnings.
        plan: InferencePlan or None. A plan from :func:`plan_inference` (skips
            planning).
    """
    img = np.asarray(image, np.float32)
    if img.ndim != 3:
        raise ValueError(f"`image` must have shape (H, W, C), got {img.shape}.")
    n_inputs = len(getattr(model, "inputs", None) or [])
    if extra_inputs is None and n_inputs >= 2 and sigma is None:
        raise ValueError(
            f"model {model.name!r} takes {n_inputs} inputs (image and noise level); pass the "
            "noise level `sigma` (image units, e.g. 25/255)"
        )
    if sigma is not None:  # images in [0, 255] (max above 1.5) accept levels up to 255
        data_range = 255.0 if img.size and float(np.nanmax(img)) > 1.5 else 1.0
        check_noise_level(sigma, "sigma", "predict_image", data_range)
    if plan is None:
        plan = plan_inference(
            model,
            img.shape,
            tile_size=tile_size,
            overlap=overlap,
            receptive_field=receptive_field,
            batch_size=batch_size,
            max_memory=max_memory,
            sigma=sigma,
        )
        for note in plan.notes:
            if on_note is not None:
                on_note(note)
            elif note.startswith("overlap raised"):
                warnings.warn(note, stacklevel=2)
    multiple, offset = input_requirements(model)
    h, w = img.shape[:2]
    extras = [np.asarray(e, np.float32) for e in (extra_inputs or [])]
    if plan.tile_size is None:
        ph = (-(h - offset)) % multiple
        pw = (-(w - offset)) % multiple
        x = img
        if ph or pw:
            if extras:
                raise ValueError(
                    f"the image ({h}x{w}) must have height/width - {offset} divisible by "
                    f"{multiple} when "
                    "`extra_inputs` are given"
                )
            mode = pad_mode if (pad_mode != "reflect" or (ph < h and pw < w)) else "symmetric"
            x = np.pad(img, ((0, ph), (0, pw), (0, 0)), mode=mode)
        if extras:
            out = _graph_function(model, "extra")(x[None], *extras)
        elif n_inputs >= 2:
            out = _graph_function(model, "sigma")(x[None], np.float32(sigma))
        else:
            out = _graph_function(model, "plain")(x[None])
        out = np.asarray(out)[0]
        s = out.shape[0] / x.shape[0]
        if s >= 1 and float(s).is_integer():
            s = int(s)
            out = out[: h * s, : w * s]
        return out.astype(np.float32, copy=False)
    _check_tiling_allowed(model)
    pads = _pad_layers(model)
    if pads is not None:
        pad_mode = pads[1]  # pad as the model itself would, so tiles see the same pixels
    spatial = [e for e in extras if e.ndim == 4 and e.shape[1:3] == (h, w)]
    scalars = [e for e in extras if not (e.ndim == 4 and e.shape[1:3] == (h, w))]
    if extras and extras != spatial + scalars:
        raise ValueError(
            "tiled inference needs the image-sized `extra_inputs` (maps) before the others"
        )
    if (-(h - offset)) % multiple or (-(w - offset)) % multiple:
        if extras:
            raise ValueError(
                f"the image ({h}x{w}) must have height/width - {offset} divisible by "
                f"{multiple} when `extra_inputs` are given"
            )
    if extras:
        fn = _graph_function(model, "packed", len(spatial))
        packed = np.concatenate([img] + [e[0] for e in spatial], axis=-1)

        def run(batch):
            return np.asarray(fn(batch, *scalars), np.float32)

    elif n_inputs >= 2:
        fn = _graph_function(model, "sigma")
        packed = img

        def run(batch):
            return np.asarray(fn(batch, np.float32(sigma)), np.float32)

    else:
        fn = _graph_function(model, "plain")
        packed = img

        def run(batch):
            return np.asarray(fn(batch), np.float32)

    return tiled_predict(
        run,
        packed,
        tile_size=plan.tile_size,
        overlap=plan.overlap,
        receptive_field=plan.receptive_field,
        align=plan.align,
        batch_size=plan.batch_size,
        pad_mode=pad_mode,
    )


def save_image(path, image, bit_depth=8):
    """Write an HWC float image in [0, 1] (clipped); the format follows the file
    extension (PNG, JPEG, BMP, TIFF, WebP...).

    ``image`` has 1 (grey) or 3 (colour) channels, or 2 / 4 with alpha last (written where
    the format holds alpha: :func:`supports_alpha`). ``bit_depth=16`` writes 16-bit samples
    where the format holds them: PNG (grey or colour, with or without alpha) and TIFF (grey);
    other formats raise ``ValueError``.
    """
    from PIL import Image

    arr = np.asarray(image, np.float32)
    if arr.ndim != 3 or arr.shape[-1] not in (1, 2, 3, 4):
        raise ValueError(
            f"`image` must have shape (H, W, C) with C 1 or 3 (2 or 4 with alpha), got "
            f"{arr.shape}."
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"the image for {path} contains NaN or Inf")
    if bit_depth not in (8, 16):
        raise ValueError(f"`bit_depth` must be 8 or 16, got {bit_depth!r}.")
    if arr.shape[-1] in (2, 4) and not supports_alpha(path):
        raise ValueError(
            f"{path}: the image has an alpha channel, which "
            f"{os.path.splitext(path)[1] or 'this format'} cannot store; use .png (or .tif, .webp)"
        )
    if bit_depth == 16 and not supports_16_bit(path, arr.shape[-1]):
        raise ValueError(
            f"{path}: 16-bit output needs a .png file (or .tif for greyscale images)"
        )
    from tfrestore.utils.files import atomic_output

    with atomic_output(path) as tmp:  # an interrupted write never leaves half an image
        _write_pixels(tmp, arr, bit_depth, Image)
    return path


def _write_pixels(path, arr, bit_depth, Image):
    if bit_depth == 16:
        u16 = np.round(np.clip(arr, 0.0, 1.0) * 65535.0).astype(np.uint16)
        if path.lower().endswith(".png"):  # Pillow cannot write 16-bit colour PNGs
            import tensorflow as tf

            with open(path, "wb") as f:
                f.write(tf.io.encode_png(u16).numpy())
        else:
            Image.fromarray(u16[..., 0]).save(path)
        return
    u8 = np.round(np.clip(arr, 0.0, 1.0) * 255.0).astype(np.uint8)
    if u8.shape[-1] == 2 and os.path.splitext(path)[1].lower() == ".webp":
        u8 = np.concatenate([np.repeat(u8[..., :1], 3, -1), u8[..., 1:]], -1)  # WebP: no LA
    Image.fromarray(u8[..., 0] if u8.shape[-1] == 1 else u8).save(path)


def supports_16_bit(path, channels):
    """Whether :func:`save_image` can write ``channels``-channel 16-bit samples to ``path``."""
    ext = os.path.splitext(str(path))[1].lower()
    return ext == ".png" or (ext in (".tif", ".tiff") and channels == 1)


def supports_alpha(path):
    """Whether :func:`save_image` can write an alpha channel to ``path`` (.png, .tif, .webp)."""
    return os.path.splitext(str(path))[1].lower() in (".png", ".tif", ".tiff", ".webp")


def to_grey(image):
    """BT.601 luma of an ``(H, W, 3)`` image as ``(H, W, 1)`` (for greyscale inputs
    restored by a colour model)."""
    img = np.asarray(image, np.float32)
    return (img @ np.array([0.2989, 0.5870, 0.1140], np.float32))[..., None]
