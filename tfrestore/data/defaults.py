"""Embedded demo/test photographs from scikit-image (shipped inside its wheel, no download).

``default_images()`` returns real RGB photographs as float32 arrays in [0, 1], so demos,
doctests and tests can run a full pipeline without any dataset on disk. The pictures
are scikit-image's sample images (see ``skimage.data`` for their licences).

Example:
    >>> imgs = default_images(["chelsea"], max_size=64)
    >>> imgs[0].shape, imgs[0].dtype.name
    ((43, 64, 3), 'float32')
"""

from __future__ import annotations

import os
import pathlib
import tempfile

import numpy as np

__all__ = ["DEFAULT_IMAGE_NAMES", "DEFAULT_SPLITS", "default_images", "write_default_images"]

#: Colour photographs available offline from ``skimage.data`` (name -> loader name).
DEFAULT_IMAGE_NAMES = ("astronaut", "coffee", "chelsea", "rocket", "motorcycle")

#: The photographs of each split (``None``: all): three train, the other two are held out
#: for both validation and testing, as only five are embedded.
DEFAULT_SPLITS = {
    "train": ("astronaut", "coffee", "rocket"),
    "val": ("chelsea", "motorcycle"),
    "test": ("chelsea", "motorcycle"),
    "all": None,
}


def _load(name):
    import skimage.data

    if name == "motorcycle":
        return skimage.data.stereo_motorcycle()[0]
    if name not in DEFAULT_IMAGE_NAMES:
        raise ValueError(
            f"Unknown default image {name!r}; choose from {list(DEFAULT_IMAGE_NAMES)}."
        )
    return getattr(skimage.data, name)()


def default_images(names=None, *, max_size=None, dtype="float32"):
    """Real photographs as a list of ``(H, W, 3)`` arrays.

    Args:
        names: list of str or None. A subset of ``DEFAULT_IMAGE_NAMES``; None gives all
            five (300x451 to 512x640).
        max_size: int or None. If set, *shrink* (resize, never crop) each image whose longer side
            exceeds ``max_size`` so that its longer side is ``max_size`` and the other
            ``round(side * max_size / longer)``: MATLAB-style antialiased bicubic
            (``imresize(size=...)``), aspect ratio kept, the whole picture kept. Not the
            training config's ``data.test.max_size``, which centre-crops each side to at
            most ``max_size`` pixels (no resampling).
        dtype: ``"float32"`` (values in [0, 1]) or ``"uint8"``.
    """
    if dtype not in ("float32", "uint8"):
        raise ValueError(f"`dtype` must be 'float32' or 'uint8', got {dtype!r}.")
    names = (
        DEFAULT_IMAGE_NAMES
        if names is None
        else ([names] if isinstance(names, str) else list(names))
    )
    out = []
    for n in names:
        img = np.asarray(_load(n))[..., :3].astype(np.float32) / 255.0
        if max_size is not None and max(img.shape[:2]) > max_size:
            from tfrestore.data.resize import imresize

            h, w = img.shape[:2]
            f = max_size / max(h, w)
            size = (max(1, round(h * f)), max(1, round(w * f)))
            img = np.clip(imresize(img, size=size).numpy(), 0.0, 1.0)
        if dtype == "uint8":
            img = np.round(img * 255.0).astype(np.uint8)
        out.append(img)
    return out


def write_default_images(directory=None, names=None, *, max_size=None, format="png"):
    """Write the default photographs to ``directory`` (a new temp folder if None); returns its path.

    Args:
        directory: str, path or None. The folder (created if missing); None makes a new
            temporary folder.
        names: list of str or None. A subset of ``DEFAULT_IMAGE_NAMES``; None gives all five.
        max_size: int or None. As in ``default_images``: *shrink* (bicubic resize, aspect
            ratio kept, never crop) so that the longer side is at most ``max_size``.
        format: ``"png"`` (lossless), ``"jpg"`` (quality 95) or ``"bmp"``; 8-bit RGB.

    Example:
        >>> folder = write_default_images(names=["coffee"], max_size=32)
        >>> sorted(p.name for p in folder.iterdir())
        ['coffee.png']
    """
    import tensorflow as tf

    if format not in ("png", "jpg", "bmp"):
        raise ValueError(f"`format` must be 'png', 'jpg' or 'bmp', got {format!r}.")
    folder = (
        pathlib.Path(directory)
        if directory is not None
        else pathlib.Path(tempfile.mkdtemp(prefix="tfrestore_default_images_"))
    )
    folder.mkdir(parents=True, exist_ok=True)
    names = (
        DEFAULT_IMAGE_NAMES
        if names is None
        else ([names] if isinstance(names, str) else list(names))
    )
    for name, img in zip(names, default_images(names, max_size=max_size, dtype="uint8")):
        path = os.fspath(folder / f"{name}.{format}")
        if format == "png":
            data = tf.io.encode_png(img).numpy()
            pathlib.Path(path).write_bytes(data)
        elif format == "jpg":
            pathlib.Path(path).write_bytes(tf.io.encode_jpeg(img, quality=95).numpy())
        else:
            from PIL import Image

            Image.fromarray(img).save(path)
    return folder
