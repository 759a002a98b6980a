"""Structural-similarity losses: ``SSIMLoss = 1 - SSIM``, ``MSSSIMLoss = 1 - MS-SSIM``.

Both use the explicit TensorFlow implementation of :mod:`tfrestore.metrics.ssim`
(Gaussian window 11 / sigma 1.5, K1 = 0.01, K2 = 0.03, ``VALID`` borders), so the
loss equals one minus the reported metric. MS-SSIM clamps negative per-scale terms to
0 with a finite gradient (see :mod:`tfrestore.metrics.ssim`) and needs images of at
least ``(filter_size - 1) * 2**(scales - 1) + 1`` pixels per side (161 by default);
smaller inputs raise a ``ValueError`` naming that minimum. For training on small
crops use :class:`SSIMLoss` or fewer ``power_factors`` (scales).
"""

from __future__ import annotations

import keras

from tfrestore.losses.base import RestorationLoss
from tfrestore.metrics import _image
from tfrestore.utils import validation
from tfrestore.metrics.ssim import (
    _MS_RENAMED,
    MS_SSIM_WEIGHTS,
    _ms_ssim_prepared,
    _ssim_prepared,
    _WindowOptions,
)

__all__ = ["SSIMLoss", "MSSSIMLoss"]


_SSIM_RANGE_FIX = "or set `data_range` to the peak value of your images (255 for 0..255)"


class _SimilarityLoss(_WindowOptions, RestorationLoss):
    """``1 - similarity`` per image: what :class:`SSIMLoss` and :class:`MSSSIMLoss` share.

    Subclasses implement ``_similarity`` on the colour-converted pair and extend
    ``options`` (the config).
    """

    def __init__(self, data_range, color, filter_size, filter_sigma, k1, k2, *, name, **kwargs):
        super().__init__(name=name, **kwargs)
        self.data_range = _image.check_data_range(data_range, name)
        self.range_fix = _SSIM_RANGE_FIX
        self.color = _image.check_color(color, name)
        self._set_window(filter_size, filter_sigma, k1, k2, name)

    def compute(self, y_true, y_pred):
        # Inputs were validated by RestorationLoss.call; this only converts colour.
        y_true, y_pred = _image.prepare_pair(
            y_true, y_pred, data_range=self.data_range, color=self.color,
            check_finite=False, owner=self.name,
        )
        return 1.0 - self._similarity(y_true, y_pred)

    def options(self):
        return {"data_range": self.data_range, "color": self.color, **self._window_options()}

    def get_config(self):
        return {**super().get_config(), **self.options()}


@keras.saving.register_keras_serializable(package="tfrestore")
class SSIMLoss(_SimilarityLoss):
    """``1 - SSIM`` per image (Zhao et al. 2017, "Loss functions for image restoration").

    Args:
        data_range: float. Peak pixel value (1.0 for images in [0, 1]); ``y_true``
            must lie in ``[0, data_range]`` (± half of it, see ``check_range``).
        color: str. ``"rgb"`` (mean over channels), ``"y"`` (BT.601 luma) or
            ``"gray"`` (MATLAB ``rgb2gray``).
        filter_size, filter_sigma, k1, k2: Gaussian window and SSIM constants.

    >>> import numpy as np
    >>> from tfrestore.losses import SSIMLoss
    >>> y = np.random.default_rng(0).uniform(size=(2, 16, 16, 3)).astype("float32")
    >>> SSIMLoss(reduction=None)(y, y).numpy()
    array([0., 0.], dtype=float32)
    """

    def __init__(
        self, data_range=1.0, color="rgb", filter_size=11, filter_sigma=1.5, k1=0.01,
        k2=0.03, name="ssim_loss", **kwargs,
    ):
        super().__init__(
            data_range, color, filter_size, filter_sigma, k1, k2, name=name, **kwargs
        )

    def _similarity(self, y_true, y_pred):
        return _ssim_prepared(
            y_true, y_pred, self.data_range, False, self.filter_size, self.filter_sigma,
            self.k1, self.k2, owner=self.name,
        )


@keras.saving.register_keras_serializable(package="tfrestore")
class MSSSIMLoss(_SimilarityLoss):
    """``1 - MS-SSIM`` per image (Zhao et al. 2017).

    Args:
        data_range, color, filter_size, filter_sigma, k1, k2: optional. As in
            :class:`SSIMLoss`.
        power_factors: sequence of float or None. Per-scale exponents, finest first
            (default the 5 standard ones, ``MS_SSIM_WEIGHTS``); formerly ``weights``,
            which now raises ``TypeError``.
        combine: str. ``"product"`` (standard MS-SSIM) or ``"sum"`` (normalised weighted sum).

    Images must be at least ``ms_ssim_min_size(filter_size, len(power_factors))`` pixels per
    side (161 by default):

    >>> import numpy as np
    >>> from tfrestore.losses import MSSSIMLoss
    >>> y = np.random.default_rng(0).uniform(size=(1, 161, 161, 1)).astype("float32")
    >>> float(MSSSIMLoss()(y, y))
    0.0
    >>> MSSSIMLoss()(y[:, :64, :64], y[:, :64, :64])
    Traceback (most recent call last):
    ...
    ValueError: ms_ssim_loss: `y_true` is 64x64 pixels, smaller than the MS-SSIM minimum ...
    """

    def __init__(
        self, data_range=1.0, color="rgb", power_factors=MS_SSIM_WEIGHTS, combine="product",
        filter_size=11, filter_sigma=1.5, k1=0.01, k2=0.03, name="ms_ssim_loss", **kwargs,
    ):
        validation.refuse_renamed(kwargs, _MS_RENAMED, "MSSSIMLoss")
        super().__init__(
            data_range, color, filter_size, filter_sigma, k1, k2, name=name, **kwargs
        )
        self._set_scales(power_factors, combine, name)

    def _similarity(self, y_true, y_pred):
        return _ms_ssim_prepared(
            y_true, y_pred, self.data_range, self.power_factors, self.combine,
            self.filter_size, self.filter_sigma, self.k1, self.k2, owner=self.name,
        )

    def options(self):
        return {**super().options(), **self._scale_options()}

    @classmethod
    def from_config(cls, config):
        # configs saved before the rename store the power factors as "weights"
        return super().from_config(validation.renamed_config(config, _MS_RENAMED))
