"""Peak signal-to-noise ratio: ``psnr`` (per image) and the streaming ``PSNR`` metric.

``PSNR = 10 log10(data_range**2 / MSE)`` with the MSE over height, width and channels
of each image (the convention of MATLAB ``psnr``, scikit-image, ``tf.image.psnr`` and
BasicSR; *not* the mean of per-channel PSNRs). Identical images give ``+inf``, as in
those references.

For published-number parity see the conventions in :mod:`tfrestore.metrics` (``color``,
``crop_border``, ``quantize``). The pyiqa/TID2013 calibration values (``psnr`` row of
``results_official.csv``) use ``color="rgb"`` on the 8-bit images; they are reproduced
to < 0.005 dB (the precision they are published with).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tfrestore.metrics import _image

__all__ = ["psnr", "PSNR"]


def psnr(y_true, y_pred, data_range=1.0, color="rgb", crop_border=0, quantize=False):
    """PSNR in dB of each image pair, shape ``(B,)``.

    Args:
        y_true, y_pred: float NHWC batches of the same shape with values in
            ``[0, data_range]``.
        data_range: float. Peak value (1.0 for [0, 1] images, 255.0 for [0, 255]).
        color: ``"rgb"`` (all channels), ``"y"`` (BT.601 luma, BasicSR
            ``test_y_channel``) or ``"gray"`` (MATLAB ``rgb2gray``).
        crop_border: int. Pixels removed from every border before measuring (SR
            convention).
        quantize: bool. Clip and round to 8 bits first (evaluating saved images).

    >>> import numpy as np
    >>> from tfrestore.metrics import psnr
    >>> y = np.zeros((2, 8, 8, 3), "float32")
    >>> p = y + np.array([0.1, 0.01], "float32")[:, None, None, None]
    >>> np.round(psnr(y, p).numpy(), 3)  # 10 log10(1 / 0.01), 10 log10(1 / 1e-4)
    array([20., 40.], dtype=float32)
    """
    data_range = _image.check_data_range(data_range, "psnr")
    color = _image.check_color(color, "psnr")
    crop_border = _image.check_crop_border(crop_border, "psnr")
    y_true, y_pred = _image.prepare_pair(
        y_true, y_pred, data_range=data_range, color=color, crop_border=crop_border,
        quantize=quantize, owner="psnr",
    )
    return _psnr_from_prepared(y_true, y_pred, data_range)


def _psnr_from_prepared(y_true, y_pred, data_range):
    mse = tf.reduce_mean(tf.math.squared_difference(y_true, y_pred), axis=[1, 2, 3])
    peak = tf.constant(data_range**2, mse.dtype)
    # log10 via natural log; mse == 0 gives +inf by IEEE division.
    return tf.constant(10.0 / np.log(10.0), mse.dtype) * tf.math.log(peak / mse)


@keras.saving.register_keras_serializable(package="tfrestore")
class PSNR(_image.MeanImageMetric):
    """Streaming mean PSNR (dB) over images, for ``model.compile(metrics=[PSNR()])``.

    Arguments as in :func:`psnr`; see :class:`tfrestore.metrics._image.MeanImageMetric`.

    >>> import numpy as np
    >>> from tfrestore.metrics import PSNR
    >>> m = PSNR(data_range=1.0)
    >>> y = np.zeros((1, 8, 8, 3), "float32")
    >>> m.update_state(y, y + 0.1); m.update_state(y, y + 0.01)
    >>> round(float(m.result()), 3)
    30.0
    """

    metric_fn = staticmethod(psnr)

    def __init__(
        self, data_range=1.0, color="rgb", crop_border=0, quantize=False, name="psnr", dtype=None
    ):
        super().__init__(data_range, color, crop_border, quantize, name=name, dtype=dtype)
