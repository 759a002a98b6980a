"""tfrestore: semantic losses and restoration networks for TensorFlow/Keras 3.

Subpackages are imported on first use (``tfrestore.losses``, ``import tfrestore.models``, ...),
so that ``import tfrestore`` and the ``tfrestore`` command's ``--help`` do not load TensorFlow.

Loading a saved ``.keras`` model that contains tfrestore losses, metrics or layers needs their
classes registered with Keras first: use :func:`tfrestore.inference.load_model`, or import
``tfrestore.losses``, ``tfrestore.metrics`` and ``tfrestore.models`` before
``keras.saving.load_model``.
"""

from tfrestore._lazy import lazy_attributes

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

__getattr__, __dir__, __all__ = lazy_attributes(__name__, {None: _SUBPACKAGES})
