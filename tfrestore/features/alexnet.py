"""AlexNet ``features`` in torchvision's layout (the network LPIPS-alex uses).

torchvision: conv 11x11/4 pad 2 (64) -> ReLU -> maxpool 3/2 -> conv 5x5 pad 2 (192)
-> ReLU -> maxpool 3/2 -> conv 3x3 pad 1 (384) -> ReLU -> conv 3x3 pad 1 (256) ->
ReLU -> conv 3x3 pad 1 (256) -> ReLU -> maxpool 3/2. PyTorch's symmetric padding
is reproduced exactly with ``ZeroPadding2D`` + ``"valid"`` convolutions (Keras
``"same"`` with stride 4 would pad asymmetrically). Layer names: ``conv1..conv5``
(before ReLU), ``relu1..relu5``, ``pool1``, ``pool2``, ``pool5``.

Only torchvision weights exist for this layout (``weights="torchvision"``, or
``"imagenet"`` as an alias).

>>> from tfrestore.features.alexnet import build_alexnet
>>> [l.name for l in build_alexnet().layers if not l.name.startswith("pad")][1:5]
['conv1', 'relu1', 'pool1', 'conv2']
"""

from __future__ import annotations

import keras

from tfrestore.features import sources
from tfrestore.features.backbone import BackboneSpec

__all__ = ["build_alexnet", "TORCHVISION_INDICES", "ALEXNET"]

# (name, filters, kernel, stride, padding), then whether a max-pool follows.
_CONVS = (
    ("conv1", 64, 11, 4, 2, True),
    ("conv2", 192, 5, 1, 2, True),
    ("conv3", 384, 3, 1, 1, False),
    ("conv4", 256, 3, 1, 1, False),
    ("conv5", 256, 3, 1, 1, True),
)

#: index of each conv in torchvision's ``alexnet.features``
TORCHVISION_INDICES = {"conv1": 0, "conv2": 3, "conv3": 6, "conv4": 8, "conv5": 10}


def build_alexnet():
    """AlexNet features as a functional model on preprocessed NHWC input."""
    inp = keras.Input((None, None, 3), name="input")
    x = inp
    for i, (name, filters, k, s, p, pool) in enumerate(_CONVS, start=1):
        x = keras.layers.ZeroPadding2D(p, name=f"pad{i}")(x)
        x = keras.layers.Conv2D(filters, k, strides=s, padding="valid", name=name)(x)
        x = keras.layers.ReLU(name=f"relu{i}")(x)
        if pool:
            x = keras.layers.MaxPooling2D(3, strides=2, padding="valid", name=f"pool{i}")(x)
    return keras.Model(inp, x, name="alexnet")


def _load_torch(model, path):
    state = sources.load_state_dict(path)
    for name, idx in TORCHVISION_INDICES.items():
        layer = model.get_layer(name)
        kh, kw, cin, cout = layer.kernel.shape
        w = sources.lookup(state, f"features.{idx}.weight", (cout, cin, kh, kw), path, "alexnet")
        b = sources.lookup(state, f"features.{idx}.bias", (cout,), path, "alexnet")
        layer.set_weights([sources.conv_kernel_from_torch(w), b])


_TORCHVISION = sources.KnownWeights(
    format=sources.TORCH_FORMAT,
    filename="alexnet-owt-7be5be79.pth",
    origin="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
    local_alternatives=("alexnet_torchvision_features.npz",),
    hash_prefix="7be5be79",
    description="torchvision AlexNet weights (alexnet-owt-7be5be79.pth)",
)

ALEXNET = BackboneSpec(
    name="alexnet",
    build=build_alexnet,
    loaders={sources.TORCH_FORMAT: _load_torch},
    known_weights={"torchvision": _TORCHVISION, "imagenet": _TORCHVISION},
    hidden_prefixes=("pad",),
)
