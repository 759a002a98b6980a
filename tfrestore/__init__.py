"""tfrestore: semantic losses and restoration networks for TensorFlow/Keras 3."""

__version__ = "0.1.0"

from tfrestore import losses  # noqa: E402,F401
