"""Where dataset images come from: files (decoded on the fly or cached) or in-memory arrays.

A store gives random access to images by index inside ``tf.data`` (``store.get(idx)``
returns the raw ``uint8``/``uint16``/float image, ``store.name(idx)`` what to call it in
errors). ``image_store`` reads one source (folder, glob, file list, arrays,
``"default"``); ``paired_stores`` matches LQ and GT files by name (:func:`match_pairs`)
and checks their sizes against ``scale``.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfrestore.data.io import ImageFileError, _validate, decode_image, list_images
from tfrestore.data.pairs import match_pairs

__all__ = ["image_store", "paired_stores", "to_float"]



class _Store:
    """Random access to images by index: files decoded on the fly, or one flat in-memory buffer."""

    def __init__(self, *, paths=None, arrays=None, sizes=None, channels=3, wide=False,
                 orientations=None):
        self.channels = channels
        # 16-bit files are decoded as uint16 (8-bit ones are then scaled by 257, exactly).
        self.decode_dtype = tf.uint16 if wide else tf.uint8
        self.paths = paths
        self.sizes = sizes  # list of (h, w) or None when unknown (validate=False)
        if arrays is not None:
            if any(a.dtype.kind == "f" for a in arrays):
                dtype = np.float32
                arrays = [a if a.dtype.kind == "f" else _array_to_float(a) for a in arrays]
            elif any(a.dtype == np.uint16 for a in arrays):
                dtype = np.uint16
                arrays = [a.astype(np.uint16) * (257 if a.dtype == np.uint8 else 1) for a in arrays]
            else:
                dtype = np.uint8
            flat = [np.ascontiguousarray(a.astype(dtype, copy=False)).reshape(-1) for a in arrays]
            lengths = np.array([f.size for f in flat], np.int64)
            self.flat = tf.constant(np.concatenate(flat))
            self.offsets = tf.constant(
                np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
            )
            self.shapes = tf.constant(np.array([a.shape for a in arrays], np.int64))
            self.sizes = [tuple(a.shape[:2]) for a in arrays]
            self.n = len(arrays)
        else:
            self.flat = None
            self.path_tensor = tf.constant(paths)
            # EXIF orientations read while validating (None: each decode reads its file's)
            self.orientations = (
                None if orientations is None else tf.constant(orientations, tf.int32)
            )
            self.n = len(paths)

    def name(self, idx):
        if self.flat is None:
            return tf.gather(self.path_tensor, idx)
        return tf.strings.join(["in-memory image #", tf.strings.as_string(idx)])

    def get(self, idx):
        """``(H, W, C)`` float32 in [0, 1] (crop before converting would need the raw dtype)."""
        if self.flat is None:
            img = decode_image(
                tf.gather(self.path_tensor, idx),
                self.channels,
                self.decode_dtype,
                None if self.orientations is None else tf.gather(self.orientations, idx),
            )
        else:
            shape = tf.gather(self.shapes, idx)
            img = tf.reshape(
                tf.slice(self.flat, [tf.gather(self.offsets, idx)], [tf.reduce_prod(shape)]), shape
            )
            img.set_shape([None, None, self.channels])
        return img

    @property
    def is_uint8(self):
        return self.flat is None or self.flat.dtype == tf.uint8


def to_float(img):
    """A store image as float32 in [0, 1] (after cropping: the crop works on the raw dtype)."""
    if img.dtype == tf.uint8:
        return tf.cast(img, tf.float32) / 255.0
    if img.dtype == tf.uint16:
        return tf.cast(img, tf.float32) / 65535.0
    return tf.cast(img, tf.float32)


def _array_to_float(a):
    return a.astype(np.float32) / (65535.0 if a.dtype == np.uint16 else 255.0)


def _as_arrays(source, channels):
    arrays = [source] if isinstance(source, np.ndarray) and source.ndim in (2, 3) else list(source)
    out = []
    for i, a in enumerate(arrays):
        a = np.asarray(a)
        if a.ndim == 2:
            a = a[..., None]
        if a.ndim != 3:
            raise ValueError(f"in-memory image #{i} must be HW or HWC, got shape {a.shape}")
        if a.dtype.kind not in "uif":
            raise TypeError(
                f"in-memory image #{i} must be uint8, uint16 or float in [0, 1], got dtype "
                f"{a.dtype}"
            )
        if a.dtype.kind in "ui" and a.dtype not in (np.uint8, np.uint16):
            raise TypeError(
                f"in-memory image #{i}: integer images must be uint8 or uint16, got {a.dtype}"
            )
        if a.shape[-1] == 1 and channels == 3:
            a = np.repeat(a, 3, axis=-1)
        elif a.shape[-1] == 4 and channels == 3:
            a = a[..., :3]
        elif a.shape[-1] == 3 and channels == 1:
            w = np.array([0.2989, 0.5870, 0.1140], np.float32)
            a = (a.astype(np.float32) @ w)[..., None]
            a = a if arrays[i].dtype.kind == "f" else np.round(a).astype(arrays[i].dtype)
        if a.shape[-1] != channels:
            raise ValueError(
                f"in-memory image #{i} has {a.shape[-1]} channels, expected {channels}"
            )
        out.append(a)
    if not out:
        raise ImageFileError("the list of in-memory images is empty")
    return out


def _is_array_source(source):
    if isinstance(source, np.ndarray):
        return True
    return (
        isinstance(source, (list, tuple))
        and bool(source)
        and isinstance(source[0], (np.ndarray, tf.Tensor))
    )


def image_store(source, options, *, min_size=None):
    """The store of one clean-image source; ``min_size`` ``(h, w)`` every image must reach."""
    if isinstance(source, str) and source == "default":
        from tfrestore.data.defaults import default_images

        source = default_images()
    if _is_array_source(source):
        store = _Store(arrays=_as_arrays(source, options.channels), channels=options.channels)
        if min_size is not None:
            for i, (h, w) in enumerate(store.sizes):
                if h < min_size[0] or w < min_size[1]:
                    raise ImageFileError(
                        f"in-memory image #{i} is {h}x{w} pixels, smaller than the requested crop "
                        f"{min_size[0]}x{min_size[1]}"
                    )
        return store
    paths = list_images(source, recursive=options.recursive)
    sizes, wide, turns = None, True, None  # unknown depth: uint16 keeps 16-bit files exactly
    if options.validate:
        sizes, depths, turns = _validate(
            paths, min_size=min_size, full=options.validate == "full"
        )
        wide = any(d == 16 for d in depths)
    return _file_store(paths, options, wide=wide, sizes=sizes, orientations=turns)


def paired_stores(lq_source, gt_source, options, *, scale, key=None, lq_min_size=None):
    """``(lq_store, gt_store)`` of files matched by name; each GT is ``scale`` x its LQ."""
    lq_paths, gt_paths = match_pairs(
        list_images(lq_source, recursive=options.recursive),
        list_images(gt_source, recursive=options.recursive),
        scale=scale,
        key=key,
    )
    sizes, wide, lq_turns, gt_turns = None, True, None, None
    if options.validate:
        full = options.validate == "full"
        sizes, lq_depths, lq_turns = _validate(lq_paths, min_size=lq_min_size, full=full)
        gt_sizes, gt_depths, gt_turns = _validate(gt_paths, full=full)
        wide = any(d == 16 for d in lq_depths + gt_depths)
        for lp, gp, (lh, lw), (gh, gw) in zip(lq_paths, gt_paths, sizes, gt_sizes):
            if not (lh * scale <= gh < (lh + 1) * scale and lw * scale <= gw < (lw + 1) * scale):
                raise ImageFileError(
                    f"paired_dataset: GT file {gp!r} is {gh}x{gw} but LQ file {lp!r} is "
                    f"{lh}x{lw}; with scale={scale} the GT must be {lh * scale}x{lw * scale} "
                    f"(up to {scale - 1} extra pixels)"
                )
    return (
        _file_store(lq_paths, options, wide=wide, sizes=sizes, orientations=lq_turns),
        _file_store(gt_paths, options, wide=wide, orientations=gt_turns),
    )


def _file_store(paths, options, *, wide, sizes=None, orientations=None):
    if options.cache:
        return _cache_files(
            paths, options.channels, options.num_parallel_calls, wide, orientations
        )
    return _Store(
        paths=paths, sizes=sizes, channels=options.channels, wide=wide, orientations=orientations
    )


def _cache_files(paths, channels, num_parallel_calls, wide=False, orientations=None):
    dtype = tf.uint16 if wide else tf.uint8
    if orientations is None:
        ds = tf.data.Dataset.from_tensor_slices(paths).map(
            lambda p: decode_image(p, channels, dtype),
            num_parallel_calls=num_parallel_calls,
            deterministic=True,
        )
    else:
        ds = tf.data.Dataset.from_tensor_slices((paths, orientations)).map(
            lambda p, o: decode_image(p, channels, dtype, o),
            num_parallel_calls=num_parallel_calls,
            deterministic=True,
        )
    arrays = [a.numpy() for a in ds]
    store = _Store(arrays=arrays, channels=channels)
    store.paths = paths
    return store
