"""Distribution strategy selection (one MirroredStrategy per process).

TF 2.21 breaks collectives when a second ``MirroredStrategy`` is created in a
process (keras_notes §1.7), so the strategy is created once and reused.

>>> get_strategy("default").num_replicas_in_sync
1
"""

from __future__ import annotations

import tensorflow as tf

__all__ = ["get_strategy", "describe_strategy"]

_MIRRORED = None


def get_strategy(kind="auto"):
    """Return the training strategy.

    Args:
        kind: ``"auto"``: ``MirroredStrategy`` over all visible GPUs when there
            are any, otherwise the default (single-device) strategy;
            ``"mirrored"``: ``MirroredStrategy`` over all GPUs, or over the
            first CPU when there is none (one replica); ``"default"``: the
            default strategy; or a ``tf.distribute.Strategy`` (returned as is).
    """
    global _MIRRORED
    if isinstance(kind, tf.distribute.Strategy):
        return kind
    if kind not in ("auto", "mirrored", "default"):
        raise ValueError(f"`strategy` must be 'auto', 'mirrored' or 'default', got {kind!r}.")
    gpus = tf.config.list_logical_devices("GPU")
    if kind == "default" or (kind == "auto" and not gpus):
        return tf.distribute.get_strategy()
    if _MIRRORED is None:
        devices = [d.name for d in gpus] or [tf.config.list_logical_devices("CPU")[0].name]
        _MIRRORED = tf.distribute.MirroredStrategy(devices)
    return _MIRRORED


def describe_strategy(strategy):
    """One line such as ``MirroredStrategy, 2 replica(s)``."""
    return f"{type(strategy).__name__}, {strategy.num_replicas_in_sync} replica(s)"
