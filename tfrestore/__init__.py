"""tfrestore: semantic losses and restoration networks for TensorFlow/Keras 3.

``import tfrestore`` registers tfrestore's losses, metrics and models with Keras (as Keras
libraries do), so ``keras.saving.load_model("run/best.keras")`` finds them. The other
subpackages are imported on first use (``tfrestore.data``, ``import tfrestore.training``, ...).

The ``tfrestore`` command (console script or ``python -m tfrestore``) skips the registration:
its parser answers ``--help`` without loading TensorFlow, and each command imports what it
runs. TensorFlow's start-up log is hidden below ``TF_CPP_MIN_LOG_LEVEL`` (default 2) unless
TensorFlow was imported before tfrestore.
"""

from tfrestore.utils.lazy import lazy_attributes

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


def _started_as_command_line():
    import os
    import sys

    # While ``python -m tfrestore`` locates the package, argv[0] is "-m" (the module path only
    # after the package is imported); the console script's argv[0] is the script itself.
    argv0 = sys.argv[0] if sys.argv else ""
    return argv0 == "-m" or os.path.splitext(os.path.basename(argv0))[0] == "tfrestore"


if not _started_as_command_line():
    from tfrestore.utils.tf_logging import import_tensorflow

    import_tensorflow()  # TensorFlow's start-up log hidden as in the command line
    import tfrestore.losses  # noqa: E402,F401  (registers the Keras classes)
    import tfrestore.metrics  # noqa: E402,F401
    import tfrestore.models  # noqa: E402,F401
