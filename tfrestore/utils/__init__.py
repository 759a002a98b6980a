"""Small shared utilities (weights resolution, hidden holders)."""

from tfrestore.utils.freeze import freeze
from tfrestore.utils.hidden import Hidden
from tfrestore.utils.weights import (
    CorruptWeightsError,
    WeightsNotFoundError,
    resolve_weights_file,
    weights_dir,
)

__all__ = [
    "Hidden",
    "freeze",
    "CorruptWeightsError",
    "WeightsNotFoundError",
    "resolve_weights_file",
    "weights_dir",
]
