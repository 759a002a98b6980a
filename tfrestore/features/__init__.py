"""Pretrained feature extractors: one API over VGG16/19, AlexNet and ResNet50/101.

``get_feature_extractor(backbone, layers, weights)`` returns a frozen, shared
extractor mapping RGB ``[0, 1]`` NHWC images to ``{layer: features}``; see
:mod:`tfrestore.features.extractor`.
"""

from tfrestore.features.extractor import (
    BACKBONES,
    FeatureExtractor,
    available_backbones,
    clear_cache,
    get_feature_extractor,
)
from tfrestore.features.preprocessing import Preprocessing
from tfrestore.utils.weights import WeightsNotFoundError

__all__ = [
    "BACKBONES",
    "FeatureExtractor",
    "Preprocessing",
    "WeightsNotFoundError",
    "available_backbones",
    "clear_cache",
    "get_feature_extractor",
]
