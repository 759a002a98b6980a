"""``tf.data`` pipelines producing ``(degraded, clean)`` batches for restoration training.

* ``image_dataset``: clean images (folder, file list, in-memory arrays or ``"default"``)
  -> random crops + flips/rot90 -> on-the-fly degradation (``tfrestore.data.degradations``)
  -> batched, prefetched ``(degraded, clean)`` pairs. ``training=False`` gives the
  deterministic evaluation variant (no shuffling/augmentation, full images or centre
  crops, single pass).
* ``paired_dataset``: real LQ/GT pairs from two folders matched by file name
  (super-resolution ``scale`` supported), with paired crops and identical augmentation.

Both share one pipeline (:mod:`tfrestore.data.pipeline`, which also documents how a
seed fixes every random choice) and its options (:class:`DatasetOptions`, passed as
keyword arguments). Degradations run on whole batches (vectorised) after the crops
are batched. A degradation that returns a tuple (e.g.
``GaussianNoise(sigma_map=True)`` -> ``(noisy, sigma_map)``) yields elements
``((noisy, sigma_map), clean)``, which a two-input Keras model consumes directly.
"""

from __future__ import annotations

from tfrestore.data.degradations import get_degradation
from tfrestore.data.pipeline import build_pipeline, check_int, resolve_options
from tfrestore.data.sources import image_store, paired_stores

__all__ = ["image_dataset", "paired_dataset"]


def image_dataset(source, degradation=None, *, modcrop=None, options=None, **kwargs):
    """``(degraded, clean)`` batches from clean images with on-the-fly degradation.

    Args:
        source: str, list of str or list of arrays. A folder, a glob pattern, a list of
            image files, a list of HWC arrays (uint8, uint16 or float in [0, 1]) or
            ``"default"`` (``tfrestore.data.default_images()``).
        degradation: callable, dict, str or None. A ``tfrestore.data.degradations``
            object, a config dict / name for ``get_degradation``, or any callable
            ``(images NHWC, seed) -> degraded``; None gives ``(clean, clean)``.
        modcrop: int or None. Crop full images to a multiple of this; None uses the
            degradation's ``scale``, so SR pairs have exact sizes.
        options: DatasetOptions or None. The pipeline options; ``**kwargs`` override its fields
            (``training``, ``crop_size``, ``batch_size``, ``seed``, ...).

    Returns:
        A ``tf.data.Dataset`` of ``(degraded, clean)`` float32 batches.

    Example:
        >>> from tfrestore.data import default_images, GaussianNoise
        >>> images = default_images(["chelsea"], max_size=64)
        >>> ds = image_dataset(images, GaussianNoise(25 / 255), crop_size=32, batch_size=4)
        >>> noisy, clean = next(iter(ds))
        >>> noisy.shape, clean.shape
        (TensorShape([4, 32, 32, 3]), TensorShape([4, 32, 32, 3]))
    """
    what = "image_dataset"
    opts = resolve_options(what, options, **kwargs)
    degrade = get_degradation(degradation)
    scale = int(getattr(degrade, "scale", 1) or 1)
    crop = opts.crop_size
    if crop is not None and crop % scale:
        raise ValueError(
            f"{what}: crop_size={crop} must be a multiple of the degradation's scale ({scale})."
        )
    store = image_store(source, opts, min_size=(crop, crop) if crop else None)
    return build_pipeline(
        [store],
        opts,
        what=what,
        crop=crop,
        modcrop=check_int(modcrop, "modcrop") or scale,
        degradation=degrade,
    )


def paired_dataset(lq_source, gt_source, *, scale=1, key=None, options=None, **kwargs):
    """``(lq, gt)`` batches from real degraded/clean pairs in two folders (or file lists).

    Files are matched by name (``match_pairs``, with ``key``); the GT image must be
    ``scale`` times the LQ size (extra GT border pixels below one LQ pixel are cropped,
    as MATLAB's ``imresize`` output size is ``ceil``). Crops are taken at the same place
    in both images (``crop_size`` in GT pixels, a multiple of ``scale``) and the same
    flip/rot90 is applied to both. ``options`` / ``**kwargs``: as in ``image_dataset``.

    Example:
        >>> import tempfile
        >>> import tensorflow as tf
        >>> from tfrestore.data import write_default_images
        >>> gt_dir = write_default_images(tempfile.mkdtemp(), ["coffee"], max_size=48)
        >>> ds = paired_dataset(gt_dir, gt_dir, crop_size=16, batch_size=2)
        >>> lq, gt = next(iter(ds))
        >>> bool(tf.reduce_all(lq == gt)), lq.shape
        (True, TensorShape([2, 16, 16, 3]))
    """
    what = "paired_dataset"
    scale = check_int(scale, "scale")
    opts = resolve_options(what, options, **kwargs)
    crop = opts.crop_size
    if crop is not None and crop % scale:
        raise ValueError(f"{what}: crop_size={crop} must be a multiple of scale={scale}.")
    lq_crop = None if crop is None else crop // scale
    stores = paired_stores(
        lq_source,
        gt_source,
        opts,
        scale=scale,
        key=key,
        lq_min_size=(lq_crop, lq_crop) if lq_crop else None,
    )
    return build_pipeline(stores, opts, what=what, crop=lq_crop, scales=(1, scale))
