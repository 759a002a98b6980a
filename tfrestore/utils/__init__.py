"""Small shared utilities (weights resolution, hidden holders, freezing, the command runner,
lazy exports, TensorFlow log filtering, Keras internals in :mod:`keras_compat`).

Names are imported on first access so that the command line (:mod:`tfrestore.utils.command`,
:mod:`tfrestore.utils.lazy`) can use this package without loading TensorFlow.
"""

from tfrestore.utils.lazy import lazy_attributes

__getattr__, __dir__, __all__ = lazy_attributes(
    __name__,
    {
        "freeze": ("freeze",),
        "hidden": ("Hidden",),
        "weights": (
            "CorruptWeightsError",
            "WeightsNotFoundError",
            "resolve_weights_file",
            "weights_dir",
        ),
    },
)
