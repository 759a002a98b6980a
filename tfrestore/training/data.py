"""Config ``data`` section -> ``tfrestore.data`` pipelines.

Image sources are ``"default"`` (the photographs embedded in scikit-image, see
:func:`tfrestore.data.default_images`), a folder or a glob (``$VARS`` and ``~``
expanded). The five default photographs are split as
:data:`tfrestore.data.DEFAULT_SPLITS`: three for training, the other two held out (used
both for validation and for the final report, as only five are embedded). ``split`` is
ignored for folders.
The degradation is :func:`tfrestore.data.build_degradation` of ``data.degradation``, built
once per run (:func:`build_degradation`) and shared by training, validation and the report.
Every function takes the run's :class:`~tfrestore.training.run_config.RunConfig`.

Resuming: the training stream is deterministic (stateless ops keyed by the seed
and the element index, see :mod:`tfrestore.data.pipeline`), so a resumed run
skips the batches already consumed and sees exactly the data an uninterrupted
run would.
"""

from __future__ import annotations

import os

import numpy as np

from tfrestore.training.schema import ConfigError

__all__ = [
    "build_degradation",
    "source_images",
    "train_dataset",
    "val_dataset",
    "held_out_images",
    "find_damaged_image",
]


def _data():
    import tfrestore.data as data

    return data


def build_degradation(rc):
    """The degradation of ``data.degradation`` of the run ``rc`` (built once per run: the
    training stream, the validation batches and the report share it)."""
    deg = rc.data.degradation
    try:
        return _data().build_degradation({"type": deg.type, "args": deg.args})
    except ValueError as e:  # the message names the key; train()'s callers catch ConfigError
        raise ConfigError(str(e)) from e


def source_images(section, path, channels=3):
    """The image list of a ``data.train``/``val``/``test`` section (an
    :class:`~tfrestore.training.run_config.Images`): arrays for ``"default"``, file paths
    otherwise; and their names."""
    data = _data()
    limit = section.max_images
    if section.source == "default":
        if section.split not in data.DEFAULT_SPLITS:
            raise ConfigError(
                f"config key '{path}.split' must be one of {', '.join(data.DEFAULT_SPLITS)} "
                f"for the default images; got {section.split!r}"
            )
        names = data.DEFAULT_SPLITS[section.split]
        names = list(data.DEFAULT_IMAGE_NAMES if names is None else names)
        if limit:
            names = names[:limit]
        images = data.default_images(names)
        if channels == 1:
            w = np.array([0.2989, 0.5870, 0.1140], np.float32)
            images = [(im @ w)[..., None] for im in images]
        return images, names
    from tfrestore.training.config import expand_path

    expanded = expand_path(section.source, f"{path}.source")
    try:
        paths = data.list_images(expanded)
    except Exception as e:  # ImageFileError and friends: name the key
        raise ConfigError(f"config key '{path}.source' ({section.source!r}): {e}") from e
    if limit:
        paths = paths[:limit]
    return paths, [os.path.splitext(os.path.basename(p))[0] for p in paths]


def _image_dataset(images, degradation, what, channels, **options):
    try:
        return _data().image_dataset(images, degradation, channels=channels, **options)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"config section {what}: {e}") from e


def train_dataset(rc, degradation, skip_batches=0):
    """Infinite, deterministic ``(degraded, clean)`` training batches of the run ``rc``
    (seed ``rc.seed``), the first ``skip_batches`` left out (a resumed run's)."""
    d = rc.data
    images, _ = source_images(d.train, "data.train", d.channels)
    ds = _image_dataset(
        images, degradation, "'data' (training images)", d.channels, training=True,
        crop_size=d.crop_size, batch_size=d.batch_size, seed=rc.seed, augment=d.augment,
    )
    if skip_batches:
        ds = ds.skip(int(skip_batches))
    return ds


def val_dataset(rc, degradation):
    """Finite validation batches of the run ``rc`` with a fixed degradation (seed + 1)."""
    import tensorflow as tf

    d = rc.data
    images, _ = source_images(d.val, "data.val", d.channels)
    ds = _image_dataset(
        images, degradation, "'data.val'", d.channels, training=False,
        crop_size=d.val.crop_size, batch_size=d.val.batch_size, seed=rc.seed + 1,
    )
    # Known length: Keras then neither warns "ran out of data" nor needs validation_steps.
    n_batches = -(-len(images) // d.val.batch_size)
    return ds.apply(tf.data.experimental.assert_cardinality(n_batches))


def _centre_crop(img, crop_size, multiple):
    h, w = img.shape[:2]
    th = min(h, crop_size or h)
    tw = min(w, crop_size or w)
    th -= th % multiple
    tw -= tw % multiple
    y, x = (h - th) // 2, (w - tw) // 2
    return img[y : y + th, x : x + tw]


def held_out_images(rc, multiple=1):
    """``[(name, clean HWC float32)]`` for the final report of the run ``rc`` (centre-cropped
    to ``data.test.crop_size`` and to a multiple of ``multiple``, e.g. the SR scale)."""
    data = _data()
    d = rc.data
    images, names = source_images(d.test, "data.test", d.channels)
    out = []
    for name, img in zip(names, images):
        if isinstance(img, str):
            img = data.read_image(img, channels=d.channels)
        out.append((name, _centre_crop(np.asarray(img, np.float32), d.test.crop_size, multiple)))
    return out


def find_damaged_image(rc, error):
    """After ``model.fit`` failed with a TensorFlow decode error (which names no file),
    decode every training/validation file to find the culprit.

    Validation before training only decodes files whose end looks wrong (cheap); damage
    inside a file shows up here, where the full scan costs nothing unless training failed.
    Returns an ``ImageFileError`` naming the file (``None`` if ``error`` is not a decode
    error, or no file fails).
    """
    text = str(getattr(error, "message", error))
    if not any(w in text for w in ("PNG", "JPEG", "GIF", "BMP", "WebP", "decode", "image")):
        return None
    data = _data()
    for key in ("train", "val"):
        section = getattr(rc.data, key)
        if section.source == "default":
            continue
        try:
            paths, _ = source_images(section, f"data.{key}", rc.data.channels)
            data.io.validate_images(paths, full=True)
        except data.ImageFileError as e:
            return data.ImageFileError(
                f"training stopped on a damaged image (config key 'data.{key}.source'): {e}; "
                "remove or replace the file"
            )
        except ConfigError:
            continue
    return None

