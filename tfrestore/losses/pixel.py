"""Pixel losses: L1, MSE and Charbonnier, with BasicSR's uniform ``loss_weight``."""

from __future__ import annotations

import keras
import tensorflow as tf

from tfrestore.losses.base import RestorationLoss

__all__ = ["L1", "MSE", "Charbonnier"]


class _PixelLoss(RestorationLoss):
    """``mean(penalty(y_pred - y_true))`` over H, W, C per image; subclasses define ``penalty``."""

    #: scale-free (a 0..255 pair only scales the value): no range check
    data_range = None

    def compute(self, y_true, y_pred):
        return tf.reduce_mean(self.penalty(y_pred - y_true), axis=[1, 2, 3])


@keras.saving.register_keras_serializable(package="tfrestore")
class L1(_PixelLoss):
    """Mean absolute error per image: ``mean(|y_pred - y_true|)`` over H, W, C.

    >>> import numpy as np
    >>> from tfrestore.losses import L1
    >>> y = np.zeros((2, 4, 4, 3), "float32")
    >>> L1(reduction=None)(y, y + 0.25).numpy().tolist()
    [0.25, 0.25]
    """

    def __init__(self, name="l1", **kwargs):
        super().__init__(name=name, **kwargs)

    def penalty(self, d):
        return tf.abs(d)


@keras.saving.register_keras_serializable(package="tfrestore")
class MSE(_PixelLoss):
    """Mean squared error per image: ``mean((y_pred - y_true)**2)`` over H, W, C.

    >>> import numpy as np
    >>> from tfrestore.losses import MSE
    >>> y = np.zeros((1, 4, 4, 3), "float32")
    >>> float(MSE()(y, y + 0.5))
    0.25
    """

    def __init__(self, name="mse", **kwargs):
        super().__init__(name=name, **kwargs)

    def penalty(self, d):
        return tf.square(d)


@keras.saving.register_keras_serializable(package="tfrestore")
class Charbonnier(_PixelLoss):
    """Charbonnier (smooth L1) loss: ``mean(sqrt((y_pred - y_true)**2 + eps**2))``.

    Args:
        eps: float. Smoothing constant (default 1e-3, as in LapSRN/BasicSR).

    >>> import numpy as np
    >>> from tfrestore.losses import Charbonnier
    >>> y = np.zeros((1, 4, 4, 3), "float32")
    >>> round(float(Charbonnier(eps=1e-3)(y, y + 0.3)), 5)
    0.3
    """

    def __init__(self, eps=1e-3, name="charbonnier", **kwargs):
        super().__init__(name=name, **kwargs)
        if not eps > 0:
            raise ValueError(f"`eps` must be > 0, got {eps!r}.")
        self.eps = float(eps)

    def penalty(self, d):
        return tf.sqrt(tf.square(d) + self.eps**2)

    def get_config(self):
        return {**super().get_config(), "eps": self.eps}
