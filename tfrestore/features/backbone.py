"""Backbone descriptions shared by the VGG, AlexNet and ResNet modules.

A :class:`BackboneSpec` says how to build a backbone as a Keras functional model
(input: an already preprocessed NHWC image of any size), how to load each weight
format into it, which layer names may be tapped and which Keras names they refuse. The
geometry helpers compute stride, receptive field and minimum input size of every
layer by walking the functional graph, so they hold for any backbone.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import keras
import numpy as np

from tfrestore.utils import keras_compat

__all__ = ["BackboneSpec", "LayerGeometry", "compute_geometry", "seeded_init"]


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    name: str
    build: Callable[[], keras.Model]
    #: {"keras": fn(model, path), "torch": fn(model, path)}
    loaders: dict
    #: {"imagenet": KnownWeights, "torchvision": KnownWeights}
    known_weights: dict
    #: fn(name) -> the tfrestore name of a Keras Applications layer name (which is
    #: refused with a ValueError naming it), or None
    keras_equivalent: Callable[[str], str | None] = lambda name: None
    #: names listed in "unknown layer" errors (None: every layer)
    main_layers: Callable[[keras.Model], list] | None = None
    #: layers never offered as taps (e.g. padding helpers)
    hidden_prefixes: tuple = ()
    #: fn(model) giving deterministic weights for ``weights=None`` (default: seeded_init)
    random_init: Callable[[keras.Model], None] | None = None


@dataclasses.dataclass(frozen=True)
class LayerGeometry:
    stride: int
    receptive_field: int
    channels: int
    min_input_size: int


def _as_pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _op_params(layer):
    """(kernel_extent, stride, padding_mode, pad_before+after) of a spatial layer."""
    if isinstance(layer, keras.layers.ZeroPadding2D):
        (top, bottom), _ = layer.padding
        return 1, 1, "pad", top + bottom
    if isinstance(layer, keras.layers.Conv2D):
        k, s, d = layer.kernel_size[0], layer.strides[0], layer.dilation_rate[0]
        return d * (k - 1) + 1, s, layer.padding, 0
    if isinstance(layer, (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)):
        k, s = _as_pair(layer.pool_size)[0], _as_pair(layer.strides)[0]
        return k, s, layer.padding, 0
    return 1, 1, "same", 0


def _inbound_layers(layer):
    inputs = layer.input
    inputs = inputs if isinstance(inputs, (list, tuple)) else [inputs]
    return [keras_compat.producing_layer(t) for t in inputs]


def compute_geometry(model, sizes=range(1, 4097)):
    """``{layer_name: LayerGeometry}`` for every layer of a functional model.

    The minimum input size is the smallest square input for which the layer and all
    layers feeding it have a non-empty output (PyTorch/Keras floor semantics for
    ``valid`` windows, ``ceil(h / stride)`` for ``same``).
    """
    rf, jump = {}, {}
    order = [l for l in model.layers]
    for layer in order:
        if isinstance(layer, keras.layers.InputLayer):
            rf[layer.name], jump[layer.name] = 1, 1
            continue
        parents = [p.name for p in _inbound_layers(layer)]
        r_in = max(rf[p] for p in parents)
        j_in = max(jump[p] for p in parents)
        k, s, _, _ = _op_params(layer)
        rf[layer.name] = r_in + (k - 1) * j_in
        jump[layer.name] = j_in * s

    min_size = {}
    remaining = {l.name for l in order}
    for h in sizes:
        size = {}
        for layer in order:
            if isinstance(layer, keras.layers.InputLayer):
                size[layer.name] = h
                continue
            h_in = min(size[p.name] for p in _inbound_layers(layer))
            if h_in < 1:
                size[layer.name] = 0
                continue
            k, s, mode, pad = _op_params(layer)
            if mode == "pad":
                out = h_in + pad
            elif mode == "same":
                out = math.ceil(h_in / s)
            else:
                out = (h_in - k) // s + 1
            size[layer.name] = out
        for name in list(remaining):
            if size[name] >= 1:
                min_size[name] = h
                remaining.discard(name)
        if not remaining:
            break
    return {
        l.name: LayerGeometry(
            stride=jump[l.name],
            receptive_field=rf[l.name],
            channels=int(l.output.shape[-1]),
            min_input_size=min_size.get(l.name, -1),
        )
        for l in order
    }


def seeded_init(model, seed=0):
    """Deterministic He-normal kernels and zero biases for every convolution.

    ``weights=None`` must give the same network on every build (a second build
    happens e.g. inside a ``MirroredStrategy`` scope), which Keras' unseeded
    initialisers do not.
    """
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            shape = tuple(layer.kernel.shape)
            fan_in = int(np.prod(shape[:-1]))
            layer.kernel.assign(rng.normal(0.0, np.sqrt(2.0 / fan_in), shape).astype("float32"))
            if layer.use_bias:
                layer.bias.assign(np.zeros(layer.bias.shape, "float32"))
