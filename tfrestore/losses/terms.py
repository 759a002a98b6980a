"""Several losses on one output: the list spelling and per-term logging.

Keras reads ``model.compile(loss=[a, b])`` as "one loss per output"; on a single-output
model it runs both and trains on ``a`` alone. tfrestore gives the list its restoration
meaning, *the weighted sum of the terms on that output*, and logs each term as a metric
of its own (``l1``, ``d2sm`` … and ``val_l1`` …) next to the total ``loss``, in the
progress bar, ``History``, ``CSVLogger`` and TensorBoard — like BasicSR's ``l_pix`` /
``l_percep`` logs.

This lives in two documented Keras hooks of :class:`tfrestore.models.RestorationModel`
(every tfrestore model): ``compile`` turns the list into a ``WeightedSum``, and
``compute_loss`` computes each term's per-sample values once, hands their sum to Keras'
usual reduction and updates one ``keras.metrics.Mean`` per term, listed in
``Model.metrics``. Any other functional Keras model gets the same behaviour from
:func:`enable_loss_terms`, which returns a ``RestorationModel`` over its layers:

>>> import keras, numpy as np
>>> from tfrestore.losses import L1, MSE, enable_loss_terms
>>> inp = keras.Input((8, 8, 1)); model = keras.Model(inp, keras.layers.Conv2D(1, 3, padding="same")(inp))
>>> model = enable_loss_terms(model)
>>> model.compile(optimizer="sgd", loss=[L1(), MSE()], loss_weights=[1.0, 0.5])
>>> model.loss
WeightedSum(1 * L1 + 0.5 * MSE)
>>> x = np.ones((4, 8, 8, 1), "float32")
>>> sorted(model.fit(x, x, epochs=1, verbose=0).history)
['l1', 'loss', 'mse']

What the list means:

* one output, ``loss=[a, b, ...]``: ``WeightedSum([a, b, ...], loss_weights)``
  (weights default to 1);
* several outputs, a list with one entry per output: Keras' per-output meaning is kept;
  an entry that is itself a list is that output's weighted sum;
* ``loss=a + 0.1 * b`` (the algebra spelling) trains identically and logs the same terms.

Each term's logged value is its weighted contribution to ``loss`` (the terms add up to
the total, regularisation losses aside), reduced exactly as Keras reduces the total:
same ``sample_weight``, same ``sum_over_batch_size`` mean, averaged over the epoch by
batch size. On a multi-output model the names carry the output name
(``restored_l1``).

A plain ``keras.Model`` compiled with ``loss=[a, b]`` on one output keeps Keras' meaning
(it trains on ``a``): Keras gives a loss no documented way to see the list it is in.
:class:`tfrestore.callbacks.QueueControl` (which tfrestore's training runner adds) reads
the documented ``model.loss`` in ``on_train_begin`` and raises
:class:`~tfrestore.losses.ListOfLossesError` naming :func:`enable_loss_terms`.
"""

from __future__ import annotations

import contextlib
import numbers

import keras

from tfrestore.losses.base import (
    ListOfLossesError,
    RestorationLoss,
    WeightedSum,
    _list_of_losses_message,
    check_loss_list,
    check_weight,
)
from tfrestore.utils import keras_compat as compat

__all__ = ["enable_loss_terms", "combine_loss_list", "term_names", "output_losses"]


# ------------------------------------------------------------------ the list spelling


def _is_loss_list(value):
    return isinstance(value, (list, tuple))


def _as_sum(losses, weights, where):
    """``WeightedSum`` of a list of losses (strings and functions resolved as Keras does)."""
    losses = [keras.losses.get(l) if isinstance(l, str) else l for l in losses]
    losses = [
        compat.wrap_loss_function(l)
        if callable(l) and not isinstance(l, keras.losses.Loss)
        else l
        for l in losses
    ]
    losses, weights = check_loss_list(losses, weights, where, "loss_weights")
    if len(losses) == 1 and weights[0] == 1.0:
        return losses[0]
    return WeightedSum(losses, weights)


def _check_output_weights(loss_weights):
    """Keras' per-output ``loss_weights`` (a list or dict of numbers): finite, named."""
    if isinstance(loss_weights, (list, tuple)):
        items = enumerate(loss_weights)
    elif isinstance(loss_weights, dict):
        items = ((repr(k), v) for k, v in loss_weights.items())
    else:
        return
    for key, w in items:
        if isinstance(w, numbers.Real):
            check_weight(w, f"loss_weights[{key}]")


def combine_loss_list(loss, loss_weights, num_outputs):
    """Turn tfrestore's list spelling into what Keras' ``compile`` expects.

    Args:
        loss: loss, str or list. The ``loss`` argument of ``compile``.
        loss_weights: list, dict or None. The ``loss_weights`` argument of ``compile``.
        num_outputs: int. The model's number of outputs.

    Returns:
        ``(loss, loss_weights)`` for ``keras.Model.compile``.

    >>> from tfrestore.losses import L1, MSE
    >>> combine_loss_list([L1(), MSE()], [1.0, 0.1], num_outputs=1)
    (WeightedSum(1 * L1 + 0.1 * MSE), None)
    >>> loss, weights = combine_loss_list([L1(), [MSE(), L1()]], [1.0, 0.5], num_outputs=2)
    >>> loss[1], weights
    (WeightedSum(1 * MSE + 1 * L1), [1.0, 0.5])
    """
    if num_outputs == 1 and _is_loss_list(loss):
        if len(loss) == 1 and _is_loss_list(loss[0]):
            loss = loss[0]
        if isinstance(loss_weights, dict):
            raise ValueError(
                "`loss_weights` is a dict but the model has one output: pass a list with "
                f"one weight per loss in `loss` ({len(loss)} losses)."
            )
        if isinstance(loss_weights, (int, float)):
            loss_weights = [float(loss_weights)] * len(loss)
        return _as_sum(list(loss), loss_weights, "loss"), None
    if num_outputs == 1 and isinstance(loss, dict) and len(loss) == 1:
        (key, value), = loss.items()
        if _is_loss_list(value):
            w = loss_weights.get(key) if isinstance(loss_weights, dict) else loss_weights
            if isinstance(w, (int, float)):
                w = [float(w)] * len(value)
            return {key: _as_sum(list(value), w, f"loss[{key!r}]")}, None
        return loss, loss_weights
    # Several outputs: per-output meaning; an inner list is that output's sum.
    _check_output_weights(loss_weights)
    if _is_loss_list(loss) and num_outputs > 1 and len(loss) > num_outputs:
        raise ListOfLossesError(_list_of_losses_message(len(loss), num_outputs))
    if _is_loss_list(loss):
        return [
            _as_sum(list(l), None, f"loss[{i}]") if _is_loss_list(l) else l
            for i, l in enumerate(loss)
        ], loss_weights
    if isinstance(loss, dict):
        return {
            k: _as_sum(list(l), None, f"loss[{k!r}]") if _is_loss_list(l) else l
            for k, l in loss.items()
        }, loss_weights
    return loss, loss_weights


# ------------------------------------------------------------------ per-term logs


def term_names(loss, prefix=""):
    """Metric names of a ``WeightedSum``'s terms: each term's ``name``, made unique.

    >>> from tfrestore.losses import L1, MSE
    >>> term_names(L1() + MSE() + 0.1 * L1())
    ['l1', 'mse', 'l1_2']
    >>> term_names(L1() + MSE(), prefix="restored_")
    ['restored_l1', 'restored_mse']
    """
    names, seen = [], {}
    for term in loss.losses:
        base = f"{prefix}{term.name}"
        seen[base] = seen.get(base, 0) + 1
        names.append(base if seen[base] == 1 else f"{base}_{seen[base]}")
    return names


def output_losses(loss, output_names):
    """``[(index, output name, loss)]``: the tfrestore loss of each output in a
    compiled loss structure (what :func:`combine_loss_list` returns), for the model
    to compute itself; outputs with a Keras loss, no loss, or one loss broadcast to
    several outputs are left to Keras.

    >>> from tfrestore.losses import L1, MSE
    >>> output_losses(L1() + MSE(), ["restored"])
    [(0, 'restored', WeightedSum(1 * L1 + 1 * MSE))]
    >>> [(i, n) for i, n, _ in output_losses({"task": MSE(), "restored": L1()}, ["restored", "task"])]
    [(0, 'restored'), (1, 'task')]
    """
    names = list(output_names)
    if len(names) == 1:
        if isinstance(loss, dict) and len(loss) == 1:
            (loss,) = loss.values()
        return [(0, names[0], loss)] if isinstance(loss, RestorationLoss) else []
    if _is_loss_list(loss) and len(loss) == len(names):
        items = list(zip(names, loss))
    elif isinstance(loss, dict) and set(loss) <= set(names):
        items = [(n, loss[n]) for n in names if n in loss]
    else:
        return []  # one loss for every output: Keras' own meaning, logged per output
    return [
        (names.index(n), n, l) for n, l in items if isinstance(l, RestorationLoss)
    ]


class PerSampleValues(keras.losses.Loss):
    """The stand-in that :class:`tfrestore.models.RestorationModel` gives Keras'
    ``compile`` for a tfrestore loss: its ``y_pred`` is that loss's per-sample
    values, computed by the model's ``compute_loss``; Keras then applies
    ``sample_weight``, the reduction, ``loss_weights`` and the distribution scaling
    exactly as for the loss itself. ``model.loss`` stays the loss itself.
    """

    def __init__(self, name=None, reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    @classmethod
    def of(cls, loss):
        return cls(name=loss.name, reduction=loss.reduction, dtype=loss.dtype)

    def call(self, y_true, y_pred):
        del y_true
        return y_pred

    def get_config(self):
        return {**super().get_config(), "dtype": self.dtype}


# ------------------------------------------------------------------ enable_loss_terms


def enable_loss_terms(model):
    """A :class:`tfrestore.models.RestorationModel` over ``model``'s inputs and
    outputs (the same layers and weights), whose ``compile`` takes
    ``loss=[L1(), D2SMLoss()]`` (a weighted sum on one output), logs each term as a
    metric and tells stateful losses whether a step trains or evaluates.

    Use the returned model: ``model = enable_loss_terms(model)``. ``model`` itself is
    left as it is. tfrestore's own models need no call; call it again after
    ``keras.saving.load_model`` of a plain Keras model. A compiled ``model`` passes
    its optimizer, loss (a list becomes the sum) and compile settings on; metrics
    start afresh. Under a ``tf.distribute`` strategy the new model is built in
    ``model``'s strategy. A subclassed model (no functional ``inputs``/``outputs``)
    should subclass ``RestorationModel`` instead of ``keras.Model``.
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"enable_loss_terms() takes a keras.Model, got {type(model).__name__}."
        )
    cls = keras.saving.get_registered_object("tfrestore>RestorationModel")
    if cls is None:  # registered by tfrestore.models (`import tfrestore` imports it)
        raise RuntimeError(
            "enable_loss_terms() needs tfrestore.models: `import tfrestore.models` first."
        )
    if isinstance(model, cls):
        return model
    try:
        inputs, outputs = model.input, model.output
    except (AttributeError, ValueError):
        inputs = outputs = None
    if inputs is None or outputs is None:
        raise TypeError(
            f"enable_loss_terms() needs a functional or Sequential model with known inputs "
            f"and outputs; {type(model).__name__} has none. Subclass "
            f"tfrestore.models.RestorationModel instead of keras.Model."
        )
    strategy = getattr(model, "distribute_strategy", None)
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        new = cls(inputs, outputs, name=model.name)
        if getattr(model, "compiled", False) and getattr(model, "optimizer", None) is not None:
            config = dict(model.get_compile_config())
            config.pop("optimizer", None)
            config.pop("loss", None)
            config = keras.saving.deserialize_keras_object(config)
            new.compile(optimizer=model.optimizer, loss=model.loss, **config)
    return new

