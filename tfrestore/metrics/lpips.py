"""LPIPS v0.1 (Zhang et al., CVPR 2018): ``lpips`` (per image) and the ``LPIPS`` metric.

LPIPS compares unit-normalised deep features of two images, weighted per channel by
learned linear layers:

    x ∈ [0, 1]  ->  z = ((2x - 1) - shift) / scale       (the official ScalingLayer;
                                                          shift = (-.030, -.088, -.188),
                                                          scale = (.458, .448, .450))
    f̂ = f / (sqrt(Σ_c f²) + 1e-10)                       (per position, per tapped layer)
    LPIPS = Σ_layers mean_{h,w} Σ_c w_c (f̂₀ - f̂₁)²

Taps: AlexNet ``relu1..relu5``; VGG16 ``relu1_2, relu2_2, relu3_3, relu4_3, relu5_3``
(``backbone="alexnet"`` is the lpips package's ``net="alex"``, ``"vgg16"`` its
``net="vgg"``). The backbones are the torchvision ImageNet networks *without*
torchvision's mean/std normalisation (LPIPS applies only its own scaling layer),
tapped through :class:`tfrestore.features.feature_source.FeatureSource` with
``preprocessing="none"``; the layers and the preprocessing are fixed by the
linear layers, which were trained on exactly these taps.

**Inputs are RGB images in [0, 1]** (the official code takes [-1, 1]; its
``normalize=True`` path, used by pyiqa for the published TID2013 values, maps
[0, 1] -> [-1, 1] exactly as here).

Weights (found offline first, see :func:`tfrestore.utils.resolve_weights_file`):
the backbone ``alexnet_torchvision_features.npz`` / ``vgg16_torchvision_features.npz``
(or the official torchvision ``.pth``) and the linear layers ``lpips_v0.1_alex.npz`` /
``lpips_v0.1_vgg.npz`` (keys ``lin{k}.model.1.weight``, shape ``(1, C, 1, 1)``; or the
official ``alex.pth`` / ``vgg.pth`` of the lpips package saved as
``lpips_v0.1_alex.pth`` / ``lpips_v0.1_vgg.pth``), in ``$TFRESTORE_WEIGHTS_DIR`` or
the Keras cache.

See docs/lpips.md (agreement with the published values).
"""

from __future__ import annotations

import os

import keras
import numpy as np
import tensorflow as tf

from tfrestore.utils import validation
from tfrestore.utils.hidden import Hidden
from tfrestore.utils.weights import (
    CorruptWeightsError,
    WeightsNotFoundError,
    resolve_weights_file,
)
from tfrestore.utils.text import short_reason

__all__ = [
    "lpips",
    "LPIPS",
    "LPIPSNetwork",
    "get_lpips_network",
    "lpips_available",
    "LPIPS_LAYERS",
    "check_backbone",
]

LPIPS_LAYERS = {
    "alexnet": ("relu1", "relu2", "relu3", "relu4", "relu5"),
    "vgg16": ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3"),
}
#: the lpips package's ``net`` names, which its weight files carry
_LPIPS_NET = {"alexnet": "alex", "vgg16": "vgg"}
_LIN_ORIGIN = (
    "https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/{net}.pth"
)
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
EPS = 1e-10

_CACHE = {}


def check_backbone(backbone, owner):
    """``backbone`` if LPIPS has linear layers for it, else a ``ValueError``."""
    if backbone not in LPIPS_LAYERS:
        old = {v: k for k, v in _LPIPS_NET.items()}.get(backbone)
        hint = f" (the lpips package's net={backbone!r} is backbone={old!r})" if old else ""
        raise ValueError(
            f"{owner}: `backbone` must be one of {sorted(LPIPS_LAYERS)}, got {backbone!r}{hint}."
        )
    return backbone


def _lin_file(backbone):
    return f"lpips_v0.1_{_LPIPS_NET[backbone]}.npz"


def load_lin_weights(backbone, path=None):
    """The 5 LPIPS linear-layer weight vectors ``[(C_k,), ...]`` of ``backbone``."""
    net = _LPIPS_NET[check_backbone(backbone, "LPIPS")]
    npz = _lin_file(backbone)
    filename = f"lpips_v0.1_{net}.pth"
    if path is None:
        path = resolve_weights_file(
            filename, origin=_LIN_ORIGIN.format(net=net), alternatives=(npz,),
            description=f"LPIPS v0.1 {net} linear layers ({npz} or {filename})",
        )
    else:
        path = resolve_weights_file(os.path.basename(str(path)), path=path,
                                    description=f"LPIPS v0.1 {net} linear layers")
    from tfrestore.features.sources import load_state_dict

    state = load_state_dict(path)
    out = []
    for k, layer in enumerate(LPIPS_LAYERS[backbone]):
        key = f"lin{k}.model.1.weight"
        if key not in state:
            raise ValueError(
                f"{path}: no `{key}` in the LPIPS weights (found {sorted(state)[:6]}...). "
                f"Expected the lpips v0.1 `{net}` linear layers."
            )
        w = np.asarray(state[key], np.float32)
        if w.ndim != 4 or w.shape[0] != 1 or w.shape[2:] != (1, 1):
            raise ValueError(f"{path}: `{key}` must have shape (1, C, 1, 1), got {w.shape}.")
        out.append(w.reshape(-1))
    return out


class LPIPSNetwork:
    """Frozen LPIPS network: ``net(y_true, y_pred) -> (B,)`` for RGB [0, 1] images.

    Build with :func:`get_lpips_network` (cached). The backbone features come from a
    :class:`~tfrestore.features.feature_source.FeatureSource` with
    ``preprocessing="none"`` (LPIPS applies its own scaling layer).

    Args:
        backbone: ``"alexnet"`` or ``"vgg16"``.
        weights: str or None. The backbone's weights (see
            :func:`tfrestore.features.get_feature_extractor`).
        lin_weights: str, list of arrays or None. The linear layers: None (the official
            file, found offline first), a path, or a list of per-layer channel weights.
        dtype: str or ``keras.DTypePolicy``. The backbone's dtype policy, as Keras
            layers take it (None: the global policy). Formerly ``dtype_policy``,
            which raises ``TypeError``.
    """

    def __init__(self, backbone="alexnet", weights="torchvision", lin_weights=None,
                 dtype=None, **kwargs):
        from tfrestore.features import get_feature_extractor
        from tfrestore.features.feature_source import FeatureSource

        validation.refuse_renamed(
            kwargs, {"dtype_policy": "dtype"}, "LPIPSNetwork", allow_other=False
        )

        self.backbone = check_backbone(backbone, "LPIPS")
        layers = list(LPIPS_LAYERS[backbone])
        try:
            if isinstance(lin_weights, (list, tuple)):
                lins = [np.asarray(w, np.float32).reshape(-1) for w in lin_weights]
            else:
                lins = load_lin_weights(backbone, lin_weights)
            extractor = get_feature_extractor(
                backbone, layers, weights, preprocessing="none", dtype=dtype
            )
        except WeightsNotFoundError as exc:
            if isinstance(exc, CorruptWeightsError):
                raise  # the file is there: its own message says what to do
            raise WeightsNotFoundError(
                f"LPIPS-{backbone} needs two weight files: the torchvision backbone "
                f"`{backbone}_torchvision_features.npz` and the linear layers "
                f"`{_lin_file(backbone)}` (put both into $TFRESTORE_WEIGHTS_DIR, or pass "
                f"`weights=` / `lin_weights=` paths). {exc}"
            ) from exc
        self.source = FeatureSource(layers, backbone, weights, extractor, owner="LPIPS")
        for layer, w in zip(layers, lins):
            c = extractor.channels(layer)
            if w.shape != (c,):
                raise ValueError(
                    f"LPIPS-{backbone}: linear weights for {layer} have {w.shape[0]} channels, "
                    f"the backbone has {c}."
                )
        self.lin = lins  # NumPy: no graph tensors kept on a shared object
        self.min_size = self.source.min_size

    def scale(self, images):
        """RGB [0, 1] -> the input of the official ScalingLayer output."""
        x = tf.cast(images, tf.float32) * 2.0 - 1.0
        return (x - tf.constant(SHIFT, tf.float32)) / tf.constant(SCALE, tf.float32)

    def features(self, images, normalise=True):
        """Float32 features of the tapped layers, unit-normalised unless ``normalise=False``."""
        out = []
        for f in self.source(self.scale(images)).values():
            f = tf.cast(f, tf.float32)
            out.append(unit_normalise(f) if normalise else f)
        return out

    def __call__(self, y_true, y_pred, target_gradient=True):
        if not target_gradient:  # a loss: the gradient w.r.t. y_pred only, hand-written
            ft = self.features(tf.stop_gradient(y_true))
            fp = self.features(y_pred, normalise=False)
            values = [distance_to_unit(a, b, w) for a, b, w in zip(ft, fp, self.lin)]
        else:
            ft = self.features(y_true)
            fp = self.features(y_pred)
            values = [_distance(a, b, w) for a, b, w in zip(ft, fp, self.lin)]
        total = values[0]
        for value in values[1:]:
            total = total + value
        return total


def _distance(a, b, w):
    """``mean_hw Σ_c w_c (a - b)²``: the ``lin`` 1x1 conv (no bias) and spatial mean."""
    return tf.reduce_mean(tf.reduce_sum(tf.square(a - b) * tf.constant(w), axis=-1), axis=[1, 2])


def unit_normalise(f):
    """``f / (sqrt(Σ_c f²) + 1e-10)`` over the last axis (the lpips package's
    ``normalize_tensor``)."""
    return f / (_norm(tf.reduce_sum(tf.square(f), axis=-1, keepdims=True)) + EPS)


def _norm(squares):
    # max(., 1e-30): identical value (features are 0 there), finite gradient.
    return tf.sqrt(tf.maximum(squares, 1e-30))


def distance_to_unit(target, f, w):
    """One layer's LPIPS term ``mean_hw Σ_c w_c (target - unit_normalise(f))²``, (B,).

    ``target`` is already unit-normalised and gets no gradient. The value is
    computed with exactly the operations of the two-sided path; the gradient
    w.r.t. ``f`` is written out, because automatic differentiation of the
    normalisation (division, square root, broadcast sums) costs about twice as
    many full-size elementwise passes. With ``s = |f| + eps`` and
    ``r = 2 w (f / s - target)``::

        d term / d f = g / (h w s) * (r - f * (r . f) / (s |f|))

    (no radial part where ``|f|² <= 1e-30``, as with the clamp in the value).
    """
    w = tf.constant(w, tf.float32)
    target = tf.stop_gradient(target)

    @tf.custom_gradient
    def term(f):
        squares = tf.reduce_sum(tf.square(f), axis=-1, keepdims=True)
        norm = _norm(squares)
        s = norm + EPS
        diff = target - f / s
        value = tf.reduce_mean(tf.reduce_sum(tf.square(diff) * w, axis=-1), axis=[1, 2])

        def grad(g):
            r = diff * (-2.0 * w)  # d/d(f / s) of Σ_c w_c diff_c²
            dot = tf.reduce_sum(r * f, axis=-1, keepdims=True)
            radial = tf.where(squares > 1e-30, dot / (s * norm), 0.0)
            positions = tf.cast(tf.shape(f)[1] * tf.shape(f)[2], tf.float32)
            scale = tf.reshape(g, (-1, 1, 1, 1)) / (positions * s)
            return scale * (r - f * radial)

        return value, grad

    return term(f)


def get_lpips_network(
    backbone="alexnet", weights="torchvision", lin_weights=None, dtype="float32", **kwargs
):
    """:class:`LPIPSNetwork`, cached when ``lin_weights`` is None or a path.

    This is the metric's network (:func:`lpips`, :class:`LPIPS`), so its backbone runs
    in float32 by default, also under ``mixed_float16``: a measurement is the same
    whatever the training precision. ``LPIPSLoss`` builds its own ``LPIPSNetwork`` under
    the global policy instead.

    Args:
        backbone, weights, lin_weights: str, str or None, str or list or None. As in
            :class:`LPIPSNetwork`.
        dtype: str or ``keras.DTypePolicy``. The backbone's dtype policy, as Keras
            layers take it. Defaults to ``"float32"``; None means the global policy
            (as in :class:`LPIPSNetwork`). Formerly ``dtype_policy``, which raises
            ``TypeError``.
    """
    validation.refuse_renamed(
        kwargs, {"dtype_policy": "dtype"}, "get_lpips_network", allow_other=False
    )
    if isinstance(lin_weights, (list, tuple)):
        with tf.init_scope():
            return LPIPSNetwork(backbone, weights, lin_weights, dtype)
    lin_key = None if lin_weights is None else str(lin_weights)
    policy = keras.dtype_policies.get(dtype or keras.config.dtype_policy()).name
    key = (backbone, str(weights), lin_key, policy,
           tf.distribute.get_strategy() if tf.distribute.has_strategy() else None)
    if key not in _CACHE:
        with tf.init_scope():  # variables are created eagerly even from a traced call
            _CACHE[key] = LPIPSNetwork(backbone, weights, lin_weights, dtype)
    return _CACHE[key]


_AVAILABLE = {}


def lpips_available(backbone="alexnet"):
    """``(True, None)`` when LPIPS-``backbone`` can be built (its weights are found),
    else ``(False, reason)``. Builds (and caches) the LPIPS network; the answer is
    cached per process and weights location, as probing may try a download."""
    key = (backbone, os.environ.get("TFRESTORE_WEIGHTS_DIR"), os.environ.get("KERAS_HOME"))
    if key not in _AVAILABLE:
        try:
            get_lpips_network(backbone)
            _AVAILABLE[key] = (True, None)
        except WeightsNotFoundError as e:
            _AVAILABLE[key] = (False, short_reason(e))
    return _AVAILABLE[key]


def _prepare(y_true, y_pred, owner, network):
    validation.check_raw_dtype(y_true, "y_true", owner)
    validation.check_raw_dtype(y_pred, "y_pred", owner)
    y_true, y_pred = validation.check_image_pair(
        y_true, y_pred, expected_channels=3, loss_name=owner
    )
    validation.check_min_size(
        y_pred, network.min_size, network.min_size, "y_pred",
        f"the minimum input size of LPIPS-{network.backbone}", loss_name=owner,
    )
    return y_true, y_pred


def lpips(y_true, y_pred, backbone="alexnet", weights="torchvision", lin_weights=None):
    """LPIPS v0.1 distance of each image pair, shape ``(B,)`` (lower = more similar).

    Args:
        y_true, y_pred: RGB NHWC batches in [0, 1] of the same shape.
        backbone: ``"alexnet"`` (the standard LPIPS) or ``"vgg16"``.
        weights: str. Backbone weights: ``"torchvision"`` (default) or a file path.
        lin_weights: str or None. Path of the linear-layer file (None: found by name).

    Example (requires the weight files, so not run here)::

        lpips(reference, distorted)            # tf.Tensor([0.7237 ...])
    """
    network = get_lpips_network(backbone, weights, lin_weights, "float32")
    y_true, y_pred = _prepare(y_true, y_pred, "lpips", network)
    return network(y_true, y_pred)


@keras.saving.register_keras_serializable(package="tfrestore")
class LPIPS(keras.metrics.Mean):
    """Streaming mean LPIPS over images: ``model.compile(metrics=[LPIPS()])``.

    Arguments as in :func:`lpips` (images RGB in [0, 1]); each image counts once
    (``sample_weight`` weights images). The network is built (and the weight files
    resolved) at construction and shared between instances.
    """

    def __init__(
        self, backbone="alexnet", weights="torchvision", lin_weights=None, name="lpips",
        dtype=None,
    ):
        super().__init__(name=name, dtype=dtype)
        self.backbone = check_backbone(backbone, "LPIPS")
        self.weights_spec = weights if weights is None or isinstance(weights, str) else str(weights)
        self.lin_weights = lin_weights if lin_weights is None else str(lin_weights)
        # Built now (eagerly), not inside the first traced update_state; float32 backbone
        # (get_lpips_network's default) whatever the global policy.
        self._holder = Hidden(
            get_lpips_network(self.backbone, self.weights_spec, self.lin_weights)
        )

    def update_state(self, y_true, y_pred, sample_weight=None):
        network = self._holder.value
        y_true, y_pred = _prepare(y_true, y_pred, self.name, network)
        values = network(y_true, y_pred)
        return super().update_state(values, sample_weight=sample_weight)

    def get_config(self):
        return {
            **super().get_config(),
            "backbone": self.backbone,
            "weights": self.weights_spec,
            "lin_weights": self.lin_weights,
        }
