"""Image files: listing, validation with clear errors, and decoding (eager and in-graph).

Supported formats are those ``tf.io.decode_image`` reads: PNG (8/16-bit), JPEG, BMP,
GIF (first frame) and WebP. TIFF and other formats must be converted first.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np
import tensorflow as tf

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageFileError",
    "list_images",
    "image_info",
    "validate_images",
    "read_image",
    "decode_image",
    "write_image",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")

# Magic bytes of the formats tf.io.decode_image understands.
_MAGIC = {
    "PNG": (b"\x89PNG",),
    "JPEG": (b"\xff\xd8\xff",),
    "BMP": (b"BM",),
    "GIF": (b"GIF87a", b"GIF89a"),
    "WEBP": (b"RIFF",),
}


class ImageFileError(ValueError):
    """An image file is missing, unreadable, in an unsupported format or too small."""


def list_images(source, *, recursive=False, extensions=IMAGE_EXTENSIONS):
    """Sorted list of image paths from a folder, a glob pattern or a list of paths.

    Raises ``ImageFileError`` for a missing folder, a folder with no images, or a
    listed file that does not exist.

    Example:
        >>> import tempfile
        >>> list_images(tempfile.mkdtemp())
        Traceback (most recent call last):
        ...
        tfrestore.data.io.ImageFileError: no image files (.png, ...) found in ...
    """
    exts = tuple(e.lower() for e in extensions)
    if isinstance(source, (str, os.PathLike)):
        text = os.fspath(source)
        if any(ch in text for ch in "*?["):
            root = pathlib.Path(text)
            anchor = pathlib.Path(root.anchor) if root.is_absolute() else pathlib.Path(".")
            pattern = str(root.relative_to(root.anchor)) if root.is_absolute() else text
            paths = sorted(
                p for p in anchor.glob(pattern) if p.is_file() and p.suffix.lower() in exts
            )
            if not paths:
                raise ImageFileError(
                    f"no image files ({', '.join(exts)}) match the pattern {text!r}"
                )
            return [str(p) for p in paths]
        folder = pathlib.Path(text)
        if not folder.exists():
            raise ImageFileError(f"image folder {text!r} does not exist")
        if folder.is_file():
            return [str(folder)]
        it = folder.rglob("*") if recursive else folder.iterdir()
        paths = sorted(str(p) for p in it if p.is_file() and p.suffix.lower() in exts)
        if not paths:
            raise ImageFileError(
                f"no image files ({', '.join(exts)}) found in {text!r}"
                + ("" if recursive else " (use recursive=True to search sub-folders)")
            )
        return paths
    paths = [os.fspath(p) for p in source]
    if not paths:
        raise ImageFileError("the list of image files is empty")
    for p in paths:
        if not os.path.isfile(p):
            raise ImageFileError(f"image file {p!r} does not exist")
    return paths


def image_info(path):
    """``(height, width, channels)`` of an image file from its header (no full decode).

    Raises ``ImageFileError`` naming the file when it cannot be read or is in a format
    TensorFlow cannot decode.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with open(path, "rb") as f:
            head = f.read(16)
        if not head:
            raise ImageFileError(f"cannot read image file {path!r}: the file is empty")
        if not any(head.startswith(m) for ms in _MAGIC.values() for m in ms):
            raise ImageFileError(
                f"cannot read image file {path!r}: not a PNG/JPEG/BMP/GIF/WebP image "
                f"(first bytes {head[:8]!r}); tf.io.decode_image supports only these formats"
            )
        with Image.open(path) as im:
            w, h = im.size
            bands = len(im.getbands())
    except ImageFileError:
        raise
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise ImageFileError(f"cannot read image file {path!r}: {e}") from e
    return h, w, bands


def validate_images(paths, *, min_size=None):
    """Check every file's header; returns a list of ``(height, width)``.

    ``min_size``: ``(h, w)`` every image must reach (e.g. the crop size); an
    ``ImageFileError`` names the first offending file.
    """
    sizes = []
    for p in paths:
        h, w, _ = image_info(p)
        if min_size is not None and (h < min_size[0] or w < min_size[1]):
            raise ImageFileError(
                f"image file {p!r} is {h}x{w} pixels, smaller than the requested crop "
                f"{min_size[0]}x{min_size[1]}; use a smaller crop_size or remove the file"
            )
        sizes.append((h, w))
    return sizes


def decode_image(path, channels=3, dtype=tf.uint8):
    """In-graph read + decode of one file (for ``tf.data``): ``(H, W, channels)`` tensor.

    Adds an assertion whose message names the file when its bytes are not a decodable
    image format (a file changed after validation, or ``validate=False``).
    """
    data = tf.io.read_file(path)
    head = tf.strings.substr(data, 0, 4)
    known = tf.reduce_any(
        tf.stack([tf.strings.substr(data, 0, len(m)) == m for ms in _MAGIC.values() for m in ms])
    )
    check = tf.debugging.Assert(
        known,
        ["cannot decode image file", path, "(not PNG/JPEG/BMP/GIF/WebP; first bytes:", head, ")"],
    )
    with tf.control_dependencies([check]):
        img = tf.io.decode_image(data, channels=channels, dtype=dtype, expand_animations=False)
    img.set_shape([None, None, channels])
    return img


def read_image(path, channels=3, dtype="float32"):
    """Read one image file eagerly as a NumPy array (float32 in [0, 1] or uint8).

    Raises ``ImageFileError`` naming the file when it cannot be decoded.

    Example:
        >>> import tempfile, os
        >>> bad = os.path.join(tempfile.mkdtemp(), "bad.png")
        >>> _ = open(bad, "w").write("not an image")
        >>> read_image(bad)
        Traceback (most recent call last):
        ...
        tfrestore.data.io.ImageFileError: cannot read image file '...bad.png': not a PNG/JPEG/...
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ImageFileError(f"image file {path!r} does not exist")
    image_info(path)
    try:
        img = tf.io.decode_image(
            tf.io.read_file(path), channels=channels, dtype=tf.uint8, expand_animations=False
        ).numpy()
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as e:
        raise ImageFileError(f"cannot decode image file {path!r}: {e.message}") from e
    if dtype == "uint8":
        return img
    return img.astype(np.float32) / 255.0


def write_image(path, image):
    """Write an HWC float [0, 1] or uint8 image as PNG (8-bit)."""
    img = np.asarray(image)
    if img.dtype != np.uint8:
        img = np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)
    if img.ndim == 2:
        img = img[..., None]
    pathlib.Path(path).write_bytes(tf.io.encode_png(img).numpy())
    return os.fspath(path)
