"""Projected Distribution Loss (PDL, Delbracio et al., ICCP 2021).

PDL compares the *distributions* of deep features of the prediction and the target,
not the features position by position. Every spatial position of a feature map is
one sample of a C-dimensional distribution; the features are projected on a set of
directions θ, and for every projection the 1-D p-Wasserstein distance between the two
empirical distributions is computed in closed form by sorting:

    W_p(u, v)^p = (1/N) Σ_i |u_(i) - v_(i)|^p      (u_(i), v_(i) sorted ascending)

Distributions are compared **per image** (never pooled across the batch), so the loss
returns one value per sample and is unaffected by how a batch is split over replicas.

The paper's default projection is the identity (each channel's H·W activations are
sorted independently: the marginal distributions) with p = 1, on VGG16 conv4 features.
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

    For each image and each feature layer, the ``N = h·w`` feature vectors are
    projected on ``P`` unit directions; each projection's ``N`` values are sorted for
    the prediction and the target and compared with ``|·|^p`` (the 1-D optimal
    transport cost). The loss of an image is, per layer,

    * ``channel_reduction="mean"`` (default): the mean over projections and positions;
    * ``channel_reduction="sum"``: the sum over projections of the
      per-projection mean over positions (= ``P`` × the mean).

    The issue/paper call this choice ``reduction``; here it is ``channel_reduction``
    because ``reduction`` is the Keras batch reduction of every ``keras.losses.Loss``.
    The paper is ambiguous ("sum of the 1-D Wasserstein distances" vs "averaging"),
    and its λ values (Table II: 0.001–0.02, best 0.01 for strong-noise denoising) are
    only meaningful under the reduction they were tuned with; with identity on VGG16
    conv4 the two differ by a factor 512.

    Layers are combined as a weighted sum: ``Σ_l w_l · value_l``.

    Args:
        layers: feature layer name, list of names or dict ``{name: weight}``. For the
            default backbone: ``"relu4_3"`` (VGG16 conv4_3 after ReLU, the
            paper's "VGG16 conv4", Keras' ``block4_conv3``); pre-activation
            ``"conv4_3"``; any name accepted by
            :func:`tfrestore.features.get_feature_extractor`. With a custom
            ``feature_extractor`` returning a dict, selects its entries (None = all).
        backbone, weights, preprocessing: passed to ``get_feature_extractor``
            (ignored when ``feature_extractor`` is a custom callable). Images are RGB
            in [0, 1]; the extractor applies the normalisation of the weights
            (``"imagenet"``: Keras/Caffe VGG16, as the paper's TF code;
            ``"torchvision"``: the torchvision VGG16).
        feature_extractor: a :class:`~tfrestore.features.FeatureExtractor`, or any
            Keras model/layer or callable mapping images to a feature map
            ``(B, h, w, C)``, a list of them (in ``layers`` order) or a dict
            ``{name: map}``. It is used frozen (``training=False``). A Keras
            model/layer is saved with the loss (config and weights, see
            :mod:`tfrestore.features.feature_source`); a function must be
            registered with ``keras.saving.register_keras_serializable``.
        projection: ``"identity"`` (per-channel marginals, the paper's default, "Id"),
            ``"random_sphere"`` (RSP: uniform random unit directions = Monte-Carlo
            sliced Wasserstein), ``"random_pairs"`` (R2P: random unit combination of
            two distinct channels), ``"perturbed_identity"`` (RPP: identity plus
            ``perturbation`` × Gaussian noise, column-normalised) — Table VIII.
        projection_multiple: number of random projections as a multiple of ``C``
            (``P = round(projection_multiple * C)``), as in Table VIII.
        num_projections: absolute number of random projections (overrides
            ``projection_multiple``); must be >= 1.
        perturbation: noise scale of ``"perturbed_identity"``.
        p: Wasserstein order (>= 1; default 1). The loss is ``W_p^p``.
        channel_reduction: ``"mean"`` or ``"sum"`` (see above).
        quantiles: if None (default), prediction and target must give feature maps
            with the same number of positions (else ``ValueError``). If an integer
            ``Q >= 2``, both empirical quantile functions are sampled at the ``Q``
            midpoints ``(k + 1/2) / Q``, so different spatial sizes can be compared.
            This is exact when ``Q`` is a multiple of both position counts (e.g.
            ``Q = lcm(N, M)``) and otherwise off by at most ``O(1/Q)``; never
            linear interpolation, which shrinks the tails (−2.7 % on average at
            N = 100, Q = 1000).
        fixed_projections: random projections are drawn with a counter-based
            Philox-4x32-10 generator written in integer ops, bit-identical in eager,
            graph, XLA and on every replica (TF's own stateless kernels are not under
            XLA). If False (default) a fresh set is drawn at every call from
            ``(seed, call counter)`` (the counter is a non-trainable variable saved
            with the model, so a resumed run continues the sequence; create the
            loss inside ``strategy.scope()`` under a distribution strategy). If
            True the same set, a function of ``seed`` only, is used at every call.
        seed: integer seed of the projections.

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
            layers, backbone, weights, preprocessing, feature_extractor, DEFAULT_LAYER
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

