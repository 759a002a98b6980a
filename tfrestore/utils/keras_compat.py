"""Every access to Keras (and TensorFlow) internals that tfrestore needs, in one place.

Keras 3 keeps these behind ``keras.src`` or underscore names; they are pinned to the
Keras version in ``pyproject.toml``. No other tfrestore module imports ``keras.src`` or
touches a private Keras attribute, and no tfrestore module walks stack frames or
patches a model's methods (``tests/test_architecture.py`` checks both): the loss list,
per-term logging and the train/eval switch of the feature queues use Keras' documented
hooks (``Model.compile``, ``Model.compute_loss``, ``Model.metrics``, callbacks; see
:class:`tfrestore.models.RestorationModel`). ``tests/utils/test_keras_compat.py``
fails loudly, naming the internal, when a Keras update moves or changes one:
:func:`missing_internals` lists what is gone.
"""

from __future__ import annotations

import importlib

from tensorflow.python.trackable.base import Trackable

__all__ = [
    "Trackable",
    "PRIVATE_NAMES",
    "missing_internals",
    "wrap_loss_function",
    "symbolic_build",
    "callback_list_history",
    "num_workers",
    "producing_layer",
    "backing_variable",
    "set_backing_variable",
    "gpu_memory_limit",
]

#: ``keras.src`` objects tfrestore imports: module path -> attribute names.
PRIVATE_NAMES = {
    "keras.src.losses.losses": ("LossFunctionWrapper",),
}

#: private methods tfrestore calls, ``(class, name)``
PRIVATE_METHODS = (("keras.Model", "_symbolic_build"),)


def _private(module, name):
    return getattr(importlib.import_module(module), name)


def missing_internals():
    """``["keras.src.x.Name: why", ...]`` for every pinned internal that this Keras
    lacks (empty when all are there)."""
    missing = []
    for module, names in PRIVATE_NAMES.items():
        for name in names:
            try:
                _private(module, name)
            except (ImportError, AttributeError) as exc:
                missing.append(f"{module}.{name}: {exc}")
    import keras

    for owner, name in PRIVATE_METHODS:
        if not hasattr(keras.Model, name):
            missing.append(f"{owner}.{name}: no such method")
    try:
        from tensorflow.python.client import device_lib

        if not hasattr(device_lib, "list_local_devices"):
            missing.append("tensorflow.python.client.device_lib.list_local_devices: gone")
    except ImportError as exc:
        missing.append(f"tensorflow.python.client.device_lib: {exc}")
    for cls, name in ((Trackable, "_trackable_children"),):
        if not hasattr(cls, name):
            missing.append(f"{cls.__module__}.{cls.__name__}.{name}: no such method")
    return missing


# --------------------------------------------------------------------- private attributes
def symbolic_build(model, data_batch):
    """Build the compiled loss and metrics from one batch, as ``fit()`` does before
    its first step (``Trainer._symbolic_build``)."""
    model._symbolic_build(data_batch=data_batch)  # noqa: SLF001


def callback_list_history(callbacks):
    """The ``History`` a ``CallbackList(add_history=True)`` created."""
    return callbacks._history  # noqa: SLF001


def num_workers(strategy):
    """Number of workers of a ``MultiWorkerMirroredStrategy``."""
    return strategy.extended._num_workers  # noqa: SLF001


def producing_layer(tensor):
    """The layer whose output a functional-model ``KerasTensor`` is."""
    return tensor._keras_history[0]  # noqa: SLF001


def backing_variable(variable):
    """The ``tf.Variable`` under a Keras variable (None if there is none)."""
    return getattr(variable, "_value", None)


def set_backing_variable(variable, value):
    """Replace the ``tf.Variable`` under a Keras variable."""
    variable._value = value  # noqa: SLF001


# ------------------------------------------------------------------------------ functions
def wrap_loss_function(fn):
    """A ``keras.losses.Loss`` around a loss function, as ``compile`` wraps ``"mae"``."""
    wrapper = _private("keras.src.losses.losses", "LossFunctionWrapper")
    return wrapper(fn, name=getattr(fn, "__name__", None))


# --------------------------------------------------------------------- devices
def gpu_memory_limit():
    """Memory (bytes) TensorFlow gives the first GPU, or None without one
    (``tensorflow.python.client.device_lib``; the public API reports no total)."""
    from tensorflow.python.client import device_lib

    for d in device_lib.list_local_devices():
        if d.device_type == "GPU" and getattr(d, "memory_limit", 0):
            return int(d.memory_limit)
    return None
