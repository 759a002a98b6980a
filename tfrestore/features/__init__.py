"""Pretrained feature extractors: one API over VGG16/19, AlexNet and ResNet50/101.

``get_feature_extractor(backbone, layers, weights)`` returns a frozen
extractor mapping RGB ``[0, 1]`` NHWC images to ``{layer: features}``: its
``model`` is one functional Keras model over ``backbone.get_layer(name).output``
of a backbone built once and shared; see :mod:`tfrestore.features.extractor`.
Every feature loss (Perceptual, PDL, Contextual, LPIPS, D2SM) gets its features
through one :class:`~tfrestore.features.feature_source.FeatureSource` (that
model, or a user's extractor) and takes the same
arguments: ``backbone``, ``layers`` (a name or a list of names), ``weights`` (of
the backbone), ``preprocessing`` and ``feature_extractor`` (a user Keras model or
registered function, saved with the loss); the losses summing several layers take
per-layer weights as ``layer_weights={name: weight}``.

**Layer names.** One scheme for every backbone, torchvision/paper style:

* VGG16/19: ``conv{b}_{i}`` is the output of the i-th convolution of block b
  *before* its ReLU, ``relu{b}_{i}`` the same after the ReLU, ``pool{b}`` the
  block's max-pooling (``conv5_4`` is D2SM's pre-activation "VGG54", ``relu3_3``
  the perceptual loss's layer).
* AlexNet: ``conv1..conv5`` (before the ReLU), ``relu1..relu5``, ``pool1``,
  ``pool2``, ``pool5``.
* ResNet50/101: the Keras Applications layer names (``conv1_relu``,
  ``pool1_pool``, ``conv{stage}_block{k}_out``, ...); torchvision's ResNet layout
  differs, so there is no torchvision-style name to follow.

Keras Applications' VGG names ``block{b}_conv{i}`` are refused with a
``ValueError`` naming the equivalent: Keras fuses the ReLU into its ``Conv2D``, so
``block4_conv3`` is the output *after* the ReLU, i.e. ``relu4_3``, and the
pre-activation ``conv4_3`` has no Keras name at all (``block4_pool`` is ``pool4``).

>>> from tfrestore.features import get_feature_extractor
>>> get_feature_extractor("vgg16", "block4_conv3", weights=None)
Traceback (most recent call last):
...
ValueError: vgg16 layer 'block4_conv3' is a Keras Applications name; ... use 'relu4_3'. ...
"""

from tfrestore.features.extractor import (
    BACKBONES,
    FeatureExtractor,
    available_backbones,
    clear_cache,
    get_feature_extractor,
)
from tfrestore.features.feature_source import FeatureSource
from tfrestore.features.preprocessing import Preprocessing
from tfrestore.utils.weights import WeightsNotFoundError

__all__ = [
    "BACKBONES",
    "FeatureExtractor",
    "FeatureSource",
    "Preprocessing",
    "WeightsNotFoundError",
    "available_backbones",
    "clear_cache",
    "get_feature_extractor",
]
