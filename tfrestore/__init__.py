"""tfrestore: semantic losses and restoration networks for TensorFlow/Keras 3.

``losses``, ``metrics`` and ``models`` are imported eagerly so that their Keras-serializable
classes are registered before ``keras.saving.load_model``; the other subpackages are imported
on first attribute access.
"""

import importlib

__version__ = "0.1.0"

_SUBPACKAGES = (
    "callbacks",
    "convert",
    "data",
    "diffusion",
    "features",
    "inference",
    "losses",
    "metrics",
    "models",
    "testing",
    "training",
    "utils",
    "viz",
)

__all__ = list(_SUBPACKAGES)


from tfrestore import losses, metrics, models  # noqa: E402,F401  (registers serializables)


def __getattr__(name):
    if name in _SUBPACKAGES:
        module = importlib.import_module(f"tfrestore.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'tfrestore' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_SUBPACKAGES))
