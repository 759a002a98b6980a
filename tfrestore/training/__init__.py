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
:mod:`~tfrestore.training.run_config` (the resolved config, typed),
:mod:`~tfrestore.training.run` (``build_run`` / ``fit_run``: one training, built once),
:mod:`~tfrestore.training.runner` (``train``), :mod:`~tfrestore.training.report`
(the held-out evaluation, its table and figures), :mod:`~tfrestore.training.script` (command line),
:mod:`~tfrestore.training.strategy` (distribution strategies),
:mod:`~tfrestore.training.backup` (step-level backups and resume),
:mod:`~tfrestore.training.multi_worker` (the loop used under
``MultiWorkerMirroredStrategy``; launching on a cluster).
"""

from tfrestore.utils.lazy import lazy_attributes

# Imported on first access, so that the command line reads configs (config, schema, script)
# without loading TensorFlow through the runner.
__getattr__, __dir__, __all__ = lazy_attributes(
    __name__,
    {
        "config": (
            "SCHEMA",
            "TASK_NAMES",
            "ConfigError",
            "load_config",
            "apply_overrides",
            "dump_config",
            "describe_config",
        ),
        "runner": ("train", "TrainResult", "run_paths"),
        "backup": ("resume_epoch",),
        "run_config": ("RunConfig", "load_run_config"),
        "strategy": ("get_strategy",),
    },
)
