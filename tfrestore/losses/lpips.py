"""LPIPS as a training loss: ``LPIPSLoss`` (per-image LPIPS v0.1 distance).

``LPIPS = Σ_layers mean_{h,w} Σ_c w_c (f̂₀ - f̂₁)²`` with unit-normalised features
``f̂`` and learned channel weights ``w_c``. The network, input convention (RGB in
[0, 1]) and weight files are those of :mod:`tfrestore.metrics.lpips`. The target's
features are computed under ``stop_gradient``; gradients flow to ``y_pred``.
See docs/lpips.md.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tfrestore.losses.base import RestorationLoss
from tfrestore.utils import validation
from tfrestore.utils.hidden import Hidden

__all__ = ["LPIPSLoss"]


@keras.saving.register_keras_serializable(package="tfrestore")
class LPIPSLoss(RestorationLoss):
    """LPIPS v0.1 distance between prediction and target, one value per image.

    Inputs are RGB NHWC images in ``[0, 1]`` with 3 channels; the output has
    shape ``(B,)`` before reduction.

    Args:
        backbone: str. ``"alexnet"`` (default; the lpips package's ``net="alex"``)
            or ``"vgg16"`` (``net="vgg"``).
        weights: str or None. Backbone weights: ``"torchvision"`` (default), a
            file path, or None (random backbone, for tests; ``lin_weights`` must
            then be given).
        lin_weights: str, list or None. Path of the LPIPS linear-layer file
            (default: found by name, ``lpips_v0.1_alex.npz`` /
            ``lpips_v0.1_vgg.npz``), or a list of 5 per-channel weight arrays.

    The tapped layers and the input scaling are part of LPIPS' definition, so
    ``layers``, ``preprocessing`` and ``feature_extractor`` are not arguments.
    The backbone runs under the global dtype policy; normalisation and distances
    are computed in float32.

    >>> import numpy as np
    >>> from tfrestore.losses import LPIPSLoss
    >>> lins = [np.full(c, 0.1, "float32") for c in (64, 192, 384, 256, 256)]
    >>> loss = LPIPSLoss(weights=None, lin_weights=lins, reduction=None)
    >>> y = np.random.default_rng(0).uniform(size=(2, 64, 64, 3)).astype("float32")
    >>> loss(y, y).numpy().tolist()
    [0.0, 0.0]
    """

    expected_channels = 3

    def __init__(
        self, backbone="alexnet", weights="torchvision", lin_weights=None, name="lpips_loss",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        from tfrestore.metrics.lpips import LPIPSNetwork, check_backbone

        self.backbone = check_backbone(backbone, name)
        self.weights = weights if weights is None or isinstance(weights, str) else str(weights)
        if lin_weights is not None and not isinstance(lin_weights, (str, list, tuple)):
            lin_weights = str(lin_weights)  # os.PathLike
        if isinstance(lin_weights, (list, tuple)):
            lin_weights = [  # plain lists: JSON-serializable config
                [float(v) for v in keras.ops.convert_to_numpy(w).reshape(-1)] for w in lin_weights
            ]
        self.lin_weights = lin_weights
        self._holder = Hidden(
            LPIPSNetwork(self.backbone, self.weights, lin_weights, dtype=None)
        )

    def validate(self, y_true, y_pred):
        y_true, y_pred = super().validate(y_true, y_pred)
        size = self._holder.value.min_size
        validation.check_min_size(
            y_pred, size, size, "y_pred", f"the minimum input size of LPIPS-{self.backbone}",
            loss_name=self.name,
        )
        return y_true, y_pred

    def compute(self, y_true, y_pred):
        values = self._holder.value(y_true, y_pred, target_gradient=False)
        return tf.cast(values, self.dtype)

    def get_config(self):
        return {
            **super().get_config(),
            "backbone": self.backbone,
            "weights": self.weights,
            "lin_weights": self.lin_weights,
        }
