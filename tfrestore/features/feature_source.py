"""The features a feature-space loss compares, and how a user extractor is saved.

Every feature loss (Perceptual, PDL, Contextual, LPIPS, D2SM) asks one
:class:`FeatureSource` for ``{layer: features}`` of its prediction and target. A
source is either

* a built-in backbone tapped at ``layers`` (``backbone``, ``weights``,
  ``preprocessing``, see :func:`tfrestore.features.get_feature_extractor`; a
  :class:`~tfrestore.features.FeatureExtractor` is reused with its shared
  variables), or
* a user ``feature_extractor``: a Keras model/layer or a callable mapping images
  to one feature map, a list of them (in ``layers`` order) or a dict
  ``{name: map}``. ``preprocessing``, when given, is applied before calling it.

``layers`` holds names only (weight 1 each); per-layer weights are
``layer_weights={name: weight}``, whose keys then are the layers tapped
(:func:`resolve_layers`). A dict in ``layers``, the old spelling, is a
``TypeError`` naming ``layer_weights``; a loss config saved with one is mapped by
:func:`upgrade_layers_config`.

Both are called the same way: preprocessing, then one Keras model (for a backbone
the extractor's functional model over ``backbone.get_layer(name).output``), then
float32 maps keyed by layer.

It is also the one serialiser of a user extractor: :meth:`FeatureSource.config`
gives the ``layers / backbone / weights / preprocessing / feature_extractor /
layer_weights`` entries of a loss config, and :meth:`~FeatureSource.save_extractor_weights` /
:meth:`~FeatureSource.load_extractor_weights` write a Keras-model extractor's
variables (trainable and not, e.g. BatchNorm statistics) into the loss's own
weight store, because Keras rebuilds such a model from its config with fresh
weights. The built-in backbones are never saved: they are rebuilt from
``weights``. Networks are kept in a :class:`tfrestore.utils.Hidden`, so Keras
saving never walks into them.

>>> import numpy as np
>>> from tfrestore.features.feature_source import FeatureSource
>>> src = FeatureSource(None, "vgg16", None, owner="demo",
...                     layer_weights={"relu1_2": 1.0, "relu2_2": 0.5})
>>> y = np.random.default_rng(0).uniform(size=(1, 16, 16, 3)).astype("float32")
>>> [(name, weight, tuple(fp.shape)) for name, weight, fp, ft in src.pairs(y, y)]
[('relu1_2', 1.0, (1, 16, 16, 64)), ('relu2_2', 0.5, (1, 8, 8, 128))]
>>> config = src.config()
>>> config["layers"], config["layer_weights"], config["feature_extractor"]
(['relu1_2', 'relu2_2'], {'relu1_2': 1.0, 'relu2_2': 0.5}, None)
"""

from __future__ import annotations

import numbers
import warnings

import keras
import numpy as np
import tensorflow as tf

from tfrestore.features.extractor import FeatureExtractor, get_feature_extractor
from tfrestore.features.preprocessing import Preprocessing
from tfrestore.utils import validation
from tfrestore.utils.hidden import Hidden

__all__ = [
    "FeatureSource", "config_layers", "normalize_layer_weights", "normalize_layers", "one_layer",
    "resolve_layers", "serialize_extractor", "upgrade_layers_config",
]

_COUNT = "extractor_count"


_DICT_IN_LAYERS = (
    "`layers` takes names (a str or a list); per-layer weights go in "
    "`layer_weights={{name: weight}}`: pass layer_weights={layers!r} instead of layers={layers!r}."
)


def normalize_layers(layers, arg="layers"):
    """``str | list`` of layer names -> ``{name: 1.0}`` (or None).

    A dict is a ``TypeError`` naming ``layer_weights`` (the old spelling of
    per-layer weights; see :func:`resolve_layers`).

    >>> normalize_layers(["relu1_2", "relu2_2"])
    {'relu1_2': 1.0, 'relu2_2': 1.0}
    """
    if layers is None:
        return None
    if isinstance(layers, str):
        return {layers: 1.0}
    if isinstance(layers, dict):
        raise TypeError(_DICT_IN_LAYERS.format(layers=layers))
    if isinstance(layers, (list, tuple)):
        for n in layers:
            if not isinstance(n, str):
                raise TypeError(f"`{arg}` entries must be layer names (str), got {n!r}.")
        names = list(layers)
        if not names:
            raise ValueError(f"`{arg}` must name at least one layer, got an empty list.")
        if len(set(names)) != len(names):
            raise ValueError(f"`{arg}` contains duplicate layer names: {names}.")
        return {n: 1.0 for n in names}
    raise TypeError(
        f"`{arg}` must be a layer name or a list of names (per-layer weights go in "
        f"`layer_weights={{name: weight}}`), got {type(layers).__name__}."
    )


def normalize_layer_weights(layer_weights, arg="layer_weights"):
    """``{name: weight}`` (or None) -> ``{name: float}``. Weights must be finite.

    >>> normalize_layer_weights({"relu1_2": 1, "relu2_2": 0.5})
    {'relu1_2': 1.0, 'relu2_2': 0.5}
    """
    if layer_weights is None:
        return None
    if not isinstance(layer_weights, dict):
        raise TypeError(
            f"`{arg}` must be a dict {{layer_name: weight}} or None, got "
            f"{type(layer_weights).__name__} {layer_weights!r} (layer names alone go in "
            f"`layers`)."
        )
    out = {}
    for k, v in layer_weights.items():
        if not isinstance(k, str):
            raise TypeError(f"`{arg}` keys must be layer names (str), got {k!r}.")
        if not isinstance(v, numbers.Real) or isinstance(v, bool):
            raise TypeError(f"`{arg}[{k!r}]` must be a real weight, got {v!r}.")
        if not abs(float(v)) < float("inf"):
            raise ValueError(f"`{arg}[{k!r}]` must be a finite weight, got {v!r}.")
        out[k] = float(v)
    if not out:
        raise ValueError(f"`{arg}` must name at least one layer, got an empty dict.")
    return out


def resolve_layers(layers, layer_weights):
    """``layers`` (names) and ``layer_weights`` (``{name: weight}``) -> ``{name:
    weight}`` (or None: neither given).

    ``layer_weights``, when given, names the layers tapped: ``layers`` must then be
    None or name exactly its keys (in any order; ``layers`` sets the order).

    >>> resolve_layers(["relu1_2", "relu2_2"], None)
    {'relu1_2': 1.0, 'relu2_2': 1.0}
    >>> resolve_layers(None, {"relu1_2": 1.0, "relu2_2": 0.5})
    {'relu1_2': 1.0, 'relu2_2': 0.5}
    """
    names = normalize_layers(layers)
    weighted = normalize_layer_weights(layer_weights)
    if weighted is None:
        return names
    if names is None:
        return weighted
    if set(names) != set(weighted):
        raise ValueError(
            f"`layers` {list(names)} and `layer_weights` {weighted} name different "
            f"layers: `layer_weights` alone chooses the layers tapped; give `layers` as "
            f"None or exactly its keys."
        )
    return {n: weighted[n] for n in names}


def config_layers(layers):
    """``{name: weight}`` (or None) -> the ``layers`` / ``layer_weights`` entries of a
    config: names as a list, and the weights only when one differs from 1.

    >>> config_layers({"relu1_2": 1.0, "relu2_2": 0.5})
    {'layers': ['relu1_2', 'relu2_2'], 'layer_weights': {'relu1_2': 1.0, 'relu2_2': 0.5}}
    >>> config_layers({"relu1_2": 1.0})
    {'layers': ['relu1_2'], 'layer_weights': None}
    """
    if layers is None:
        return {"layers": None, "layer_weights": None}
    weighted = any(w != 1.0 for w in layers.values())
    return {"layers": list(layers), "layer_weights": dict(layers) if weighted else None}


def upgrade_layers_config(config, takes_layer_weights=True):
    """A loss config saved when ``layers`` held ``{name: weight}`` -> today's
    ``layers`` / ``layer_weights`` entries (other configs are returned as they are).

    Only a config written by ``get_config`` is upgraded: it always holds a
    ``feature_extractor`` entry (None for a backbone) and, before the split, no
    ``layer_weights``. Hand-written arguments (a YAML recipe's ``args``) with a
    dict in ``layers`` are left to the constructor's ``TypeError`` naming
    ``layer_weights``.

    >>> old = {"layers": {"relu1_2": 1.0, "relu2_2": 0.5}, "feature_extractor": None}
    >>> upgrade_layers_config(old)["layers"], upgrade_layers_config(old)["layer_weights"]
    (['relu1_2', 'relu2_2'], {'relu1_2': 1.0, 'relu2_2': 0.5})
    """
    layers = config.get("layers")
    saved = "feature_extractor" in config and "layer_weights" not in config
    if not (saved and isinstance(layers, dict)):
        return config
    config = dict(config)
    if takes_layer_weights:
        config.update(config_layers(normalize_layer_weights(layers)))
    else:
        config["layers"] = list(layers)
    return config


def one_layer(layers, owner):
    """``layers`` of a user of exactly one layer: a name or a 1-element list -> the
    name (None stays None); anything else is a ``ValueError``.

    >>> one_layer(["conv5_4"], "D2SMLoss")
    'conv5_4'
    """
    if isinstance(layers, dict):
        raise TypeError(
            f"`layers` of {owner} takes one layer name, got the dict {layers!r}: {owner} "
            f"compares the features of one layer, so it takes no per-layer weights "
            f"(`layer_weights` belongs to the losses summing several layers)."
        )
    if isinstance(layers, (list, tuple)) and len(layers) == 1:
        layers = layers[0]
    if layers is None or isinstance(layers, str):
        return layers
    raise ValueError(
        f"`layers` of {owner} must be one layer name (a str or a 1-element list), got "
        f"{layers!r}: {owner} compares the features of one layer."
    )


def serialize_extractor(extractor, owner):
    """The config of a user ``feature_extractor`` (None stays None).

    A Keras layer/model is serialised by its config (without the ``build_config``
    a call adds, so a used loss and its clone have equal configs); a function
    must be registered with ``keras.saving.register_keras_serializable`` (Keras
    can only find registered functions again). Anything else is a ``ValueError``.
    """
    if extractor is None:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Keras warns about lambdas; we raise instead
            config = keras.saving.serialize_keras_object(extractor)
    except (TypeError, NotImplementedError):  # e.g. an object without get_config
        config = None
    ok = isinstance(config, dict) and config.get("class_name") != "__lambda__"
    if ok and not isinstance(extractor, keras.Layer):
        # "package>name" is the registered name of a registered function/object.
        name = config.get("config" if config.get("class_name") == "function" else "registered_name")
        ok = ">" in str(name)
    if not ok:
        raise ValueError(
            f"{owner}: the feature_extractor {extractor!r} cannot be serialized (needed by "
            f"get_config and model saving). Use a Keras model/layer, or a module-level "
            f"function decorated with @keras.saving.register_keras_serializable()."
        )
    return {k: v for k, v in config.items() if k not in ("build_config", "compile_config")}


class FeatureSource:
    """Frozen features of a feature-space loss: a backbone tap or a user extractor.

    Args:
        layers: str, list of str or None. Layer names (weight 1 each); None: the keys of
            ``layer_weights``, else the ``default_layers`` for a backbone, every
            output of a user extractor.
        backbone, weights, preprocessing: optional. As in
            :func:`tfrestore.features.get_feature_extractor`.
        feature_extractor: None, a :class:`FeatureExtractor`, a Keras model/layer
            or a callable (or its serialized config, as found in a loss config).
        owner: str. The loss name, for messages.
        default_layers: list of str. Layers tapped when ``layers`` is None (built-in
            backbones).
        rank: int or None. Required rank of every feature map (None: any rank >= 2).
        layer_weights: dict ``{name: weight}`` or None; when given its keys are the
            layers tapped (see :func:`resolve_layers`).
    """

    def __init__(self, layers, backbone, weights, feature_extractor=None, *, owner,
                 preprocessing=None, default_layers=None, rank=4, layer_weights=None):
        self.owner = owner
        self.rank = rank
        if isinstance(feature_extractor, dict):
            feature_extractor = keras.saving.deserialize_keras_object(feature_extractor)
        self.layers = resolve_layers(layers, layer_weights)
        if weights is not None and not isinstance(weights, str):
            weights = str(weights)  # os.PathLike: JSON-serializable config
        self.backbone, self.weights, self.preprocessing = backbone, weights, preprocessing
        self.min_size = 1
        self.custom = feature_extractor is not None and not isinstance(
            feature_extractor, FeatureExtractor
        )
        if self.custom:
            if not callable(feature_extractor):
                raise TypeError(
                    f"{owner}: `feature_extractor` must be a FeatureExtractor, a Keras "
                    f"model/layer or a callable mapping images (B, H, W, C) to a feature "
                    f"map, a list or a dict of them, got {type(feature_extractor).__name__}."
                )
            if isinstance(feature_extractor, keras.Layer):
                feature_extractor.trainable = False
            self._prep = None if preprocessing is None else Preprocessing(preprocessing)
            self._holder = Hidden((feature_extractor, feature_extractor))
            self.feature_extractor = feature_extractor
            return
        dtype = None
        if feature_extractor is not None:
            # Same backbone, weights and policy: the cache shares its variables.
            fx = feature_extractor
            self.backbone, self.weights, dtype = fx.backbone, fx.weights, fx.dtype_policy
            if preprocessing is None and fx.preprocessing != fx._default_preprocessing:
                self.preprocessing = fx.preprocessing.spec
            if self.layers is None:
                self.layers = {n: 1.0 for n in fx.layers}
        if self.layers is None:
            self.layers = normalize_layers(default_layers)
        fx = get_feature_extractor(
            self.backbone, list(self.layers), self.weights,
            preprocessing=self.preprocessing, dtype=dtype,
        )
        self.min_size = max(fx.min_input_size(n) for n in self.layers)
        # The loss calls the functional tap model itself: one hop to the backbone.
        self._prep = fx.preprocessing
        self._holder = Hidden((fx, fx.model))
        self.feature_extractor = None

    # ------------------------------------------------------------- features
    def network(self):
        """The frozen network: a :class:`FeatureExtractor` or the user's extractor."""
        return self._holder.value[0]

    def __call__(self, images):
        """``{layer: float32 features}`` in the order of ``self.layers``."""
        net = self._holder.value[1]  # a FeatureExtractor's functional model, or the user's
        if self._prep is not None:
            images = self._prep(images)
        if self.min_size > 1 and images.shape.rank == 4:  # a backbone: its size is known
            validation.check_min_size(images, self.min_size, self.min_size, "images",
                                      self.describe(), self.owner)
        out = net(images, training=False) if isinstance(net, keras.Layer) else net(images)
        names = list(self.layers) if self.layers is not None else None
        if isinstance(out, dict):
            names = names or list(out)
            missing = [n for n in names if n not in out]
            if missing:
                raise ValueError(
                    f"{self.owner}: `layers` asks for {missing}, which the "
                    f"feature_extractor does not return (it returns {sorted(out)})."
                )
            feats = {n: out[n] for n in names}
        else:
            outs = list(out) if isinstance(out, (list, tuple)) else [out]
            if names is None:
                names = [str(i) for i in range(len(outs))]
            if len(names) != len(outs):
                raise ValueError(
                    f"{self.owner}: the feature_extractor returned {len(outs)} feature "
                    f"map(s) but `layers` names {len(names)}: {names}. Return a dict "
                    f"{{name: map}} or a list in `layers` order."
                )
            feats = dict(zip(names, outs))
        result = {}
        for n, f in feats.items():
            f = tf.convert_to_tensor(f)
            rank = f.shape.rank
            if rank is not None and (rank != self.rank if self.rank else rank < 2):
                want = f"rank {self.rank} (B, h, w, C)" if self.rank else "(batch, ...)"
                raise ValueError(
                    f"{self.owner}: feature map {n!r} must be {want}, got shape "
                    f"{tuple(f.shape)}."
                )
            # Sorting, exponentials and long sums are done in float32 even under
            # mixed precision: float16 loses the ordering of close activations.
            result[n] = tf.cast(f, tf.float32)
        return result

    def pairs(self, y_true, y_pred):
        """``[(layer, weight, f(y_pred), f(y_true))]``; the target side carries no
        gradient. Two passes instead of one on ``concat([y_true, y_pred])``: the
        target pass needs no backward, which saves a third of the backbone's work."""
        ft = self(tf.stop_gradient(y_true))
        fp = self(y_pred)
        return [(n, self.weight(n), fp[n], tf.stop_gradient(ft[n])) for n in fp]

    def weight(self, name):
        return 1.0 if self.layers is None else self.layers[name]

    def describe(self):
        """What the minimum input size belongs to, for size errors."""
        return f"the minimum input size of {self.backbone} layers {list(self.layers)}"

    # ---------------------------------------------------------- serialising
    def config(self):
        """The ``layers / backbone / weights / preprocessing / feature_extractor /
        layer_weights`` entries of the owning loss's config (``layer_weights`` only
        holds a dict when a weight differs from 1)."""
        return {
            **config_layers(self.layers),
            "backbone": self.backbone,
            "weights": self.weights,
            "preprocessing": self.preprocessing,
            "feature_extractor": serialize_extractor(self.feature_extractor, self.owner),
        }

    def saved_extractor(self):
        """The user's Keras layer/model whose variables the loss saves (else None)."""
        fx = self.feature_extractor
        return fx if isinstance(fx, keras.Layer) and fx.weights else None

    def save_extractor_weights(self, store):
        """Write a Keras-model extractor's variables into ``store`` (entries
        ``extractor_count`` and ``extractor_<i>``); no-op otherwise."""
        fx = self.saved_extractor()
        if fx is None:
            return
        for i, v in enumerate(fx.weights):
            store[f"extractor_{i}"] = np.asarray(keras.ops.convert_to_numpy(v))
        store[_COUNT] = np.asarray(len(fx.weights), np.int64)

    def load_extractor_weights(self, store):
        """Restore them; True when restored, False when ``store`` holds none (a file
        written before extractors were saved, or a visit without data). A
        ``ValueError`` naming the fix when they do not fit the rebuilt extractor."""
        fx = self.saved_extractor()
        if store is None or fx is None or _COUNT not in store:
            return False
        variables = fx.weights
        count = int(np.asarray(store[_COUNT]))
        if count != len(variables):
            raise ValueError(
                f"{self.owner}: the file holds {count} variables of the feature_extractor, "
                f"the rebuilt extractor has {len(variables)}. Load it with the same "
                f"extractor architecture as when it was saved."
            )
        values = [np.asarray(store[f"extractor_{i}"]) for i in range(count)]
        for v, a in zip(variables, values):
            if tuple(v.shape) != a.shape:
                raise ValueError(
                    f"{self.owner}: the saved feature_extractor variable {v.path!r} has "
                    f"shape {a.shape}, the rebuilt extractor expects {tuple(v.shape)}. Load "
                    f"it with the same extractor architecture as when it was saved."
                )
        for v, a in zip(variables, values):
            v.assign(a.astype(v.dtype))
        return True

    def warn_fresh_extractor(self):
        """Warn that a Keras-model extractor was rebuilt without its saved weights."""
        warnings.warn(
            f"{self.owner}: the Keras-model feature_extractor "
            f"{self.feature_extractor.name!r} was rebuilt from its config and no saved "
            f"weights were loaded into it, so it holds freshly initialised weights and the "
            f"loss differs from the one that was saved. Load a file saved by this version "
            f"of tfrestore (it stores the extractor's weights with the loss), or build the "
            f"loss again with your trained extractor (feature_extractor=<model>) and "
            f"compile with it.",
            UserWarning,
            stacklevel=3,
        )
