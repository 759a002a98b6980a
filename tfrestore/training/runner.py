"""The training runner behind ``train/*.py`` and ``tfrestore train``.

:func:`train` builds data, model, loss (a ``WeightedSum``), metrics and
optimizer from a config, inside the distribution strategy's scope, and trains
with ``model.fit``. A run directory holds::

    config.yaml      the resolved config (every default filled in)
    run.yaml         what was actually used: loss terms (fallbacks), strategy, versions
    history.csv      one row per epoch (CSVLogger)
    logs/            TensorBoard scalars and images (degraded / restored / clean)
    best.keras       best model by ``metrics.monitor`` (ModelCheckpoint)
    final.keras      the model after the last epoch
    backup/          training state (model, optimizer, loss state such as a D2SM
                     queue, epoch and step; see tfrestore.training.backup), written
                     at each epoch end and every ``train.backup_every_steps``
                     steps; deleted when the run completes
    report/          metrics.csv, grid.png, loss_curve.png (held-out images)
    .tfrestore.lock  present while a training runs here (PID, host)

With ``model.init`` (``--init``) the model built from ``model.type`` / ``model.args`` starts
from a preset's, a ``.keras`` model's or a ``.weights.h5`` file's weights (fine-tuning; see
:func:`tfrestore.training.builders.init_weights`), checked before any training step; the
header says ``init: weights from <source>``.

Running the same config again after a kill resumes from ``backup/`` at the
last backed-up step (the end of the last completed epoch, or the last multiple
of ``train.backup_every_steps``); the data stream skips the batches already
used, so the resumed run follows the uninterrupted one (``model.init`` is not applied
again: the backup's weights continue the run). Any other reuse of a
directory that holds results (a finished run, a changed config) is refused unless
``overwrite=True`` (``--overwrite``), see :mod:`tfrestore.training.rundir`.

Under ``MultiWorkerMirroredStrategy`` (``train.strategy: multi_worker``, or
``auto`` with a ``TF_CONFIG`` cluster) training runs in
:func:`tfrestore.training.multi_worker.fit_multi_worker` instead of
``model.fit``, and only the chief writes the run directory (see that module for
launching on a cluster).
"""

from __future__ import annotations

import dataclasses
import os
import platform
import shutil
import sys
import tempfile
import time

import numpy as np

from tfrestore.training import builders, rundir
from tfrestore.training.backup import StepBackup, read_backup
from tfrestore.training import data as tdata
from tfrestore.training.config import ConfigError, dump_config, load_config, model_type_name
from tfrestore.training.report import write_report

__all__ = ["train", "TrainResult", "TrainingInterrupted", "run_paths", "resume_epoch"]


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`train`; the message says whether and how the run resumes."""


def _interrupted_message(cfg, run_dir):
    state = None
    if cfg["output"]["backup"]:
        try:
            state = read_backup(run_paths(run_dir)["backup"])
        except Exception:  # a damaged backup: the next run names it
            state = None
    if state is None:
        return (
            f"interrupted before any backup was written (run directory {run_dir}); the same "
            "command starts the run again"
        )
    where = f"epoch {state.epoch + 1}" + (f", step {state.step + 1}" if state.step else "")
    return (
        f"interrupted; run the same command again to resume from the last backup, at {where} "
        f"(run directory {run_dir})"
    )

# Keys that may change between an interrupted run and its resumption.
_RESUME_FREE = ("output", "train.verbose", "name")


@dataclasses.dataclass
class TrainResult:
    """What :func:`train` returns."""

    run_dir: str
    config: dict
    history: dict
    model: object = None
    report_rows: list = dataclasses.field(default_factory=list)
    files: dict = dataclasses.field(default_factory=dict)
    initial_epoch: int = 0
    notes: list = dataclasses.field(default_factory=list)


def run_paths(run_dir):
    """Paths of the files a run writes."""
    j = os.path.join
    return {
        "config": j(run_dir, "config.yaml"),
        "run_info": j(run_dir, "run.yaml"),
        "history": j(run_dir, "history.csv"),
        "logs": j(run_dir, "logs"),
        "best": j(run_dir, "best.keras"),
        "final": j(run_dir, "final.keras"),
        "backup": j(run_dir, "backup"),
        "report": j(run_dir, "report"),
        "metrics_csv": j(run_dir, "report", "metrics.csv"),
        "grid": j(run_dir, "report", "grid.png"),
        "loss_curve": j(run_dir, "report", "loss_curve.png"),
    }


def resume_epoch(backup_dir):
    """Epoch a run backed up in ``backup_dir`` resumes at (0 if none); see
    :func:`tfrestore.training.backup.read_backup` for the step within it. A damaged
    backup raises :class:`~tfrestore.training.rundir.RunDirError` naming the file."""
    state = read_backup(backup_dir)
    return state.epoch if state is not None else 0


def _saved_config(path):
    if not os.path.isfile(path):
        return None
    try:
        return load_config(path)
    except Exception as e:  # damaged YAML, or written by another tfrestore version
        raise rundir.RunDirError(
            f"cannot read {path} of the earlier run in this directory ({e}); pass --overwrite "
            "to replace that run, or choose another --output-dir"
        ) from None


def _prepare_run_dir(cfg, run_dir, overwrite, backup_dir=None):
    """Clean / check ``run_dir``; return its paths and the backup to resume
    from (read from ``backup_dir`` when given: the chief's, for other workers)."""
    paths = run_paths(run_dir)
    os.makedirs(run_dir, exist_ok=True)
    if overwrite:
        kept = rundir.clear_results(paths)
        if kept:
            print(
                f"[tfrestore] --overwrite removed the earlier run's files; kept {len(kept)} "
                f"other file(s) in its folders: {', '.join(kept[:5])}"
                + (" ..." if len(kept) > 5 else ""),
                flush=True,
            )
    state = None
    if cfg["output"]["backup"] and not overwrite:
        state = read_backup(backup_dir or paths["backup"])
    initial_epoch = state.epoch if state is not None else 0
    if backup_dir is None:  # the run's own directory (other workers write a temporary one)
        rundir.check_reuse(
            run_dir, paths, cfg, _saved_config(paths["config"]), state, _RESUME_FREE
        )
    finished_unsaved = initial_epoch == cfg["train"]["epochs"] and not os.path.isfile(
        paths["final"]
    )  # trained to the end, killed before final.keras was committed: only that is left to do
    if initial_epoch >= cfg["train"]["epochs"] and not finished_unsaved:
        raise ConfigError(
            f"{run_dir}: the backup is at epoch {initial_epoch} but 'train.epochs' is "
            f"{cfg['train']['epochs']}"
        )
    if state is None and os.path.exists(paths["history"]):
        os.remove(paths["history"])  # a new run: do not append to an old history
    if state is not None and os.path.exists(paths["history"]):
        _truncate_history(paths["history"], initial_epoch)
    return paths, state


def _truncate_history(path, n_epochs):
    """Keep the header and the first ``n_epochs`` rows (rows written after the
    last backup belong to epochs that will be re-run)."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines[: 1 + n_epochs]) + "\n")


def _best_so_far(history_path, monitor, mode):
    if not os.path.isfile(history_path):
        return None
    from tfrestore.training.report import read_history

    vals = [v for v in read_history(history_path).get(monitor, []) if np.isfinite(v)]
    if not vals:
        return None
    return max(vals) if mode == "max" else min(vals)


def _versions():
    import keras
    import tensorflow as tf

    import tfrestore

    return {
        "tfrestore": tfrestore.__version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "python": platform.python_version(),
    }


def _example_batch(ds):
    for x, y in ds.take(1):
        if isinstance(x, (tuple, list)):
            return tuple(np.asarray(t) for t in x), np.asarray(y)
        return np.asarray(x), np.asarray(y)
    raise ConfigError("the validation dataset is empty")


def _check_model_io(model, x, y, cfg):
    """Call the model once on a batch (this also builds it, as restoring a
    backup requires) and compare its output with the target shape."""
    kind = model_type_name(cfg["model"]["type"])
    try:
        out = model(list(x) if isinstance(x, tuple) else x, training=False)
    except Exception as e:
        raise ConfigError(
            f"config key 'model': {kind} cannot take the data's inputs "
            f"{[tuple(t.shape) for t in x] if isinstance(x, tuple) else tuple(x.shape)} ({e})"
        ) from e
    out_shape = tuple(out[0].shape if isinstance(out, (list, tuple)) else out.shape)
    if out_shape != tuple(y.shape):
        raise ConfigError(
            f"config key 'model': {kind} maps inputs "
            f"{[tuple(t.shape) for t in x] if isinstance(x, tuple) else tuple(x.shape)} to "
            f"{out_shape}, but the "
            f"clean targets are {tuple(y.shape)}; check 'model.args' (channels, scale, padding) "
            "against 'data'"
        )


def _check_monitor(cfg, metrics, lpips_fn):
    names = ["loss"] + [m.name for m in metrics]
    valid = names + [f"val_{n}" for n in names] + (["val_lpips"] if lpips_fn else [])
    monitor = cfg["metrics"]["monitor"]
    if cfg["output"]["checkpoint"] and monitor not in valid:
        raise ConfigError(
            f"config key 'metrics.monitor' is {monitor!r}, which this run does not log; "
            f"choose from {', '.join(valid)}"
        )


def train(
    config,
    *,
    overrides=(),
    task=None,
    output_dir=None,
    strategy=None,
    callbacks=(),
    overwrite=None,
    report=None,
    verbose=None,
    allowed_imports=(),
    **renamed,
):
    """Train a restoration model from a config.

    The run directory is locked for the duration (a second training into it
    stops with :class:`~tfrestore.training.rundir.RunDirError`). A directory
    that already holds results is only reused to resume an interrupted run with
    the same config; anything else needs ``overwrite=True``.

    Args:
        config: YAML path, raw dict, or a config already returned by
            :func:`tfrestore.training.load_config`.
        overrides: ``["train.epochs=2", ...]`` applied on top.
        task: expected task (scripts pass theirs); mismatch is an error.
        output_dir: run directory (overrides ``output.dir``).
        strategy: a ``tf.distribute.Strategy`` to use instead of
            ``train.strategy`` (e.g. the test-suite's shared one).
        callbacks: extra Keras callbacks (appended).
        overwrite: start a new run, deleting the results of an earlier (finished
            or interrupted) run in the run directory; None: ``output.overwrite``.
        report: override ``output.report``.
        verbose: override ``train.verbose``.
        allowed_imports: packages (``"mypkg"``, or a dotted sub-package) whose modules
            ``model.type: "mypkg.nets:build"`` may import (``tfrestore train --allow-import``);
            a config is data, so any other ``module:function`` string is refused. A dict config
            may instead give the function itself (``model: {type: build}``).

    Returns:
        :class:`TrainResult`.
    """
    from tfrestore.training.strategy import get_strategy, is_chief, is_multi_worker

    if renamed:
        new = {"fresh": "overwrite"}
        raise TypeError(
            "train() got " + ", ".join(
                f"`{k}=` (renamed `{new[k]}=`)" if k in new else f"an unexpected `{k}=`"
                for k in renamed
            )
        )
    t_start = time.time()
    cfg = load_config(config, overrides=overrides, task=task)
    # What model.type names is resolved (and a module it names refused) before any other work.
    allowed_imports = builders.check_allowed_imports(allowed_imports)
    builders.resolve_model_builder(cfg["model"]["type"], "model.type", allowed_imports)
    run_dir = os.path.abspath(
        output_dir or cfg["output"]["dir"] or os.path.join("runs", cfg["name"])
    )
    cfg["output"]["dir"] = run_dir
    if overwrite is None:
        overwrite = cfg["output"]["overwrite"]
    overwrite = bool(overwrite)
    # Multi-worker collectives must be set up before other TensorFlow work.
    try:
        strategy = get_strategy(strategy if strategy is not None else cfg["train"]["strategy"])
    except ValueError as e:
        raise ConfigError(f"config key 'train.strategy': {e}") from e
    multi_worker = is_multi_worker(strategy)
    chief = is_chief() if multi_worker else True
    kwargs = dict(
        strategy=strategy, multi_worker=multi_worker, chief=chief, callbacks=callbacks,
        overwrite=overwrite, report=report, verbose=verbose, allowed_imports=allowed_imports,
    )
    if not chief:
        # Other workers write to a throw-away directory and resume from the chief's backup.
        return _train(cfg, run_dir, tempfile.mkdtemp(prefix="tfrestore-worker-"), t_start, **kwargs)
    try:
        with rundir.RunDirLock(run_dir) as lock:
            if lock.taken_over is not None:
                print(
                    f"[tfrestore] note: took over the lock of a training that is gone "
                    f"({rundir.describe_holder(lock.taken_over)})",
                    flush=True,
                )
            return _train(cfg, run_dir, run_dir, t_start, **kwargs)
    except TrainingInterrupted:
        raise
    except KeyboardInterrupt as e:
        raise TrainingInterrupted(_interrupted_message(cfg, run_dir)) from e


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


def _train(cfg, run_dir, write_dir, t_start, *, strategy, multi_worker, chief, callbacks,
           overwrite, report, verbose, allowed_imports=()):
    import keras
    import tensorflow as tf

    from tfrestore.training.strategy import describe_strategy

    tr, out_cfg = cfg["train"], cfg["output"]
    paths, state = _prepare_run_dir(
        cfg, write_dir, overwrite, backup_dir=None if chief else run_paths(run_dir)["backup"]
    )
    initial_epoch = state.epoch if state is not None else 0
    initial_step = state.step if state is not None else 0
    # model.init: checked before any data or model work; a resumed run keeps its backup's weights.
    init = builders.resolve_init(cfg["model"]["init"]) if state is None else None
    verbose = tr["verbose"] if verbose is None else verbose
    if verbose == "auto":  # progress bars in a terminal, one line per epoch in logs
        verbose = 1 if sys.stdout.isatty() else 2
    if not chief:
        verbose = 0

    keras.utils.set_random_seed(cfg["seed"])
    if tr["deterministic"]:
        tf.config.experimental.enable_op_determinism()
    previous_policy = keras.config.dtype_policy()
    if tr["mixed_precision"]:
        keras.mixed_precision.set_dtype_policy("mixed_float16")
        warning = mixed_precision_warning(tf.config.list_physical_devices("GPU"))
        if warning and chief:
            print(f"[tfrestore] warning: {warning}", file=sys.stderr, flush=True)
    try:
        steps = tr["steps_per_epoch"]
        train_ds = tdata.train_dataset(cfg, skip_batches=initial_epoch * steps + initial_step)
        val_ds = tdata.val_dataset(cfg)
        x_val, y_val = _example_batch(val_ds)
        notes = []
        if multi_worker and tr["jit_compile"] is True:
            notes.append("jit_compile ignored: the multi-worker loop runs without XLA")

        init_model = builders.load_init_source(init)  # only read: outside the scope
        with strategy.scope():
            model = builders.build_model(cfg["model"], allowed_imports=allowed_imports)
            _check_model_io(model, x_val, y_val, cfg)
            init_layers = builders.init_weights(model, init, init_model)
            del init_model
            loss, used_terms = builders.build_loss(cfg["losses"])
            metrics, lpips_fn, metric_notes = builders.build_metrics(cfg["metrics"])
            notes += metric_notes
            _check_monitor(cfg, metrics, lpips_fn)
            schedule = builders.build_schedule(
                cfg["schedule"], cfg["optimizer"]["learning_rate"], builders.steps_total(cfg)
            )
            optimizer = builders.build_optimizer(cfg["optimizer"], schedule)
            model.compile(
                optimizer=optimizer,
                loss=loss,
                metrics=metrics,
                jit_compile=tr["jit_compile"],
                run_eagerly=tr["run_eagerly"],
            )

        tensorboard = cfg["output"]["tensorboard"] and _tensorboard_installed()
        if cfg["output"]["tensorboard"] and not tensorboard:
            notes.append(
                "TensorBoard logging skipped: the 'tensorboard' package is not installed "
                "(pip install tensorboard)"
            )
        dump_config(cfg, paths["config"])
        run_info = {
            "losses_used": used_terms,
            "loss": repr(loss),
            "strategy": describe_strategy(strategy),
            "dtype_policy": keras.config.dtype_policy().name,
            "trainable_parameters": int(
                sum(int(np.prod(v.shape)) for v in model.trainable_weights)
            ),
            "init": _describe_init(cfg, init, init_layers),
            "resumed_from_epoch": initial_epoch,
            "resumed_from_step": initial_step,
            "versions": _versions(),
            "notes": notes,
        }
        dump_config(run_info, paths["run_info"])

        cbs = _make_callbacks(
            cfg, paths, state, (x_val, y_val), tensorboard, val_ds, lpips_fn
        )
        cbs += list(callbacks)
        if chief:
            _print_header(cfg, run_dir, run_info, state, notes)
        try:
            if multi_worker:
                from tfrestore.training.multi_worker import fit_multi_worker

                history = fit_multi_worker(
                    model,
                    strategy,
                    train_ds,
                    epochs=tr["epochs"],
                    steps_per_epoch=steps,
                    initial_epoch=initial_epoch,
                    initial_step=initial_step,
                    validation_data=val_ds,
                    validation_steps=tr["validation_steps"],
                    callbacks=cbs,
                    verbose=verbose,
                ).history
            else:
                history = _fit(model, cfg, train_ds, val_ds, cbs, state, verbose)
        except tf.errors.InvalidArgumentError as e:  # TF's decode errors name no file
            damaged = tdata.find_damaged_image(cfg, e)
            if damaged is None:
                raise
            raise damaged from e
        # Commit final.keras first: only a run whose final model is safely on disk may drop
        # the backup that lets it resume.
        rundir.save_model_atomically(model, paths["final"])
        if out_cfg["backup"]:  # the run completed: its backup is no longer needed
            rundir.clear_backup(paths["backup"])
        history = dict(history)
        fields = dict(
            run_dir=run_dir, config=cfg, model=model, initial_epoch=initial_epoch, notes=notes
        )
        if not chief:
            print(f"[tfrestore] worker done in {time.time() - t_start:.1f} s", flush=True)
            return TrainResult(history=history, **fields)
        if out_cfg["csv"] and os.path.isfile(paths["history"]):
            from tfrestore.training.report import read_history

            history = read_history(paths["history"])
        result = TrainResult(
            history=history, files={k: paths[k] for k in ("config", "run_info", "final")}, **fields
        )
        if out_cfg["csv"]:
            result.files["history"] = paths["history"]
        if tensorboard:
            result.files["logs"] = paths["logs"]
        if out_cfg["checkpoint"] and os.path.isfile(paths["best"]):
            result.files["best"] = paths["best"]
        if out_cfg["report"] if report is None else report:
            write_report(result, paths, cfg)
        print(
            f"[tfrestore] done in {time.time() - t_start:.1f} s; run directory: {run_dir}",
            flush=True,
        )
        return result
    finally:
        keras.config.set_dtype_policy(previous_policy)
        if not chief:
            shutil.rmtree(write_dir, ignore_errors=True)


def _fit(model, cfg, train_ds, val_ds, cbs, state, verbose):
    """``model.fit`` over the remaining epochs. A run resumed ``step`` steps into
    an epoch first finishes that epoch (a ``fit`` of ``steps_per_epoch - step``
    steps), then fits the following epochs on a stream that starts at the next
    epoch; returns the merged history."""
    tr = cfg["train"]
    steps = tr["steps_per_epoch"]
    initial_epoch = state.epoch if state is not None else 0
    kw = dict(
        validation_data=val_ds,
        validation_steps=tr["validation_steps"],
        callbacks=cbs,
        verbose=verbose,
        shuffle=False,  # the tf.data pipeline shuffles (deterministically)
    )
    history = {}
    if state is not None and state.step:
        # Build the compiled metrics now (fit() would on its first step) so the
        # backed-up running means can be put back at the start of the epoch.
        with model.distribute_strategy.scope():
            for x, y in train_ds.take(1):
                from tfrestore.utils import keras_compat

                keras_compat.symbolic_build(model, (x, y))  # as fit() does
        for cb in cbs:
            if isinstance(cb, StepBackup):
                cb.batch_offset = state.step
        hist = model.fit(
            train_ds,
            initial_epoch=initial_epoch,
            epochs=initial_epoch + 1,
            steps_per_epoch=steps - state.step,
            **kw,
        )
        history = {k: list(v) for k, v in hist.history.items()}
        initial_epoch += 1
        if initial_epoch >= tr["epochs"]:
            return history
        for cb in cbs:
            if isinstance(cb, StepBackup):
                cb.resume = None  # restored once, by the first fit
            if type(cb).__name__ == "CSVLogger":
                cb.append = True
        train_ds = tdata.train_dataset(cfg, skip_batches=initial_epoch * steps)
    hist = model.fit(
        train_ds,
        initial_epoch=initial_epoch,
        epochs=tr["epochs"],
        steps_per_epoch=steps,
        **kw,
    )
    for k, v in hist.history.items():
        history.setdefault(k, []).extend(v)
    return history


def _tensorboard_installed():
    import importlib.util

    return importlib.util.find_spec("tensorboard") is not None


def _make_callbacks(cfg, paths, state, val_batch, tensorboard, val_ds, lpips_fn):
    import keras

    from tfrestore.callbacks import QueueControl
    from tfrestore.training.callbacks import ImageSummaries, LearningRateLogger, ValidationLPIPS

    out_cfg, m = cfg["output"], cfg["metrics"]
    x_val, y_val = val_batch
    # D2SM-style queue losses: freeze the queue during validation, guard loss lists
    cbs = [QueueControl()]
    cbs.append(LearningRateLogger())
    if lpips_fn is not None:  # before the callbacks that read val_lpips from the logs
        cbs.append(ValidationLPIPS(val_ds, lpips_fn, steps=cfg["train"]["validation_steps"]))
    if tensorboard and out_cfg["image_summaries"]:
        k = out_cfg["image_summaries"]
        xs = tuple(t[:k] for t in x_val) if isinstance(x_val, tuple) else x_val[:k]
        cbs.append(ImageSummaries(paths["logs"], xs, y_val[:k], max_images=k))
    if out_cfg["checkpoint"]:
        best = _best_so_far(paths["history"], m["monitor"], m["mode"]) if state else None
        cbs.append(
            keras.callbacks.ModelCheckpoint(
                paths["best"],
                monitor=m["monitor"],
                mode=m["mode"],
                save_best_only=True,
                initial_value_threshold=best,
                verbose=0,
            )
        )
    if out_cfg["backup"]:
        tr = cfg["train"]
        cbs.append(
            StepBackup(
                paths["backup"],
                tr["steps_per_epoch"],
                every_steps=tr["backup_every_steps"],
                resume=state,
            )
        )
    if out_cfg["csv"]:
        cbs.append(keras.callbacks.CSVLogger(paths["history"], append=state is not None))
    if tensorboard:
        cbs.append(keras.callbacks.TensorBoard(paths["logs"], write_graph=False, profile_batch=0))
    return cbs


def _describe_init(cfg, init, layers):
    """One line on ``model.init`` (run.yaml and the header), None without it."""
    if cfg["model"]["init"] is None:
        return None
    if init is None:
        return (
            f"not applied: resuming from the backup, whose weights continue the run "
            f"(model.init: {cfg['model']['init']})"
        )
    what = "all layers" if layers is None else f"{len(layers)} layers"
    return f"weights from {init} ({what})"


def _print_header(cfg, run_dir, run_info, state, notes):
    tr = cfg["train"]
    lines = [
        f"[tfrestore] task {cfg['task']} | model {model_type_name(cfg['model']['type'])} "
        f"({run_info['trainable_parameters']:,} parameters) | loss {run_info['loss']}",
        f"[tfrestore] {run_info['strategy']} | policy {run_info['dtype_policy']} | "
        f"{tr['epochs']} epochs x {tr['steps_per_epoch']} steps, batch "
        f"{cfg['data']['batch_size']}, "
        f"crop {cfg['data']['crop']}",
        f"[tfrestore] run directory: {run_dir}",
    ]
    if run_info.get("init"):
        lines.append(f"[tfrestore] init: {run_info['init']}")
    if state is not None:
        where = f"epoch {state.epoch + 1}" + (f", step {state.step + 1}" if state.step else "")
        lines.append(f"[tfrestore] resuming an interrupted run at {where}")
    lines += [f"[tfrestore] note: {n}" for n in notes]
    print("\n".join(lines), flush=True)

