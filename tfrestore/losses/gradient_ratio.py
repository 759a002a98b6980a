"""How hard does each term of a loss mix pull? Gradient-norm ratios before training.

The weight that makes an auxiliary loss matter differs by orders of magnitude
between losses and settings: at a half-denoised prediction on 64-px crops the
gradient of ``PerceptualLoss(relu4_3)`` is ~30x that of ``L1`` while a
whole-image ``D2SMLoss`` is ~0.06x. What decides a term's influence on the
restorer is the size of its gradient with respect to the restored image,
relative to the pixel term's, so measure that for your own loss mix, data and
model before choosing ``λ``:

    ratio_i = ‖∇_{y_pred} (w_i · term_i)‖ / ‖∇_{y_pred} (w_ref · term_ref)‖

where each term is reduced like Keras reduces a loss (mean over the batch of its
per-sample values) and the norm is the Euclidean norm over the whole batch
tensor. The reference is the first term (the pixel term of ``L1() + λ·X()``)
unless ``reference`` says otherwise. A ratio around 0.1–1 means the term
steers the update without drowning the pixel term; ≫ 1 means the pixel term is
mostly ignored, ≪ 0.01 means the term barely acts.

Measure where training will be: at the model's current prediction
(``model=..., inputs=...``), or at a stand-in such as a half-denoised image;
the ratio changes as the restorer improves (the L1 gradient does not shrink
with the error, feature-loss gradients do).

Example (``L1`` and ``MSE`` have analytic gradients: for a constant error ``e``
on ``N`` values, ``‖∇ L1‖ = 1/√N`` and ``‖∇ MSE‖ = 2e/√N``, so with ``e = 0.25``
``2·MSE`` pulls exactly as hard as ``L1``):

>>> import numpy as np
>>> from tfrestore.losses import L1, MSE, format_gradient_ratios, gradient_ratios
>>> y_true = np.zeros((2, 8, 8, 3), "float32")
>>> y_pred = np.full_like(y_true, 0.25)
>>> rows = gradient_ratios(L1() + 2.0 * MSE(), y_true, y_pred)
>>> [(r["term"], r["weight"], round(r["ratio"], 6)) for r in rows]
[('l1', 1.0, 1.0), ('mse', 2.0, 1.0)]
>>> round(float(rows[0]["grad_norm"] * np.sqrt(y_true.size)), 6)  # 1/sqrt(N)
1.0
>>> print(format_gradient_ratios(rows))
term  weight  grad_norm  ratio
----  ------  ---------  -----
l1    1       0.05103    1
mse   2       0.05103    1
"""

from __future__ import annotations

import contextlib
import numbers

import keras
import tensorflow as tf

from tfrestore.utils.validation import refuses_renamed

__all__ = ["gradient_ratios", "format_gradient_ratios", "loss_terms"]

#: Former keyword names (``weights`` only means pretrained weights in tfrestore).
_RENAMED = {"weights": "loss_weights"}


@refuses_renamed(_RENAMED, "loss_terms")
def loss_terms(loss, loss_weights=None):
    """``[(name, loss, weight)]`` of a loss mix.

    Accepts a :class:`~tfrestore.losses.WeightedSum` (``L1() + 0.1 * X()``), a
    single ``keras.losses.Loss``, a list of losses (with ``loss_weights``, default all
    1, as in ``compile(loss=[...], loss_weights=[...])``) or a list of
    ``(loss, weight)`` pairs. Names are the losses' ``name``; repeated names get
    a ``_2``, ``_3`` ... suffix. ``loss_weights`` was formerly ``weights``, which raises
    ``TypeError`` (in tfrestore ``weights`` only means pretrained weights).
    """
    from tfrestore.losses.base import WeightedSum

    if isinstance(loss, WeightedSum):
        if loss_weights is not None:
            raise ValueError(
                "`loss_weights` is only for a list of losses; a WeightedSum already carries its "
                "weights (write `L1() + 0.1 * X()`)."
            )
        pairs = [(l, w * loss.loss_weight) for l, w in zip(loss.losses, loss.loss_weights)]
    elif isinstance(loss, keras.losses.Loss):
        pairs = [(loss, 1.0 if loss_weights is None else _single_weight(weights))]
    elif isinstance(loss, (list, tuple)) and loss:
        items = list(loss)
        if all(isinstance(x, (list, tuple)) and len(x) == 2 for x in items):
            if loss_weights is not None:
                raise ValueError(
                    "give weights either in (loss, weight) pairs or as `loss_weights`, not both."
                )
            pairs = [(l, w) for l, w in items]
        else:
            if loss_weights is None:
                loss_weights = [1.0] * len(items)
            loss_weights = list(loss_weights)
            if len(loss_weights) != len(items):
                raise ValueError(
                    f"`loss_weights` must have one entry per loss: got {len(loss_weights)} weights "
                    f"for "
                    f"{len(items)} losses."
                )
            pairs = list(zip(items, loss_weights))
    else:
        raise TypeError(
            "`loss` must be a keras.losses.Loss, a WeightedSum (L1() + 0.1 * X()), a list of "
            f"losses or a list of (loss, weight) pairs; got {type(loss).__name__}."
        )
    out, seen = [], {}
    for i, (l, w) in enumerate(pairs):
        if not isinstance(l, keras.losses.Loss):
            raise TypeError(
                f"term {i} of `loss` must be a keras.losses.Loss, got {type(l).__name__}."
            )
        if not isinstance(w, numbers.Real) or isinstance(w, bool):
            raise TypeError(f"the weight of term {i} ({l.name}) must be a real number, got {w!r}.")
        name = l.name or type(l).__name__.lower()
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            name = f"{name}_{seen[name]}"
        out.append((name, l, float(w)))
    return out


def _single_weight(weights):
    if isinstance(weights, numbers.Real):
        return weights
    weights = list(weights)
    if len(weights) != 1:
        raise ValueError(f"one loss needs one weight, got {len(weights)}.")
    return weights[0]


def _term_value(loss, y_true, y_pred):
    """Batch mean of the term's per-sample values, like Keras' default reduction."""
    values = loss.call(y_true, y_pred)
    values = tf.cast(values, tf.float32)
    return tf.reduce_mean(values)


@contextlib.contextmanager
def _frozen(loss):
    # A measurement must not change training state (a D2SM queue would enqueue).
    frozen = getattr(loss, "frozen_queue", None)
    with frozen() if callable(frozen) else contextlib.nullcontext():
        yield


@refuses_renamed(_RENAMED, "gradient_ratios")
def gradient_ratios(
    loss,
    y_true,
    y_pred=None,
    *,
    loss_weights=None,
    model=None,
    inputs=None,
    reference=0,
):
    """Gradient norm of every weighted term w.r.t. the prediction, and its ratio
    to the reference (pixel) term.

    Args:
        loss: loss or list. The loss mix: ``L1() + 0.1 * X()``, a list of losses
            (with ``loss_weights``), a list of ``(loss, weight)`` pairs, or one loss.
        y_true: float tensor (B, H, W, C). Clean images.
        y_pred: float tensor (B, H, W, C) or None. The prediction to measure
            at; omit it and pass ``model`` and ``inputs`` to measure at ``model(inputs)``.
        loss_weights: list of float or None. Per-loss weights when ``loss`` is a list
            of losses, as in ``compile(loss_weights=...)`` (formerly ``weights``,
            which raises ``TypeError``).
        model, inputs: keras.Model, tensor. A restorer and a batch of its inputs
            (degraded images).
        reference: int or str. Index or name of the term every norm is divided by
            (default 0, the first term).

    Returns:
        One dict per term, in order: ``term`` (name), ``weight``, ``grad_norm``
        (``‖∇_{y_pred}(weight · term)‖``), ``ratio`` (``grad_norm`` over the
        reference's; ``inf``/``nan`` when the reference gradient is 0) and
        ``value`` (the weighted term's batch-mean value).

    Stateful terms are measured with their state frozen (a D2SM queue is read
    but not written); a DiffLoss advances its random stream as in a step.
    """
    terms = loss_terms(loss, loss_weights)
    if y_pred is None:
        if model is None or inputs is None:
            raise ValueError(
                "give `y_pred`, or `model` and `inputs` to measure at the model's prediction."
            )
        y_pred = model(inputs, training=False)
        if isinstance(y_pred, (list, tuple)):
            y_pred = y_pred[0]
    elif model is not None or inputs is not None:
        raise ValueError("give either `y_pred` or `model` and `inputs`, not both.")
    y_true = tf.convert_to_tensor(y_true, tf.float32)
    y_pred = tf.convert_to_tensor(y_pred, tf.float32)
    if isinstance(reference, str):
        names = [n for n, _, _ in terms]
        if reference not in names:
            raise ValueError(f"`reference`={reference!r} is not a term; the terms are {names}.")
        ref = names.index(reference)
    else:
        ref = int(reference)
        if not -len(terms) <= ref < len(terms):
            raise ValueError(f"`reference`={reference} is out of range for {len(terms)} terms.")
    rows = []
    for name, term, w in terms:
        with _frozen(term), tf.GradientTape() as tape:
            tape.watch(y_pred)
            value = _term_value(term, y_true, y_pred) * w
        grad = tape.gradient(value, y_pred)
        norm = 0.0 if grad is None else float(tf.norm(tf.reshape(grad, [-1])))
        rows.append({"term": name, "weight": w, "grad_norm": norm, "value": float(value)})
    ref_norm = rows[ref]["grad_norm"]
    for r in rows:
        if ref_norm > 0:
            r["ratio"] = r["grad_norm"] / ref_norm
        else:
            r["ratio"] = float("nan") if r["grad_norm"] == 0 else float("inf")
    return [{k: r[k] for k in ("term", "weight", "grad_norm", "ratio", "value")} for r in rows]


def format_gradient_ratios(rows, digits=4):
    """Plain-text table of :func:`gradient_ratios` rows (4 significant digits)."""
    cols = ("term", "weight", "grad_norm", "ratio")

    def fmt(v):
        if isinstance(v, float):
            return f"{v:.{digits}g}"
        return str(v)

    cells = [[fmt(r[c]) for c in cols] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)

