"""Several losses on one output: the list spelling and per-term logging.

Keras reads ``model.compile(loss=[a, b])`` as "one loss per output"; on a single-output
model it runs both and trains on ``a`` alone. tfrestore gives the list its restoration
meaning, *the weighted sum of the terms on that output*, and logs each term as a metric
of its own (``l1``, ``d2sm`` … and ``val_l1`` …) next to the total ``loss``, in the
progress bar, ``History``, ``CSVLogger`` and TensorBoard — like BasicSR's ``l_pix`` /
``l_percep`` logs.

tfrestore's models understand the list spelling out of the box; any other Keras model
does after one call, :func:`enable_loss_terms`:

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
"""

from __future__ import annotations

import functools
import inspect
import numbers
import types

import keras

from tfrestore.losses.base import WeightedSum, check_loss_list, check_weight
from tfrestore.utils import keras_compat as compat

__all__ = ["enable_loss_terms", "combine_loss_list", "term_names", "LossTermsMixin"]


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
        loss: the ``loss`` argument of ``compile``.
        loss_weights: the ``loss_weights`` argument of ``compile``.
        num_outputs: the model's number of outputs.

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


# ------------------------------------------------------------------ per-term trackers


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


def _output_names(model):
    names = getattr(model, "output_names", None)
    if names:
        return list(names)
    try:
        return [f"output_{i}" for i in range(len(model.outputs))]
    except (AttributeError, ValueError, TypeError):
        return ["output"]


def _weighted_sums(model):
    """``[(prefix, WeightedSum)]`` of the compiled loss structure."""
    loss = getattr(model, "loss", None)
    if loss is None:
        return []
    outputs = _output_names(model)
    if isinstance(loss, WeightedSum):
        if len(outputs) > 1:
            return []  # one sum broadcast to every output: Keras logs per output already
        return [("", loss)]
    if isinstance(loss, dict):
        items = list(loss.items())
    elif _is_loss_list(loss):
        items = list(zip(outputs, loss))
    else:
        return []
    single = len(outputs) == 1
    return [
        ("" if single else f"{key}_", l) for key, l in items if isinstance(l, WeightedSum)
    ]


def attach_term_trackers(model):
    """Give every ``WeightedSum`` of ``model.loss`` one ``Mean`` tracker per term and
    register the trackers as model metrics (replacing those of an earlier compile)."""
    own = compat.model_metric_list(model)
    for old in getattr(model, "_tfrestore_term_trackers", []):
        if old in own:
            own.remove(old)
    trackers = []
    for prefix, total in _weighted_sums(model):
        new = [keras.metrics.Mean(name=n) for n in term_names(total, prefix)]
        total.track_terms(new)
        trackers.extend(new)
    own.extend(trackers)
    # Stored outside Keras' attribute tracking: the trackers already live in the metric list.
    object.__setattr__(model, "_tfrestore_term_trackers", trackers)
    return trackers


# ------------------------------------------------------------------ compile with terms

_COMPILE_PARAMS = list(inspect.signature(keras.Model.compile).parameters)[1:]


def _compile_with_terms(model, keras_compile, *args, **kwargs):
    bound = dict(zip(_COMPILE_PARAMS, args))
    overlap = set(bound) & set(kwargs)
    if overlap:
        raise TypeError(f"compile() got multiple values for {sorted(overlap)}")
    bound.update(kwargs)
    if bound.get("loss") is not None:
        num_outputs = len(getattr(model, "outputs", None) or [None])
        bound["loss"], bound["loss_weights"] = combine_loss_list(
            bound["loss"], bound.get("loss_weights"), num_outputs
        )
    keras_compile(**bound)
    attach_term_trackers(model)


class LossTermsMixin:
    """Mixin for ``keras.Model`` subclasses: ``compile`` takes tfrestore's list spelling
    and logs every term (see the module docstring)."""

    def compile(self, *args, **kwargs):
        _compile_with_terms(self, super().compile, *args, **kwargs)

    def compile_from_config(self, config):
        # Keras skips compiling models whose compile() is overridden; this one only
        # rewrites the loss argument, so the saved compile config applies as is.
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if getattr(self, "optimizer", None) is not None and self.built:
            self.optimizer.build(self.trainable_variables)


def enable_loss_terms(model):
    """Make ``model.compile`` accept ``loss=[L1(), D2SMLoss()]`` (a weighted sum on one
    output) and log each term as a metric. Returns ``model``.

    tfrestore's own models need no call. For any other Keras model, call this once
    before ``compile`` (again after ``keras.saving.load_model``, which builds a plain
    Keras model). A model that was already compiled keeps its loss and starts logging
    the terms of its ``WeightedSum``.
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"enable_loss_terms() takes a keras.Model, got {type(model).__name__}."
        )
    if isinstance(model, LossTermsMixin) or getattr(model, "_tfrestore_loss_terms", False):
        return model
    keras_compile = model.compile  # bound method of the model's class

    @functools.wraps(keras_compile)
    def compile(self, *args, **kwargs):
        _compile_with_terms(self, keras_compile, *args, **kwargs)

    object.__setattr__(model, "compile", types.MethodType(compile, model))
    object.__setattr__(model, "_tfrestore_loss_terms", True)
    if getattr(model, "compiled", False):
        attach_term_trackers(model)
    return model
