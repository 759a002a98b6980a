"""Every access to Keras (and TensorFlow) internals that tfrestore needs, in one place.

Keras 3 keeps these behind ``keras.src`` or underscore names; they are pinned to the
Keras version in ``pyproject.toml``. Two features also read the Python stack while
a ``tf.function`` is traced (no per-step cost): the ``loss=[a, b]`` trap on a
single-output model (:func:`find_compile_loss`) and the train/eval switch of the
stateful losses' feature queues (:func:`keras_step_mode`). No other tfrestore module
imports ``keras.src``, touches a private Keras attribute or walks stack frames
(``tests/test_architecture.py`` checks it), and ``tests/utils/test_keras_compat.py``
fails loudly, naming the internal, when a Keras update moves or changes one:
:func:`missing_internals` lists what is gone.
"""

from __future__ import annotations

import importlib
import inspect

from tensorflow.python.trackable.base import Trackable

__all__ = [
    "Trackable",
    "PRIVATE_NAMES",
    "missing_internals",
    "model_metric_list",
    "reduce_weighted_values",
    "wrap_loss_function",
    "symbolic_build",
    "callback_list_history",
    "num_workers",
    "producing_layer",
    "backing_variable",
    "set_backing_variable",
    "find_compile_loss",
    "keras_step_mode",
    "gpu_memory_limit",
]

#: ``keras.src`` objects tfrestore imports: module path -> attribute names.
PRIVATE_NAMES = {
    "keras.src.losses.loss": ("reduce_weighted_values", "unscale_loss_for_distribution"),
    "keras.src.losses.losses": ("LossFunctionWrapper",),
    "keras.src.trainers.compile_utils": ("CompileLoss",),
    "keras.src.trainers.trainer": ("Trainer",),
}

#: method names of ``Trainer`` whose frames :func:`keras_step_mode` recognises
TRAIN_STEPS = ("train_step",)
EVAL_STEPS = ("test_step", "predict_step")
LOSS_FNS = ("_compute_loss", "compute_loss", "stateless_compute_loss")


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
    try:
        trainer = _private("keras.src.trainers.trainer", "Trainer")
    except (ImportError, AttributeError):
        trainer = None
    if trainer is not None:
        import keras

        for name in (*TRAIN_STEPS, *EVAL_STEPS, *LOSS_FNS):
            if not hasattr(keras.Model, name):
                missing.append(f"keras.Model.{name}: no such method (keras_step_mode)")
        for name in LOSS_FNS[:2]:
            fn = getattr(keras.Model, name, None)
            if fn is not None and "training" not in inspect.signature(fn).parameters:
                missing.append(f"keras.Model.{name}: no `training` argument (keras_step_mode)")
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
def model_metric_list(model):
    """The list Keras keeps a model's own metrics in (``Trainer.metrics`` extends it)."""
    metrics = getattr(model, "_metrics", None)
    if not isinstance(metrics, list):
        raise RuntimeError(
            "This Keras version keeps no `_metrics` list on models; tfrestore's per-term "
            "loss logging needs the Keras version pinned in pyproject.toml."
        )
    return metrics


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
def reduce_weighted_values(values, sample_weight, reduction, dtype):
    """Keras' own loss reduction (``keras.losses.Loss.__call__`` uses it), so a logged
    loss term is reduced exactly as the total loss is, without the 1/replicas scaling."""
    reduce = _private("keras.src.losses.loss", "reduce_weighted_values")
    unscale = _private("keras.src.losses.loss", "unscale_loss_for_distribution")

    # The reduction divides by the number of replicas (for the gradient sum); a logged
    # value is the replica's own mean, as Keras' loss tracker records it.
    return unscale(reduce(values, sample_weight=sample_weight, reduction=reduction, dtype=dtype))


def wrap_loss_function(fn):
    """A ``keras.losses.Loss`` around a loss function, as ``compile`` wraps ``"mae"``."""
    wrapper = _private("keras.src.losses.losses", "LossFunctionWrapper")
    return wrapper(fn, name=getattr(fn, "__name__", None))


# ---------------------------------------------------------------------------- stack walks
def find_compile_loss(max_depth=12):
    """``(n_losses, y_pred)`` of the Keras ``CompileLoss`` that is running the
    caller (``y_pred``: the model outputs it was given), or None when the caller is
    not run by one (direct call, custom loop) or this Keras has no ``CompileLoss``.

    Walks at most ``max_depth`` frames up; any unexpected structure means None.
    """
    try:
        compile_loss = _private("keras.src.trainers.compile_utils", "CompileLoss")
    except (ImportError, AttributeError):  # tests/utils/test_keras_compat.py reports it
        return None
    frame = inspect.currentframe()
    try:
        frame = frame.f_back if frame is not None else None
        depth = 0
        while frame is not None and depth < max_depth:
            owner = frame.f_locals.get("self")
            if isinstance(owner, compile_loss):
                flat = getattr(owner, "_flat_losses", None) or []
                return len(flat), frame.f_locals.get("y_pred")
            frame = frame.f_back
            depth += 1
    finally:
        del frame
    return None


def keras_step_mode():
    """``"train"``, ``"eval"`` or ``None`` (not called by a Keras ``Trainer``).

    Walks the Python stack (this runs while a ``tf.function`` is traced, so it
    costs nothing per step). A Keras ``train_step``/``test_step``/``predict_step``
    frame decides; otherwise the ``training`` argument of ``_compute_loss`` (Keras
    passes ``training=False`` from ``test_step`` and from the symbolic build that
    ``fit`` runs under a distribution strategy). Custom ``train_step`` /
    ``test_step`` overrides keep their names, so they are recognised too.
    """
    try:
        trainer = _private("keras.src.trainers.trainer", "Trainer")
    except (ImportError, AttributeError):  # tests/utils/test_keras_compat.py reports it
        return None
    frame = inspect.currentframe()
    fallback = None
    try:
        while frame is not None:
            owner = frame.f_locals.get("self")
            if isinstance(owner, trainer):
                name = frame.f_code.co_name
                if name.startswith("tf__"):  # autograph-converted
                    name = name[4:]
                if name in TRAIN_STEPS:
                    return "train"
                if name in EVAL_STEPS:
                    return "eval"
                if fallback is None and name in LOSS_FNS and "training" in frame.f_locals:
                    training = frame.f_locals["training"]
                    if isinstance(training, bool):
                        fallback = "train" if training else "eval"
            frame = frame.f_back
    finally:
        del frame
    return fallback


# --------------------------------------------------------------------- devices
def gpu_memory_limit():
    """Memory (bytes) TensorFlow gives the first GPU, or None without one
    (``tensorflow.python.client.device_lib``; the public API reports no total)."""
    from tensorflow.python.client import device_lib

    for d in device_lib.list_local_devices():
        if d.device_type == "GPU" and getattr(d, "memory_limit", 0):
            return int(d.memory_limit)
    return None
