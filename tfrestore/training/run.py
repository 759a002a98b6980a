"""One training, built once and fitted once: :func:`build_run` -> :class:`Run` -> :func:`fit_run`.

:func:`build_run` builds, in this order and each exactly once: the data (training stream,
validation batches), the model (its weights from ``model.init``), the loss, the metrics, the
learning-rate schedule and optimizer, ``compile`` (inside the strategy's scope), and the
callbacks, configured for the whole run (a resumed run's included). :func:`fit_run` trains
it with ``model.fit`` (:func:`~tfrestore.training.multi_worker.fit_multi_worker` under
``MultiWorkerMirroredStrategy``). The runner (:func:`tfrestore.training.runner.train`)
prepares the run directory before and writes the results after.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import platform
import sys
from typing import NamedTuple

import keras
import numpy as np

from tfrestore.training import builders
from tfrestore.training import data as tdata
from tfrestore.training.backup import StepBackup
from tfrestore.training.config import ConfigError, model_type_name

__all__ = ["Run", "build_run", "fit_run", "numerics", "mixed_precision_warning"]


class Run(NamedTuple):
    """Everything :func:`fit_run` needs, built by :func:`build_run`.

    Attributes:
        model: the compiled model.
        degradation: the degradation of the clean images (training, validation, report).
        train_ds: infinite training batches, the consumed ones of a resumed run skipped.
        val_ds: finite validation batches.
        callbacks: the Keras callbacks of the whole run (the caller's last).
        strategy: the ``tf.distribute`` strategy the model lives in.
        multi_worker: whether it is a ``MultiWorkerMirroredStrategy``.
        state: the :class:`~tfrestore.training.backup.BackupState` resumed from, or None.
        info: what ``run.yaml`` records (loss terms used, strategy, policy, init, ...).
        notes: one-line notes for the header.
        tensorboard: whether TensorBoard logs are written.
    """

    model: object
    degradation: object
    train_ds: object
    val_ds: object
    callbacks: list
    strategy: object
    multi_worker: bool
    state: object
    info: dict
    notes: list
    tensorboard: bool


def mixed_precision_warning(gpus):
    """The warning for ``train.mixed_precision`` without a GPU (``gpus``: the visible ones),
    else None.

    >>> mixed_precision_warning([]) is not None, mixed_precision_warning(["GPU:0"])
    (True, None)
    """
    if gpus:
        return None
    return (
        "train.mixed_precision (mixed_float16) is on but no GPU is visible: a CPU has no fast "
        "float16 arithmetic, so each step runs many times slower than in float32; drop "
        "--mixed-precision (or set train.mixed_precision=false) when training on a CPU"
    )


@contextlib.contextmanager
def numerics(rc, warn=True):
    """Seed, op determinism and dtype policy of the run ``rc`` (a
    :class:`~tfrestore.training.run_config.RunConfig`); the previous policy comes back at
    exit. ``warn``: print the warning of mixed precision without a GPU."""
    import tensorflow as tf

    keras.utils.set_random_seed(rc.seed)
    if rc.train.deterministic:
        tf.config.experimental.enable_op_determinism()
    previous_policy = keras.config.dtype_policy()
    if rc.train.mixed_precision:
        keras.mixed_precision.set_dtype_policy("mixed_float16")
        warning = mixed_precision_warning(tf.config.list_physical_devices("GPU"))
        if warning and warn:
            print(f"[tfrestore] warning: {warning}", file=sys.stderr, flush=True)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous_policy)


def build_run(rc, *, strategy, multi_worker, paths, state, callbacks=(), allowed_imports=()):
    """Build data, model, loss, optimizer and callbacks of the run ``rc``, once each.

    Args:
        rc: RunConfig. The run's :class:`~tfrestore.training.run_config.RunConfig`.
        strategy: tf.distribute.Strategy. The strategy to build the model in.
        multi_worker: bool. Whether ``strategy`` is a ``MultiWorkerMirroredStrategy``.
        paths: dict. The run directory's ``run_paths`` (where callbacks write).
        state: BackupState or None. The
            :class:`~tfrestore.training.backup.BackupState` to resume from.
        callbacks: list of keras.callbacks.Callback. Extra callbacks, appended.
        allowed_imports: sequence of str. Packages ``model.type`` may import from.

    Returns:
        :class:`Run`.
    """
    from tfrestore.training.strategy import describe_strategy

    tr = rc.train
    epoch, step = (state.epoch, state.step) if state is not None else (0, 0)
    # model.init: checked before any data or model work; a resumed run keeps its backup's weights.
    init = builders.resolve_init(rc.model.init) if state is None else None
    notes = []
    if multi_worker and tr.jit_compile is True:
        notes.append("jit_compile ignored: the multi-worker loop runs without XLA")

    degradation = tdata.build_degradation(rc)
    train_ds = tdata.train_dataset(
        rc, degradation, skip_batches=epoch * tr.steps_per_epoch + step
    )
    val_ds = tdata.val_dataset(rc, degradation)
    val_batch = _example_batch(val_ds)

    init_model = builders.load_init_source(init)  # only read: outside the scope
    with strategy.scope():
        model = builders.build_model(_mapping(rc.model), allowed_imports=allowed_imports)
        _check_model_io(model, *val_batch, model_type_name(rc.model.type))
        init_layers = builders.init_weights(model, init, init_model)
        del init_model
        loss, used_terms = builders.build_loss([_mapping(t) for t in rc.losses])
        metrics, lpips_fn, metric_notes = builders.build_metrics(_mapping(rc.metrics))
        notes += metric_notes
        _check_monitor(rc, metrics, lpips_fn)
        schedule = builders.build_schedule(
            _mapping(rc.schedule), rc.optimizer.learning_rate, tr.total_steps
        )
        optimizer = builders.build_optimizer(_mapping(rc.optimizer), schedule)
        model.compile(
            optimizer=optimizer,
            loss=loss,
            metrics=metrics,
            jit_compile=tr.jit_compile,
            run_eagerly=tr.run_eagerly,
        )

    tensorboard = rc.output.tensorboard and _tensorboard_installed()
    if rc.output.tensorboard and not tensorboard:
        notes.append(
            "TensorBoard logging skipped: the 'tensorboard' package is not installed "
            "(pip install tensorboard)"
        )
    info = {
        "losses_used": used_terms,
        "loss": repr(loss),
        "strategy": describe_strategy(strategy),
        "dtype_policy": keras.config.dtype_policy().name,
        "trainable_parameters": int(sum(int(np.prod(v.shape)) for v in model.trainable_weights)),
        "init": _describe_init(rc, init, init_layers),
        "resumed_from_epoch": epoch,
        "resumed_from_step": step,
        "versions": _versions(),
        "notes": notes,
    }
    cbs = _make_callbacks(
        rc, paths, state, val_batch, val_ds, lpips_fn, tensorboard,
        # fit() counts the batches of a run resumed mid-epoch from 0; the custom loop does not
        batch_offset=0 if multi_worker else step,
    )
    return Run(
        model=model,
        degradation=degradation,
        train_ds=train_ds,
        val_ds=val_ds,
        callbacks=cbs + list(callbacks),
        strategy=strategy,
        multi_worker=multi_worker,
        state=state,
        info=info,
        notes=notes,
        tensorboard=tensorboard,
    )


def fit_run(run, rc, verbose):
    """Train ``run`` over the epochs left; returns the history (``{name: [per epoch]}``).

    ``model.fit`` starts at an epoch's first step, so a run resumed ``step`` steps into an
    epoch fits twice over one data stream with the same callbacks: the rest of that epoch
    (``steps_per_epoch - step`` steps), then the following epochs.
    """
    tr = rc.train
    epoch, step = (run.state.epoch, run.state.step) if run.state is not None else (0, 0)
    if run.multi_worker:
        from tfrestore.training.multi_worker import fit_multi_worker

        return dict(
            fit_multi_worker(
                run.model,
                run.strategy,
                run.train_ds,
                epochs=tr.epochs,
                steps_per_epoch=tr.steps_per_epoch,
                initial_epoch=epoch,
                initial_step=step,
                validation_data=run.val_ds,
                validation_steps=tr.validation_steps,
                callbacks=run.callbacks,
                verbose=verbose,
            ).history
        )
    parts = [(epoch, tr.epochs, tr.steps_per_epoch, run.train_ds)]
    if step:
        rest = tr.steps_per_epoch - step
        parts = [(epoch, epoch + 1, rest, run.train_ds)]
        if epoch + 1 < tr.epochs:
            parts.append((epoch + 1, tr.epochs, tr.steps_per_epoch, run.train_ds.skip(rest)))
        # Build the compiled metrics now (fit() would on its first step) so that StepBackup
        # can put the backed-up running means back at the start of the epoch.
        from tfrestore.utils import keras_compat

        with run.strategy.scope():
            for batch in run.train_ds.take(1):
                keras_compat.symbolic_build(run.model, batch)  # as fit() does
    history = {}
    for first, last, steps, ds in parts:
        hist = run.model.fit(
            ds,
            initial_epoch=first,
            epochs=last,
            steps_per_epoch=steps,
            validation_data=run.val_ds,
            validation_steps=tr.validation_steps,
            callbacks=run.callbacks,
            verbose=verbose,
            shuffle=False,  # the tf.data pipeline shuffles (deterministically)
        )
        for k, v in hist.history.items():
            history.setdefault(k, []).extend(v)
    return history


def _mapping(section):
    """A config section as the mapping the builders take."""
    return dataclasses.asdict(section)


def _example_batch(ds):
    for x, y in ds.take(1):
        if isinstance(x, (tuple, list)):
            return tuple(np.asarray(t) for t in x), np.asarray(y)
        return np.asarray(x), np.asarray(y)
    raise ConfigError("the validation dataset is empty")


def _check_model_io(model, x, y, kind):
    """Trace the model on the shapes of a validation batch (symbolically: nothing is computed;
    this also builds a subclassed model) and compare its output with the targets' shape."""
    xs = list(x) if isinstance(x, tuple) else [x]
    shown = [tuple(t.shape) for t in xs] if isinstance(x, tuple) else tuple(x.shape)
    try:
        # A functional model declares its inputs' shapes (None: any size).
        declared = [tuple(t.shape) for t in getattr(model, "inputs", None) or ()]
        if declared and not _shapes_fit(declared, [t.shape for t in xs]):
            raise ValueError(f"it expects {declared if len(declared) > 1 else declared[0]}")
        spec = [keras.KerasTensor(t.shape, str(t.dtype)) for t in xs]
        out = model(spec if isinstance(x, tuple) else spec[0], training=False)
    except Exception as e:
        raise ConfigError(
            f"config key 'model': {kind} cannot take the data's inputs {shown} ({e})"
        ) from e
    out_shape = tuple(out[0].shape if isinstance(out, (list, tuple)) else out.shape)
    if out_shape != tuple(y.shape):
        raise ConfigError(
            f"config key 'model': {kind} maps inputs {shown} to {out_shape}, but the clean "
            f"targets are {tuple(y.shape)}; check 'model.args' (channels, scale, padding) "
            "against 'data'"
        )


def _shapes_fit(declared, given):
    """Whether arrays of the ``given`` shapes fit inputs ``declared`` with None for any size.

    >>> _shapes_fit([(None, None, None, 3)], [(2, 16, 16, 3)])
    True
    >>> _shapes_fit([(None, None, None, 1)], [(2, 16, 16, 3)])
    False
    """
    return len(declared) == len(given) and all(
        len(d) == len(g) and all(a is None or a == b for a, b in zip(d, g))
        for d, g in zip(declared, given)
    )


def _check_monitor(rc, metrics, lpips_fn):
    names = ["loss"] + [m.name for m in metrics]
    valid = names + [f"val_{n}" for n in names] + (["val_lpips"] if lpips_fn else [])
    monitor = rc.metrics.monitor
    if rc.output.checkpoint and monitor not in valid:
        raise ConfigError(
            f"config key 'metrics.monitor' is {monitor!r}, which this run does not log; "
            f"choose from {', '.join(valid)}"
        )


def _tensorboard_installed():
    import importlib.util

    return importlib.util.find_spec("tensorboard") is not None


def _describe_init(rc, init, layers):
    """One line on ``model.init`` (run.yaml and the header), None without it."""
    if rc.model.init is None:
        return None
    if init is None:
        return (
            "not applied: resuming from the backup, whose weights continue the run "
            f"(model.init: {rc.model.init})"
        )
    what = "all layers" if layers is None else f"{len(layers)} layers"
    return f"weights from {init} ({what})"


def _versions():
    import tensorflow as tf

    import tfrestore

    return {
        "tfrestore": tfrestore.__version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "python": platform.python_version(),
    }


def _best_so_far(history_path, monitor, mode):
    if not os.path.isfile(history_path):
        return None
    from tfrestore.training.report import read_history

    vals = [v for v in read_history(history_path).get(monitor, []) if np.isfinite(v)]
    if not vals:
        return None
    return max(vals) if mode == "max" else min(vals)


def _make_callbacks(rc, paths, state, val_batch, val_ds, lpips_fn, tensorboard, batch_offset):
    from tfrestore.callbacks import QueueControl
    from tfrestore.training.callbacks import ImageSummaries, LearningRateLogger, ValidationLPIPS

    out, m = rc.output, rc.metrics
    x_val, y_val = val_batch
    # D2SM-style queue losses: freeze the queue during validation, guard loss lists
    cbs = [QueueControl(), LearningRateLogger()]
    if lpips_fn is not None:  # before the callbacks that read val_lpips from the logs
        cbs.append(ValidationLPIPS(val_ds, lpips_fn, steps=rc.train.validation_steps))
    if tensorboard and out.image_summaries:
        k = out.image_summaries
        xs = tuple(t[:k] for t in x_val) if isinstance(x_val, tuple) else x_val[:k]
        cbs.append(ImageSummaries(paths["logs"], xs, y_val[:k], max_images=k))
    if out.checkpoint:
        best = _best_so_far(paths["history"], m.monitor, m.mode) if state else None
        cbs.append(
            keras.callbacks.ModelCheckpoint(
                paths["best"],
                monitor=m.monitor,
                mode=m.mode,
                save_best_only=True,
                initial_value_threshold=best,
                verbose=0,
            )
        )
    if out.backup:
        cbs.append(
            StepBackup(
                paths["backup"],
                rc.train.steps_per_epoch,
                every_steps=rc.train.backup_every_steps,
                resume=state,
                batch_offset=batch_offset,
            )
        )
    if out.csv:  # a resumed run appends to the epochs it kept
        cbs.append(keras.callbacks.CSVLogger(paths["history"], append=state is not None))
    if tensorboard:
        cbs.append(keras.callbacks.TensorBoard(paths["logs"], write_graph=False, profile_batch=0))
    return cbs
