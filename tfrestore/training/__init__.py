"""Training: YAML configs -> model, weighted losses, data, optimizer -> ``model.fit``.

The ``train/<task>.py`` scripts and ``tfrestore train`` are thin wrappers around
:func:`train`::

    from tfrestore.training import train
    result = train("train/configs/denoise_demo.yaml", overrides=["train.epochs=2"])
    result.report_rows   # held-out PSNR/SSIM of degraded vs restored images

Modules: :mod:`~tfrestore.training.config` (schema, loading, overrides),
:mod:`~tfrestore.training.builders` (model / loss / optimizer / schedule /
metrics), :mod:`~tfrestore.training.data` (config -> ``tfrestore.data``
pipelines), :mod:`~tfrestore.training.callbacks`,
:mod:`~tfrestore.training.runner` (``train``), :mod:`~tfrestore.training.report`
(figures), :mod:`~tfrestore.training.script` (command line),
:mod:`~tfrestore.training.strategy` (distribution strategies),
:mod:`~tfrestore.training.backup` (step-level backups and resume),
:mod:`~tfrestore.training.multi_worker` (the loop used under
``MultiWorkerMirroredStrategy``; launching on a cluster).
"""

from tfrestore.training.config import (
    SCHEMA,
    TASK_NAMES,
    ConfigError,
    apply_overrides,
    describe_config,
    dump_config,
    load_config,
)
from tfrestore.training.runner import TrainResult, resume_epoch, run_paths, train
from tfrestore.training.strategy import get_strategy

__all__ = [
    "SCHEMA",
    "TASK_NAMES",
    "ConfigError",
    "load_config",
    "apply_overrides",
    "dump_config",
    "describe_config",
    "train",
    "TrainResult",
    "resume_epoch",
    "run_paths",
    "get_strategy",
]
