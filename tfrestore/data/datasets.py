"""``tf.data`` pipelines producing ``(degraded, clean)`` batches for restoration training.

* ``image_dataset``: clean images (folder, file list, in-memory arrays or ``"default"``)
  -> random crops + flips/rot90 -> on-the-fly degradation (``tfrestore.data.degrade``)
  -> batched, prefetched ``(degraded, clean)`` pairs. ``training=False`` gives the
  deterministic evaluation variant (no shuffling/augmentation, full images or centre
  crops, single pass).
* ``paired_dataset``: real LQ/GT pairs from two folders matched by file name
  (super-resolution ``scale`` supported), with paired crops and identical augmentation.

Determinism: every random choice is a stateless op keyed by ``seed`` and the index
of the element (or batch) in the stream: the file order of epoch ``e`` is
``stateless_shuffle(seed, e)``, the crop/augmentation of element ``i`` uses
``fold_in([seed, 2], i)`` and the degradation of batch ``b`` uses
``fold_in([seed, 3], b)``. The same seed therefore yields identical batches run to
run, independent of ``num_parallel_calls`` and of the global TF seed; ``map`` runs
with ``deterministic=True`` by default so the order is fixed too.

Degradations run on whole batches (vectorised) after the crops are batched. A
degradation that returns a tuple (e.g. ``GaussianNoise(sigma_map=True)`` ->
``(noisy, sigma_map)``) yields elements ``((noisy, sigma_map), clean)``, which a
two-input Keras model consumes directly.
"""

from __future__ import annotations

import os
import pathlib
import re

import numpy as np
import tensorflow as tf

from tfrestore.data.degrade import get_degradation
from tfrestore.data.io import ImageFileError, _validate, decode_image, list_images

__all__ = ["image_dataset", "paired_dataset", "match_pairs"]

AUTOTUNE = tf.data.AUTOTUNE


# ----------------------------------------------------------------------------- image stores


class _Store:
    """Random access to images by index: files decoded on the fly, or one flat in-memory buffer."""

    def __init__(self, *, paths=None, arrays=None, sizes=None, channels=3, wide=False):
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
            self.n = len(paths)

    def name(self, idx):
        if self.flat is None:
            return tf.gather(self.path_tensor, idx)
        return tf.strings.join(["in-memory image #", tf.strings.as_string(idx)])

    def get(self, idx):
        """``(H, W, C)`` float32 in [0, 1] (crop before converting would need the raw dtype)."""
        if self.flat is None:
            img = decode_image(tf.gather(self.path_tensor, idx), self.channels, self.decode_dtype)
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


def _to_float(img):
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
    if (
        isinstance(source, (list, tuple))
        and source
        and isinstance(source[0], (np.ndarray, tf.Tensor))
    ):
        return True
    return False


def _make_store(
    source, *, channels, validate, cache, recursive, min_size, num_parallel_calls, wide=None
):
    if isinstance(source, str) and source == "default":
        from tfrestore.data.defaults import default_images

        source = default_images()
    if _is_array_source(source):
        store = _Store(arrays=_as_arrays(source, channels), channels=channels)
        if min_size is not None:
            for i, (h, w) in enumerate(store.sizes):
                if h < min_size[0] or w < min_size[1]:
                    raise ImageFileError(
                        f"in-memory image #{i} is {h}x{w} pixels, smaller than the requested crop "
                        f"{min_size[0]}x{min_size[1]}"
                    )
        return store
    paths = list_images(source, recursive=recursive)
    sizes = None
    if validate:
        sizes, depths = _validate(paths, min_size=min_size, full=validate == "full")
        wide = any(d == 16 for d in depths) if wide is None else wide
    if wide is None:  # unknown without validation: uint16 keeps 16-bit files and is exact for 8-bit
        wide = True
    if cache:
        return _cache_files(paths, channels, num_parallel_calls, wide)
    return _Store(paths=paths, sizes=sizes, channels=channels, wide=wide)


def _cache_files(paths, channels, num_parallel_calls, wide=False):
    ds = tf.data.Dataset.from_tensor_slices(paths).map(
        lambda p: decode_image(p, channels, tf.uint16 if wide else tf.uint8),
        num_parallel_calls=num_parallel_calls,
        deterministic=True,
    )
    arrays = [a.numpy() for a in ds]
    store = _Store(arrays=arrays, channels=channels)
    store.paths = paths
    return store


# ----------------------------------------------------------------------------- element ops


def _check_fits(store, idx, img, crop_h, crop_w, what):
    shape = tf.shape(img)
    ok = tf.logical_and(shape[0] >= crop_h, shape[1] >= crop_w)
    return tf.debugging.Assert(
        ok,
        [
            f"{what}: image",
            store.name(idx),
            "of shape",
            shape,
            "is smaller than the crop",
            crop_h,
            crop_w,
        ],
    )


def _random_offsets(seed, h, w, ch, cw):
    u = tf.random.stateless_uniform([2], seed)
    oy = tf.minimum(tf.cast(u[0] * tf.cast(h - ch + 1, tf.float32), tf.int32), h - ch)
    ox = tf.minimum(tf.cast(u[1] * tf.cast(w - cw + 1, tf.float32), tf.int32), w - cw)
    return oy, ox


def _augment(images, seed, allow_rot):
    """Apply the same one of the 8 dihedral transforms (or 4 flips) to every image."""
    t = tf.random.stateless_uniform([], seed, 0, 8 if allow_rot else 4, dtype=tf.int32)
    out = []
    for img in images:
        img = tf.cond(t % 2 == 1, lambda x=img: tf.image.flip_left_right(x), lambda x=img: x)
        if allow_rot:
            img = tf.image.rot90(img, t // 2)
        else:
            img = tf.cond(t // 2 == 1, lambda x=img: tf.image.flip_up_down(x), lambda x=img: x)
        out.append(img)
    return out


def _index_stream(n, *, per_image, shuffle, repeat, seed):
    """``(i, image_index)`` pairs: element ``i`` of the stream and the image it uses.

    Epoch ``e = i // (n * per_image)`` visits every image ``per_image`` times in the
    order ``stateless_shuffle(arange, fold_in([seed, 1], e))``. Computing the order from
    ``i`` (instead of chaining per-epoch datasets) keeps the cardinality known: infinite
    when repeating, ``n * per_image`` otherwise.
    """
    order_seed = tf.constant([seed, 1], tf.int64)
    base = tf.repeat(tf.range(n, dtype=tf.int64), per_image)
    length = n * per_image

    def order(i):
        if not shuffle:
            return i, tf.gather(base, i % length)
        perm = tf.random.experimental.stateless_shuffle(
            base, seed=tf.random.experimental.stateless_fold_in(order_seed, i // length)
        )
        return i, tf.gather(perm, i % length)

    ids = tf.data.Dataset.counter() if repeat else tf.data.Dataset.range(length)
    return ids.map(order)


def _resolve_mode(training, batch_size, augment, shuffle, repeat, drop_remainder):
    return (
        (16 if training else 1) if batch_size is None else int(batch_size),
        training if augment is None else bool(augment),
        training if shuffle is None else bool(shuffle),
        training if repeat is None else bool(repeat),
        training if drop_remainder is None else bool(drop_remainder),
    )


def _check_batchable(sizes, batch_size, what):
    if sizes is not None and batch_size > 1 and len(set(sizes)) > 1:
        raise ValueError(
            f"{what}: full images of different sizes ({len(set(sizes))} distinct sizes) cannot be "
            f"batched with batch_size={batch_size}; use batch_size=1 or set crop_size."
        )


def _finish_pipeline(
    ds, degrade, batch_size, drop_remainder, seed, num_parallel_calls, deterministic, prefetch
):
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    if degrade is not None:
        deg_seed = tf.constant([seed, 3], tf.int64)

        def apply(b, clean):
            out = degrade(clean, tf.random.experimental.stateless_fold_in(deg_seed, b))
            out = tuple(out) if isinstance(out, (tuple, list)) else out
            return out, clean

        ds = ds.enumerate().map(
            apply, num_parallel_calls=num_parallel_calls, deterministic=deterministic
        )
    if prefetch:
        ds = ds.prefetch(prefetch)
    return ds


def _check_int(value, name, minimum=1):
    if value is None:
        return None
    if int(value) != value or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}.")
    return int(value)


# ----------------------------------------------------------------------------- public API


def image_dataset(
    source,
    degradation=None,
    *,
    training=True,
    crop_size=None,
    batch_size=None,
    seed=0,
    augment=None,
    shuffle=None,
    repeat=None,
    drop_remainder=None,
    patches_per_image=1,
    cache=False,
    channels=3,
    modcrop=None,
    recursive=False,
    validate=True,
    num_parallel_calls=AUTOTUNE,
    deterministic=True,
    prefetch=AUTOTUNE,
):
    """``(degraded, clean)`` batches from clean images with on-the-fly degradation.

    Args:
        source: a folder, a glob pattern, a list of image files, a list of HWC arrays
            (uint8 or float in [0, 1]) or ``"default"`` (``tfrestore.data.default_images()``).
        degradation: ``tfrestore.data.degrade`` object, config dict / name for
            ``get_degradation``, or any callable ``(images NHWC, seed) -> degraded``;
            None gives ``(clean, clean)``.
        training: True: shuffled, augmented, repeated forever, random crops.
            False: the deterministic evaluation variant (file order, no augmentation,
            one pass, centre crops or full images).
        crop_size: square crop side in clean-image pixels, None for full images. For
            SR degradations it must be a multiple of the degradation's ``scale``.
        batch_size: default 16 when training, 1 otherwise.
        seed: int; fixes file order, crops, augmentation and degradation (see module doc).
        augment, shuffle, repeat, drop_remainder: override the ``training`` defaults.
            Augmentation is one of the 8 flips/rot90 transforms for square crops, and
            horizontal/vertical flips for full images.
        patches_per_image: crops taken from each image per epoch (pair with ``cache``).
        cache: decode every file once into memory (uint8) instead of on every access.
        channels: 3 (RGB) or 1 (grey).
        modcrop: crop full images to a multiple of this (default: the degradation's
            ``scale``, so SR pairs have exact sizes).
        recursive: search sub-folders.
        validate: read every file header (and last bytes) up front so an unreadable,
            unsupported, too small or truncated file fails here with an ``ImageFileError``
            naming it (cheap: only files whose end looks wrong are decoded); ``"full"``
            decodes every file up front (also finds damage inside a file); False skips it.
        num_parallel_calls, deterministic, prefetch: ``tf.data`` knobs.

    Returns:
        A ``tf.data.Dataset`` of ``(degraded, clean)`` float32 batches.

    Example:
        >>> from tfrestore.data import default_images, degrade
        >>> images = default_images(["chelsea"], max_size=64)
        >>> ds = image_dataset(images, degrade.GaussianNoise(25 / 255), crop_size=32, batch_size=4)
        >>> noisy, clean = next(iter(ds))
        >>> noisy.shape, clean.shape
        (TensorShape([4, 32, 32, 3]), TensorShape([4, 32, 32, 3]))
    """
    what = "image_dataset"
    if channels not in (1, 3):
        raise ValueError(f"`channels` must be 1 or 3, got {channels!r}.")
    crop_size = _check_int(crop_size, "crop_size")
    batch_size = _check_int(batch_size, "batch_size")
    patches_per_image = _check_int(patches_per_image, "patches_per_image")
    seed = int(seed)
    degrade = get_degradation(degradation)
    scale = int(getattr(degrade, "scale", 1) or 1)
    if crop_size is not None and crop_size % scale:
        raise ValueError(
            f"{what}: crop_size={crop_size} must be a multiple of the degradation's "
            f"scale ({scale})."
        )
    modcrop = _check_int(modcrop, "modcrop") or scale
    batch_size, augment, shuffle, repeat, drop_remainder = _resolve_mode(
        training, batch_size, augment, shuffle, repeat, drop_remainder
    )
    min_size = (crop_size, crop_size) if crop_size else None
    store = _make_store(
        source,
        channels=channels,
        validate=validate,
        cache=cache,
        recursive=recursive,
        min_size=min_size,
        num_parallel_calls=num_parallel_calls,
    )
    if crop_size is None:
        sizes = (
            None
            if store.sizes is None
            else [(h - h % modcrop, w - w % modcrop) for h, w in store.sizes]
        )
        _check_batchable(sizes, batch_size, what)
    crop_seed = tf.constant([seed, 2], tf.int64)

    def element(i, idx):
        s = tf.random.experimental.stateless_fold_in(crop_seed, i)
        s_crop, s_aug = tf.unstack(tf.random.experimental.stateless_split(s, 2))
        img = store.get(idx)
        shape = tf.shape(img)
        h, w = shape[0], shape[1]
        if crop_size is not None:
            with tf.control_dependencies(
                [_check_fits(store, idx, img, crop_size, crop_size, what)]
            ):
                if training:
                    oy, ox = _random_offsets(s_crop, h, w, crop_size, crop_size)
                else:
                    oy, ox = (h - crop_size) // 2, (w - crop_size) // 2
                img = img[oy : oy + crop_size, ox : ox + crop_size]
            img.set_shape([crop_size, crop_size, channels])
        elif modcrop > 1:
            img = img[: h - h % modcrop, : w - w % modcrop]
        img = _to_float(img)
        if augment:
            (img,) = _augment([img], s_aug, allow_rot=crop_size is not None)
        return img

    ds = _index_stream(
        store.n, per_image=patches_per_image, shuffle=shuffle, repeat=repeat, seed=seed
    )
    ds = ds.map(element, num_parallel_calls=num_parallel_calls, deterministic=deterministic)
    return _finish_pipeline(
        ds, degrade, batch_size, drop_remainder, seed, num_parallel_calls, deterministic, prefetch
    )


def _default_key(scale):
    suffix = re.compile(rf"[xX]{scale}$") if scale > 1 else None

    def key(path):
        stem = pathlib.Path(path).stem
        return suffix.sub("", stem) if suffix is not None else stem

    return key


def match_pairs(lq_paths, gt_paths, *, scale=1, key=None):
    """Match LQ and GT files by name; returns ``(lq_paths, gt_paths)`` in matching order.

    The default key is the file stem, with a trailing ``x{scale}`` removed (DIV2K names
    its LR files ``0001x4.png``). ``key`` may be any callable ``path -> str`` used for both
    sides. Raises ``ImageFileError`` listing unmatched and duplicate names.

    Example:
        >>> match_pairs(["lq/0001x2.png"], ["gt/0001.png"], scale=2)
        (['lq/0001x2.png'], ['gt/0001.png'])
    """
    key_fn = key or _default_key(scale)

    def index(paths, side):
        out = {}
        for p in paths:
            k = key_fn(p)
            if k in out:
                raise ImageFileError(
                    f"paired_dataset: two {side} files have the same key {k!r}: "
                    f"{out[k]!r} and {p!r}"
                )
            out[k] = p
        return out

    lq, gt = index(lq_paths, "LQ"), index(gt_paths, "GT")
    only_lq = sorted(set(lq) - set(gt))
    only_gt = sorted(set(gt) - set(lq))
    if only_lq or only_gt:

        def show(keys, table):
            names = [os.path.basename(table[k]) for k in keys[:10]]
            return ", ".join(names) + (f", ... ({len(keys)} in all)" if len(keys) > 10 else "")

        parts = []
        if only_lq:
            parts.append(f"{len(only_lq)} LQ file(s) have no GT match: {show(only_lq, lq)}")
        if only_gt:
            parts.append(f"{len(only_gt)} GT file(s) have no LQ match: {show(only_gt, gt)}")
        raise ImageFileError(
            "paired_dataset: LQ and GT files do not match by name; " + "; ".join(parts)
        )
    keys = sorted(lq)
    return [lq[k] for k in keys], [gt[k] for k in keys]


def paired_dataset(
    lq_source,
    gt_source,
    *,
    scale=1,
    training=True,
    crop_size=None,
    batch_size=None,
    seed=0,
    augment=None,
    shuffle=None,
    repeat=None,
    drop_remainder=None,
    patches_per_image=1,
    cache=False,
    channels=3,
    key=None,
    recursive=False,
    validate=True,
    num_parallel_calls=AUTOTUNE,
    deterministic=True,
    prefetch=AUTOTUNE,
):
    """``(lq, gt)`` batches from real degraded/clean pairs in two folders (or file lists).

    Files are matched by name (see ``match_pairs``); the GT image must be ``scale`` times
    the LQ size (extra GT border pixels below one LQ pixel are cropped, as MATLAB's
    ``imresize`` output size is ``ceil``). Crops are taken at the same place in both
    images (``crop_size`` in GT pixels, a multiple of ``scale``) and the same
    flip/rot90 is applied to both. Other arguments as in ``image_dataset``.

    Example:
        >>> import tempfile
        >>> from tfrestore.data import write_default_images
        >>> gt_dir = write_default_images(tempfile.mkdtemp(), ["coffee"], max_size=48)
        >>> ds = paired_dataset(gt_dir, gt_dir, crop_size=16, batch_size=2)
        >>> lq, gt = next(iter(ds))
        >>> bool(tf.reduce_all(lq == gt)), lq.shape
        (True, TensorShape([2, 16, 16, 3]))
    """
    what = "paired_dataset"
    scale = _check_int(scale, "scale")
    crop_size = _check_int(crop_size, "crop_size")
    batch_size = _check_int(batch_size, "batch_size")
    patches_per_image = _check_int(patches_per_image, "patches_per_image")
    seed = int(seed)
    if crop_size is not None and crop_size % scale:
        raise ValueError(f"{what}: crop_size={crop_size} must be a multiple of scale={scale}.")
    lq_paths, gt_paths = match_pairs(
        list_images(lq_source, recursive=recursive),
        list_images(gt_source, recursive=recursive),
        scale=scale,
        key=key,
    )
    batch_size, augment, shuffle, repeat, drop_remainder = _resolve_mode(
        training, batch_size, augment, shuffle, repeat, drop_remainder
    )
    lq_crop = None if crop_size is None else crop_size // scale
    sizes = None
    wide = True  # unknown without validation (see _make_store)
    if validate:
        full = validate == "full"
        lq_sizes, lq_depths = _validate(
            lq_paths, min_size=(lq_crop, lq_crop) if lq_crop else None, full=full
        )
        gt_sizes, gt_depths = _validate(gt_paths, full=full)
        wide = any(d == 16 for d in lq_depths + gt_depths)
        for lp, gp, (lh, lw), (gh, gw) in zip(lq_paths, gt_paths, lq_sizes, gt_sizes):
            if not (lh * scale <= gh < (lh + 1) * scale and lw * scale <= gw < (lw + 1) * scale):
                raise ImageFileError(
                    f"{what}: GT file {gp!r} is {gh}x{gw} but LQ file {lp!r} is {lh}x{lw}; with "
                    f"scale={scale} the GT must be {lh * scale}x{lw * scale} "
                    f"(up to {scale - 1} extra pixels)"
                )
        sizes = lq_sizes
    if crop_size is None:
        _check_batchable(sizes, batch_size, what)
    kw = dict(
        channels=channels,
        validate=False,
        cache=cache,
        recursive=False,
        min_size=None,
        num_parallel_calls=num_parallel_calls,
        wide=wide,
    )
    lq_store = _make_store(lq_paths, **kw)
    gt_store = _make_store(gt_paths, **kw)
    crop_seed = tf.constant([seed, 2], tf.int64)

    def element(i, idx):
        s = tf.random.experimental.stateless_fold_in(crop_seed, i)
        s_crop, s_aug = tf.unstack(tf.random.experimental.stateless_split(s, 2))
        lq, gt = lq_store.get(idx), gt_store.get(idx)
        shape = tf.shape(lq)
        h, w = shape[0], shape[1]
        gt_shape = tf.shape(gt)
        size_ok = tf.debugging.Assert(
            tf.reduce_all(
                [
                    gt_shape[0] >= h * scale,
                    gt_shape[0] < (h + 1) * scale,
                    gt_shape[1] >= w * scale,
                    gt_shape[1] < (w + 1) * scale,
                ]
            ),
            [
                f"{what}: GT",
                gt_store.name(idx),
                "shape",
                gt_shape,
                "does not match LQ",
                lq_store.name(idx),
                "shape",
                shape,
                f"times scale {scale}",
            ],
        )
        with tf.control_dependencies([size_ok]):
            if lq_crop is not None:
                with tf.control_dependencies(
                    [_check_fits(lq_store, idx, lq, lq_crop, lq_crop, what)]
                ):
                    if training:
                        oy, ox = _random_offsets(s_crop, h, w, lq_crop, lq_crop)
                    else:
                        oy, ox = (h - lq_crop) // 2, (w - lq_crop) // 2
                    lq = lq[oy : oy + lq_crop, ox : ox + lq_crop]
                    gt = gt[
                        oy * scale : (oy + lq_crop) * scale, ox * scale : (ox + lq_crop) * scale
                    ]
                lq.set_shape([lq_crop, lq_crop, channels])
                gt.set_shape([crop_size, crop_size, channels])
            else:
                gt = gt[: h * scale, : w * scale]
        lq, gt = _to_float(lq), _to_float(gt)
        if augment:
            lq, gt = _augment([lq, gt], s_aug, allow_rot=crop_size is not None)
        return lq, gt

    ds = _index_stream(
        len(lq_paths), per_image=patches_per_image, shuffle=shuffle, repeat=repeat, seed=seed
    )
    ds = ds.map(element, num_parallel_calls=num_parallel_calls, deterministic=deterministic)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    if prefetch:
        ds = ds.prefetch(prefetch)
    return ds
