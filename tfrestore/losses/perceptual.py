"""Perceptual (feature reconstruction) loss on a frozen pretrained backbone.

With ``D = F_l(y_pred) - F_l(y_true)`` (the target's features under
``stop_gradient``), ``e = |D|`` (``"l1"``) or ``D ** 2`` (``"l2"`` / ``"mse"``)::

    loss[b] = sum_l  w_l * mean_{i, j} reduce_c e[b, i, j, c]

with ``reduce_c`` the mean (``channel_reduction="mean"``: Johnson et al.'s feature
MSE) or the sum (``"sum"``: Liu et al.'s task-driven ``L_P``), which differ by the
factor ``C``. See docs/perceptual.md for the paper presets and weight magnitudes.
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

    Arguments follow the house order of feature losses: ``layers, backbone, weights,
    preprocessing, feature_extractor``, then ``layer_weights`` (the first of the
    loss's own), then the loss's other ones (``criterion``, ``channel_reduction``),
    then the common ones and ``name``.

    Inputs are RGB NHWC images in ``[0, 1]`` (the extractor applies the
    backbone's own normalisation); prediction and target have the same shape.

    Args:
        layers: str or list of layer names (weight 1 each; per-layer weights go
            in ``layer_weights``). Defaults to ``"relu3_3"``. VGG names:
            ``conv4_3`` is pre-ReLU, ``relu4_3`` post-ReLU (Keras' ``block4_conv3``).
        backbone: str. ``"vgg16"`` (default), ``"vgg19"``, ``"alexnet"``,
            ``"resnet50"`` or ``"resnet101"``.
        weights: str or None. ``"imagenet"`` (default), ``"torchvision"``, a
            weights file path, or None (seeded random weights, for tests).
            Offline use: see :mod:`tfrestore.features.sources`.
        preprocessing: str, dict or None. Overrides the normalisation implied by
            ``weights`` (``"caffe"``, ``"torch"``, ``"none"`` or a mean/std dict);
            with a user ``feature_extractor`` it is applied before calling it.
        feature_extractor: a :class:`tfrestore.features.FeatureExtractor`, Keras
            layer/model or callable mapping ``y`` (NHWC) to a dict ``{layer:
            features}``, a list (in ``layers`` order) or one tensor. A Keras
            layer/model is saved with the loss; a function must be registered
            with ``keras.saving.register_keras_serializable``.
        layer_weights: dict ``{layer_name: weight}`` or None (BasicSR's name): each
            layer's factor in the sum; its keys are the layers tapped (``layers``
            then None or exactly those names). Keyword-first after
            ``feature_extractor`` in every feature loss. A dict in ``layers`` (the
            old spelling) is a ``TypeError``; configs saved with one still load.
        criterion: str. ``"l1"`` (default, absolute difference) or ``"l2"`` /
            ``"mse"`` (squared difference; synonyms).
        channel_reduction: str. ``"mean"`` (default) or ``"sum"`` over channels;
            spatial positions are always averaged.
        loss_weight, check_finite, name, reduction, dtype: optional. As in
            :class:`tfrestore.losses.RestorationLoss`.

    >>> import numpy as np
    >>> from tfrestore.losses import PerceptualLoss
    >>> loss = PerceptualLoss(layer_weights={"relu1_2": 1.0, "relu2_2": 0.5}, weights=None,
    ...                       reduction=None)
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
        preprocessing=None,
        feature_extractor=None,
        layer_weights=None,
        criterion="l1",
        channel_reduction="mean",
        name="perceptual_loss",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        self.criterion = check_choice(str(criterion).lower(), _CRITERIA, "criterion")
        self.channel_reduction = check_choice(
            str(channel_reduction).lower(), _REDUCTIONS, "channel_reduction"
        )
        self._init_features(
            layers, backbone, weights, preprocessing, feature_extractor, "relu3_3",
            layer_weights=layer_weights,
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
