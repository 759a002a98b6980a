"""Step-level training backups (resume a killed run mid-epoch).

:class:`StepBackup` replaces ``keras.callbacks.BackupAndRestore``, which in
Keras 3.15 can save every ``save_freq`` batches but on restore only knows the
epoch: the run restarts at the beginning of that epoch with weights that have
already seen part of it. Here a backup records ``(epoch, step)``, the model
weights (optimizer and loss state such as a D2SM queue included, as
``model.save_weights`` writes them) and the running values of the epoch's
metrics, so the resumed run:

* skips the training batches already consumed (the data stream is
  deterministic, see :mod:`tfrestore.training.data`),
* trains the remaining ``steps_per_epoch - step`` steps of the interrupted
  epoch, then the following epochs, and
* reports the same epoch means as an uninterrupted run.

A backup directory holds ``training_metadata.json`` (``{"epoch", "step",
"weights", "metrics"}``) and the weights file it names. A new backup writes its
weights file first and then replaces the metadata atomically, so a kill at any
moment leaves a consistent (possibly older) backup.

>>> import tempfile
>>> read_backup(tempfile.mkdtemp()) is None
True
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os

import keras
import numpy as np

__all__ = [
    "BackupState",
    "StepBackup",
    "read_backup",
    "resume_epoch",
    "restore_backup",
    "restore_metrics",
    "METADATA",
]

METADATA = "training_metadata.json"


@dataclasses.dataclass
class BackupState:
    """Where a backed-up run resumes: ``step`` steps into epoch ``epoch``
    (0-based; ``step`` 0 is the epoch's start)."""

    epoch: int
    step: int
    weights: str
    metrics: dict = dataclasses.field(default_factory=dict)

    def global_step(self, steps_per_epoch):
        return self.epoch * int(steps_per_epoch) + self.step


def _check_weights_file(path):
    """Open the HDF5 weights and read every dataset (what ``load_weights`` will do)."""
    import h5py

    def visit(_name, obj):
        if isinstance(obj, h5py.Dataset):
            obj[()]

    with h5py.File(path, "r") as f:
        f.visititems(visit)


_FRESH_HINT = (
    "pass --overwrite to discard the interrupted run and start again, or use "
    "another --output-dir"
)


def read_backup(backup_dir):
    """The :class:`BackupState` in ``backup_dir``, or None when it holds none.

    Both files are checked here, before any model is built, so a damaged backup is
    reported as such (a :class:`~tfrestore.training.rundir.RunDirError` naming the file
    and ``--overwrite``) instead of as an h5py/JSON traceback from inside training.
    """
    from tfrestore.training.rundir import RunDirError

    meta = os.path.join(backup_dir, METADATA)
    if not os.path.isfile(meta):
        return None
    try:
        with open(meta, encoding="utf-8") as f:
            text = f.read()
        if not text.strip():
            raise ValueError("the file is empty")
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        epoch, step = int(data.get("epoch", 0)), int(data.get("step", 0))
    except (OSError, ValueError, TypeError) as e:
        reason = str(e) if str(e) == "the file is empty" else f"{type(e).__name__}: {e}"
        raise RunDirError(
            f"cannot resume from the backup file {meta}: it is damaged ({reason}); {_FRESH_HINT}"
        ) from None
    # Keras' BackupAndRestore (earlier tfrestore versions) names no file.
    weights = os.path.join(backup_dir, data.get("weights", "latest.weights.h5"))
    if not os.path.isfile(weights):
        return None
    try:
        _check_weights_file(weights)
    except Exception as e:  # h5py raises OSError/KeyError/RuntimeError for damaged files
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise RunDirError(
            f"cannot resume from the backup file {weights}: it is damaged or truncated "
            f"({first}); {_FRESH_HINT}"
        ) from None
    return BackupState(
        epoch=epoch,
        step=step,
        weights=weights,
        metrics=dict(data.get("metrics") or {}),
    )


def resume_epoch(backup_dir):
    """Epoch a run backed up in ``backup_dir`` resumes at (0 if none); see
    :func:`read_backup` for the step within it. A damaged backup raises
    :class:`~tfrestore.training.rundir.RunDirError` naming the file."""
    state = read_backup(backup_dir)
    return state.epoch if state is not None else 0


def restore_backup(model, state):
    """Load ``state``'s weights (model, optimizer, loss state) into ``model``."""
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    model.load_weights(state.weights)


def _metric_variables(model):
    """``{path: variable}`` of the model's metric state (loss tracker, compiled
    metrics); compiled metrics exist once the model is built for training."""
    return {v.path: v for v in model.metrics_variables}


def restore_metrics(model, values):
    """Put saved running metric values back; False when the model's metric
    variables do not match them (then the epoch means restart at the resume)."""
    variables = _metric_variables(model)
    if not values or set(values) != set(variables):
        return False
    for path, value in values.items():
        v = variables[path]
        v.assign(np.asarray(value, dtype=v.dtype))
    return True


class StepBackup(keras.callbacks.Callback):
    """Back up the training state at each epoch end and every
    ``every_steps`` steps (counted over the whole run).

    Args:
        backup_dir: str. Directory written (created when needed).
        steps_per_epoch: int. Steps of one epoch.
        every_steps: int or None. Also back up when the global step is a multiple
            of this (None: epoch ends only).
        resume: BackupState or None. The state the run resumed from; its metric
            values are put back at the start of the resumed epoch.
        batch_offset: int. Added to the ``batch`` index Keras passes (a ``fit``
            that starts ``step`` steps into an epoch counts from 0).
    """

    def __init__(self, backup_dir, steps_per_epoch, every_steps=None, resume=None,
                 batch_offset=0):
        super().__init__()
        self.backup_dir = backup_dir
        self.steps_per_epoch = int(steps_per_epoch)
        self.every_steps = int(every_steps) if every_steps else None
        self.resume = resume
        self.batch_offset = int(batch_offset)
        self._epoch = 0
        self._restored = False
        self.saved = []  # (epoch, step) of every backup written

    def on_train_begin(self, logs=None):
        # Here, as Keras' BackupAndRestore does: fit() has built the optimizer,
        # the compiled loss and the metrics by now.
        if self.resume is not None and not self._restored:
            restore_backup(self.model, self.resume)
            self._restored = True

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        r = self.resume
        if r is not None and epoch == r.epoch and r.step and r.metrics:
            restore_metrics(self.model, r.metrics)
            self.resume = None

    def on_train_batch_end(self, batch, logs=None):
        if not self.every_steps:
            return
        step = self.batch_offset + int(batch) + 1
        if step >= self.steps_per_epoch:
            return  # the epoch-end backup follows (after validation)
        if (self._epoch * self.steps_per_epoch + step) % self.every_steps == 0:
            self.save(self._epoch, step)

    def on_epoch_end(self, epoch, logs=None):
        self.batch_offset = 0
        self.save(epoch + 1, 0)

    def save(self, epoch, step):
        os.makedirs(self.backup_dir, exist_ok=True)
        name = f"step-{epoch * self.steps_per_epoch + step:09d}.weights.h5"
        path = os.path.join(self.backup_dir, name)
        self.model.save_weights(path, overwrite=True)
        metrics = (
            {p: np.asarray(v.numpy()).tolist() for p, v in _metric_variables(self.model).items()}
            if step
            else {}
        )
        meta = os.path.join(self.backup_dir, METADATA)
        with open(meta + ".tmp", "w", encoding="utf-8") as f:
            json.dump({"epoch": epoch, "step": step, "weights": name, "metrics": metrics}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(meta + ".tmp", meta)
        for old in glob.glob(os.path.join(self.backup_dir, "step-*.weights.h5")):
            if os.path.basename(old) != name:
                os.remove(old)
        self.saved.append((epoch, step))
