"""Contextual loss (Mechrez, Talmi & Zelnik-Manor, ECCV 2018).

Feature vectors are compared as sets. Per image, with distances ``d_ij`` (cosine
after centring by the target mean, or squared L2)::

    d̃_ij = d_ij / (min_k d_ik + eps)
    CX_ij = softmax_j((1 - d̃_ij) / h)
    loss = -log(mean_j max_i CX_ij)

The ``N × M`` affinity matrix is the memory cost; ``max_positions`` caps it.
See docs/contextual.md.
"""

from __future__ import annotations

import numbers
import warnings

import keras
import tensorflow as tf

from tfrestore.losses._feature_loss import FeatureLossMixin
from tfrestore.losses.base import RestorationLoss
from tfrestore.losses.pdl import DEFAULT_LAYER
from tfrestore.utils import rng
from tfrestore.utils.validation import check_choice

__all__ = ["ContextualLoss", "contextual_similarity"]

DISTANCES = ("cosine", "l2")
OVERFLOW = ("error", "subsample")


def contextual_similarity(x, y, distance="cosine", bandwidth=0.5, eps=1e-5):
    """Contextual similarity ``CX`` of feature sets ``x`` (B, N, C) and ``y`` (B, M, C).

    Returns shape ``(B,)`` in (0, 1]; ``-log`` of it is the contextual loss.

    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(1, 6, 4)).astype("float32")
    >>> round(float(contextual_similarity(x, x)[0]), 4)
    1.0
    """
    x = tf.convert_to_tensor(x, tf.float32)
    y = tf.convert_to_tensor(y, tf.float32)
    if distance == "cosine":
        mu = tf.reduce_mean(y, axis=1, keepdims=True)  # per-image target mean
        xn = tf.math.l2_normalize(x - mu, axis=-1)
        yn = tf.math.l2_normalize(y - mu, axis=-1)
        d = (1.0 - tf.einsum("bnc,bmc->bnm", xn, yn)) / 2.0
    elif distance == "l2":
        xx = tf.reduce_sum(tf.square(x), axis=-1)[:, :, None]
        yy = tf.reduce_sum(tf.square(y), axis=-1)[:, None, :]
        d = tf.maximum(xx - 2.0 * tf.einsum("bnc,bmc->bnm", x, y) + yy, 0.0)
    else:
        raise ValueError(f"`distance` must be one of {DISTANCES}, got {distance!r}.")
    relative = d / (tf.reduce_min(d, axis=-1, keepdims=True) + eps)
    # softmax == exp((1 - d̃)/h) / Σ_j exp((1 - d̃)/h), computed without overflow.
    cx = tf.nn.softmax(-relative / bandwidth, axis=-1)  # (B, N, M)
    return tf.reduce_mean(tf.reduce_max(cx, axis=1), axis=-1)


@keras.saving.register_keras_serializable(package="tfrestore")
class ContextualLoss(FeatureLossMixin, RestorationLoss):
    """Contextual loss ``-log CX`` between the feature sets of prediction and target.

    Inputs are RGB NHWC images in ``[0, 1]``; prediction and target may have
    different sizes. The output has shape ``(B,)`` before reduction.

    Args:
        layers: str or list of layer names, combined as a (weighted) sum.
            Defaults to ``"relu4_3"`` of VGG16.
        backbone, weights, preprocessing, feature_extractor, layer_weights: optional.
            As in :class:`~tfrestore.losses.PDLoss`.
        distance: str. ``"cosine"`` (default; features centred by the per-image
            target mean) or ``"l2"`` (squared Euclidean distance).
        bandwidth: float. ``h``. Defaults to 0.5.
        eps: float. Added to the per-row minimum distance. Defaults to 1e-5.
        max_positions: int. Largest number of feature positions (``h·w``)
            compared; the affinity needs ``B·N·M`` floats (several times, with the
            gradient). Defaults to 4096 (a 64×64 feature map).
        on_overflow: str. ``"error"`` (default): raise ``ValueError``
            (``InvalidArgumentError`` for shapes only known at run time) when a
            feature map has more positions; ``"subsample"``: warn and use
            ``max_positions`` random positions (the same at every call, from
            ``seed``; the same subset for prediction and target of equal size).
        seed: int. Seed of the subsampling.

    >>> import numpy as np
    >>> from tfrestore.losses import ContextualLoss
    >>> loss = ContextualLoss(layers="relu1_2", weights=None)
    >>> y = np.random.default_rng(0).uniform(size=(2, 16, 16, 3)).astype("float32")
    >>> round(float(loss(y, y)), 3)
    0.0
    """

    require_same_shape = False  # CX compares sets; sizes may differ

    _config_attrs = (
        "distance", "bandwidth", "eps", "max_positions", "on_overflow", "seed",
    )

    def __init__(
        self,
        layers=None,
        backbone="vgg16",
        weights="imagenet",
        preprocessing=None,
        feature_extractor=None,
        layer_weights=None,
        distance="cosine",
        bandwidth=0.5,
        eps=1e-5,
        max_positions=4096,
        on_overflow="error",
        seed=0,
        name="contextual",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        if distance not in DISTANCES:
            raise ValueError(
                f"`distance` must be one of {DISTANCES} ('cosine' = CTX_DP, 'l2' = CTX_L2), "
                f"got {distance!r}."
            )
        if not isinstance(bandwidth, numbers.Real) or not bandwidth > 0:
            raise ValueError(f"`bandwidth` must be > 0, got {bandwidth!r}.")
        if not isinstance(eps, numbers.Real) or not eps > 0:
            raise ValueError(f"`eps` must be > 0, got {eps!r}.")
        if (
            not isinstance(max_positions, numbers.Integral)
            or isinstance(max_positions, bool)
            or max_positions < 1
        ):
            raise ValueError(f"`max_positions` must be an integer >= 1, got {max_positions!r}.")
        check_choice(on_overflow, OVERFLOW, "on_overflow")
        if not isinstance(seed, numbers.Integral) or isinstance(seed, bool):
            raise TypeError(f"`seed` must be an integer, got {seed!r}.")
        self.distance = distance
        self.bandwidth = float(bandwidth)
        self.eps = float(eps)
        self.max_positions = int(max_positions)
        self.on_overflow = on_overflow
        self.seed = int(seed)
        self._init_features(
            layers, backbone, weights, preprocessing, feature_extractor, DEFAULT_LAYER,
            layer_weights=layer_weights,
        )

    def _cap(self, f, layer, which, tag):
        """Enforce ``max_positions`` on ``f`` (B, N, C)."""
        n = f.shape[1]
        cap = self.max_positions
        if n is not None and n <= cap:
            return f
        if self.on_overflow == "error":
            hint = (
                f"reduce the crop size, pick a deeper layer, raise `max_positions` if memory "
                f"allows (the affinity holds B*N*M floats), or pass on_overflow='subsample'"
            )
            if n is not None:
                raise ValueError(
                    f"{self.name}: layer {layer!r} of `{which}` has {n} feature positions, "
                    f"more than max_positions={cap}; {hint}."
                )
            with tf.control_dependencies([tf.debugging.assert_less_equal(
                tf.shape(f)[1], cap,
                message=f"{self.name}: layer {layer!r} of `{which}` has more feature "
                f"positions than max_positions={cap}; {hint}",
            )]):
                return tf.identity(f)
        if n is not None:
            warnings.warn(
                f"{self.name}: layer {layer!r} of `{which}` has {n} feature positions; "
                f"comparing a random subset of max_positions={cap}.",
                stacklevel=3,
            )
            scores = rng.uniform((n,), self.seed, tf.constant(0, tf.int64), tag)
            idx = tf.sort(tf.math.top_k(scores, cap).indices)
            return tf.gather(f, idx, axis=1)
        n_dyn = tf.shape(f)[1]
        scores = rng.uniform(n_dyn, self.seed, tf.constant(0, tf.int64), tag)
        idx = tf.sort(tf.math.top_k(scores, tf.minimum(n_dyn, cap)).indices)
        return tf.gather(f, idx, axis=1)

    def _min_side(self, layer):
        """Smallest square image side giving ``layer`` at least 2 feature positions (None for a
        user's feature extractor, whose geometry is unknown)."""
        if self._source.custom:
            return None
        fx = self._source.network()
        # One more total stride past the 1x1 minimum adds a row and a column of positions.
        return fx.min_input_size(layer) + fx.stride(layer)

    def _check_positions(self, f, layer, which):
        """A feature map of one position makes CX constant (exactly 0 for ``y_true``, log M for
        ``y_pred``): the loss would carry no gradient, so it is refused."""
        side = self._min_side(layer)
        size = (
            f"images of at least {side}x{side} pixels for layer {layer!r} of {self._source.backbone}"
            if side is not None
            else "larger images (or an earlier layer of the feature_extractor)"
        )
        message = (
            f"{self.name}: layer {layer!r} of `{which}` has a 1x1 feature map (one position); "
            "the contextual loss of a one-element set is constant (exactly 0 for `y_true`) and "
            f"has no gradient. Use {size}, or pick an earlier layer."
        )
        n = f.shape[1]
        if n is not None:
            if n < 2:
                raise ValueError(message)
            return f
        with tf.control_dependencies(
            [tf.debugging.assert_greater_equal(tf.shape(f)[1], 2, message=message)]
        ):
            return tf.identity(f)

    def compute(self, y_true, y_pred):
        total = None
        for index, (layer, weight, fp, ft) in enumerate(self._source.pairs(y_true, y_pred)):
            c = fp.shape[-1]
            x = tf.reshape(fp, (tf.shape(fp)[0], -1, c if c is not None else tf.shape(fp)[-1]))
            y = tf.reshape(ft, (tf.shape(ft)[0], -1, c if c is not None else tf.shape(ft)[-1]))
            # Equal sizes: the same positions for both, so identical inputs give 0.
            same = x.shape[1] is not None and x.shape[1] == y.shape[1]
            x = self._check_positions(x, layer, "y_pred")
            y = self._check_positions(y, layer, "y_true")
            x = self._cap(x, layer, "y_pred", 2 * index)
            y = self._cap(y, layer, "y_true", 2 * index + (0 if same else 1))
            cx = contextual_similarity(x, y, self.distance, self.bandwidth, self.eps)
            value = 0.0 - tf.math.log(tf.maximum(cx, 1e-30))  # 0.0 - : no -0.0
            value = value * weight if weight != 1.0 else value
            total = value if total is None else total + value
        return tf.cast(total, self.dtype)
