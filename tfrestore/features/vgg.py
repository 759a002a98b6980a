"""VGG16 / VGG19 with separate linear convolutions and ReLUs.

``keras.applications.VGG16`` fuses the ReLU into ``blockN_convM``, so the
pre-activation features some losses need (D2SM's "VGG54" is conv5_4 *before* its
ReLU) are not reachable there. This module builds the same network with a linear
``Conv2D`` named ``conv{b}_{i}`` followed by a ``ReLU`` named ``relu{b}_{i}`` and
pooling layers ``pool{b}``. Keras' names are refused with their equivalent
(``block4_conv3`` is ``relu4_3``, ``block4_pool`` is ``pool4``), see
:mod:`tfrestore.features`.

Weights load from the official Keras files (legacy ``.h5`` or Keras 3
``.weights.h5`` of ``keras.applications.VGG16/19(include_top=False)``) or from a
torchvision state dict (``features.N.weight`` OIHW -> HWIO; 3x3 convolutions with
padding 1 equal Keras ``"same"``, 2x2/2 max-pooling equals Keras' floor
``"valid"`` pooling).

>>> from tfrestore.features.vgg import build_vgg, torchvision_indices
>>> model = build_vgg("vgg16")
>>> [l.name for l in model.layers[1:6]]
['conv1_1', 'relu1_1', 'conv1_2', 'relu1_2', 'pool1']
>>> torchvision_indices("vgg19")["conv5_4"]  # D2SM's "54" prefix ends here
34
"""

from __future__ import annotations

import re

import keras

from tfrestore.features import sources
from tfrestore.features.backbone import BackboneSpec

__all__ = ["build_vgg", "keras_equivalent", "torchvision_indices", "VGG16", "VGG19"]

_CONVS_PER_BLOCK = {"vgg16": (2, 2, 3, 3, 3), "vgg19": (2, 2, 4, 4, 4)}
_WIDTHS = (64, 128, 256, 512, 512)


def _layout(name):
    """[(block, index, width)] of the convolutions of ``name``."""
    return [
        (b, i, w)
        for b, (n, w) in enumerate(zip(_CONVS_PER_BLOCK[name], _WIDTHS), start=1)
        for i in range(1, n + 1)
    ]


def build_vgg(name):
    """VGG ``features`` as a functional model on preprocessed NHWC input of any size."""
    inp = keras.Input((None, None, 3), name="input")
    x = inp
    for b, (n, width) in enumerate(zip(_CONVS_PER_BLOCK[name], _WIDTHS), start=1):
        for i in range(1, n + 1):
            x = keras.layers.Conv2D(width, 3, padding="same", name=f"conv{b}_{i}")(x)
            x = keras.layers.ReLU(name=f"relu{b}_{i}")(x)
        x = keras.layers.MaxPooling2D(2, strides=2, name=f"pool{b}")(x)
    return keras.Model(inp, x, name=name)


def torchvision_indices(name):
    """``{layer_name: index}`` in torchvision's ``vgg.features`` Sequential."""
    idx, out = 0, {}
    for b, n in enumerate(_CONVS_PER_BLOCK[name], start=1):
        for i in range(1, n + 1):
            out[f"conv{b}_{i}"], out[f"relu{b}_{i}"] = idx, idx + 1
            idx += 2
        out[f"pool{b}"] = idx
        idx += 1
    return out


def _load_keras(name, model, path):
    app_cls = keras.applications.VGG16 if name == "vgg16" else keras.applications.VGG19
    app = app_cls(weights=None, include_top=False, input_shape=(None, None, 3))
    sources.load_keras_weights(app, path, name, app_cls.__name__)
    for b, i, _ in _layout(name):
        model.get_layer(f"conv{b}_{i}").set_weights(
            app.get_layer(f"block{b}_conv{i}").get_weights()
        )


def _load_torch(name, model, path):
    state = sources.load_state_dict(path)
    indices = torchvision_indices(name)
    for b, i, _ in _layout(name):
        layer = model.get_layer(f"conv{b}_{i}")
        kh, kw, cin, cout = layer.kernel.shape
        idx = indices[f"conv{b}_{i}"]
        w = sources.lookup(state, f"features.{idx}.weight", (cout, cin, kh, kw), path, name)
        bias = sources.lookup(state, f"features.{idx}.bias", (cout,), path, name)
        layer.set_weights([sources.conv_kernel_from_torch(w), bias])


_KERAS_NAME = re.compile(r"^block(\d)_(?:conv(\d)|pool)$")


def keras_equivalent(layer_name):
    """The tfrestore name of a ``keras.applications`` VGG layer name (else None).

    >>> keras_equivalent("block4_conv3"), keras_equivalent("block4_pool")
    ('relu4_3', 'pool4')
    """
    m = _KERAS_NAME.match(layer_name)
    if not m:
        return None
    block, conv = m.groups()
    return f"relu{block}_{conv}" if conv else f"pool{block}"


_KERAS_BASE = "https://storage.googleapis.com/tensorflow/keras-applications"
_TORCH_BASE = "https://download.pytorch.org/models"


def _spec(name, keras_md5, torch_file):
    keras_file = f"{name}_weights_tf_dim_ordering_tf_kernels_notop.h5"
    prefix = torch_file.rsplit("-", 1)[1].split(".")[0]
    return BackboneSpec(
        name=name,
        build=lambda: build_vgg(name),
        loaders={
            sources.KERAS_FORMAT: lambda model, path: _load_keras(name, model, path),
            sources.TORCH_FORMAT: lambda model, path: _load_torch(name, model, path),
        },
        known_weights={
            "imagenet": sources.KnownWeights(
                format=sources.KERAS_FORMAT,
                filename=keras_file,
                origin=f"{_KERAS_BASE}/{name}/{keras_file}",
                file_hash=keras_md5,
                hash_algorithm="md5",
                description=f"Keras ImageNet {name.upper()} weights ({keras_file})",
            ),
            "torchvision": sources.KnownWeights(
                format=sources.TORCH_FORMAT,
                filename=torch_file,
                origin=f"{_TORCH_BASE}/{torch_file}",
                local_alternatives=(f"{name}_torchvision_features.npz",),
                hash_prefix=prefix,
                description=f"torchvision {name.upper()} weights ({torch_file})",
            ),
        },
        keras_equivalent=keras_equivalent,
    )


VGG16 = _spec("vgg16", "6d6bbae143d832006294945121d1f1fc", "vgg16-397923af.pth")
VGG19 = _spec("vgg19", "253f8cb515780f3b799900260a226db6", "vgg19-dcbb9e9d.pth")
