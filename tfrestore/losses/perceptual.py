"""Perceptual (feature reconstruction) loss on a frozen pretrained backbone.

For each tapped layer ``l`` with weight ``w_l`` and features ``F_l`` of shape
``(B, h, w, C)`` (``F_l(y_true)`` under ``stop_gradient``), with
``D = F_l(y_pred) - F_l(y_true)``::

    e = |D|  (criterion "l1")      or      e = D ** 2  (criterion "l2" == "mse")
    r[b, i, j] = mean_c e[b, i, j, c]   (channel_reduction "mean")
               | sum_c  e[b, i, j, c]   (channel_reduction "sum")
    loss[b] = sum_l  w_l * mean_{i, j} r[b, i, j]

So ``"mse"`` + ``"mean"`` is the plain feature MSE (BasicSR's ``criterion='l2'``,
which is ``nn.MSELoss``), and ``"mse"`` + ``"sum"`` is the squared Euclidean
distance between the C-dimensional feature vectors, averaged over positions --
Liu et al.'s ``L_P = 1/(H W) sum_ij (phi(F(x))_ij - phi(x~)_ij)^2`` read with a
vector-valued ``phi``. The two differ by the factor ``C`` (256 at relu3_3); the
paper's formula allows both readings, so both are exposed, and loss weights
tuned under one reduction do not transfer to the other.

Presets from the papers this library follows:

* Liu et al. (TIP 2020): ``PerceptualLoss({"relu3_3": 1.0}, backbone="vgg16",
  weights="imagenet", criterion="mse", channel_reduction="sum")`` with
  ``loss_weight=0.5`` (λ_P). Keras "imagenet" VGG16 weights are the Caffe VGG16
  the paper used.
* PDL's perceptual comparators (ICCP 2021): VGG16 conv4, ``criterion="l1"`` or
  ``"mse"``, default layer ``relu4_3`` (= Keras ``block4_conv3``).

Feature magnitudes depend on the weights: Keras "imagenet" (Caffe, 0-255 input)
features are about 255x larger than torchvision ones (ImageNet mean/std input), so
layer weights tuned in BasicSR (torchvision VGG19) do not transfer one-to-one.

The backbone is shared through :func:`tfrestore.features.get_feature_extractor`'s
cache and held in a :class:`tfrestore.utils.Hidden`, so it is never written to
model checkpoints; ``get_config`` stores the ``weights`` argument and
``from_config`` rebuilds (or reuses) the extractor.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tfrestore.losses._feature_loss import FeatureLossMixin
from tfrestore.losses.base import RestorationLoss
from tfrestore.utils.validation import check_choice

__all__ = ["PerceptualLoss"]

_CRITERIA = ("l1", "l2", "mse")
_REDUCTIONS = ("mean", "sum")


@keras.saving.register_keras_serializable(package="tfrestore")
class PerceptualLoss(FeatureLossMixin, RestorationLoss):
    """Weighted feature distances on a frozen backbone; per-sample ``(B,)`` values.

    Args:
        layers: dict ``{layer_name: weight}`` (BasicSR's ``layer_weights``), a list
            of names (weight 1 each) or one name. Default ``{"relu3_3": 1.0}``.
            Names as in :mod:`tfrestore.features` (VGG: ``conv4_3`` is pre-ReLU,
            ``relu4_3`` post-ReLU, which is Keras' ``block4_conv3``).
        backbone: ``"vgg16"``, ``"vgg19"``, ``"alexnet"``, ``"resnet50"``, ``"resnet101"``.
        weights: ``"imagenet"``, ``"torchvision"``, a weights file path, or ``None``
            (seeded random weights, for tests). Offline use: see
            :mod:`tfrestore.features.sources`.
        criterion: ``"l1"`` (absolute difference) or ``"l2"`` / ``"mse"`` (squared
            difference; the two names are synonyms). See the module docstring.
        channel_reduction: ``"mean"`` or ``"sum"`` over the channel axis; the
            spatial positions are always averaged.
        preprocessing: override the input normalisation implied by ``weights``
            (``"caffe"``, ``"torch"``, ``"none"`` or a mean/std dict); with a user
            ``feature_extractor`` it is applied before calling it (None: images as
            given).
        feature_extractor: optional replacement extractor: a
            :class:`tfrestore.features.FeatureExtractor`, or a Keras layer/model or
            callable mapping ``y`` (NHWC, as given to the loss) to a dict
            ``{layer: features}``, a list (in ``layers`` order) or a single tensor
            (one layer). A Keras layer/model is saved with the loss (config and
            weights, see :mod:`tfrestore.features.feature_source`); a function must
            be registered with ``keras.saving.register_keras_serializable``.
        loss_weight, check_finite, name, reduction, dtype: see
            :class:`tfrestore.losses.RestorationLoss`.

    Inputs are RGB NHWC images in ``[0, 1]`` (the extractor applies the
    backbone's own normalisation).

    >>> import numpy as np
    >>> from tfrestore.losses import PerceptualLoss
    >>> loss = PerceptualLoss({"relu1_2": 1.0, "relu2_2": 0.5}, weights=None, reduction=None)
    >>> y = np.random.default_rng(0).uniform(size=(2, 16, 16, 3)).astype("float32")
    >>> loss(y, y).numpy().tolist()
    [0.0, 0.0]
    >>> bool(np.all(loss(y, 1.0 - y).numpy() > 0))
    True
    """

    _config_attrs = ("criterion", "channel_reduction")

    def __init__(
        self,
        layers=None,
        backbone="vgg16",
        weights="imagenet",
        criterion="l1",
        channel_reduction="mean",
        preprocessing=None,
        feature_extractor=None,
        name="perceptual_loss",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        self.criterion = check_choice(str(criterion).lower(), _CRITERIA, "criterion")
        self.channel_reduction = check_choice(
            str(channel_reduction).lower(), _REDUCTIONS, "channel_reduction"
        )
        self._init_features(
            layers, backbone, weights, preprocessing, feature_extractor, {"relu3_3": 1.0}
        )

    def compute(self, y_true, y_pred):
        total = None
        for _, weight, fp, ft in self._source.pairs(y_true, y_pred):
            d = fp - ft
            e = tf.abs(d) if self.criterion == "l1" else tf.square(d)
            e = (
                tf.reduce_mean(e, axis=-1)
                if self.channel_reduction == "mean"
                else tf.reduce_sum(e, axis=-1)
            )
            value = tf.reduce_mean(e, axis=[1, 2]) * weight
            total = value if total is None else total + value
        return tf.cast(total, self.dtype)
