"""Keras callbacks for tfrestore's stateful losses.

:class:`QueueControl` is the companion of queue losses such as
:class:`tfrestore.losses.D2SMLoss` on models that do not tell their losses whether
a step trains or evaluates (a plain ``keras.Model``; a
:class:`tfrestore.models.RestorationModel` does, through Keras' ``compute_loss``
``training`` argument, and handles the list spelling in ``compile``):

* ``on_train_begin`` rejects ``model.compile(loss=[L1(), D2SMLoss()])`` on a model
  with fewer outputs than losses, reading the documented ``model.loss``. Keras treats
  a list as one loss per output; on a single-output model it runs every loss (the
  queue is updated) but trains on the first one only. The error suggests
  ``L1() + D2SMLoss()`` or :func:`tfrestore.losses.enable_loss_terms`. It fires
  before any step runs, so the queue is untouched.
* ``on_test_begin`` / ``on_test_end`` freeze the queues during ``evaluate()`` and the
  validation pass of ``fit()``, so validation images never enter the queue.

Custom training loops use ``with loss.frozen_queue():`` around validation instead.
Keras offers a loss no documented way to learn that it is one of several losses given
to one output, so a plain Keras model compiled with such a list and fitted without
this callback trains on the first loss (Keras' meaning of the list).

>>> import keras
>>> from tfrestore.callbacks import QueueControl
>>> isinstance(QueueControl(), keras.callbacks.Callback)
True
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tfrestore.losses.base import ListOfLossesError, _list_of_losses_message

__all__ = ["QueueControl", "find_queue_losses", "check_loss_list"]


def _flatten_losses(loss):
    """Every loss object reachable from ``model.loss`` (lists, dicts, WeightedSum)."""
    out = []
    for item in tf.nest.flatten(loss):
        if item is None:
            continue
        out.append(item)
        inner = getattr(item, "losses", None)
        if isinstance(inner, (list, tuple)) and inner is not item:
            out.extend(_flatten_losses(list(inner)))
    return out


def find_queue_losses(model):
    """The losses of ``model`` that keep a queue (have ``set_queue_enabled``)."""
    return [
        x for x in _flatten_losses(getattr(model, "loss", None)) if hasattr(x, "set_queue_enabled")
    ]


def check_loss_list(model):
    """Raise :class:`~tfrestore.losses.ListOfLossesError` if ``model.loss`` lists more
    losses than the model has outputs."""
    loss = getattr(model, "loss", None)
    if loss is None:
        return
    n_losses = len(tf.nest.flatten(loss))
    try:
        outputs = model.outputs
    except (AttributeError, ValueError):
        outputs = None
    if outputs is None:
        return  # subclassed model: number of outputs unknown before the first call
    n_outputs = len(tf.nest.flatten(outputs))
    if n_losses > n_outputs:
        raise ListOfLossesError(_list_of_losses_message(n_losses, n_outputs))


class QueueControl(keras.callbacks.Callback):
    """Guards queue losses during ``fit``/``evaluate`` (see the module docstring).

    Args:
        check_list: bool. Run the ``loss=[...]`` check in ``on_train_begin``.

    Example::

        model.compile(optimizer="adam", loss=L1() + D2SMLoss(queue_size=256, ...))
        model.fit(ds, validation_data=val, callbacks=[QueueControl()])
    """

    def __init__(self, check_list=True):
        super().__init__()
        self.check_list = bool(check_list)

    def _set(self, enabled):
        for loss in find_queue_losses(self.model):
            loss.set_queue_enabled(enabled)

    def on_train_begin(self, logs=None):
        if self.check_list:
            check_loss_list(self.model)
        self._set(True)

    def on_test_begin(self, logs=None):
        self._set(False)

    def on_test_end(self, logs=None):
        self._set(True)

    def on_train_end(self, logs=None):
        self._set(True)
