"""Call counters of losses that draw random numbers (DiffLoss, PDL).

A loss that draws fresh random numbers at every call keeps a ``(seed, counter)``
stream position. Two things make such a counter safe:

* it must be mirrored under a distribution strategy: created *outside*
  ``strategy.scope()`` it is a plain variable that every replica advances (the
  counter moves by ``num_replicas`` per step and the replicas' draws diverge from a
  single-device run), so :func:`check_in_scope` raises instead;
* it must be saved with the training state, or a resumed run replays the
  timesteps / noise / projections of its first steps: :func:`save` / :func:`load`
  back the owner's ``save_own_variables`` / ``load_own_variables`` (``.keras``,
  ``.weights.h5``, ``ModelCheckpoint``, ``BackupAndRestore``) and the owner's
  ``_state_variables`` makes it part of ``tf.train.Checkpoint``.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

__all__ = ["OutsideScopeError", "new_counter", "check_in_scope", "save", "load"]


class OutsideScopeError(RuntimeError):
    """A loss with a call counter built outside ``strategy.scope()`` runs under a
    multi-replica strategy."""


def new_counter(name):
    """A non-trainable int64 scalar; ``only_first_replica`` keeps replicas equal."""
    return keras.Variable(
        0, dtype="int64", trainable=False, aggregation="only_first_replica", name=name
    )


def check_in_scope(counter, owner, alternative=""):
    """Raise :class:`OutsideScopeError` if a multi-replica strategy is active but
    ``counter`` was created outside its scope. Runs at trace time (free per step)."""
    if not tf.distribute.has_strategy():
        return
    strategy = tf.distribute.get_strategy()
    if strategy.num_replicas_in_sync <= 1:
        return
    value = getattr(counter, "value", counter)
    if isinstance(value, tf.distribute.DistributedValues):
        return
    raise OutsideScopeError(
        f"{owner}: this loss draws new random numbers at each call and keeps a call "
        f"counter; it was created outside `strategy.scope()` but runs under "
        f"{type(strategy).__name__} with {strategy.num_replicas_in_sync} replicas, so "
        f"every replica would advance the counter (wrong draws, silently wrong "
        f"training). Create the loss inside the same `with strategy.scope():` block "
        f"as the model and `compile()`{alternative}."
    )


def save(store, counters):
    """Write ``{key: variable}`` into a Keras weights store."""
    for key, var in counters.items():
        store[key] = np.asarray(keras.ops.convert_to_numpy(var), np.int64)


def load(store, counters):
    """Restore the counters present in ``store``; files written before the
    counters were saved simply lack the keys (the counter keeps its value)."""
    for key, var in counters.items():
        if key in store:
            var.assign(int(np.asarray(store[key])))
