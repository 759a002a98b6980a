"""The Keras model class of tfrestore's networks.

:class:`RestorationModel` is a functional ``keras.Model`` that uses Keras' documented
hooks for its losses (:mod:`tfrestore.losses.terms`):

* ``compile`` reads ``loss=[L1(), D2SMLoss()]`` on one output as the weighted sum of
  the terms (on several outputs a list keeps Keras' one-loss-per-output meaning, an
  inner list being that output's sum);
* ``compute_loss`` computes every tfrestore loss's per-sample values itself, passing
  Keras' ``training`` flag (so a D2SM feature queue never changes in evaluation), and
  updates one ``keras.metrics.Mean`` per term of a sum;
* ``metrics`` lists those trackers, so each term is logged (``l1``, ``d2sm``,
  ``val_l1`` ...) in the progress bar, ``History``, ``CSVLogger`` and TensorBoard;
* ``get_compile_config`` / ``compile_from_config`` save and restore that compile.

It is registered, so a saved model loads back as a ``RestorationModel`` and keeps that
behaviour.

>>> import keras
>>> from tfrestore.models import RestorationModel
>>> inp = keras.Input((None, None, 3))
>>> model = RestorationModel(inp, keras.layers.Conv2D(3, 3, padding="same")(inp))
>>> from tfrestore.losses import L1, MSE
>>> model.compile(loss=[L1(), MSE()], loss_weights=[1.0, 0.1])
>>> model.loss
WeightedSum(1 * L1 + 0.1 * MSE)
>>> [m.name for m in model.metrics]
['loss', 'l1', 'mse']
"""

from __future__ import annotations

import inspect

import keras
import tensorflow as tf

from tfrestore.losses.base import WeightedSum
from tfrestore.losses.terms import (
    PerSampleValues,
    combine_loss_list,
    output_losses,
    term_names,
)

__all__ = ["RestorationModel"]

_COMPILE_PARAMS = list(inspect.signature(keras.Model.compile).parameters)[1:]
_FIT_PARAMS = list(inspect.signature(keras.Model.fit).parameters)[1:]


class _OutputLoss:
    """One output whose tfrestore loss the model computes itself (not tracked by
    Keras' attribute tracking: its metrics are listed by ``RestorationModel.metrics``)."""

    def __init__(self, index, name, loss, trackers):
        self.index, self.name, self.loss, self.trackers = index, name, loss, trackers


@keras.saving.register_keras_serializable(package="tfrestore")
class RestorationModel(keras.Model):
    """A ``keras.Model`` (built functionally, ``RestorationModel(inputs, outputs)``) whose
    ``compile`` takes the list spelling of several losses on one output and whose
    ``compute_loss`` logs each term and passes Keras' ``training`` flag to the losses
    (see the module docstring)."""

    _output_losses = ()

    # ---------------------------------------------------------------- fit
    def fit(self, *args, **kwargs):
        """``keras.Model.fit``; a ``tf.data`` dataset (shuffled by its own pipeline) is fitted
        with ``shuffle=False`` unless ``shuffle`` is given, so Keras does not warn that its
        default ``shuffle=True`` is ignored."""
        x = args[0] if args else kwargs.get("x")
        if (
            "shuffle" not in kwargs
            and len(args) <= _FIT_PARAMS.index("shuffle")
            and isinstance(x, (tf.data.Dataset, tf.distribute.DistributedDataset))
        ):
            kwargs["shuffle"] = False
        return super().fit(*args, **kwargs)

    # ---------------------------------------------------------------- compile
    def compile(self, *args, **kwargs):
        bound = dict(zip(_COMPILE_PARAMS, args))
        overlap = set(bound) & set(kwargs)
        if overlap:
            raise TypeError(f"compile() got multiple values for {sorted(overlap)}")
        bound.update(kwargs)
        loss = bound.get("loss")
        plan = []
        if loss is not None:
            names = self._loss_output_names()
            loss, bound["loss_weights"] = combine_loss_list(
                loss, bound.get("loss_weights"), len(names)
            )
            if not self._dict_outputs():
                plan = output_losses(loss, names)
            bound["loss"] = _stand_ins(loss, {id(l) for _, _, l in plan})
        super().compile(**bound)
        if loss is not None:  # without a loss Keras keeps the compiled one, and so do we
            self.loss = loss  # what the user compiled (Keras got the stand-ins)
            self._output_losses = _LossPlan(
                _OutputLoss(i, name, l, self._term_trackers(l, name)) for i, name, l in plan
            )

    def _loss_output_names(self):
        names = getattr(self, "output_names", None)
        if names:
            return list(names)
        try:
            return [f"output_{i}" for i in range(len(self.outputs))]
        except (AttributeError, ValueError, TypeError):
            return ["output"]

    def _dict_outputs(self):
        try:
            return isinstance(self.output, dict)
        except (AttributeError, ValueError):
            return False

    def _term_trackers(self, loss, output_name):
        if not isinstance(loss, WeightedSum):
            return []
        prefix = "" if len(self._loss_output_names()) == 1 else f"{output_name}_"
        return [keras.metrics.Mean(name=n) for n in term_names(loss, prefix)]

    def get_compile_config(self):
        config = super().get_compile_config()
        if config and getattr(self, "loss", None) is not None:
            config["loss"] = keras.saving.serialize_keras_object(self.loss)
        return config

    def compile_from_config(self, config):
        # Keras skips compiling models whose compile() is overridden; this one only
        # rewrites the loss argument, so the saved compile config applies as is.
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if getattr(self, "optimizer", None) is not None and self.built:
            self.optimizer.build(self.trainable_variables)

    # ---------------------------------------------------------------- loss
    @property
    def metrics(self):
        trackers = [t for out in self._output_losses for t in out.trackers]
        return super().metrics + trackers

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """Keras' ``compute_loss``, with every tfrestore loss computed here: its
        per-sample values (given ``training``), and for a ``WeightedSum`` each term's
        too (logged); Keras then reduces the values as it reduces any loss."""
        if not self._output_losses:
            return super().compute_loss(x, y, y_pred, sample_weight, training=training)
        n = len(self._loss_output_names())
        for out in self._output_losses:
            y_t = _select(y, out.index, out.name, n)
            y_p = _select(y_pred, out.index, out.name, n)
            sw = _select(sample_weight, out.index, out.name, n)
            if out.trackers:
                values, terms = out.loss.term_values(y_t, y_p, training=training)
                for tracker, term in zip(out.trackers, terms):
                    _update_term(tracker, term, sw, out.loss.reduction)
            else:
                values = out.loss.values(y_t, y_p, training=training)
            y_pred = _replace(y_pred, out.index, n, values)
        return super().compute_loss(x, y, y_pred, sample_weight, training=training)


class _LossPlan:
    """The outputs whose loss a ``RestorationModel`` computes (a plain object: Keras'
    attribute tracking leaves it and the term metrics in it alone)."""

    def __init__(self, outputs=()):
        self.outputs = list(outputs)

    def __iter__(self):
        return iter(self.outputs)

    def __bool__(self):
        return bool(self.outputs)


def _stand_ins(loss, ids):
    """``loss`` with each loss whose id is in ``ids`` replaced by its stand-in."""
    if id(loss) in ids:
        return PerSampleValues.of(loss)
    if isinstance(loss, dict):
        return {k: _stand_ins(v, ids) for k, v in loss.items()}
    if isinstance(loss, (list, tuple)):
        return type(loss)(_stand_ins(v, ids) for v in loss)
    return loss


def _select(value, index, name, n):
    """The entry of output ``index`` (named ``name``) in ``y`` / ``y_pred`` /
    ``sample_weight``; the value itself if it is one for all outputs."""
    if value is None:
        return None
    if isinstance(value, dict):
        return value.get(name)
    if isinstance(value, (list, tuple)) and (n > 1 or len(value) == 1):
        return value[index]
    return value


def _replace(y_pred, index, n, values):
    if isinstance(y_pred, (list, tuple)) and (n > 1 or len(y_pred) == 1):
        out = list(y_pred)
        out[index] = values
        return type(y_pred)(out) if isinstance(y_pred, tuple) else out
    return values


def _update_term(tracker, values, sample_weight, reduction):
    """Add a term's weighted per-sample values ``(B,)`` to its ``Mean`` so that its
    epoch value is reduced as Keras reduces (and its loss tracker averages) the
    total: ``sum(w * v) / B`` per batch, batches weighted by size."""
    if sample_weight is not None:
        sample_weight = tf.reshape(tf.cast(sample_weight, values.dtype), tf.shape(values))
    if reduction == "mean_with_sample_weight" and sample_weight is not None:
        tracker.update_state(values, sample_weight=sample_weight)
        return
    weighted = values if sample_weight is None else values * sample_weight
    if reduction == "sum":
        tracker.update_state(tf.reduce_sum(weighted), sample_weight=tf.shape(values)[0])
    else:
        tracker.update_state(weighted)
