"""Image files: listing, validation with clear errors, and decoding (eager and in-graph).

Supported formats: PNG (8/16-bit), JPEG, BMP, GIF (first frame), WebP (decoded by
TensorFlow) and TIFF (8/16-bit, decoded by Pillow, in ``tf.data`` through
``tf.numpy_function``). 16-bit files keep their precision: floats are ``value / 65535``.

Validation (:func:`validate_images`, on by default in the datasets) reads each file's
header and its last bytes, so an unsupported, too small or *truncated* file is named
before training starts; the end-of-file check costs one small read per file, and only
a file whose end looks wrong is decoded in full to confirm (``full=True`` decodes every
file, for damage in the middle of a file).

EXIF orientation is applied on read, as Pillow's ``ImageOps.exif_transpose`` does: a photo
that displays 96x64 is read (and restored, and saved) as 96x64, whatever way the camera stored
it. :func:`image_details` reports the displayed size. The tag is read from the header that
validation opens anyway (JPEG APP1, WebP, TIFF tags, a PNG ``eXIf`` chunk before the pixel
data); the datasets pass it to :func:`decode_image`, which turns the image with TensorFlow ops
(a copy only for turned images). Called without it, :func:`decode_image` reads the tag from the
first 64 KiB of the file in a ``tf.numpy_function`` (one small Python call per image).

Pillow refuses images above about 179 Mpx (its decompression-bomb guard); set
``TFRESTORE_MAX_IMAGE_PIXELS`` to a larger pixel count (0: no limit) for trusted files.
"""

from __future__ import annotations

import collections
import os
import pathlib

import numpy as np
import tensorflow as tf

__all__ = [
    "IMAGE_EXTENSIONS",
    "MAX_PIXELS_ENV",
    "ImageFileError",
    "ImageDetails",
    "list_images",
    "image_info",
    "image_details",
    "validate_images",
    "read_image",
    "read_alpha",
    "decode_image",
    "write_image",
    "orient_numpy",
    "orient_tensor",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
MAX_PIXELS_ENV = "TFRESTORE_MAX_IMAGE_PIXELS"

# Magic bytes of the supported formats (TIFF is decoded by Pillow, the rest by TensorFlow).
_MAGIC = {
    "PNG": (b"\x89PNG",),
    "JPEG": (b"\xff\xd8\xff",),
    "BMP": (b"BM",),
    "GIF": (b"GIF87a", b"GIF89a"),
    "WEBP": (b"RIFF",),
    "TIFF": (b"II*\x00", b"MM\x00*"),
}
_FORMATS = "PNG/JPEG/BMP/GIF/WebP/TIFF"
_TAIL = 4096

ImageDetails = collections.namedtuple(
    "ImageDetails",
    ["height", "width", "channels", "bit_depth", "format", "orientation", "alpha"],
    defaults=(1, False),
)
ImageDetails.__doc__ = """What :func:`image_details` reads from a file header.

``height`` and ``width`` are the displayed size (after the EXIF orientation);
``channels`` counts the colour channels without alpha (1 grey, 3 colour);
``bit_depth`` is 8 or 16 bits per sample; ``format`` e.g. ``"PNG"``; ``orientation`` the
EXIF orientation (1-8; 1: stored upright); ``alpha``: the file has an alpha channel (or a
palette transparency)."""

#: EXIF orientation tag
_ORIENTATION_TAG = 0x0112
#: bytes of a file's start searched for the EXIF orientation by :func:`decode_image`
_EXIF_HEAD = 65536


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
            hint = ""
            if not recursive and any(
                p.is_file() and p.suffix.lower() in exts for p in folder.rglob("*")
            ):
                # A glob works wherever a folder is taken (command line, config, Python).
                hint = (
                    "; sub-folders hold images but are not searched: give a glob such as "
                    f"{os.path.join(text, '**', '*.png')!r}"
                )
            raise ImageFileError(f"no image files ({', '.join(exts)}) found in {text!r}{hint}")
        return paths
    paths = [os.fspath(p) for p in source]
    if not paths:
        raise ImageFileError("the list of image files is empty")
    for p in paths:
        if not os.path.isfile(p):
            raise ImageFileError(f"image file {p!r} does not exist")
    return paths


def _format_of(head):
    for fmt, magics in _MAGIC.items():
        if any(head.startswith(m) for m in magics):
            return fmt
    return None


class _PixelLimit:
    """Apply ``$TFRESTORE_MAX_IMAGE_PIXELS`` to Pillow's decompression-bomb guard.

    The setting is global in Pillow and ``tf.data`` decodes in parallel threads, so it
    is applied (not restored afterwards): the variable is the user's explicit choice.
    """

    def __enter__(self):
        from PIL import Image

        value = os.environ.get(MAX_PIXELS_ENV)
        if value:
            try:
                n = int(value)
            except ValueError:
                raise ImageFileError(
                    f"${MAX_PIXELS_ENV} must be a pixel count (0: no limit), got {value!r}"
                ) from None
            # Pillow raises above twice MAX_IMAGE_PIXELS (and warns above it).
            Image.MAX_IMAGE_PIXELS = None if n <= 0 else max(1, n // 2)
        return self

    def __exit__(self, *exc):
        return False


def _bomb_error(path, e):
    return ImageFileError(
        f"image file {path!r} is too large to open safely ({e}); if the file is trusted, set "
        f"${MAX_PIXELS_ENV} to a larger pixel count (0: no limit), or split the image"
    )


def _pil_depth(im, fmt, head):
    if fmt == "PNG" and len(head) > 24:
        return 16 if head[24] == 16 else 8  # IHDR bit depth (Pillow reads 48-bit RGB as 8-bit)
    if im.mode.startswith("I;16") or im.mode in ("I", "I;16B"):
        return 16
    bits = getattr(im, "tag_v2", {}).get(258) if fmt == "TIFF" else None
    if bits:
        bits = bits if isinstance(bits, (tuple, list)) else (bits,)
        if max(int(b) for b in bits) > 8:
            return 16
    return 8


def _orientation(im):
    """The EXIF orientation (1-8) of an open Pillow image, from what its header holds (no
    decode: a PNG ``eXIf`` chunk after the pixel data is not seen)."""
    from PIL import Image

    try:
        if im.format == "TIFF":
            value = getattr(im, "tag_v2", {}).get(274, 1)
        else:
            raw = im.info.get("exif")
            if not raw:
                return 1
            exif = Image.Exif()
            exif.load(raw)
            value = exif.get(_ORIENTATION_TAG, 1)
        value = int(value)
    except Exception:  # a damaged EXIF block: the pixels are still readable, upright
        return 1
    return value if 1 <= value <= 8 else 1


def _orientation_of_bytes(head):
    """EXIF orientation from a file's first bytes (``tf.numpy_function`` body)."""
    import io as _io

    from PIL import Image

    if isinstance(head, np.ndarray):  # a 0-d object array from tf.numpy_function
        head = head.item()
    try:
        with Image.open(_io.BytesIO(bytes(head))) as im:
            return np.int32(_orientation(im))
    except Exception:  # not enough bytes or no header Pillow knows: upright
        return np.int32(1)


def orient_numpy(img, orientation):
    """``img`` (H, W, C) turned upright for EXIF ``orientation``, as
    ``PIL.ImageOps.exif_transpose`` does."""
    o = int(orientation)
    if o == 2:
        img = img[:, ::-1]
    elif o == 3:
        img = img[::-1, ::-1]
    elif o == 4:
        img = img[::-1]
    elif o == 5:
        img = np.swapaxes(img, 0, 1)
    elif o == 6:
        img = np.rot90(img, -1)
    elif o == 7:
        img = np.swapaxes(img[::-1, ::-1], 0, 1)
    elif o == 8:
        img = np.rot90(img, 1)
    return np.ascontiguousarray(img)


def orient_tensor(img, orientation):
    """:func:`orient_numpy` in TensorFlow ops (``orientation`` a scalar tensor)."""
    o = tf.cast(orientation, tf.int32)
    t = lambda x: tf.transpose(x, [1, 0, 2])  # noqa: E731
    branches = [
        lambda: img,
        lambda: tf.reverse(img, [1]),
        lambda: tf.reverse(img, [0, 1]),
        lambda: tf.reverse(img, [0]),
        lambda: t(img),
        lambda: t(tf.reverse(img, [0])),
        lambda: t(tf.reverse(img, [0, 1])),
        lambda: t(tf.reverse(img, [1])),
    ]
    out = tf.switch_case(tf.clip_by_value(o, 1, 8) - 1, branches)
    out.set_shape([None, None, img.shape[-1]])
    return out


def _inspect(path):
    """``(ImageDetails, number of bands including alpha)`` from the header."""
    from PIL import Image, UnidentifiedImageError

    try:
        with open(path, "rb") as f:
            head = f.read(32)
        if not head:
            raise ImageFileError(f"cannot read image file {path!r}: the file is empty")
        fmt = _format_of(head)
        if fmt is None:
            raise ImageFileError(
                f"cannot read image file {path!r}: not a {_FORMATS} image "
                f"(first bytes {head[:8]!r}); convert it to PNG first"
            )
        with _PixelLimit(), Image.open(path) as im:
            w, h = im.size
            bands = im.getbands()
            depth = _pil_depth(im, fmt, head)
            orientation = _orientation(im)
            alpha = "A" in bands or "a" in bands or "transparency" in im.info
    except ImageFileError:
        raise
    except Image.DecompressionBombError as e:
        raise _bomb_error(path, e) from None
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as e:
        raise ImageFileError(f"cannot read image file {path!r}: {e}") from e
    colour = [b for b in bands if b not in ("A", "a")]
    channels = 1 if len(colour) == 1 and colour != ["P"] else 3  # palettes decode to colour
    if orientation >= 5:  # stored on its side: displayed with height and width swapped
        h, w = w, h
    return ImageDetails(h, w, channels, depth, fmt, orientation, alpha), len(bands)


def image_details(path):
    """:class:`ImageDetails` of an image file from its header (no full decode).

    Raises ``ImageFileError`` naming the file when it cannot be read or is not in a
    supported format.
    """
    return _inspect(path)[0]


def image_info(path):
    """``(height, width, bands)`` of an image file from its header (no full decode).

    Raises ``ImageFileError`` naming the file when it cannot be read or is in a
    format tfrestore cannot decode.
    """
    d, bands = _inspect(path)
    return d.height, d.width, bands


def _looks_complete(path, fmt):
    """Cheap end-of-file check: does the file end the way a complete file of ``fmt`` does?"""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(16)
        f.seek(max(0, size - _TAIL))
        tail = f.read()
    if fmt == "PNG":
        return b"IEND" in tail
    if fmt == "JPEG":
        return b"\xff\xd9" in tail
    if fmt == "GIF":
        return tail.rstrip(b"\x00").endswith(b";")
    if fmt == "WEBP":
        return len(head) >= 8 and int.from_bytes(head[4:8], "little") + 8 <= size
    if fmt == "BMP":
        declared = int.from_bytes(head[2:6], "little") if len(head) >= 6 else 0
        return declared == 0 or declared <= size
    return True  # TIFF: data may sit anywhere; a damaged TIFF is named when it is decoded


def _decode_numpy(path, details, channels):
    """Decode a whole file, upright: ``(H, W, channels)`` uint8, or uint16 for 16-bit files."""
    return orient_numpy(_decode_stored(path, details, channels), details.orientation)


def _decode_stored(path, details, channels):
    if details.format == "TIFF":
        return _pil_decode(path, channels, details.bit_depth)
    dtype = tf.uint16 if details.bit_depth == 16 else tf.uint8
    try:
        return tf.io.decode_image(
            tf.io.read_file(path), channels=channels, dtype=dtype, expand_animations=False
        ).numpy()
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as e:
        raise ImageFileError(
            f"cannot decode image file {path!r}: {e.message} (the file is damaged or truncated)"
        ) from e


def _pil_decode(path, channels, bit_depth=None, raw=None):
    """Pillow decode (TIFF): uint16 for 16-bit files, else uint8; ``channels`` 1 or 3."""
    import io as _io

    from PIL import Image

    try:
        with _PixelLimit(), Image.open(_io.BytesIO(raw) if raw is not None else path) as im:
            im.load()
            mode = im.mode
            if mode.startswith("I;16") or mode in ("I", "F"):
                arr = np.asarray(im)
                arr = np.clip(arr, 0, 65535).astype(np.uint16)
                arr = arr[..., None]
            else:
                if mode not in ("L", "RGB"):
                    im = im.convert("L" if mode in ("1", "LA", "La") else "RGB")
                arr = np.asarray(im)
                arr = arr[..., None] if arr.ndim == 2 else arr
    except Image.DecompressionBombError as e:
        raise _bomb_error(path, e) from None
    except (OSError, ValueError, SyntaxError) as e:
        raise ImageFileError(
            f"cannot decode image file {path!r}: {e} (the file is damaged or truncated)"
        ) from e
    if arr.shape[-1] != channels:
        if channels == 3:
            arr = np.repeat(arr, 3, axis=-1)
        else:
            w = np.array([0.2989, 0.5870, 0.1140])
            arr = np.round(arr.astype(np.float64) @ w)[..., None].astype(arr.dtype)
    if bit_depth is not None and arr.dtype == np.uint8 and bit_depth == 16:
        arr = arr.astype(np.uint16) * 257
    return np.ascontiguousarray(arr)


def _validate(paths, min_size=None, full=False):
    """``(sizes, bit_depths, orientations)`` of files checked as :func:`validate_images`
    describes."""
    sizes, depths, orientations = [], [], []
    for p in paths:
        d = image_details(p)
        if min_size is not None and (d.height < min_size[0] or d.width < min_size[1]):
            raise ImageFileError(
                f"image file {p!r} is {d.height}x{d.width} pixels, smaller than the requested "
                f"crop {min_size[0]}x{min_size[1]}; use a smaller crop_size or remove the file"
            )
        if full or not _looks_complete(p, d.format):
            # Only suspicious files (or all, with full=True) pay for a full decode.
            _decode_stored(p, d, d.channels)
        sizes.append((d.height, d.width))
        depths.append(d.bit_depth)
        orientations.append(d.orientation)
    return sizes, depths, orientations


def validate_images(paths, *, min_size=None, full=False):
    """Check every file's header and end; returns a list of ``(height, width)``.

    ``min_size``: ``(h, w)`` every image must reach (e.g. the crop size); an
    ``ImageFileError`` names the first offending file. A file that does not end
    like a complete file of its format (truncated copy or download) is decoded to
    confirm and named when it fails; ``full=True`` decodes every file.
    """
    return _validate(paths, min_size, full)[0]


def decode_image(path, channels=3, dtype=tf.uint8, orientation=None):
    """In-graph read + decode of one file (for ``tf.data``): ``(H, W, channels)`` tensor,
    upright (EXIF orientation applied).

    ``dtype`` ``tf.uint8`` or ``tf.uint16`` (16-bit files keep their precision; 8-bit
    files are scaled by 257). TIFF files are decoded by Pillow through
    ``tf.numpy_function``, the other formats by ``tf.io.decode_image``. Adds an
    assertion whose message names the file when its bytes are not a supported format.
    ``orientation``: the file's EXIF orientation when known (``image_details(path)
    .orientation``; the datasets read it while validating); None: read from the file's first
    64 KiB in a ``tf.numpy_function``.
    """
    dtype = tf.as_dtype(dtype)
    data = tf.io.read_file(path)
    head = tf.strings.substr(data, 0, 4)
    magic = {
        fmt: tf.reduce_any(tf.stack([tf.strings.substr(data, 0, len(m)) == m for m in ms]))
        for fmt, ms in _MAGIC.items()
    }
    known = tf.reduce_any(tf.stack(list(magic.values())))
    check = tf.debugging.Assert(
        known,
        ["cannot decode image file", path, f"(not {_FORMATS}; first bytes:", head, ")"],
    )
    wide = dtype == tf.uint16

    def tiff():
        def run(raw, name):
            name = name.decode("utf-8", "replace")
            arr = _pil_decode(name, channels, 16 if wide else None, raw=raw)
            if not wide and arr.dtype == np.uint16:
                arr = np.round(arr / 257.0).astype(np.uint8)
            return arr

        out = tf.numpy_function(run, [data, path], dtype, stateful=False)
        return tf.ensure_shape(out, [None, None, channels])

    def other():
        return tf.io.decode_image(data, channels=channels, dtype=dtype, expand_animations=False)

    with tf.control_dependencies([check]):
        img = tf.cond(magic["TIFF"], tiff, other)
    img.set_shape([None, None, channels])
    if orientation is None:
        orientation = tf.numpy_function(
            _orientation_of_bytes, [tf.strings.substr(data, 0, _EXIF_HEAD)], tf.int32,
            stateful=False,
        )
    return orient_tensor(img, orientation)


def read_image(path, channels=3, dtype="float32"):
    """Read one image file eagerly as a NumPy array.

    Args:
        path: str or path. The image file.
        channels: int or None. 1, 3, or None to keep the file's (grey stays grey, alpha is
            dropped).
        dtype: ``"float32"`` (``[0, 1]``: 8-bit / 255, 16-bit / 65535), ``"uint8"``
            (16-bit files rounded to 8 bits) or ``"native"`` (uint8 or uint16 as stored).

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
    if dtype not in ("float32", "uint8", "native"):
        raise ValueError(f"`dtype` must be 'float32', 'uint8' or 'native', got {dtype!r}.")
    details = image_details(path)
    img = _decode_numpy(path, details, channels or details.channels)
    if dtype == "native":
        return img
    if dtype == "uint8":
        return img if img.dtype == np.uint8 else np.round(img / 257.0).astype(np.uint8)
    return img.astype(np.float32) / (65535.0 if img.dtype == np.uint16 else 255.0)


def read_alpha(path, dtype="float32"):
    """The alpha channel of an image file, upright, as ``(H, W, 1)``; None without one.

    :func:`read_image` returns the colour channels only; ``tfrestore restore`` restores those
    and puts this channel back unchanged. ``dtype`` as in :func:`read_image`. A palette image's
    transparent colour becomes alpha 0.

    Example:
        >>> import tempfile, os
        >>> from PIL import Image
        >>> path = os.path.join(tempfile.mkdtemp(), "rgba.png")
        >>> Image.new("RGBA", (4, 2), (9, 9, 9, 128)).save(path)
        >>> read_alpha(path, dtype="uint8")[..., 0]
        array([[128, 128, 128, 128],
               [128, 128, 128, 128]], dtype=uint8)
    """
    path = os.fspath(path)
    if dtype not in ("float32", "uint8", "native"):
        raise ValueError(f"`dtype` must be 'float32', 'uint8' or 'native', got {dtype!r}.")
    details = image_details(path)
    if not details.alpha:
        return None
    if details.format == "PNG":  # TensorFlow keeps 16-bit alpha (Pillow reads 8 bits)
        wide = tf.uint16 if details.bit_depth == 16 else tf.uint8
        try:
            arr = tf.io.decode_png(tf.io.read_file(path), channels=4, dtype=wide).numpy()
        except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as e:
            raise ImageFileError(
                f"cannot decode image file {path!r}: {e.message} (the file is damaged or "
                "truncated)"
            ) from e
        alpha = arr[..., 3:]
    else:
        from PIL import Image

        try:
            with _PixelLimit(), Image.open(path) as im:
                im.load()
                mode = "LA" if im.mode in ("LA", "La") else "RGBA"
                alpha = np.asarray(im.convert(mode).getchannel("A"))[..., None]
        except (OSError, ValueError, SyntaxError) as e:
            raise ImageFileError(
                f"cannot decode image file {path!r}: {e} (the file is damaged or truncated)"
            ) from e
    alpha = orient_numpy(alpha, details.orientation)
    if dtype == "native":
        return alpha
    if dtype == "uint8":
        return alpha if alpha.dtype == np.uint8 else np.round(alpha / 257.0).astype(np.uint8)
    return alpha.astype(np.float32) / (65535.0 if alpha.dtype == np.uint16 else 255.0)


def write_image(path, image, bit_depth=None):
    """Write an HWC image as PNG: float in [0, 1] (clipped), uint8 or uint16.

    ``bit_depth`` 8 or 16; default: 16 for uint16 arrays, else 8.
    """
    img = np.asarray(image)
    if bit_depth is None:
        bit_depth = 16 if img.dtype == np.uint16 else 8
    if bit_depth not in (8, 16):
        raise ValueError(f"`bit_depth` must be 8 or 16, got {bit_depth!r}.")
    target = np.uint16 if bit_depth == 16 else np.uint8
    peak = 65535.0 if bit_depth == 16 else 255.0
    if img.dtype != target:
        if img.dtype.kind == "f":
            img = np.clip(np.round(img * peak), 0, peak).astype(target)
        elif img.dtype == np.uint8:  # 8 -> 16 bits
            img = img.astype(np.uint16) * 257
        else:  # uint16 -> 8 bits
            img = np.round(img / 257.0).astype(np.uint8)
    if img.ndim == 2:
        img = img[..., None]
    pathlib.Path(path).write_bytes(tf.io.encode_png(img).numpy())
    return os.fspath(path)
