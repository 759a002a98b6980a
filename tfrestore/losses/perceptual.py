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
paper is ambiguous (reference_spec §2.4) so both are exposed, and loss weights
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

import numbers

import keras
import tensorflow as tf

from tfrestore.losses._extractor_weights import ExtractorWeightsMixin
from tfrestore.losses.base import RestorationLoss
from tfrestore.utils import validation
from tfrestore.utils.hidden import Hidden

__all__ = ["PerceptualLoss"]

_CRITERIA = ("l1", "l2", "mse")
_REDUCTIONS = ("mean", "sum")


def _normalise_layers(layers):
    if layers is None:
        return {"relu3_3": 1.0}
    if isinstance(layers, str):
        return {layers: 1.0}
    if isinstance(layers, dict):
        out = {}
        for name, w in layers.items():
            if not isinstance(name, str):
                raise TypeError(f"`layers` keys must be layer names (str), got {name!r}.")
            if not isinstance(w, numbers.Real) or isinstance(w, bool):
                raise TypeError(f"`layers[{name!r}]` must be a real weight, got {w!r}.")
            out[name] = float(w)
    else:
        try:
            names = list(layers)
        except TypeError:
            raise TypeError(
                f"`layers` must be a layer name, a list of names or a dict name -> weight, "
                f"got {type(layers).__name__}."
            ) from None
        out = {}
        for name in names:
            if not isinstance(name, str):
                raise TypeError(f"`layers` entries must be layer names (str), got {name!r}.")
            out[name] = 1.0
    if not out:
        raise ValueError("`layers` must name at least one layer.")
    return out


@keras.saving.register_keras_serializable(package="tfrestore")
class PerceptualLoss(ExtractorWeightsMixin, RestorationLoss):
    """Weighted feature distances on a frozen backbone; per-sample ``(B,)`` values.

    Args:
        layers: dict ``{layer_name: weight}`` (BasicSR's ``layer_weights``), a list
            of names (weight 1 each) or one name. Default ``{"relu3_3": 1.0}``.
            Names as in :func:`tfrestore.features.get_feature_extractor`
            (VGG: ``conv4_3`` is pre-ReLU, ``relu4_3`` / ``block4_conv3`` post-ReLU).
        backbone: ``"vgg16"``, ``"vgg19"``, ``"alexnet"``, ``"resnet50"``, ``"resnet101"``.
        weights: ``"imagenet"``, ``"torchvision"``, a weights file path, or ``None``
            (seeded random weights, for tests). Offline use: see
            :mod:`tfrestore.features.sources`.
        criterion: ``"l1"`` (absolute difference) or ``"l2"`` / ``"mse"`` (squared
            difference; the two names are synonyms). See the module docstring.
        channel_reduction: ``"mean"`` or ``"sum"`` over the channel axis; the
            spatial positions are always averaged.
        preprocessing: override the input normalisation implied by ``weights``
            (``"caffe"``, ``"torch"``, ``"none"`` or a mean/std dict).
        feature_extractor: optional replacement extractor: a
            :class:`tfrestore.features.FeatureExtractor`, or a Keras layer/model or
            callable mapping ``y`` (NHWC, as given to the loss) to a dict
            ``{layer: features}``, a list (in ``layers`` order) or a single tensor
            (one layer). A Keras layer is serialized by its config only (its
            weights are not saved); a plain Python callable cannot be serialized.
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

    expected_channels = 3

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
        self.layers = _normalise_layers(layers)
        criterion = str(criterion).lower()
        if criterion not in _CRITERIA:
            raise ValueError(f"`criterion` must be one of {_CRITERIA}, got {criterion!r}.")
        channel_reduction = str(channel_reduction).lower()
        if channel_reduction not in _REDUCTIONS:
            raise ValueError(
                f"`channel_reduction` must be one of {_REDUCTIONS}, got {channel_reduction!r}."
            )
        self.criterion = criterion
        self.channel_reduction = channel_reduction
        self.backbone = backbone
        self.weights = weights if weights is None or isinstance(weights, str) else str(weights)
        self.preprocessing = preprocessing
        self._serialize_custom = False
        self._min_size = 1

        from tfrestore.features import FeatureExtractor, get_feature_extractor

        if isinstance(feature_extractor, dict):
            feature_extractor = keras.saving.deserialize_keras_object(feature_extractor)
        if feature_extractor is None or isinstance(feature_extractor, FeatureExtractor):
            policy = None
            if isinstance(feature_extractor, FeatureExtractor):
                # Same backbone, weights and policy: the cache shares its variables.
                self.backbone = feature_extractor.backbone
                self.weights = feature_extractor.weights
                policy = feature_extractor.dtype_policy
                if preprocessing is None and feature_extractor.preprocessing.key() != _default_prep(
                    feature_extractor
                ):
                    self.preprocessing = feature_extractor.preprocessing.spec
            fx = get_feature_extractor(
                self.backbone,
                list(self.layers),
                self.weights,
                preprocessing=self.preprocessing,
                dtype_policy=policy,
            )
            self._min_size = max(fx.min_input_size(n) for n in self.layers)
            self._builtin = True
        else:
            if not callable(feature_extractor):
                raise TypeError(
                    f"`feature_extractor` must be a FeatureExtractor, a Keras layer/model or a "
                    f"callable, got {type(feature_extractor).__name__}."
                )
            fx = feature_extractor
            self._builtin = False
            self.data_range = None  # a custom extractor defines its own input domain
            if isinstance(fx, keras.layers.Layer):
                fx.trainable = False
                self._serialize_custom = True
        self._holder = Hidden(fx)

    # ------------------------------------------------------------------ API
    def validate(self, y_true, y_pred):
        y_true, y_pred = super().validate(y_true, y_pred)
        if self._min_size > 1:
            validation.check_min_size(
                y_pred,
                self._min_size,
                self._min_size,
                "y_pred",
                f"the minimum input size of {self.backbone} layers {list(self.layers)}",
                loss_name=self.name,
            )
        return y_true, y_pred

    def _features(self, images):
        fx = self._holder.value
        if self._builtin:
            return fx(images)
        if isinstance(fx, keras.layers.Layer):
            out = fx(images, training=False)
        else:
            out = fx(images)
        names = list(self.layers)
        if isinstance(out, dict):
            missing = [n for n in names if n not in out]
            if missing:
                raise ValueError(
                    f"{self.name}: `feature_extractor` returned {sorted(out)}, "
                    f"missing layers {missing}."
                )
            return out
        if isinstance(out, (list, tuple)):
            if len(out) != len(names):
                raise ValueError(
                    f"{self.name}: `feature_extractor` returned {len(out)} feature maps for "
                    f"{len(names)} layers {names}."
                )
            return dict(zip(names, out))
        if len(names) != 1:
            raise ValueError(
                f"{self.name}: `feature_extractor` returned one tensor but `layers` names "
                f"{len(names)} layers {names}; return a dict or a list."
            )
        return {names[0]: out}

    def _saved_extractor(self):
        # A user's Keras layer/model is rebuilt from its config on load; its
        # weights travel in this loss's weight store (see _extractor_weights).
        return self._holder.value if self._serialize_custom else None

    def compute(self, y_true, y_pred):
        self._check_fresh_extractor()
        # Two passes instead of one on concat([y_true, y_pred]): the target pass
        # needs no backward, which saves a third of the backbone's compute.
        target = self._features(tf.stop_gradient(y_true))
        pred = self._features(y_pred)
        total = None
        for name, weight in self.layers.items():
            fp = tf.cast(pred[name], tf.float32)
            ft = tf.stop_gradient(tf.cast(target[name], tf.float32))
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

    def get_config(self):
        config = super().get_config()
        if not self._builtin and not self._serialize_custom:
            raise ValueError(
                f"{self.name}: a PerceptualLoss with a plain Python `feature_extractor` "
                f"({type(self._holder.value).__name__}) cannot be serialized; wrap it in a "
                f"registered keras.layers.Layer or use get_feature_extractor()."
            )
        config.update(
            {
                "layers": dict(self.layers),
                "backbone": self.backbone,
                "weights": self.weights,
                "criterion": self.criterion,
                "channel_reduction": self.channel_reduction,
                "preprocessing": self.preprocessing,
                "feature_extractor": (
                    _serialize_layer(self._holder.value) if self._serialize_custom else None
                ),
            }
        )
        return config


def _serialize_layer(layer):
    # build_config appears once the layer has been called; dropping it keeps the
    # config of a used loss equal to that of a freshly deserialized one.
    config = keras.saving.serialize_keras_object(layer)
    return {k: v for k, v in config.items() if k not in ("build_config", "compile_config")}


def _default_prep(fx):
    from tfrestore.features.preprocessing import Preprocessing

    return Preprocessing(fx._backbone.source.preprocessing).key()
