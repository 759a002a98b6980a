"""Distribution strategy selection (one strategy object per process).

TF 2.21 breaks collectives when a second ``MirroredStrategy`` is created in a
process (measured: the second one's all-reduce fails), so each strategy is created once and reused.

``multi_worker`` (or ``auto`` when the ``TF_CONFIG`` environment variable names
a cluster of more than one task) gives a
``tf.distribute.MultiWorkerMirroredStrategy``; the runner then trains with
:func:`tfrestore.training.multi_worker.fit_multi_worker` (see there for how to
launch a cluster).

>>> get_strategy("default").num_replicas_in_sync
1
>>> tf_config_1 = {"cluster": {"worker": ["h1:2222", "h2:2222"]},
...                "task": {"type": "worker", "index": 1}}
>>> cluster_size(tf_config_1), is_chief(tf_config_1)
(2, False)
"""

from __future__ import annotations

import json
import os

import tensorflow as tf

from tfrestore.utils import keras_compat

__all__ = [
    "STRATEGY_KINDS",
    "get_strategy",
    "describe_strategy",
    "tf_config",
    "cluster_size",
    "is_chief",
    "is_multi_worker",
    "slurm_tasks",
    "set_tf_config_from_slurm",
]

STRATEGY_KINDS = ("auto", "mirrored", "default", "multi_worker")

_MIRRORED = None
_MULTI_WORKER = None


def tf_config():
    """The parsed ``TF_CONFIG`` environment variable (``{}`` when unset).

    Raises:
        ValueError: it is set but is not a JSON mapping.
    """
    raw = os.environ.get("TF_CONFIG", "").strip()
    if not raw:
        return {}
    try:
        cfg = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(
            f"the TF_CONFIG environment variable is not valid JSON ({e}); set it to e.g. "
            '{"cluster": {"worker": ["host1:port", "host2:port"]}, '
            '"task": {"type": "worker", "index": 0}}'
        ) from None
    if not isinstance(cfg, dict):
        raise ValueError(f"the TF_CONFIG environment variable must be a JSON mapping, got {raw!r}")
    return cfg


def cluster_size(config=None):
    """Number of tasks (chief + workers) in ``config`` (default: ``TF_CONFIG``)."""
    config = tf_config() if config is None else config
    cluster = config.get("cluster") or {}
    return sum(len(cluster.get(kind) or []) for kind in ("chief", "worker"))


def is_chief(config=None):
    """Whether this process is the chief: the ``chief`` task, or worker 0 when
    the cluster has no ``chief`` entry (also True without a cluster)."""
    config = tf_config() if config is None else config
    cluster = config.get("cluster") or {}
    task = config.get("task") or {}
    kind, index = task.get("type"), int(task.get("index", 0) or 0)
    if not cluster or kind is None:
        return True
    if kind == "chief":
        return True
    return kind == "worker" and index == 0 and not cluster.get("chief")


def is_multi_worker(strategy):
    """Whether ``strategy`` is a ``MultiWorkerMirroredStrategy`` (one worker or
    more): Keras' ``fit`` cannot train under it, the runner's own loop does."""
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def slurm_tasks():
    """Number of tasks of the current Slurm job step (0 outside Slurm)."""
    for var in ("SLURM_STEP_NUM_TASKS", "SLURM_NTASKS"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return 0


def set_tf_config_from_slurm():
    """Under ``srun`` with several tasks and no ``TF_CONFIG``: set ``TF_CONFIG``
    from the Slurm allocation (one worker per task, ports from
    ``$TFRESTORE_PORT_BASE``, default 8888). Returns the mapping, or None when
    nothing was set."""
    if os.environ.get("TF_CONFIG", "").strip() or slurm_tasks() < 2:
        return None
    from tfrestore.training.multi_worker import tf_config_from_slurm

    gpus = len(tf.config.list_physical_devices("GPU"))
    config = tf_config_from_slurm(
        port_base=int(os.environ.get("TFRESTORE_PORT_BASE", "8888")),
        gpus_per_node=max(gpus, 1),
        auto_set_gpu=False,
    )
    os.environ["TF_CONFIG"] = json.dumps(config)
    return config


def _multi_worker():
    global _MULTI_WORKER
    if _MULTI_WORKER is None:
        set_tf_config_from_slurm()
        _MULTI_WORKER = tf.distribute.MultiWorkerMirroredStrategy()
    return _MULTI_WORKER


def get_strategy(kind="auto"):
    """Return the training strategy.

    Args:
        kind: ``"auto"``: ``MultiWorkerMirroredStrategy`` when ``TF_CONFIG``
            names a cluster of more than one task, else ``MirroredStrategy``
            over all visible GPUs when there are any, otherwise the default
            (single-device) strategy; ``"mirrored"``: ``MirroredStrategy`` over
            all GPUs, or over the first CPU when there is none (one replica);
            ``"multi_worker"``: ``MultiWorkerMirroredStrategy`` over the cluster
            in ``TF_CONFIG`` (set from the Slurm allocation under ``srun`` when
            missing, see :func:`set_tf_config_from_slurm`; one process on its
            own without either); ``"default"``:
            the default strategy; or a ``tf.distribute.Strategy`` (returned as is).
    """
    global _MIRRORED
    if isinstance(kind, tf.distribute.Strategy):
        return kind
    if kind not in STRATEGY_KINDS:
        raise ValueError(
            f"`strategy` must be one of {', '.join(map(repr, STRATEGY_KINDS))}, got {kind!r}."
        )
    if kind == "multi_worker" or (kind == "auto" and cluster_size() > 1):
        return _multi_worker()
    gpus = tf.config.list_logical_devices("GPU")
    if kind == "default" or (kind == "auto" and not gpus):
        return tf.distribute.get_strategy()
    if _MIRRORED is None:
        devices = [d.name for d in gpus] or [tf.config.list_logical_devices("CPU")[0].name]
        _MIRRORED = tf.distribute.MirroredStrategy(devices)
    return _MIRRORED


def describe_strategy(strategy):
    """One line such as ``MirroredStrategy, 2 replica(s)``."""
    text = f"{type(strategy).__name__}, {strategy.num_replicas_in_sync} replica(s)"
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        text += f" on {keras_compat.num_workers(strategy)} worker(s)"
    return text
