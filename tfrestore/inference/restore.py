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

import os

import numpy as np

from tfrestore.inference.tiling import tiled_predict

__all__ = [
    "ModelFileError",
    "load_model",
    "find_model_file",
    "input_requirements",
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


def _noise_input_fn(model, sigma):
    """For two-input models (image, noise level): a function building the
    second input for a batch of tiles."""
    inputs = getattr(model, "inputs", None) or []
    if len(inputs) < 2:
        return None
    if sigma is None:
        raise ValueError(
            f"model {model.name!r} takes {len(inputs)} inputs (image and noise level); pass the "
            "noise "
            "level `sigma` (image units, e.g. 25/255)"
        )
    rank = len(inputs[1].shape)

    def extra(batch):
        n, h, w = batch.shape[:3]
        if rank == 2:
            return np.full((n, 1), sigma, np.float32)
        return np.full((n, h, w, 1), sigma, np.float32)

    return extra


def predict_image(
    model,
    image,
    *,
    tile_size=None,
    overlap=32,
    receptive_field=None,
    batch_size=4,
    sigma=None,
    extra_inputs=None,
    pad_mode="reflect",
):
    """Restore one ``(H, W, C)`` image (float32 in [0, 1]); returns ``(H*s, W*s, C)``.

    Args:
        model: the restoration ``keras.Model``.
        image: HWC float array.
        tile_size: None for whole-image inference, else the tile side in
            pixels (see :func:`tiled_predict`).
        overlap, receptive_field, batch_size: tiling options.
        sigma: noise level for two-input (FFDNet-style) models.
        extra_inputs: explicit extra model inputs for whole-image inference
            (e.g. the ``sigma_map`` a degradation produced), with batch axis.
        pad_mode: ``numpy.pad`` mode for padding to the required size multiple.
    """
    img = np.asarray(image, np.float32)
    if img.ndim != 3:
        raise ValueError(f"`image` must have shape (H, W, C), got {img.shape}.")
    multiple, offset = input_requirements(model)
    extra_fn = None if extra_inputs is not None else _noise_input_fn(model, sigma)

    def run(batch):
        if extra_inputs is not None:
            out = model([batch, *extra_inputs], training=False)
        elif extra_fn is not None:
            out = model([batch, extra_fn(batch)], training=False)
        else:
            out = model(batch, training=False)
        return np.asarray(out[0] if isinstance(out, (list, tuple)) else out, np.float32)

    h, w = img.shape[:2]
    if tile_size is None:
        ph = (-(h - offset)) % multiple
        pw = (-(w - offset)) % multiple
        x = img
        if ph or pw:
            if extra_inputs is not None:
                raise ValueError(
                    f"the image ({h}x{w}) must have height/width - {offset} divisible by "
                    f"{multiple} when "
                    "`extra_inputs` are given"
                )
            mode = pad_mode if (pad_mode != "reflect" or (ph < h and pw < w)) else "symmetric"
            x = np.pad(img, ((0, ph), (0, pw), (0, 0)), mode=mode)
        out = np.asarray(run(x[None]))[0]
        s = out.shape[0] / x.shape[0]
        if s >= 1 and float(s).is_integer():
            s = int(s)
            out = out[: h * s, : w * s]
        return out.astype(np.float32)
    if extra_inputs is not None:
        raise ValueError("`extra_inputs` cannot be combined with tiling; pass `sigma` instead")
    if offset:
        raise ValueError(
            f"model {model.name!r} changes the image size (valid padding, offset {offset}); tiled "
            "inference "
            "needs a size-preserving ('same'-padded) model"
        )
    return tiled_predict(
        run,
        img,
        tile_size=tile_size,
        overlap=overlap,
        receptive_field=receptive_field,
        align=multiple,
        batch_size=batch_size,
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
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    if bit_depth == 16:
        u16 = np.round(np.clip(arr, 0.0, 1.0) * 65535.0).astype(np.uint16)
        if path.lower().endswith(".png"):  # Pillow cannot write 16-bit colour PNGs
            import tensorflow as tf

            with open(path, "wb") as f:
                f.write(tf.io.encode_png(u16).numpy())
        else:
            Image.fromarray(u16[..., 0]).save(path)
        return path
    u8 = np.round(np.clip(arr, 0.0, 1.0) * 255.0).astype(np.uint8)
    if u8.shape[-1] == 2 and os.path.splitext(path)[1].lower() == ".webp":
        u8 = np.concatenate([np.repeat(u8[..., :1], 3, -1), u8[..., 1:]], -1)  # WebP: no LA
    Image.fromarray(u8[..., 0] if u8.shape[-1] == 1 else u8).save(path)
    return path


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
