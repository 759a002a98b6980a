"""The training runner behind ``train/*.py`` and ``tfrestore train``.

:func:`train` reads in one direction: the config is loaded once into a
:class:`~tfrestore.training.run_config.RunConfig`; the run directory is locked and
checked; :func:`~tfrestore.training.run.build_run` builds data, model, loss (a
``WeightedSum``), metrics, optimizer and callbacks inside the distribution strategy's
scope; :func:`~tfrestore.training.run.fit_run` trains; the results are saved and reported.
A run directory holds::

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
import shutil
import sys
import tempfile
import time

from tfrestore.training import builders, rundir
from tfrestore.training import data as tdata
from tfrestore.training.backup import read_backup, resume_epoch
from tfrestore.training.config import (
    ConfigError,
    dump_config,
    load_saved_config,
    model_type_name,
)
from tfrestore.training.report import write_report
from tfrestore.training.run import build_run, fit_run, mixed_precision_warning, numerics
from tfrestore.training.run_config import load_run_config

__all__ = [
    "train",
    "TrainResult",
    "TrainingInterrupted",
    "run_paths",
    "resume_epoch",
    "mixed_precision_warning",
]


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`train`; the message says whether and how the run resumes."""


def _interrupted_message(rc, run_dir):
    state = None
    if rc.output.backup:
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


def _saved_config(path):
    if not os.path.isfile(path):
        return None
    try:
        return load_saved_config(path)
    except Exception as e:  # damaged YAML, or written by another tfrestore version
        raise rundir.RunDirError(
            f"cannot read {path} of the earlier run in this directory ({e}); pass --overwrite "
            "to replace that run, or choose another --output-dir"
        ) from None


def _prepare_run_dir(rc, run_dir, overwrite, backup_dir=None):
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
    if rc.output.backup and not overwrite:
        state = read_backup(backup_dir or paths["backup"])
    initial_epoch = state.epoch if state is not None else 0
    if backup_dir is None:  # the run's own directory (other workers write a temporary one)
        rundir.check_reuse(
            run_dir, paths, rc.raw, _saved_config(paths["config"]), state, _RESUME_FREE
        )
    epochs = rc.train.epochs
    # Trained to the end, killed before final.keras was committed: only that is left to do.
    finished_unsaved = initial_epoch == epochs and not os.path.isfile(paths["final"])
    if initial_epoch >= epochs and not finished_unsaved:
        raise ConfigError(
            f"{run_dir}: the backup is at epoch {initial_epoch} but 'train.epochs' is {epochs}"
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
        config: str, dict or RunConfig. YAML path, raw dict, a config returned by
            :func:`tfrestore.training.load_config`, or a
            :class:`~tfrestore.training.run_config.RunConfig` (used as it is).
        overrides: list of str. ``["train.epochs=2", ...]`` applied on top.
        task: str or None. Expected task (scripts pass theirs); mismatch is an error.
        output_dir: str or None. Run directory (overrides ``output.dir``).
        strategy: tf.distribute.Strategy or None. Used instead of
            ``train.strategy`` (e.g. the test-suite's shared one).
        callbacks: list of keras.callbacks.Callback. Extra callbacks (appended).
        overwrite: bool or None. Start a new run, deleting the results of an earlier
            (finished or interrupted) run in the run directory; None:
            ``output.overwrite``.
        report: bool or None. Overrides ``output.report``.
        verbose: int, "auto" or None. Overrides ``train.verbose``.
        allowed_imports: sequence of str. Packages (``"mypkg"``, or a dotted
            sub-package) whose modules ``model.type: "mypkg.nets:build"`` may import
            (``tfrestore train --allow-import``); any other ``module:function`` string
            is refused. A dict config may instead give the function itself
            (``model: {type: build}``).

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
    rc = load_run_config(config, overrides=overrides, task=task)
    # What model.type names is resolved (and a module it names refused) before any other work.
    allowed_imports = builders.check_allowed_imports(allowed_imports)
    builders.resolve_model_builder(rc.model.type, "model.type", allowed_imports)
    run_dir = os.path.abspath(output_dir or rc.output.dir or os.path.join("runs", rc.name))
    rc = rc.in_run_dir(run_dir)
    overwrite = bool(rc.output.overwrite if overwrite is None else overwrite)
    # Multi-worker collectives must be set up before other TensorFlow work.
    try:
        strategy = get_strategy(strategy if strategy is not None else rc.train.strategy)
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
        return _train(rc, run_dir, tempfile.mkdtemp(prefix="tfrestore-worker-"), t_start, **kwargs)
    try:
        with rundir.RunDirLock(run_dir) as lock:
            if lock.taken_over is not None:
                print(
                    f"[tfrestore] note: took over the lock of a training that is gone "
                    f"({rundir.describe_holder(lock.taken_over)})",
                    flush=True,
                )
            return _train(rc, run_dir, run_dir, t_start, **kwargs)
    except TrainingInterrupted:
        raise
    except KeyboardInterrupt as e:
        raise TrainingInterrupted(_interrupted_message(rc, run_dir)) from e


def _train(rc, run_dir, write_dir, t_start, *, strategy, multi_worker, chief, callbacks,
           overwrite, report, verbose, allowed_imports=()):
    """Run directory -> :func:`build_run` -> :func:`fit_run` -> saved model -> report."""
    import tensorflow as tf

    paths, state = _prepare_run_dir(
        rc, write_dir, overwrite, backup_dir=None if chief else run_paths(run_dir)["backup"]
    )
    verbose = rc.train.verbose if verbose is None else verbose
    if verbose == "auto":  # progress bars in a terminal, one line per epoch in logs
        verbose = 1 if sys.stdout.isatty() else 2
    if not chief:
        verbose = 0
    try:
        with numerics(rc, warn=chief):
            run = build_run(
                rc, strategy=strategy, multi_worker=multi_worker, paths=paths, state=state,
                callbacks=callbacks, allowed_imports=allowed_imports,
            )
            dump_config(rc.raw, paths["config"])
            dump_config(run.info, paths["run_info"])
            if chief:
                _print_header(rc, run_dir, run.info, state, run.notes)
            try:
                history = fit_run(run, rc, verbose)
            except tf.errors.InvalidArgumentError as e:  # TF's decode errors name no file
                damaged = tdata.find_damaged_image(rc, e)
                if damaged is None:
                    raise
                raise damaged from e
            return _finish(rc, run, history, run_dir, paths, chief, report, t_start)
    finally:
        if not chief:
            shutil.rmtree(write_dir, ignore_errors=True)


def _finish(rc, run, history, run_dir, paths, chief, report, t_start):
    """Commit ``final.keras``, drop the backup, collect the files; the chief reports."""
    # Commit final.keras first: only a run whose final model is safely on disk may drop
    # the backup that lets it resume.
    rundir.save_model_atomically(run.model, paths["final"])
    if rc.output.backup:  # the run completed: its backup is no longer needed
        rundir.clear_backup(paths["backup"])
    fields = dict(
        run_dir=run_dir,
        config=rc.raw,
        model=run.model,
        initial_epoch=run.state.epoch if run.state is not None else 0,
        notes=run.notes,
    )
    if not chief:
        print(f"[tfrestore] worker done in {time.time() - t_start:.1f} s", flush=True)
        return TrainResult(history=history, **fields)
    if rc.output.csv and os.path.isfile(paths["history"]):
        from tfrestore.training.report import read_history

        history = read_history(paths["history"])
    result = TrainResult(
        history=history, files={k: paths[k] for k in ("config", "run_info", "final")}, **fields
    )
    if rc.output.csv:
        result.files["history"] = paths["history"]
    if run.tensorboard:
        result.files["logs"] = paths["logs"]
    if rc.output.checkpoint and os.path.isfile(paths["best"]):
        result.files["best"] = paths["best"]
    if rc.output.report if report is None else report:
        write_report(result, paths, rc, run.degradation)
    print(
        f"[tfrestore] done in {time.time() - t_start:.1f} s; run directory: {run_dir}",
        flush=True,
    )
    return result


def _print_header(rc, run_dir, run_info, state, notes):
    tr = rc.train
    lines = [
        f"[tfrestore] task {rc.task} | model {model_type_name(rc.model.type)} "
        f"({run_info['trainable_parameters']:,} parameters) | loss {run_info['loss']}",
        f"[tfrestore] {run_info['strategy']} | policy {run_info['dtype_policy']} | "
        f"{tr.epochs} epochs x {tr.steps_per_epoch} steps, batch {rc.data.batch_size}, "
        f"crop {rc.data.crop_size}",
        f"[tfrestore] run directory: {run_dir}",
    ]
    if run_info.get("init"):
        lines.append(f"[tfrestore] init: {run_info['init']}")
    if state is not None:
        where = f"epoch {state.epoch + 1}" + (f", step {state.step + 1}" if state.step else "")
        lines.append(f"[tfrestore] resuming an interrupted run at {where}")
    lines += [f"[tfrestore] note: {n}" for n in notes]
    print("\n".join(lines), flush=True)

