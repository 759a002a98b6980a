"""SSIM and MS-SSIM: per-image functions and streaming Keras metrics.

Both are implemented explicitly with TensorFlow ops (separable Gaussian depthwise
convolutions, ``VALID`` borders) so that every convention is fixed and gradients are
exact:

* Gaussian window ``filter_size=11``, ``filter_sigma=1.5`` (MATLAB
  ``fspecial('gaussian', 11, 1.5)``), constants ``K1=0.01``, ``K2=0.03``,
  ``C1=(K1 L)^2``, ``C2=(K2 L)^2`` with ``L = data_range``; population (biased) local
  variances; the SSIM map is averaged over the ``VALID`` region (no padding), as in
  Wang et al.'s ``ssim.m`` and scikit-image with ``gaussian_weights=True,
  sigma=1.5, use_sample_covariance=False``.
* RGB images (``color="rgb"``): SSIM is the mean of the per-channel maps; MS-SSIM is
  computed per channel and then averaged. ``color="y"``/``"gray"`` measure one luma
  channel (see :mod:`tfrestore.metrics`).
* ``downsample=True`` (SSIM only) applies the automatic pre-filter of the original
  ``ssim.m``: factor ``f = max(1, round(min(H, W) / 256))``, ``f x f`` box filter with
  symmetric borders, keep every ``f``-th pixel.
* MS-SSIM: 5 scales with power factors ``(0.0448, 0.2856, 0.3001, 0.2363, 0.1333)``; between
  scales a 2x2 box filter with symmetric borders keeps every second pixel (``msssim.m``;
  for even sizes exactly 2x2 average pooling). Contrast-structure terms ``cs_j`` of
  scales 1..4 and the full SSIM of scale 5 are combined either as the standard product
  ``prod_j cs_j^w_j * ssim_5^w_5`` (``combine="product"``, Wang et al. 2003,
  ``tf.image.ssim_multiscale``, pytorch-msssim) or as the normalised weighted sum
  ``sum_j w_j cs_j / sum(w)`` (``combine="sum"``, pyiqa's ``is_prod=False``).
  Negative per-scale means (possible for strongly distorted coarse scales) are clamped
  to 0 (the ReLU of pytorch-msssim / ``tf.image.ssim_multiscale``); the power is written
  so that its gradient stays finite at the clamp.
* MS-SSIM needs ``min(H, W) >= (filter_size - 1) * 2**(scales - 1) + 1`` (161 for the
  defaults); smaller images raise a ``ValueError`` naming the minimum.

Published-number parity (pyiqa / TID2013 calibration, ``results_official.csv``):
the ``ssim`` row is ``ssim(color="gray", quantize=True)`` (MATLAB ``rgb2gray`` on the
8-bit images, no automatic downsampling), reproduced to < 5e-5; the ``ms_ssim`` row is
``ms_ssim(color="gray", quantize=True, combine="sum")`` (< 5e-5). The standard product
form differs from that row by up to 4.4e-3 on the two strongly distorted pairs. The
remaining residuals are the 4-decimal rounding of the published values.
"""

from __future__ import annotations

import numbers

import keras
import numpy as np
import tensorflow as tf

from tfrestore.utils import validation
from tfrestore.metrics import _image

__all__ = ["ssim", "ms_ssim", "SSIM", "MSSSIM", "MS_SSIM_WEIGHTS", "ms_ssim_min_size"]

#: Wang, Simoncelli & Bovik (2003) per-scale exponents (``power_factors``), finest scale first.
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
_COMBINE = ("product", "sum")


# ------------------------------------------------------------------ options
def _check_filter(filter_size, filter_sigma, k1, k2, owner):
    if (
        isinstance(filter_size, bool)
        or not isinstance(filter_size, numbers.Integral)
        or filter_size < 1
    ):
        raise ValueError(f"{owner}: `filter_size` must be a positive integer, got {filter_size!r}.")
    for arg, v in (("filter_sigma", filter_sigma), ("k1", k1), ("k2", k2)):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not v > 0:
            raise ValueError(f"{owner}: `{arg}` must be a positive number, got {v!r}.")
    return int(filter_size), float(filter_sigma), float(k1), float(k2)


#: MS-SSIM's former argument name for ``power_factors`` (refused; old configs map it)
_MS_RENAMED = {"weights": "power_factors"}


def _check_ms_options(power_factors, combine, owner):
    try:
        power_factors = tuple(float(w) for w in power_factors)
    except TypeError:
        power_factors = ()
    if not power_factors or any(not w > 0 for w in power_factors):
        raise ValueError(
            f"{owner}: `power_factors` must be a non-empty sequence of positive per-scale "
            f"exponents (finest first), e.g. {MS_SSIM_WEIGHTS}."
        )
    if combine not in _COMBINE:
        raise ValueError(f"{owner}: `combine` must be one of {_COMBINE}, got {combine!r}.")
    return power_factors, combine


class _WindowOptions:
    """The window/constant options (and MS-SSIM's scale options) of the SSIM and MS-SSIM
    metrics and losses, checked once and returned as keyword arguments."""

    def _set_window(self, filter_size, filter_sigma, k1, k2, owner):
        self.filter_size, self.filter_sigma, self.k1, self.k2 = _check_filter(
            filter_size, filter_sigma, k1, k2, owner
        )

    def _window_options(self):
        return {
            "filter_size": self.filter_size, "filter_sigma": self.filter_sigma,
            "k1": self.k1, "k2": self.k2,
        }

    def _set_scales(self, power_factors, combine, owner):
        self.power_factors, self.combine = _check_ms_options(power_factors, combine, owner)

    def _scale_options(self):
        return {"power_factors": list(self.power_factors), "combine": self.combine}


def ms_ssim_min_size(filter_size=11, scales=5):
    """Smallest image side MS-SSIM accepts: ``(filter_size - 1) * 2**(scales - 1) + 1``.

    >>> from tfrestore.metrics import ms_ssim_min_size
    >>> ms_ssim_min_size()
    161
    """
    return (filter_size - 1) * 2 ** (scales - 1) + 1


# --------------------------------------------------------------------- core
def _gaussian_1d(size, sigma):
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x**2) / (2.0 * sigma**2))
    return g / g.sum()


def _gaussian_filter_valid(x, window):
    """Separable Gaussian filter of every channel, ``VALID`` borders."""
    channels = x.shape[-1]
    if channels is None:
        raise ValueError("SSIM needs a static number of channels (last axis of the NHWC input).")
    size = len(window)
    g = tf.constant(window, x.dtype)
    kh = tf.tile(tf.reshape(g, [size, 1, 1, 1]), [1, 1, channels, 1])
    kw = tf.tile(tf.reshape(g, [1, size, 1, 1]), [1, 1, channels, 1])
    x = tf.nn.depthwise_conv2d(x, kh, strides=[1, 1, 1, 1], padding="VALID")
    return tf.nn.depthwise_conv2d(x, kw, strides=[1, 1, 1, 1], padding="VALID")


def _ssim_and_cs(x, y, data_range, window, k1, k2):
    """Per-channel mean SSIM and contrast-structure term, each shape ``(B, C)``."""
    c1 = tf.constant((k1 * data_range) ** 2, x.dtype)
    c2 = tf.constant((k2 * data_range) ** 2, x.dtype)
    stats = _gaussian_filter_valid(tf.concat([x, y, x * x, y * y, x * y], axis=-1), window)
    mu_x, mu_y, e_xx, e_yy, e_xy = tf.split(stats, 5, axis=-1)
    mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    var_x, var_y, cov = e_xx - mu_xx, e_yy - mu_yy, e_xy - mu_xy
    cs_map = (2.0 * cov + c2) / (var_x + var_y + c2)
    luminance = (2.0 * mu_xy + c1) / (mu_xx + mu_yy + c1)
    return (
        tf.reduce_mean(luminance * cs_map, axis=[1, 2]),
        tf.reduce_mean(cs_map, axis=[1, 2]),
    )


def _box_downsample(x, factor):
    """MATLAB ``imfilter(x, ones(f)/f^2, 'symmetric', 'same')`` then ``x(1:f:end, 1:f:end)``."""
    before = (factor + 1) // 2 - 1
    after = factor - 1 - before
    x = tf.pad(x, [[0, 0], [before, after], [before, after], [0, 0]], mode="SYMMETRIC")
    return tf.nn.avg_pool2d(x, factor, factor, "VALID")


def _auto_factor(x, owner):
    h, w = validation.static_hw(
        x,
        f"{owner}: downsample=True",
        "the factor max(1, round(min(H, W) / 256)) is chosen from them.",
    )
    return max(1, int(np.floor(min(h, w) / 256.0 + 0.5)))


def _check_min_side(y_true, y_pred, min_side, what, owner, crop_border):
    cropped = f" after cropping {crop_border} px from every border" if crop_border else ""
    for arg, t in (("y_true", y_true), ("y_pred", y_pred)):
        h, w = t.shape[1], t.shape[2]
        if (h is not None and h < min_side) or (w is not None and w < min_side):
            raise ValueError(
                f"{owner}: `{arg}` is {h}x{w} pixels{cropped}, smaller than {what}: height "
                f"and width must be at least {min_side}. Use larger images or crops."
            )
    if None in (y_pred.shape[1], y_pred.shape[2]) and not tf.executing_eagerly():
        with tf.control_dependencies(
            [
                tf.debugging.assert_greater_equal(
                    tf.reduce_min(tf.shape(y_pred)[1:3]), min_side,
                    message=f"{owner}: `y_pred` is smaller than {what}: height and width "
                    f"must be at least {min_side}",
                )
            ]
        ):
            y_pred = tf.identity(y_pred)
    return y_true, y_pred


def _ssim_prepared(y_true, y_pred, data_range, downsample, filter_size, filter_sigma, k1, k2,
                   owner="ssim", crop_border=0):
    factor = _auto_factor(y_pred, owner) if downsample else 1
    min_side = (filter_size - 1) * factor + 1
    what = f"the SSIM window ({filter_size} px" + (
        f" after downsampling by {factor})" if factor > 1 else ")"
    )
    y_true, y_pred = _check_min_side(y_true, y_pred, min_side, what, owner, crop_border)
    if factor > 1:
        y_true, y_pred = _box_downsample(y_true, factor), _box_downsample(y_pred, factor)
    window = _gaussian_1d(filter_size, filter_sigma)
    s, _ = _ssim_and_cs(y_true, y_pred, data_range, window, k1, k2)
    return tf.reduce_mean(s, axis=-1)


def _clamped_power(v, w):
    """``max(v, 0) ** w`` with a finite (zero) gradient where ``v <= 0``."""
    positive = v > 0
    safe = tf.where(positive, v, tf.ones_like(v))
    return tf.where(positive, tf.pow(safe, w), tf.zeros_like(v))


def _ms_ssim_prepared(y_true, y_pred, data_range, power_factors, combine, filter_size,
                      filter_sigma, k1, k2, owner="ms_ssim", crop_border=0):
    scales = len(power_factors)
    min_side = ms_ssim_min_size(filter_size, scales)
    what = (
        f"the MS-SSIM minimum for {scales} scales with a {filter_size}-px window "
        f"(({filter_size} - 1) * 2**{scales - 1} + 1 = {min_side})"
    )
    y_true, y_pred = _check_min_side(y_true, y_pred, min_side, what, owner, crop_border)
    window = _gaussian_1d(filter_size, filter_sigma)
    terms = []
    for scale in range(scales):
        s, cs = _ssim_and_cs(y_true, y_pred, data_range, window, k1, k2)
        if scale < scales - 1:
            terms.append(cs)
            y_true, y_pred = _box_downsample(y_true, 2), _box_downsample(y_pred, 2)
        else:
            terms.append(s)
    values = tf.stack(terms, axis=0)  # (scales, B, C)
    w = tf.reshape(tf.constant(power_factors, values.dtype), [scales, 1, 1])
    if combine == "product":
        per_channel = tf.reduce_prod(_clamped_power(values, w), axis=0)
    else:
        per_channel = tf.reduce_sum(tf.nn.relu(values) * w, axis=0) / tf.reduce_sum(w)
    return tf.reduce_mean(per_channel, axis=-1)


# ------------------------------------------------------------------ public
def ssim(
    y_true, y_pred, data_range=1.0, color="rgb", crop_border=0, quantize=False, downsample=False,
    filter_size=11, filter_sigma=1.5, k1=0.01, k2=0.03,
):
    """Mean structural similarity (Wang et al. 2004) of each image pair, shape ``(B,)``.

    Args:
        y_true, y_pred: float NHWC batches of the same shape with values in
            ``[0, data_range]``; height and width at least ``filter_size``.
        data_range: float. Peak value (1.0 for [0, 1] images, 255.0 for [0, 255]).
        color: ``"rgb"`` (mean over channels), ``"y"`` (BT.601 luma, BasicSR
            ``test_y_channel``) or ``"gray"`` (MATLAB ``rgb2gray``).
        crop_border: int. Pixels removed from every border first (SR convention).
        quantize: bool. Clip and round to 8 bits first (evaluating saved images).
        downsample: bool. Apply the automatic ``max(1, round(min(H, W) / 256))``
            pre-filter of the original ``ssim.m``.
        filter_size, filter_sigma, k1, k2: int, float, float, float. Gaussian window
            size and sigma, and the stabilising constants.

    >>> import numpy as np
    >>> from tfrestore.metrics import ssim
    >>> rng = np.random.default_rng(0)
    >>> y = rng.uniform(size=(2, 16, 16, 3)).astype("float32")
    >>> ssim(y, y).numpy()
    array([1., 1.], dtype=float32)
    >>> bool(ssim(y, 0.5 * y)[0] < 1.0)
    True
    """
    data_range = _image.check_data_range(data_range, "ssim")
    color = _image.check_color(color, "ssim")
    crop_border = _image.check_crop_border(crop_border, "ssim")
    filter_size, filter_sigma, k1, k2 = _check_filter(filter_size, filter_sigma, k1, k2, "ssim")
    y_true, y_pred = _image.prepare_pair(
        y_true, y_pred, data_range=data_range, color=color, crop_border=crop_border,
        quantize=quantize, owner="ssim",
    )
    return _ssim_prepared(
        y_true, y_pred, data_range, bool(downsample), filter_size, filter_sigma, k1, k2,
        owner="ssim", crop_border=crop_border,
    )


def ms_ssim(
    y_true, y_pred, data_range=1.0, color="rgb", crop_border=0, quantize=False,
    power_factors=MS_SSIM_WEIGHTS, combine="product", filter_size=11, filter_sigma=1.5,
    k1=0.01, k2=0.03, **kwargs,
):
    """Multi-scale SSIM (Wang, Simoncelli & Bovik 2003) of each image pair, shape ``(B,)``.

    Args:
        y_true, y_pred: float NHWC batches of the same shape with values in
            ``[0, data_range]``; height and width at least
            :func:`ms_ssim_min_size` (161 for the defaults).
        data_range, color, crop_border, quantize: float, str, int, bool. As in
            :func:`ssim`.
        power_factors: sequence of float. Per-scale exponents, finest first; their count
            is the number of scales (the name ``tf.image.ssim_multiscale`` uses; formerly
            ``weights``, which now raises ``TypeError``).
        combine: ``"product"`` (standard definition) or ``"sum"`` (normalised
            weighted sum, the convention of the pyiqa/TID2013 calibration values).
        filter_size, filter_sigma, k1, k2: int, float, float, float. As in :func:`ssim`.

    >>> import numpy as np
    >>> from tfrestore.metrics import ms_ssim
    >>> y = np.random.default_rng(0).uniform(size=(1, 161, 161, 1)).astype("float32")
    >>> ms_ssim(y, y).numpy()
    array([1.], dtype=float32)
    >>> ms_ssim(y[:, :160], y[:, :160])
    Traceback (most recent call last):
    ...
    ValueError: ms_ssim: `y_true` is 160x161 pixels, smaller than the MS-SSIM minimum ...
    """
    validation.refuse_renamed(kwargs, _MS_RENAMED, "ms_ssim", allow_other=False)
    data_range = _image.check_data_range(data_range, "ms_ssim")
    color = _image.check_color(color, "ms_ssim")
    crop_border = _image.check_crop_border(crop_border, "ms_ssim")
    filter_size, filter_sigma, k1, k2 = _check_filter(filter_size, filter_sigma, k1, k2, "ms_ssim")
    power_factors, combine = _check_ms_options(power_factors, combine, "ms_ssim")
    y_true, y_pred = _image.prepare_pair(
        y_true, y_pred, data_range=data_range, color=color, crop_border=crop_border,
        quantize=quantize, owner="ms_ssim",
    )
    return _ms_ssim_prepared(
        y_true, y_pred, data_range, power_factors, combine, filter_size, filter_sigma, k1,
        k2, owner="ms_ssim", crop_border=crop_border,
    )


# ------------------------------------------------------------------ metrics
@keras.saving.register_keras_serializable(package="tfrestore")
class SSIM(_WindowOptions, _image.MeanImageMetric):
    """Streaming mean SSIM over images, for ``model.compile(metrics=[SSIM()])``.

    Arguments as in :func:`ssim`; see :class:`tfrestore.metrics._image.MeanImageMetric`.
    The options are the config:

    >>> from tfrestore.metrics import SSIM
    >>> m = SSIM(color="y", crop_border=4, name="ssim_y")
    >>> again = SSIM.from_config(m.get_config())
    >>> again.name, again.color, again.crop_border, again.filter_size
    ('ssim_y', 'y', 4, 11)
    """

    metric_fn = staticmethod(ssim)

    def __init__(
        self, data_range=1.0, color="rgb", crop_border=0, quantize=False, downsample=False,
        filter_size=11, filter_sigma=1.5, k1=0.01, k2=0.03, name="ssim", dtype=None,
    ):
        super().__init__(data_range, color, crop_border, quantize, name=name, dtype=dtype)
        self.downsample = bool(downsample)
        self._set_window(filter_size, filter_sigma, k1, k2, "SSIM")

    def options(self):
        return {**super().options(), "downsample": self.downsample, **self._window_options()}


@keras.saving.register_keras_serializable(package="tfrestore")
class MSSSIM(_WindowOptions, _image.MeanImageMetric):
    """Streaming mean MS-SSIM over images, for ``model.compile(metrics=[MSSSIM()])``.

    Arguments as in :func:`ms_ssim`; images must be at least 161x161 with the defaults.

    >>> import numpy as np
    >>> from tfrestore.metrics import MSSSIM
    >>> m = MSSSIM()
    >>> y = np.random.default_rng(0).uniform(size=(1, 161, 161, 1)).astype("float32")
    >>> m.update_state(y, y)
    >>> float(m.result())
    1.0
    """

    metric_fn = staticmethod(ms_ssim)

    def __init__(
        self, data_range=1.0, color="rgb", crop_border=0, quantize=False,
        power_factors=MS_SSIM_WEIGHTS, combine="product", filter_size=11, filter_sigma=1.5,
        k1=0.01, k2=0.03, name="ms_ssim", dtype=None, **kwargs,
    ):
        validation.refuse_renamed(kwargs, _MS_RENAMED, "MSSSIM", allow_other=False)
        super().__init__(data_range, color, crop_border, quantize, name=name, dtype=dtype)
        self._set_scales(power_factors, combine, "MSSSIM")
        self._set_window(filter_size, filter_sigma, k1, k2, "MSSSIM")

    def options(self):
        return {**super().options(), **self._scale_options(), **self._window_options()}

    @classmethod
    def from_config(cls, config):
        # configs saved before the rename store the power factors as "weights"
        return super().from_config(validation.renamed_config(config, _MS_RENAMED))
