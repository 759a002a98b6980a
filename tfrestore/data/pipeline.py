"""The ``tf.data`` pipeline shared by ``image_dataset`` and ``paired_dataset``.

:class:`DatasetOptions` holds how images are read, cropped, augmented and batched;
``build_pipeline`` turns image stores (:mod:`tfrestore.data.sources`) into batches:
index stream -> per-element crop + flips/rot90 -> batch -> degradation -> prefetch.

Determinism: every random choice is a stateless op keyed by ``seed`` and the index
of the element (or batch) in the stream: the file order of epoch ``e`` is
``stateless_shuffle(seed, e)``, the crop/augmentation of element ``i`` uses
``fold_in([seed, 2], i)`` and the degradation of batch ``b`` uses
``fold_in([seed, 3], b)``. The same seed therefore yields identical batches run to
run, independent of ``num_parallel_calls`` and of the global TF seed; ``map`` runs
with ``deterministic=True`` by default so the order is fixed too.
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from tfrestore.data.sources import to_float

__all__ = ["DatasetOptions"]

AUTOTUNE = tf.data.AUTOTUNE


@dataclasses.dataclass
class DatasetOptions:
    """How ``image_dataset`` and ``paired_dataset`` read, crop, augment and batch images.

    Both take these fields as keyword arguments, or ``options=DatasetOptions(...)``
    (keyword arguments then override its fields).

    Attributes:
        training: True: shuffled, augmented, repeated forever, random crops.
            False: the deterministic evaluation variant (file order, no augmentation,
            one pass, centre crops or full images).
        crop_size: square crop side in clean (GT) pixels, None for full images. With a
            down-scaling degradation or ``scale`` it must be a multiple of the scale.
        batch_size: default 16 when training, 1 otherwise.
        seed: int; fixes file order, crops, augmentation and degradation
            (see :mod:`tfrestore.data.pipeline`).
        augment, shuffle, repeat, drop_remainder: override the ``training`` defaults.
            Augmentation is one of the 8 flips/rot90 transforms for square crops, and
            horizontal/vertical flips for full images; paired images get the same one.
        patches_per_image: crops taken from each image per epoch (pair with ``cache``).
        cache: decode every file once into memory instead of on every access.
        channels: 3 (RGB) or 1 (grey).
        recursive: search sub-folders.
        validate: read every file header (and last bytes) up front so an unreadable,
            unsupported, too small or truncated file fails here with an ``ImageFileError``
            naming it (cheap: only files whose end looks wrong are decoded); ``"full"``
            decodes every file up front (also finds damage inside a file); False skips it.
        num_parallel_calls, deterministic, prefetch: ``tf.data`` knobs.

    Example:
        >>> DatasetOptions(training=False).resolved().batch_size
        1
    """

    training: bool = True
    crop_size: int | None = None
    batch_size: int | None = None
    seed: int = 0
    augment: bool | None = None
    shuffle: bool | None = None
    repeat: bool | None = None
    drop_remainder: bool | None = None
    patches_per_image: int = 1
    cache: bool = False
    channels: int = 3
    recursive: bool = False
    validate: bool | str = True
    num_parallel_calls: int = AUTOTUNE
    deterministic: bool = True
    prefetch: int = AUTOTUNE

    def resolved(self):
        """A checked copy with the ``training`` defaults filled in."""
        if self.channels not in (1, 3):
            raise ValueError(f"`channels` must be 1 or 3, got {self.channels!r}.")
        training = bool(self.training)
        batch_size = check_int(self.batch_size, "batch_size")

        def mode(value):
            return training if value is None else bool(value)

        return dataclasses.replace(
            self,
            training=training,
            crop_size=check_int(self.crop_size, "crop_size"),
            batch_size=(16 if training else 1) if batch_size is None else batch_size,
            seed=int(self.seed),
            augment=mode(self.augment),
            shuffle=mode(self.shuffle),
            repeat=mode(self.repeat),
            drop_remainder=mode(self.drop_remainder),
            patches_per_image=check_int(self.patches_per_image, "patches_per_image"),
        )


def resolve_options(what, options=None, **overrides):
    """``options`` (a :class:`DatasetOptions`, default: all defaults) with ``overrides``,
    resolved."""
    if options is None:
        options = DatasetOptions()
    elif not isinstance(options, DatasetOptions):
        raise TypeError(
            f"{what}: `options` must be a tfrestore.data.DatasetOptions, got "
            f"{type(options).__name__}."
        )
    fields = sorted(f.name for f in dataclasses.fields(DatasetOptions))
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise TypeError(
            f"{what}() got unknown argument(s) {unknown}; the dataset options are {fields}."
        )
    return dataclasses.replace(options, **overrides).resolved()


def check_int(value, name, minimum=1):
    """``value`` as an int >= ``minimum`` (None passes through)."""
    if value is None:
        return None
    if int(value) != value or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def build_pipeline(stores, options, *, what, crop=None, scales=(1,), modcrop=1, degradation=None):
    """Batches of ``stores``' images (one store: tensors; several: tuples of tensors).

    ``stores[0]`` sets the geometry: ``crop`` is a square side on its pixel grid (None:
    full images cut to a multiple of ``modcrop``), and the image of ``stores[k]`` is
    ``scales[k]`` times as large (real super-resolution pairs), cut at the matching
    place. ``degradation(batch, seed)`` maps each batch to ``(degraded, batch)``.
    ``options`` must be resolved (:func:`resolve_options`).
    """
    if crop is None:
        sizes = stores[0].sizes
        if sizes is not None:
            sizes = [(h - h % modcrop, w - w % modcrop) for h, w in sizes]
        _check_batchable(sizes, options.batch_size, what)
    ds = _index_stream(
        stores[0].n,
        per_image=options.patches_per_image,
        shuffle=options.shuffle,
        repeat=options.repeat,
        seed=options.seed,
    )
    ds = ds.map(
        _element_fn(stores, scales, options, crop, modcrop, what),
        num_parallel_calls=options.num_parallel_calls,
        deterministic=options.deterministic,
    )
    ds = ds.batch(options.batch_size, drop_remainder=options.drop_remainder)
    if degradation is not None:
        deg_seed = tf.constant([options.seed, 3], tf.int64)

        def apply(b, clean):
            out = degradation(clean, tf.random.experimental.stateless_fold_in(deg_seed, b))
            out = tuple(out) if isinstance(out, (tuple, list)) else out
            return out, clean

        ds = ds.enumerate().map(
            apply,
            num_parallel_calls=options.num_parallel_calls,
            deterministic=options.deterministic,
        )
    if options.prefetch:
        ds = ds.prefetch(options.prefetch)
    return ds


def _element_fn(stores, scales, options, crop, modcrop, what):
    crop_seed = tf.constant([options.seed, 2], tf.int64)
    channels = options.channels

    def element(i, idx):
        s = tf.random.experimental.stateless_fold_in(crop_seed, i)
        s_crop, s_aug = tf.unstack(tf.random.experimental.stateless_split(s, 2))
        images = [store.get(idx) for store in stores]
        shape = tf.shape(images[0])
        h, w = shape[0], shape[1]
        size_checks = [
            _check_scaled(stores[0], store, idx, shape, tf.shape(img), scale, what)
            for store, img, scale in zip(stores[1:], images[1:], scales[1:])
        ]
        with tf.control_dependencies(size_checks):
            if crop is not None:
                with tf.control_dependencies(
                    [_check_fits(stores[0], idx, images[0], crop, crop, what)]
                ):
                    if options.training:
                        oy, ox = _random_offsets(s_crop, h, w, crop, crop)
                    else:
                        oy, ox = (h - crop) // 2, (w - crop) // 2
                    images = [
                        img[oy * f : (oy + crop) * f, ox * f : (ox + crop) * f]
                        for img, f in zip(images, scales)
                    ]
                for img, f in zip(images, scales):
                    img.set_shape([crop * f, crop * f, channels])
            else:
                hm, wm = h - h % modcrop, w - w % modcrop
                images = [img[: hm * f, : wm * f] for img, f in zip(images, scales)]
        images = [to_float(img) for img in images]
        if options.augment:
            images = _augment(images, s_aug, allow_rot=crop is not None)
        return images[0] if len(images) == 1 else tuple(images)

    return element


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


def _check_scaled(lq_store, gt_store, idx, lq_shape, gt_shape, scale, what):
    """In-graph twin of the paired size check (files may change after validation)."""
    h, w = lq_shape[0], lq_shape[1]
    return tf.debugging.Assert(
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
            lq_shape,
            f"times scale {scale}",
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


def _check_batchable(sizes, batch_size, what):
    if sizes is not None and batch_size > 1 and len(set(sizes)) > 1:
        raise ValueError(
            f"{what}: full images of different sizes ({len(set(sizes))} distinct sizes) cannot be "
            f"batched with batch_size={batch_size}; use batch_size=1 or set crop_size."
        )
