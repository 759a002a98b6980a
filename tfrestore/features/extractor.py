"""One API to tap named layers of pretrained backbones.

>>> import numpy as np
>>> from tfrestore.features import get_feature_extractor
>>> fx = get_feature_extractor("vgg19", ["conv5_4", "relu2_2"], weights=None)
>>> feats = fx(np.random.rand(1, 32, 32, 3).astype("float32"))   # RGB in [0, 1]
>>> {k: tuple(v.shape) for k, v in feats.items()}
{'conv5_4': (1, 2, 2, 512), 'relu2_2': (1, 16, 16, 128)}
>>> fx.stride("conv5_4"), fx.channels("conv5_4"), fx.receptive_field("conv5_4")
(16, 512, 252)

An extractor is the keras-hub pattern: ``fx.model`` is one functional Keras model
from the backbone's input to ``{name: backbone.get_layer(name).output}``. Backbones
are built once per ``(backbone, weights, dtype policy, distribution strategy)`` and
shared: every extractor and loss asking for VGG16 ImageNet weights uses the same
variables. They are frozen (``trainable=False``, down to the TF variables), always
run with ``training=False``, and gradients flow to the input images.
"""

from __future__ import annotations

import difflib

import keras
import tensorflow as tf

from tfrestore.features import alexnet, resnet, sources, vgg
from tfrestore.features.backbone import compute_geometry, seeded_init
from tfrestore.features.preprocessing import Preprocessing
from tfrestore.utils.freeze import freeze
from tfrestore.utils.validation import refuse_renamed

__all__ = [
    "FeatureExtractor",
    "get_feature_extractor",
    "clear_cache",
    "available_backbones",
    "BACKBONES",
]

BACKBONES = {
    "vgg16": vgg.VGG16,
    "vgg19": vgg.VGG19,
    "alexnet": alexnet.ALEXNET,
    "resnet50": resnet.RESNET50,
    "resnet101": resnet.RESNET101,
}

#: (backbone, weights file, policy, strategy) -> (frozen Keras model, {layer: LayerGeometry})
_CACHE = {}


def available_backbones():
    """Names accepted by :func:`get_feature_extractor`."""
    return sorted(BACKBONES)


def clear_cache():
    """Forget every cached backbone (extractors already handed out keep theirs)."""
    _CACHE.clear()


def _build(spec, source, policy):
    """The backbone as a frozen Keras model holding the weights of ``source``."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        model = spec.build()
    finally:
        keras.config.set_dtype_policy(previous)
    if source.format == sources.RANDOM_FORMAT:
        (spec.random_init or seeded_init)(model)
    else:
        loader = spec.loaders.get(source.format)
        if loader is None:
            raise ValueError(
                f"{spec.name} cannot load {source.format} weights ({source.path}); "
                f"supported: {sorted(spec.loaders)}."
            )
        loader(model, source.path)
    return freeze(model)  # TF-level too: an eager tape must not record the backbone's weights


def _shared_backbone(spec, source, policy):
    strategy = tf.distribute.get_strategy() if tf.distribute.has_strategy() else None
    key = (spec.name, source.cache_key(), policy, strategy)
    if key not in _CACHE:
        model = _build(spec, source, policy)
        _CACHE[key] = (model, compute_geometry(model))
    return _CACHE[key]


class FeatureExtractor:
    """Callable returning ``{layer: features}`` for RGB ``[0, 1]`` NHWC images.

    Create with :func:`get_feature_extractor`. Attributes: ``backbone`` (name),
    ``layers`` (as requested), ``weights`` (the ``weights`` argument),
    ``preprocessing`` (:class:`Preprocessing`), ``model`` (the frozen functional
    Keras model ``{layer: backbone.get_layer(layer).output}``, taking
    *preprocessed* images), ``dtype_policy`` (the backbone's policy name).
    """

    def __init__(self, spec, backbone, geometry, layers, weights, preprocessing, default,
                 policy):
        # ``_backbone``: the shared frozen Keras model, the same object for every
        # extractor of the same (backbone, weights, policy, strategy).
        self._spec, self._backbone, self._geometry = spec, backbone, geometry
        self._default_preprocessing = Preprocessing(default)
        self.backbone = spec.name
        # As requested here: the shared backbone may have been built from another
        # spelling of the same file ("imagenet" vs. its path).
        self.weights = weights
        self.preprocessing = Preprocessing(preprocessing or default)
        self.dtype_policy = policy
        hidden = (backbone.layers[0].name, *spec.hidden_prefixes)  # the input, padding helpers
        self._valid = [name for name in geometry if not name.startswith(hidden)]
        self.layers = list(layers)
        for name in self.layers:
            self._check_layer(name)
        outputs = {n: backbone.get_layer(n).output for n in dict.fromkeys(self.layers)}
        self.model = keras.Model(backbone.input, outputs, name=f"{spec.name}_taps")
        self._min_size = max(self.min_input_size(n) for n in self.layers)

    def _check_layer(self, name):
        """A ``ValueError`` naming the fix unless ``name`` can be tapped."""
        if not isinstance(name, str):
            raise TypeError(f"layer names must be strings, got {name!r}.")
        if name in self._valid:
            return
        equivalent = self._spec.keras_equivalent(name)
        if equivalent is not None and equivalent in self._geometry:
            why = ""
            if equivalent.startswith("relu"):
                why = (
                    f" Keras fuses the ReLU into its Conv2D, so {name!r} is the output "
                    f"after the ReLU; {equivalent.replace('relu', 'conv')!r} is the one before."
                )
            raise ValueError(
                f"{self.backbone} layer {name!r} is a Keras Applications name; tfrestore "
                f"names layers torchvision-style (see tfrestore.features): use "
                f"{equivalent!r}.{why}"
            )
        valid = self.valid_layers
        close = difflib.get_close_matches(name, valid, n=3)
        hint = f" Did you mean {close}?" if close else ""
        if self._spec.main_layers:
            shown = self._spec.main_layers(self._backbone)
            more = f" (or any other of the {len(valid)} layer names of the Keras model)"
        else:
            shown, more = valid, ""
        raise ValueError(
            f"Unknown {self.backbone} layer {name!r}.{hint} Valid names: {', '.join(shown)}{more}."
        )

    # --------------------------------------------------------------- calling
    def __call__(self, images):
        images = tf.convert_to_tensor(images)
        if not images.dtype.is_floating:
            raise TypeError(
                f"{self.backbone} feature extractor: `images` must be a floating-point RGB "
                f"tensor in [0, 1], got dtype {images.dtype.name}."
            )
        shape = images.shape
        if shape.rank is not None and (
            shape.rank != 4 or (shape[-1] is not None and shape[-1] != 3)
        ):
            raise ValueError(
                f"{self.backbone} feature extractor: `images` must be an NHWC batch of RGB "
                f"images (batch, height, width, 3) in [0, 1], got shape {tuple(shape)}."
            )
        for axis in (1, 2):
            if shape.rank == 4 and shape[axis] is not None and shape[axis] < self._min_size:
                raise ValueError(
                    f"{self.backbone} feature extractor: `images` is {shape[1]}x{shape[2]} "
                    f"pixels, smaller than the minimum input size {self._min_size}x"
                    f"{self._min_size} for layers {self.layers}."
                )
        feats = self.model(self.preprocessing(images), training=False)
        return {n: feats[n] for n in self.layers}

    # -------------------------------------------------------------- geometry
    def _geo(self, layer):
        self._check_layer(layer)
        return self._geometry[layer]

    def stride(self, layer):
        """Total stride (input pixels per feature position) of ``layer``."""
        return self._geo(layer).stride

    def channels(self, layer):
        """Number of channels of ``layer``."""
        return self._geo(layer).channels

    def receptive_field(self, layer):
        """Theoretical receptive field (pixels, one side) of ``layer``."""
        return self._geo(layer).receptive_field

    def min_input_size(self, layer):
        """Smallest square input giving ``layer`` a non-empty output."""
        return self._geo(layer).min_input_size

    @property
    def valid_layers(self):
        """Every layer name of the backbone that can be tapped."""
        return list(self._valid)

    def __repr__(self):
        return (
            f"FeatureExtractor(backbone={self.backbone!r}, layers={self.layers!r}, "
            f"weights={self.weights!r}, preprocessing={self.preprocessing.spec!r})"
        )


def get_feature_extractor(
    backbone, layers, weights="imagenet", *, preprocessing=None, dtype=None, **kwargs
):
    """Frozen, shared feature extractor tapping ``layers`` of ``backbone``.

    Args:
        backbone: ``"vgg16"``, ``"vgg19"``, ``"alexnet"``, ``"resnet50"`` or ``"resnet101"``.
        layers: a layer name or a list of them, in the scheme of
            :mod:`tfrestore.features`: VGG ``conv{b}_{i}`` (before the ReLU),
            ``relu{b}_{i}``, ``pool{b}``; AlexNet ``conv1..5``, ``relu1..5``,
            ``pool1``, ``pool2``, ``pool5``; ResNet the Keras layer names
            (``conv4_block6_out`` ...). Keras' VGG names (``block4_conv3``) are
            refused with the equivalent (``relu4_3``).
        weights: ``"imagenet"`` (Keras Applications weights, Caffe preprocessing),
            ``"torchvision"`` (VGG/AlexNet, ImageNet mean/std preprocessing), a
            file path (``.npz``/``.pth`` torch state dict or Keras ``.h5``), or
            ``None`` for seeded random weights. See :mod:`tfrestore.features.sources`.
        preprocessing: str, dict or None. Overrides the normalisation implied by
            ``weights`` (``"caffe"``, ``"torch"``, ``"none"`` or a mean/std dict).
        dtype: str or ``keras.DTypePolicy``. The backbone's dtype policy, as Keras
            layers take it (default: the global policy; ``"mixed_float16"`` gives
            float16 features). Formerly ``dtype_policy``, which raises ``TypeError``.

    Returns:
        A :class:`FeatureExtractor`; calling it on RGB ``[0, 1]`` NHWC images
        returns ``{layer: NHWC tensor}`` keyed by the names as given.

    Raises:
        ValueError: unknown backbone or layer (the message lists valid names).
        tfrestore.utils.WeightsNotFoundError: weights file unavailable offline
            (the message says which file to put where).
    """
    refuse_renamed(kwargs, {"dtype_policy": "dtype"}, "get_feature_extractor",
                   allow_other=False)
    if not isinstance(backbone, str) or backbone.lower() not in BACKBONES:
        raise ValueError(f"`backbone` must be one of {available_backbones()}, got {backbone!r}.")
    spec = BACKBONES[backbone.lower()]
    if isinstance(layers, str):
        layers = [layers]
    layers = list(layers)
    if not layers:
        raise ValueError("`layers` must name at least one layer.")
    source = sources.resolve_weight_source(spec.name, spec.known_weights, weights)
    policy = keras.dtype_policies.get(dtype or keras.config.dtype_policy()).name
    model, geometry = _shared_backbone(spec, source, policy)
    return FeatureExtractor(
        spec, model, geometry, layers, source.spec, preprocessing, source.preprocessing, policy
    )
