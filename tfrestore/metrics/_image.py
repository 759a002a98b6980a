"""Shared parts of full-reference metrics: validation, border crop, 8-bit rounding, colour,
and the streaming base class :class:`MeanImageMetric`.

Conventions (they decide whether numbers match published tables):

* ``color="rgb"``: every channel is used (PSNR: MSE over H, W, C; SSIM: mean of the
  per-channel maps). Any channel count is accepted.
* ``color="y"``: luma of ITU-R BT.601 YCbCr as MATLAB ``rgb2ycbcr`` and BasicSR's
  ``test_y_channel``: ``Y = 16/255 + (65.481 R + 128.553 G + 24.966 B) / 255`` for RGB
  in [0, 1] (scaled by ``data_range``), the usual super-resolution convention.
* ``color="gray"``: MATLAB ``rgb2gray`` (the Y of YIQ),
  ``0.298936 R + 0.587043 G + 0.114021 B``, as used by the original ``ssim.m`` /
  ``msssim.m`` evaluations and IQA toolboxes (pyiqa's ``test_y_channel``).
* ``quantize=True`` reproduces evaluating saved 8-bit images: inputs are clipped to
  ``[0, data_range]`` and rounded to the 256-level grid (half away from zero, as
  MATLAB), and the converted ``y``/``gray`` channel is rounded again, as MATLAB's
  ``rgb2gray``/``rgb2ycbcr`` do on ``uint8`` images. (BasicSR rounds the RGB image but
  not the Y channel; the difference is typically < 0.01 dB.) Rounding has no gradient:
  use it for evaluation only.
* ``crop_border=n`` removes ``n`` pixels from every border first (SR convention, BasicSR's
  ``crop_border``, usually the scale factor).

Images with one channel are used as they are for every ``color``.
"""

from __future__ import annotations

import numbers

import keras
import numpy as np
import tensorflow as tf

from tfrestore.utils import validation

COLORS = ("rgb", "y", "gray")

# MATLAB rgb2gray: first row of inv([1 .956 .621; 1 -.272 -.647; 1 -1.106 1.703]).
_GRAY = np.linalg.inv(
    np.array([[1.0, 0.956, 0.621], [1.0, -0.272, -0.647], [1.0, -1.106, 1.703]])
)[0]
_YCBCR_Y = np.array([65.481, 128.553, 24.966]) / 255.0
_YCBCR_OFFSET = 16.0 / 255.0


def check_data_range(data_range, owner):
    if (
        isinstance(data_range, bool)
        or not isinstance(data_range, numbers.Real)
        or not data_range > 0
    ):
        raise ValueError(
            f"{owner}: `data_range` must be a positive number (the maximum possible pixel "
            f"value, e.g. 1.0 for images in [0, 1] or 255.0 for [0, 255]), got {data_range!r}."
        )
    return float(data_range)


def check_color(color, owner):
    if color not in COLORS:
        raise ValueError(
            f"{owner}: `color` must be one of {COLORS} ('rgb': all channels, 'y': BT.601 "
            f"YCbCr luma as MATLAB/BasicSR, 'gray': MATLAB rgb2gray), got {color!r}."
        )
    return color


def check_crop_border(crop_border, owner):
    if (
        isinstance(crop_border, bool)
        or not isinstance(crop_border, numbers.Integral)
        or crop_border < 0
    ):
        raise ValueError(
            f"{owner}: `crop_border` must be a non-negative integer, got {crop_border!r}."
        )
    return int(crop_border)


def compute_dtype(dtype):
    """float64 stays float64; every other float type is evaluated in float32."""
    return tf.float64 if dtype == tf.float64 else tf.float32


def _quantize(x, data_range):
    scale = 255.0 / data_range
    return tf.floor(tf.clip_by_value(x * scale, 0.0, 255.0) + 0.5) / scale


def to_luma(x, color, data_range):
    """Convert an RGB batch to its ``"y"`` or ``"gray"`` channel (keeps rank 4)."""
    if color == "gray":
        coeffs = tf.constant(_GRAY, x.dtype)
        return tf.reduce_sum(x * coeffs, axis=-1, keepdims=True)
    coeffs = tf.constant(_YCBCR_Y, x.dtype)
    offset = tf.constant(_YCBCR_OFFSET * data_range, x.dtype)
    return tf.reduce_sum(x * coeffs, axis=-1, keepdims=True) + offset


def prepare_pair(
    y_true, y_pred, *, data_range, color="rgb", crop_border=0, quantize=False,
    check_finite=True, owner="metric",
):
    """Validate and preprocess ``(y_true, y_pred)``; returns two tensors in the compute dtype."""
    validation.check_raw_dtype(y_true, "y_true", owner)
    validation.check_raw_dtype(y_pred, "y_pred", owner)
    y_true, y_pred = validation.check_image_pair(
        y_true, y_pred, check_finite=check_finite, loss_name=owner
    )
    dtype = compute_dtype(y_pred.dtype)
    y_true, y_pred = tf.cast(y_true, dtype), tf.cast(y_pred, dtype)
    channels = y_pred.shape[-1]
    if color != "rgb" and channels not in (1, 3):
        raise ValueError(
            f"{owner}: color={color!r} needs RGB (3 channels) or single-channel images "
            f"(NHWC), but `y_pred` has shape {tuple(y_pred.shape)}."
        )
    if crop_border:
        n = crop_border
        h, w = y_pred.shape[1], y_pred.shape[2]
        if (h is not None and h <= 2 * n) or (w is not None and w <= 2 * n):
            raise ValueError(
                f"{owner}: `crop_border`={n} removes the whole {h}x{w} image; `y_true` and "
                f"`y_pred` must be larger than {2 * n}x{2 * n} pixels."
            )
        y_true = y_true[:, n:-n, n:-n, :]
        y_pred = y_pred[:, n:-n, n:-n, :]
    if quantize:
        y_true, y_pred = _quantize(y_true, data_range), _quantize(y_pred, data_range)
    if color != "rgb" and channels == 3:
        y_true, y_pred = to_luma(y_true, color, data_range), to_luma(y_pred, color, data_range)
        if quantize:
            y_true, y_pred = _quantize(y_true, data_range), _quantize(y_pred, data_range)
    return y_true, y_pred


class MeanImageMetric(keras.metrics.Mean):
    """Streaming mean over images of a per-image metric ``metric_fn(y_true, y_pred, **options)``.

    Each image counts once (``sample_weight``, if given, weights images). Subclasses set
    ``metric_fn`` and extend :meth:`options` with their own arguments; the options are
    also the config.
    """

    metric_fn = None

    def __init__(self, data_range=1.0, color="rgb", crop_border=0, quantize=False, *, name,
                 dtype=None):
        super().__init__(name=name, dtype=dtype)
        owner = type(self).__name__
        self.data_range = check_data_range(data_range, owner)
        self.color = check_color(color, owner)
        self.crop_border = check_crop_border(crop_border, owner)
        self.quantize = bool(quantize)

    def options(self):
        """The keyword arguments passed to ``metric_fn``."""
        return {
            "data_range": self.data_range,
            "color": self.color,
            "crop_border": self.crop_border,
            "quantize": self.quantize,
        }

    def update_state(self, y_true, y_pred, sample_weight=None):
        values = self.metric_fn(y_true, y_pred, **self.options())
        return super().update_state(values, sample_weight=sample_weight)

    def get_config(self):
        return {**super().get_config(), **self.options()}
