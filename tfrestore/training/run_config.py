"""The resolved training config as typed, frozen sections (one object per run).

:func:`load_run_config` loads and validates a config once (see
:func:`tfrestore.training.config.load_config`) and returns a :class:`RunConfig`; the
training reads its fields (``rc.train.epochs``, ``rc.output.backup``) instead of string keys.
``rc.raw`` is the resolved dict, written to ``config.yaml`` and passed to the functions
that take a config mapping (data pipelines, the report). Each section's fields are the keys
of :data:`~tfrestore.training.config.SCHEMA` of the same name.

>>> rc = load_run_config({"task": "denoise", "model": {"type": "DnCNN"},
...                       "losses": [{"type": "L1"}]}, overrides=["train.epochs=2"])
>>> rc.train.epochs, rc.train.total_steps, rc.losses[0].loss_weight, rc.data.degradation.type
(2, 200, 1.0, 'gaussian_noise')
"""

from __future__ import annotations

import copy
import dataclasses
import os
from typing import Any

from tfrestore.training.config import load_config

__all__ = [
    "RunConfig",
    "ModelConfig",
    "LossTerm",
    "Images",
    "Degradation",
    "DataConfig",
    "OptimizerConfig",
    "ScheduleConfig",
    "TrainConfig",
    "MetricsConfig",
    "OutputConfig",
    "load_run_config",
    "resolve_run_config",
]

_frozen = dataclasses.dataclass(frozen=True)


@_frozen
class ModelConfig:
    """``model``: the builder (name or callable), its arguments and ``init`` weights."""

    type: Any
    args: dict
    init: str | None


@_frozen
class LossTerm:
    """One term of ``losses`` (``fallback``: the terms replacing it without its weights)."""

    type: str
    loss_weight: float
    args: dict
    fallback: tuple = ()


@_frozen
class Images:
    """``data.train`` / ``data.val`` / ``data.test``: an image source and its own sizes."""

    source: str
    max_images: int | None
    split: str
    crop_size: int | None = None
    batch_size: int | None = None


@_frozen
class Degradation:
    """``data.degradation``, the task's default filled in."""

    type: str
    args: dict


@_frozen
class DataConfig:
    """``data``."""

    train: Images
    val: Images
    test: Images
    degradation: Degradation
    crop_size: int
    batch_size: int
    augment: bool
    channels: int


@_frozen
class OptimizerConfig:
    """``optimizer``."""

    type: str
    learning_rate: float
    clipnorm: float | None
    global_clipnorm: float | None
    args: dict


@_frozen
class ScheduleConfig:
    """``schedule``."""

    type: str
    warmup_steps: int
    args: dict


@_frozen
class TrainConfig:
    """``train``: the ``fit`` settings."""

    epochs: int
    steps_per_epoch: int
    validation_steps: int | None
    mixed_precision: bool
    jit_compile: bool | str
    strategy: str
    backup_every_steps: int | None
    deterministic: bool
    run_eagerly: bool
    verbose: int | str

    @property
    def total_steps(self):
        return self.epochs * self.steps_per_epoch


@_frozen
class MetricsConfig:
    """``metrics``."""

    psnr: bool
    ssim: bool
    lpips: bool | str
    monitor: str
    mode: str


@_frozen
class OutputConfig:
    """``output``: what the run writes, and where."""

    dir: str | None
    overwrite: bool
    tensorboard: bool
    image_summaries: int
    csv: bool
    checkpoint: bool
    backup: bool
    report: bool


@_frozen
class RunConfig:
    """A resolved training config: every default filled in, fractions evaluated.

    ``raw`` is the same config as a dict (``config.yaml``); treat it as read-only.
    """

    task: str
    name: str
    seed: int
    model: ModelConfig
    losses: tuple
    data: DataConfig
    optimizer: OptimizerConfig
    schedule: ScheduleConfig
    train: TrainConfig
    metrics: MetricsConfig
    output: OutputConfig
    raw: dict = dataclasses.field(repr=False, compare=False)

    def in_run_dir(self, run_dir):
        """This config with ``output.dir`` set to ``run_dir`` (as ``config.yaml`` records it)."""
        raw = copy.deepcopy(self.raw)
        raw["output"]["dir"] = os.fspath(run_dir)
        return resolve_run_config(raw)


def _term(d):
    return LossTerm(
        type=d["type"], loss_weight=d["loss_weight"], args=d["args"],
        fallback=tuple(_term(fb) for fb in d.get("fallback", ())),
    )


def resolve_run_config(cfg):
    """The :class:`RunConfig` of a resolved config dict (from
    :func:`~tfrestore.training.config.load_config`; kept as ``raw``)."""
    d = cfg["data"]
    return RunConfig(
        task=cfg["task"],
        name=cfg["name"],
        seed=cfg["seed"],
        model=ModelConfig(**cfg["model"]),
        losses=tuple(_term(t) for t in cfg["losses"]),
        data=DataConfig(
            **{k: d[k] for k in ("crop_size", "batch_size", "augment", "channels")},
            train=Images(**d["train"]),
            val=Images(**d["val"]),
            test=Images(**d["test"]),
            degradation=Degradation(**d["degradation"]),
        ),
        optimizer=OptimizerConfig(**cfg["optimizer"]),
        schedule=ScheduleConfig(**cfg["schedule"]),
        train=TrainConfig(**cfg["train"]),
        metrics=MetricsConfig(**cfg["metrics"]),
        output=OutputConfig(**cfg["output"]),
        raw=cfg,
    )


def load_run_config(source, overrides=(), task=None):
    """Load, override, validate and resolve a config (the arguments of
    :func:`~tfrestore.training.config.load_config`); a :class:`RunConfig` with no
    ``overrides`` and no other ``task`` is returned as it is."""
    if isinstance(source, RunConfig):
        if not overrides and task in (None, source.task):
            return source
        source = source.raw
    return resolve_run_config(load_config(source, overrides=overrides, task=task))
