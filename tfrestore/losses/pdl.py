"""Projected Distribution Loss (PDL, Delbracio et al., ICCP 2021).

Features at every spatial position are samples of a C-dimensional distribution;
they are projected on directions θ and, per projection, the 1-D p-Wasserstein
distance is computed by sorting::

    W_p(u, v)^p = (1/N) Σ_i |u_(i) - v_(i)|^p      (u_(i), v_(i) sorted ascending)

Distributions are compared per image, so the loss returns one value per sample.
The paper's default is the identity projection with p = 1 on VGG16 conv4 features.
See docs/pdl.md.
"""

from __future__ import annotations

import numbers

import keras
import tensorflow as tf

from tfrestore.losses import _counter
from tfrestore.losses._feature_loss import FeatureLossMixin
from tfrestore.losses.base import RestorationLoss
from tfrestore.losses.projections import PROJECTIONS, projection_matrix
from tfrestore.losses.wasserstein import wasserstein_1d
from tfrestore.utils.validation import check_choice

__all__ = ["PDLoss"]

CHANNEL_REDUCTIONS = ("mean", "sum")
#: VGG16 conv4_3 after its ReLU: the paper's "VGG16 conv4" (Keras ``block4_conv3``)
DEFAULT_LAYER = "relu4_3"


@keras.saving.register_keras_serializable(package="tfrestore")
class PDLoss(FeatureLossMixin, RestorationLoss):
    """Projected Distribution Loss: per-image sliced Wasserstein distance of features.

    Per image and layer, the ``N = h·w`` feature vectors are projected on ``P``
    unit directions and each projection's sorted values are compared:
    ``mean_{θ, i} |u_(i) - v_(i)|^p`` (``channel_reduction="mean"``; ``"sum"`` is
    ``P`` times it). Layers are combined as ``Σ_l w_l · value_l``. Inputs are RGB
    NHWC images in ``[0, 1]``; the output has shape ``(B,)`` before reduction.
    See docs/pdl.md for the paper's variants (Table VIII) and its ambiguous
    reduction.

    Args:
        layers: str or list of layer names (weight 1 each). Defaults to
            ``"relu4_3"`` (VGG16 conv4_3 after ReLU, Keras' ``block4_conv3``);
            ``"conv4_3"`` is pre-activation. With a custom ``feature_extractor``
            returning a dict, selects its entries (None = all).
        backbone: str. Passed to :func:`tfrestore.features.get_feature_extractor`.
            Defaults to ``"vgg16"``.
        weights: str or None. ``"imagenet"`` (default, Keras/Caffe VGG16),
            ``"torchvision"``, a file path or None (seeded random weights).
        preprocessing: str, dict or None. Overrides the input normalisation of
            ``weights``.
        feature_extractor: a :class:`~tfrestore.features.FeatureExtractor`, Keras
            model/layer or callable mapping images to a feature map ``(B, h, w,
            C)``, a list of them (in ``layers`` order) or a dict ``{name: map}``.
            Used frozen; a Keras model/layer is saved with the loss, a function
            must be registered with ``keras.saving.register_keras_serializable``.
        layer_weights: dict ``{layer_name: weight}`` or None (BasicSR's name):
            each layer's factor in ``Σ_l w_l · value_l``; its keys are the layers
            tapped (``layers`` then None or exactly those names). A dict in
            ``layers`` (the old spelling) is a ``TypeError``; configs saved with
            one still load.
        projection: str. ``"identity"`` (default: per-channel marginals),
            ``"random_sphere"``, ``"random_pairs"`` or ``"perturbed_identity"``.
        projection_multiple: float. Random projections as a multiple of ``C``
            (``P = round(projection_multiple * C)``). Defaults to 1.0.
        num_projections: int or None. Absolute number of random projections
            (>= 1; overrides ``projection_multiple``).
        perturbation: float. Noise scale of ``"perturbed_identity"``.
        p: float >= 1. Wasserstein order; the loss is ``W_p^p``. Defaults to 1.
        channel_reduction: str. ``"mean"`` (default) or ``"sum"`` over projections.
        quantiles: int >= 2 or None. None (default): both feature maps must have
            the same number of positions (else ``ValueError``). ``Q``: compare the
            quantile functions at the ``Q`` midpoints ``(k + 1/2) / Q``, so
            different sizes can be compared (exact when ``Q`` is a multiple of
            both position counts, else off by at most ``O(1/Q)``).
        fixed_projections: bool. False (default): a fresh set of random
            projections per call from ``(seed, call counter)`` (the counter is
            saved with the model; create the loss inside ``strategy.scope()``
            under a distribution strategy). True: one set, a function of ``seed``.
        seed: int. Seed of the projections.

    Example (random-weight backbone; images RGB in [0, 1]):

    >>> import numpy as np
    >>> from tfrestore.losses import PDLoss
    >>> loss = PDLoss(layers="relu2_2", weights=None)
    >>> y = np.random.default_rng(0).uniform(size=(2, 16, 16, 3)).astype("float32")
    >>> float(loss(y, y))
    0.0
    >>> bool(loss(y, 1.0 - y) > 0)
    True
    >>> PDLoss(layers="relu2_2", weights=None, projection="random_sphere",
    ...        projection_multiple=2.0, fixed_projections=True).call(y, 1.0 - y).shape
    TensorShape([2])
    """

    require_same_shape = False

    _config_attrs = (
        "projection", "projection_multiple", "num_projections", "perturbation", "p",
        "channel_reduction", "quantiles", "fixed_projections", "seed",
    )

    def __init__(
        self,
        layers=None,
        backbone="vgg16",
        weights="imagenet",
        preprocessing=None,
        feature_extractor=None,
        layer_weights=None,
        projection="identity",
        projection_multiple=1.0,
        num_projections=None,
        perturbation=0.1,
        p=1.0,
        channel_reduction="mean",
        quantiles=None,
        fixed_projections=False,
        seed=0,
        name="pdl",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        check_choice(projection, PROJECTIONS, "projection")
        check_choice(channel_reduction, CHANNEL_REDUCTIONS, "channel_reduction",
                     " (Keras' `reduction` is the batch reduction.)")
        if not isinstance(p, numbers.Real) or isinstance(p, bool) or not p >= 1:
            raise ValueError(f"`p` must be a real number >= 1 (Wasserstein order), got {p!r}.")
        if not isinstance(projection_multiple, numbers.Real) or not projection_multiple > 0:
            raise ValueError(
                f"`projection_multiple` must be > 0 (projections per channel), got "
                f"{projection_multiple!r}."
            )
        if num_projections is not None:
            if (
                not isinstance(num_projections, numbers.Integral)
                or isinstance(num_projections, bool)
                or num_projections < 1
            ):
                raise ValueError(
                    f"`num_projections` must be an integer >= 1, got {num_projections!r}."
                )
            num_projections = int(num_projections)
        if projection == "identity" and (num_projections is not None or projection_multiple != 1):
            raise ValueError(
                "projection='identity' uses exactly one projection per channel; "
                "`num_projections` / `projection_multiple` apply to random projections."
            )
        if quantiles is not None:
            integral = isinstance(quantiles, numbers.Integral) and not isinstance(quantiles, bool)
            if not integral or quantiles < 2:
                raise ValueError(f"`quantiles` must be None or an integer >= 2, got {quantiles!r}.")
            quantiles = int(quantiles)
        if not isinstance(seed, numbers.Integral) or isinstance(seed, bool):
            raise TypeError(f"`seed` must be an integer, got {seed!r}.")
        if not perturbation >= 0:
            raise ValueError(f"`perturbation` must be >= 0, got {perturbation!r}.")

        self.projection = projection
        self.projection_multiple = float(projection_multiple)
        self.num_projections = num_projections
        self.perturbation = float(perturbation)
        self.p = float(p)
        self.channel_reduction = channel_reduction
        self.quantiles = quantiles
        self.fixed_projections = bool(fixed_projections)
        self.seed = int(seed)
        self._init_features(
            layers, backbone, weights, preprocessing, feature_extractor, DEFAULT_LAYER,
            layer_weights=layer_weights,
        )
        self._draws = None
        if projection != "identity" and not self.fixed_projections:
            # Call counter for per-call projections: ONLY_FIRST_REPLICA keeps the
            # replicas' copies equal, so every replica draws the same directions.
            # Saved with the model, so a resumed run does not replay projections.
            self._draws = _counter.new_counter(f"{self.name}_draws")

    # ------------------------------------------------------------------ helpers
    def _projections_for(self, channels):
        if self.num_projections is not None:
            return self.num_projections
        n = int(round(self.projection_multiple * channels))
        if n < 1:
            raise ValueError(
                f"{self.name}: projection_multiple={self.projection_multiple} gives "
                f"{n} projections for {channels} channels; need at least 1."
            )
        return n

    def _draw_key(self):
        if self._draws is None:
            return tf.constant(0, tf.int64)
        _counter.check_in_scope(self._draws, self.name, " (or use fixed_projections=True)")
        step = tf.identity(keras.ops.convert_to_tensor(self._draws))
        with tf.control_dependencies([step]):
            self._draws.assign_add(1)
        return step

    def validate(self, y_true, y_pred):
        y_true, y_pred = super().validate(y_true, y_pred)
        if self.quantiles is None:
            st, sp = y_true.shape, y_pred.shape
            if None not in (st[1], st[2], sp[1], sp[2]) and tuple(st[1:3]) != tuple(sp[1:3]):
                raise ValueError(
                    f"{self.name}: `y_true` {tuple(st)} and `y_pred` {tuple(sp)} have "
                    f"different spatial sizes, so their feature distributions have "
                    f"different numbers of samples. Pass `quantiles=Q` to resample both "
                    f"sorted feature vectors to Q quantiles."
                )
        return y_true, y_pred

    def compute(self, y_true, y_pred):
        pairs = self._source.pairs(y_true, y_pred)
        key = self._draw_key() if self.projection != "identity" else None
        total = None
        for index, (layer, weight, fp, ft) in enumerate(pairs):
            c = fp.shape[-1]
            if c is None:
                raise ValueError(
                    f"{self.name}: the channel count of layer {layer!r} must be static."
                )
            fp = tf.reshape(fp, (tf.shape(fp)[0], -1, c))  # (B, N, C)
            ft = tf.reshape(ft, (tf.shape(ft)[0], -1, c))
            if self.quantiles is None:
                n_p, n_t = fp.shape[1], ft.shape[1]
                if n_p is not None and n_t is not None and n_p != n_t:
                    raise ValueError(
                        f"{self.name}: layer {layer!r} gives {n_p} positions for y_pred and "
                        f"{n_t} for y_true; pass `quantiles=Q` to compare them."
                    )
                if n_p is None or n_t is None:
                    with tf.control_dependencies([tf.debugging.assert_equal(
                        tf.shape(fp)[1], tf.shape(ft)[1],
                        message=f"{self.name}: y_true and y_pred feature maps have different "
                        f"numbers of positions; pass quantiles=Q",
                    )]):
                        fp = tf.identity(fp)
            if self.projection != "identity":
                theta = projection_matrix(
                    self.projection, c, self._projections_for(c), self.seed,
                    key * len(pairs) + index, self.perturbation,
                )
                fp = tf.einsum("bnc,cp->bnp", fp, theta)
                ft = tf.einsum("bnc,cp->bnp", ft, theta)
            # (B, P, N): one sorted sample set per image and projection.
            per_projection = wasserstein_1d(
                tf.transpose(fp, (0, 2, 1)), tf.transpose(ft, (0, 2, 1)), self.p, self.quantiles
            )
            if self.channel_reduction == "mean":
                value = tf.reduce_mean(per_projection, axis=-1)
            else:
                value = tf.reduce_sum(per_projection, axis=-1)
            value = value * weight if weight != 1.0 else value
            total = value if total is None else total + value
        return tf.cast(total, self.dtype)

    # ------------------------------------------------------------------ state
    # The call counter decides the next projections, so a restored model (a
    # resumed run) must continue it rather than repeat the first draws.
    def _state_variables(self):
        return {} if self._draws is None else {"projection_draws": self._draws}

    def save_own_variables(self, store):
        super().save_own_variables(store)  # a user extractor's weights
        _counter.save(store, self._state_variables())

    def load_own_variables(self, store):
        super().load_own_variables(store)
        _counter.load(store, self._state_variables())

