"""The authors' released FFDNet and DnCNN weights, read into tfrestore's models.

Two file formats are read without MATLAB or torch: MatConvNet ``simplenn`` networks
(MATLAB v7.3 ``.mat``, cszn/FFDNet and cszn/DnCNN; batch normalisation already merged
into the convolutions) and PyTorch state dicts (``.pth``, zip or legacy format, e.g.
cszn/KAIR's ``dncnn_25.pth``). Both hold a plain chain of 3x3 convolutions with biases
and ReLUs, which is all these architectures are:

* **FFDNet** (the file starts with a sub-pixel layer): ``FFDNet(channels)``; the first
  convolution's input channels and the last one's output channels are permuted from
  MatConvNet's sub-image order to TensorFlow's ``space_to_depth`` order
  (:func:`tfrestore.convert.matconvnet.subpixel_order`).
* **DnCNN**: ``DnCNN(channels, depth, filters, batch_norm=False, output_bias=True)``,
  predicting the noise (``output = input - noise``) as the released models do.

:func:`released_model` infers the architecture from the file; :func:`load_released_weights`
fills a model that was built already and checks that it matches, layer by layer.
"""

from __future__ import annotations

import os
import re

import numpy as np

from tfrestore.convert.layout import to_keras_layout
from tfrestore.convert.matconvnet import conv_kernel, load_simplenn, subpixel_order
from tfrestore.convert.torch_checkpoint import load_torch_state_dict

__all__ = ["ReleasedWeightsError", "read_released", "released_model", "load_released_weights"]

_TORCH_SUFFIXES = (".pth", ".pt")


class ReleasedWeightsError(ValueError):
    """A released weight file does not describe an FFDNet/DnCNN, or not the model given."""


class Released:
    """What a released file holds: the architecture and its convolutions in Keras layout."""

    def __init__(self, architecture, convolutions, source, subpixel="tensorflow"):
        self.architecture = architecture  # "ffdnet" or "dncnn"
        self.convolutions = convolutions  # [(kernel (3, 3, in, out), bias (out,)), ...]
        self.source = source
        self.subpixel = subpixel  # sub-image channel order of an FFDNet file

    @property
    def channels(self):
        out = self.convolutions[-1][0].shape[-1]
        return out // 4 if self.architecture == "ffdnet" else out

    def builder_args(self):
        """The keyword arguments of :func:`FFDNet` / :func:`DnCNN` for this file."""
        args = dict(
            channels=self.channels,
            depth=len(self.convolutions),
            filters=int(self.convolutions[0][0].shape[-1]),
        )
        if self.architecture == "dncnn":
            args.update(batch_norm=False, output_bias=True)
        return args


def _matconvnet(path):
    layers = load_simplenn(path)
    source = os.fspath(path)
    convs = []
    for layer in layers:
        kind = layer["type"]
        if kind == "conv":
            if len(layer["weights"]) != 2:
                raise ReleasedWeightsError(
                    f"{source}: convolution {layer['name']!r} has {len(layer['weights'])} weight "
                    "arrays; expected a filter bank and a bias (batch normalisation merged)"
                )
            for option in ("stride", "dilate"):
                if any(v != 1 for v in layer.get(option, (1,))):
                    raise ReleasedWeightsError(
                        f"{source}: convolution {layer['name']!r} has {option} "
                        f"{layer[option]}; only stride-1, undilated convolutions are supported"
                    )
            kernel = conv_kernel(layer["weights"][0])
            bias = np.asarray(layer["weights"][1], np.float32).ravel()
            pad = layer.get("pad", (1,))
            if kernel.shape[:2] != (3, 3) or any(p != 1 for p in pad):
                raise ReleasedWeightsError(
                    f"{source}: convolution {layer['name']!r} is {kernel.shape[0]}x"
                    f"{kernel.shape[1]} with padding {pad}; FFDNet/DnCNN use 3x3, padding 1"
                )
            convs.append((kernel, bias))
        elif kind == "relu":
            if any(v != 0 for v in layer.get("leak", (0,))):
                raise ReleasedWeightsError(f"{source}: layer {layer['name']!r} is a leaky ReLU")
        elif kind not in ("SubP", "concat"):
            raise ReleasedWeightsError(
                f"{source}: unsupported layer type {kind!r} ({layer['name']!r}); FFDNet and "
                "DnCNN files hold only conv, relu, SubP and concat layers"
            )
    architecture = "ffdnet" if layers[0]["type"] == "SubP" else "dncnn"
    return Released(architecture, convs, source, subpixel="matconvnet")


def _natural_key(name):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _torch(path):
    state = load_torch_state_dict(path)
    source = os.fspath(path)
    weights = sorted((k for k, v in state.items() if k.endswith("weight")), key=_natural_key)
    convs = []
    for key in weights:
        w = state[key]
        if w.ndim != 4:
            raise ReleasedWeightsError(
                f"{source}: {key!r} has shape {w.shape}; FFDNet/DnCNN state dicts hold only "
                "convolutions (with batch normalisation merged)"
            )
        bias_key = key[: -len("weight")] + "bias"
        if bias_key not in state:
            raise ReleasedWeightsError(f"{source}: convolution {key!r} has no {bias_key!r}")
        convs.append((to_keras_layout(w, "conv2d"), np.asarray(state[bias_key], np.float32)))
    if not convs:
        raise ReleasedWeightsError(f"{source} holds no convolution weights")
    leftover = set(state) - set(weights) - {k[: -len("weight")] + "bias" for k in weights}
    if leftover:
        raise ReleasedWeightsError(
            f"{source}: entries {sorted(leftover)} are not convolution weights or biases"
        )
    first_in, last_out = convs[0][0].shape[2], convs[-1][0].shape[3]
    if first_in != last_out:
        # KAIR's FFDNet: PyTorch pixel_unshuffle order, which no released file here uses.
        raise ReleasedWeightsError(
            f"{source}: {first_in} input but {last_out} output channels; only DnCNN state "
            "dicts (image in, noise out) are supported in PyTorch format"
        )
    return Released("dncnn", convs, source)


def read_released(path):
    """Read a released ``.mat`` or ``.pth`` file: a :class:`Released` description."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"released weights file {path!r} does not exist")
    released = _torch(path) if path.lower().endswith(_TORCH_SUFFIXES) else _matconvnet(path)
    for (k0, _), (k1, _) in zip(released.convolutions, released.convolutions[1:]):
        if k0.shape[3] != k1.shape[2]:
            raise ReleasedWeightsError(
                f"{path}: a convolution with {k0.shape[3]} outputs feeds one with "
                f"{k1.shape[2]} inputs"
            )
    if released.architecture == "ffdnet":
        first_in, last_out = released.convolutions[0][0].shape[2], released.convolutions[-1][0].shape[3]
        if last_out % 4 or first_in != last_out + 1:
            raise ReleasedWeightsError(
                f"{path}: an FFDNet takes 4C + 1 channels and returns 4C, this file takes "
                f"{first_in} and returns {last_out}"
            )
    return released


def _to_tensorflow_order(released):
    """The convolutions with FFDNet's sub-image channels in ``space_to_depth`` order."""
    convs = list(released.convolutions)
    if released.architecture != "ffdnet" or released.subpixel == "tensorflow":
        return convs
    order = subpixel_order(released.channels, 2)
    (k_first, b_first), (k_last, b_last) = convs[0], convs[-1]
    k_first = np.concatenate([k_first[:, :, order, :], k_first[:, :, len(order):, :]], axis=2)
    convs[0] = (k_first, b_first)
    convs[-1] = (k_last[..., order], b_last[order])
    return convs


def _conv_layers(model):
    import keras

    return [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]


def load_released_weights(model, path):
    """Set ``model``'s convolutions from a released file (``.mat`` or ``.pth``).

    Raises:
        ReleasedWeightsError: the file's architecture, number of convolutions or any
            layer's shape differs from ``model`` (nothing is assigned then).
    """
    released = read_released(path) if not isinstance(path, Released) else path
    expected = "FFDNet" if released.architecture == "ffdnet" else "DnCNN"
    layers = _conv_layers(model)
    has_subpixel = any(type(la).__name__ == "SpaceToDepth" for la in model.layers)
    if has_subpixel != (released.architecture == "ffdnet") or len(layers) != len(
        released.convolutions
    ):
        raise ReleasedWeightsError(
            f"{released.source} holds a {expected} with {len(released.convolutions)} "
            f"convolutions ({released.builder_args()}); model {model.name!r} has "
            f"{len(layers)} convolutions{' and a pixel unshuffle' if has_subpixel else ''}. "
            f"Build it with tfrestore.models.{expected}(**{released.builder_args()})"
        )
    convs = _to_tensorflow_order(released)
    for layer, (kernel, bias) in zip(layers, convs):
        shapes = [tuple(w.shape) for w in layer.get_weights()]
        if shapes != [kernel.shape, bias.shape]:
            raise ReleasedWeightsError(
                f"{released.source}: layer {layer.name!r} of model {model.name!r} has weights "
                f"{shapes}, the file has {[kernel.shape, bias.shape]}. Build the model with "
                f"tfrestore.models.{expected}(**{released.builder_args()})"
            )
    for layer, (kernel, bias) in zip(layers, convs):
        layer.set_weights([kernel, bias])
    return model


def released_model(path, name=None):
    """An FFDNet or DnCNN built from what a released file holds, with its weights."""
    from tfrestore.models.dncnn import DnCNN
    from tfrestore.models.ffdnet import FFDNet

    released = read_released(path)
    builder = FFDNet if released.architecture == "ffdnet" else DnCNN
    kwargs = released.builder_args()
    if name is not None:
        kwargs["name"] = name
    model = builder(**kwargs)
    return load_released_weights(model, released)
