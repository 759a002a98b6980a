"""Base class and algebra for tfrestore losses.

Every tfrestore loss is a :class:`RestorationLoss`: a ``keras.losses.Loss`` whose
``call`` returns one value per sample, shape ``(B,)``. Returning per-sample values
(never a scalar) is what lets Keras apply ``sample_weight`` and the
``1 / num_replicas_in_sync`` scaling under ``tf.distribute.MirroredStrategy``; a
scalar silently skips both and doubles the update on two replicas.

Losses compose with ``+`` and ``*``::

    >>> from tfrestore.losses import L1, MSE
    >>> loss = L1() + 0.5 * MSE()
    >>> type(loss).__name__
    'WeightedSum'
    >>> [round(w, 3) for w in loss.loss_weights]
    [1.0, 0.5]
"""

from __future__ import annotations

import math
import numbers

import keras
import tensorflow as tf

from tfrestore.utils import keras_compat, validation

__all__ = ["RestorationLoss", "WeightedSum", "ListOfLossesError"]


class ListOfLossesError(ValueError):
    """Raised when several losses were given as a list to a single-output model."""


def _list_of_losses_message(n_losses, n_outputs=1):
    if n_outputs > 1:
        return (
            f"model.compile(loss=[...]) received {n_losses} losses for a model with "
            f"{n_outputs} outputs. On a model with several outputs a loss list has one "
            "entry per output; an entry that is itself a list is that output's weighted "
            "sum (`loss=[[MSE(), PerceptualLoss()], task_loss]`)."
        )
    return (
        f"model.compile(loss=[...]) received {n_losses} losses for a model with "
        f"{n_outputs} output(s). Keras treats a loss list as one loss per output: on a "
        "single-output model it runs every loss but uses only the FIRST one for the "
        "gradient (the others are silently ignored). To train on the weighted sum of the "
        "losses and log each one, call `model = tfrestore.losses.enable_loss_terms(model)` "
        "once before compile (tfrestore's own models need no call), or write "
        "`loss=L1() + 0.1 * OtherLoss()`."
    )


def check_weight(value, arg, owner=None):
    """``value`` as a finite float; otherwise an error naming ``arg`` (and ``owner``).

    >>> check_weight(float("nan"), "loss_weight", "l1")
    Traceback (most recent call last):
    ...
    ValueError: l1: `loss_weight` must be a finite number, got nan; a NaN or infinite weight
    makes every loss value NaN (or Inf) and the training diverges at its first step.
    """
    where = f"{owner}: " if owner else ""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{where}`{arg}` must be a real number, got {value!r} ({type(value).__name__})."
        )
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(
            f"{where}`{arg}` must be a finite number, got {value!r}; a NaN or infinite weight "
            "makes every loss value NaN (or Inf) and the training diverges at its first step."
        )
    return value


def check_loss_list(losses, loss_weights=None, where="losses", arg="loss_weights"):
    """``(losses, float loss_weights)`` of a list of Keras losses and their term weights
    (1.0 each by default), with errors naming the argument ``arg`` and the position."""
    losses = list(losses)
    for i, l in enumerate(losses):
        if not isinstance(l, keras.losses.Loss):
            raise TypeError(
                f"`{where}[{i}]` must be a keras.losses.Loss (e.g. tfrestore.losses.L1()), "
                f"got {type(l).__name__}."
            )
    if loss_weights is None:
        loss_weights = [1.0] * len(losses)
    if not isinstance(loss_weights, (list, tuple)) or len(loss_weights) != len(losses):
        raise ValueError(
            f"`{arg}` must be a list with one entry per loss in `{where}`: got "
            f"{loss_weights!r} for {len(losses)} losses."
        )
    return losses, [check_weight(w, f"{arg}[{i}]") for i, w in enumerate(loss_weights)]


class RestorationLoss(keras.losses.Loss, keras_compat.Trackable):
    """Base class of all tfrestore losses.

    Subclasses implement :meth:`compute` (``(y_true, y_pred) -> (B,)``) and extend
    :meth:`get_config`. The base class

    * validates the inputs (rank 4 NHWC, identical shapes, floating dtype,
      finite values, and ``y_true`` within the loss's value range, by default
      [0, 1]) with errors that name the argument and the expected form;
    * multiplies by ``loss_weight`` (BasicSR's uniform parameter);
    * guarantees a per-sample ``(B,)`` result and checks it is finite;
    * supports ``+`` and ``*`` (see :class:`WeightedSum`);
    * exposes its state variables (e.g. a random stream's call counter) to
      ``tf.train.Checkpoint``: a compiled model tracks its loss, so
      ``tf.train.Checkpoint(model=model)`` saves and restores them.

    Args:
        loss_weight: float. Scalar multiplier applied to the per-sample values.
        check_finite: bool. If True (default) non-finite inputs or outputs raise
            an ``InvalidArgumentError`` naming the tensor, instead of silently
            propagating NaN into the weights.
        check_range: bool. If True (default) a ``y_true`` more than half the
            expected range outside it (:attr:`data_range`: [0, 1] for feature and
            network losses, the ``data_range`` argument where a loss has one,
            unchecked for scale-free pixel losses) raises, e.g. 0..255 images
            given to a [0, 1] loss. ``y_pred`` is never range-checked; the check
            shares its reductions with the finiteness check (no measurable cost).
        name, reduction, dtype: optional. As in ``keras.losses.Loss``.
    """

    #: True for losses whose :meth:`compute` takes a ``training`` argument (stateful
    #: losses: a feature queue must not change in evaluation).
    uses_training = False
    #: expected number of channels, or None for any (set by subclasses that need RGB).
    expected_channels = None
    #: if False, y_true and y_pred may differ in spatial size (e.g. distribution losses).
    require_same_shape = True
    #: range of the images the loss expects (checked on y_true): ``r`` for [0, r], a
    #: pair ``(low, high)``, or None (unchecked).
    data_range = 1.0
    #: how to declare another range, appended to the range error.
    range_fix = (
        "or pass `check_range=False` if this loss really should see such values"
    )

    def __init__(
        self,
        loss_weight=1.0,
        check_finite=True,
        check_range=True,
        name=None,
        reduction="sum_over_batch_size",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.loss_weight = check_weight(loss_weight, "loss_weight", name)
        self.check_finite = bool(check_finite)
        self.check_range = bool(check_range)

    # ----------------------------------------------------------------- API
    def compute(self, y_true, y_pred):
        """Per-sample loss values, shape ``(B,)``. Implemented by subclasses."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement compute(y_true, y_pred)."
        )

    def validate(self, y_true, y_pred):
        """Static and (optionally) run-time checks of an image pair."""
        return validation.check_image_pair(
            y_true,
            y_pred,
            expected_channels=self.expected_channels,
            same_shape=self.require_same_shape,
            check_finite=self.check_finite,
            loss_name=self.name,
            data_range=self._checked_range(),
            range_fix=self.range_fix,
        )

    def _checked_range(self):
        """The range enforced on ``y_true`` (None: unchecked)."""
        if not self.check_range:
            return None
        return self.data_range

    def __call__(self, y_true, y_pred, sample_weight=None):
        # keras.losses.Loss casts to float before `call`; reject uint8/int images first.
        validation.check_raw_dtype(y_true, "y_true", self.name)
        validation.check_raw_dtype(y_pred, "y_pred", self.name)
        if sample_weight is not None:
            sample_weight = validation.check_sample_weight(
                sample_weight, y_pred, self.check_finite, self.name
            )
        return super().__call__(y_true, y_pred, sample_weight=sample_weight)

    def call(self, y_true, y_pred, training=None):
        """Per-sample values ``(B,)``: validation, :meth:`compute`, the checks and
        ``loss_weight``.

        ``training``: True in a training step, False in evaluation, None when the
        caller does not say (a direct call, Keras' own ``compile`` loss of a plain
        ``keras.Model``). :class:`tfrestore.models.RestorationModel` passes the
        ``training`` argument of Keras' ``Model.compute_loss`` (see :meth:`values`);
        only losses with :attr:`uses_training` (the stateful ones) read it.
        """
        y_true, y_pred = self.validate(y_true, y_pred)
        if self.uses_training:
            values = self.compute(y_true, y_pred, training=training)
        else:
            values = self.compute(y_true, y_pred)
        return self._finish(values, y_pred)

    def _finish(self, values, y_pred):
        values = validation.check_per_sample(values, y_pred, loss_name=self.name)
        if self.check_finite:
            values = tf.debugging.check_numerics(
                values, f"{self.name}: the loss value is NaN or Inf"
            )
        if self.loss_weight != 1.0:
            values = values * tf.cast(self.loss_weight, values.dtype)
        return values

    def _inputs(self, y_true, y_pred):
        """``y_true, y_pred`` as ``keras.losses.Loss.__call__`` hands them to ``call``."""
        validation.check_raw_dtype(y_true, "y_true", self.name)
        validation.check_raw_dtype(y_pred, "y_pred", self.name)
        return (
            keras.ops.convert_to_tensor(y_true, dtype=self.dtype),
            keras.ops.convert_to_tensor(y_pred, dtype=self.dtype),
        )

    def values(self, y_true, y_pred, training=None):
        """The per-sample values ``(B,)`` that ``loss(y_true, y_pred, sample_weight)``
        reduces: the same checks and casts, before ``sample_weight`` and the reduction.

        This is what :meth:`tfrestore.models.RestorationModel.compute_loss` calls (with
        Keras' ``training`` flag) before Keras reduces the values; see :meth:`call`.
        """
        y_true, y_pred = self._inputs(y_true, y_pred)
        return self.call(y_true, y_pred, training=training)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "loss_weight": self.loss_weight,
                "check_finite": self.check_finite,
                "check_range": self.check_range,
            }
        )
        return config

    # ----------------------------------------------------------- state
    def _state_variables(self):
        """``{name: variable}`` of training state to checkpoint (none by default)."""
        return {}

    def _trackable_children(self, save_type="checkpoint", **kwargs):
        # tf.train.Checkpoint only; Keras saving uses save/load_own_variables.
        return dict(self._state_variables())

    # ------------------------------------------------------------- algebra
    def __add__(self, other):
        if isinstance(other, numbers.Number) and other == 0:
            return WeightedSum([self], [1.0])  # supports sum([...])
        if not isinstance(other, keras.losses.Loss):
            return NotImplemented
        return WeightedSum._combine(self, 1.0, other, 1.0)

    def __radd__(self, other):
        if isinstance(other, numbers.Number) and other == 0:
            return WeightedSum([self], [1.0])
        if not isinstance(other, keras.losses.Loss):
            return NotImplemented
        return WeightedSum._combine(other, 1.0, self, 1.0)

    def __mul__(self, factor):
        if not isinstance(factor, numbers.Real) or isinstance(factor, bool):
            return NotImplemented
        return WeightedSum([self], [check_weight(factor, f"{type(self).__name__} * factor")])

    __rmul__ = __mul__

    def __neg__(self):
        return self * -1.0

    def __sub__(self, other):
        if not isinstance(other, keras.losses.Loss):
            return NotImplemented
        return WeightedSum._combine(self, 1.0, other, -1.0)


_WEIGHTED_SUM_RENAMED = {"weights": "loss_weights"}


@keras.saving.register_keras_serializable(package="tfrestore")
class WeightedSum(RestorationLoss):
    """Weighted sum of losses on the same output: ``sum_i w_i * loss_i``.

    Each term's per-sample values (its ``call``, i.e. before reduction) are added,
    so Keras reduces once and applies ``sample_weight`` and the distribution
    scaling once. Any ``keras.losses.Loss`` may be a term; non-tfrestore losses that
    return ``(B, ...)`` are averaged over their trailing axes.

    Args:
        losses: list of ``keras.losses.Loss`` instances (or their serialized
            configs).
        loss_weights: list of floats, one per loss (default all 1.0); the attribute
            ``loss_weights``. (Formerly ``weights``: that keyword now raises
            ``TypeError``; configs saved with it still load.)

    Example:

    >>> import numpy as np
    >>> from tfrestore.losses import L1, MSE, WeightedSum
    >>> y = np.zeros((2, 8, 8, 3), "float32"); p = np.full_like(y, 0.5)
    >>> total = WeightedSum([L1(), MSE()], loss_weights=[1.0, 2.0])
    >>> float(total(y, p))  # 0.5 + 2 * 0.25
    1.0
    """

    #: every term gets the ``training`` flag (those with ``uses_training`` read it)
    uses_training = True

    def __init__(self, losses, loss_weights=None, name="weighted_sum", **kwargs):
        validation.refuse_renamed(kwargs, _WEIGHTED_SUM_RENAMED, "WeightedSum")
        super().__init__(name=name, **kwargs)
        losses = [
            keras.saving.deserialize_keras_object(l) if isinstance(l, dict) else l
            for l in losses
        ]
        if not losses:
            raise ValueError("`losses` must contain at least one loss.")
        self.losses, self.loss_weights = check_loss_list(losses, loss_weights)

    @classmethod
    def from_config(cls, config):
        # configs saved before the rename store the term weights as "weights"
        return super().from_config(validation.renamed_config(config, _WEIGHTED_SUM_RENAMED))

    def term_values(self, y_true, y_pred, training=None):
        """``(total, terms)``: the per-sample values ``(B,)`` of the sum (as
        :meth:`values`) and of each weighted term (``loss_weight`` included), so that
        the terms add up to the total. :class:`tfrestore.models.RestorationModel` logs
        each term from these.

        >>> import numpy as np
        >>> from tfrestore.losses import L1, MSE
        >>> y = np.zeros((2, 4, 4, 1), "float32"); p = np.full_like(y, 0.5)
        >>> total, (l1, mse) = (L1() + 2.0 * MSE()).term_values(y, p)
        >>> total.numpy().tolist(), l1.numpy().tolist(), mse.numpy().tolist()
        ([1.0, 1.0], [0.5, 0.5], [0.5, 0.5])
        """
        y_true, y_pred = self._inputs(y_true, y_pred)
        terms = self._weighted_terms(y_true, y_pred, training)
        total = self._finish(_sum(terms), y_pred)
        if self.loss_weight != 1.0:
            terms = [t * tf.cast(self.loss_weight, t.dtype) for t in terms]
        return total, terms

    @classmethod
    def _combine(cls, a, wa, b, wb):
        terms, weights = [], []
        for loss, w in ((a, wa), (b, wb)):
            if isinstance(loss, WeightedSum) and loss.loss_weight == 1.0:
                terms.extend(loss.losses)
                weights.extend(w * x for x in loss.loss_weights)
            else:
                terms.append(loss)
                weights.append(w)
        return cls(terms, weights)

    def __mul__(self, factor):
        if not isinstance(factor, numbers.Real) or isinstance(factor, bool):
            return NotImplemented
        factor = check_weight(factor, "WeightedSum * factor")
        return WeightedSum(self.losses, [w * factor for w in self.loss_weights])

    __rmul__ = __mul__

    def validate(self, y_true, y_pred):
        # Each term validates its own inputs (terms may accept different forms).
        return y_true, y_pred

    def compute(self, y_true, y_pred, training=None):
        return _sum(self._weighted_terms(y_true, y_pred, training))

    def _weighted_terms(self, y_true, y_pred, training=None):
        """Each term's per-sample values times its weight, in the sum's dtype."""
        terms = []
        for loss, w in zip(self.losses, self.loss_weights):
            args = (
                tf.cast(y_true, loss.dtype) if loss.dtype else y_true,
                tf.cast(y_pred, loss.dtype) if loss.dtype else y_pred,
            )
            if isinstance(loss, RestorationLoss):
                values = loss.call(*args, training=training)
            else:
                values = loss.call(*args)
            values = tf.cast(values, self.dtype)
            if values.shape.rank is not None and values.shape.rank > 1:
                values = tf.reduce_mean(values, axis=list(range(1, values.shape.rank)))
            terms.append(values * w)
        return terms

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "losses": [keras.saving.serialize_keras_object(l) for l in self.losses],
                "loss_weights": list(self.loss_weights),
            }
        )
        return config

    # Stateful terms (e.g. a D2SM queue) need no special handling here: Keras'
    # saving walks list attributes, so each term's save_own_variables runs
    # under ``loss/losses/<i>``.

    def _trackable_children(self, save_type="checkpoint", **kwargs):
        children = super()._trackable_children(save_type, **kwargs)
        for i, term in enumerate(self.losses):
            if isinstance(term, keras_compat.Trackable):
                children[f"term_{i}"] = term
        return children

    def __repr__(self):
        parts = " + ".join(
            f"{w:g} * {type(l).__name__}" for l, w in zip(self.losses, self.loss_weights)
        )
        return f"WeightedSum({parts})"


def _sum(terms):
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total
