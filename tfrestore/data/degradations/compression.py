"""JPEG compression artefacts (runs on the CPU: TF has no GPU JPEG encoder)."""

from __future__ import annotations

import tensorflow as tf

from tfrestore.data.degradations import base

__all__ = ["jpeg_compress", "JPEG"]


def jpeg_compress(images, seed, *, quality=(30, 95), return_params=False):
    """JPEG compression artefacts (encode + decode at a random integer quality).

    Args:
        images: HWC or NHWC float in [0, 1] with 1 or 3 channels.
        seed: int or int tensor (2,). Stateless seed (only used to draw the quality).
        quality: int or (int, int). JPEG quality in [0, 100], fixed or ``(low, high)``
            (inclusive, per image).
        return_params: bool. Also return ``{"quality": int32}``.

    Runs on the CPU (TF's JPEG codec); use it in ``tf.data`` pipelines.

    Example:
        >>> x = tf.random.stateless_uniform((16, 16, 3), seed=[0, 0])
        >>> y = jpeg_compress(x, seed=0, quality=10)
        >>> y.shape, bool(tf.reduce_mean(tf.abs(y - x)) > 0.01)
        (TensorShape([16, 16, 3]), True)
    """
    fn = "jpeg_compress"
    x, single = base.as_batch(images, fn)
    lo, hi = base.check_range(quality, "quality", fn, low=0.0, high=100.0)
    if x.shape[-1] is not None and x.shape[-1] not in (1, 3):
        raise ValueError(f"{fn}: JPEG needs 1 or 3 channels, got shape {tuple(x.shape)}.")
    b = tf.shape(x)[0]
    q = tf.random.stateless_uniform([b], base.as_seed(seed), int(lo), int(hi) + 1, dtype=tf.int32)
    u8 = tf.cast(tf.clip_by_value(tf.round(x * 255.0), 0.0, 255.0), tf.uint8)

    def one(args):
        img, qual = args
        enc = tf.raw_ops.EncodeJpegVariableQuality(images=img, quality=qual)
        return tf.io.decode_jpeg(enc, channels=img.shape[-1] or 0, dct_method="INTEGER_ACCURATE")

    dec = tf.map_fn(one, (u8, q), fn_output_signature=tf.TensorSpec(u8.shape[1:], tf.uint8))
    out = tf.cast(dec, x.dtype) / 255.0
    return base.finish(out, single, return_params, quality=q)


JPEG = base.function_wrapper(
    jpeg_compress, "jpeg", "JPEG", "``jpeg_compress`` as a configurable object."
)
