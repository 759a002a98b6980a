"""Every access to Keras internals that tfrestore needs, in one place.

Keras 3 keeps these behind ``keras.src``; they are pinned to the Keras version in
``pyproject.toml`` and ``tests/utils/test_keras_compat.py`` fails loudly when an update
moves them.
"""

from __future__ import annotations

__all__ = ["model_metric_list", "reduce_weighted_values", "wrap_loss_function"]


def model_metric_list(model):
    """The list Keras keeps a model's own metrics in (``Trainer.metrics`` extends it)."""
    metrics = getattr(model, "_metrics", None)
    if not isinstance(metrics, list):
        raise RuntimeError(
            "This Keras version keeps no `_metrics` list on models; tfrestore's per-term "
            "loss logging needs the Keras version pinned in pyproject.toml."
        )
    return metrics


def reduce_weighted_values(values, sample_weight, reduction, dtype):
    """Keras' own loss reduction (``keras.losses.Loss.__call__`` uses it), so a logged
    loss term is reduced exactly as the total loss is, without the 1/replicas scaling."""
    from keras.src.losses.loss import reduce_weighted_values as _reduce
    from keras.src.losses.loss import unscale_loss_for_distribution

    # The reduction divides by the number of replicas (for the gradient sum); a logged
    # value is the replica's own mean, as Keras' loss tracker records it.
    return unscale_loss_for_distribution(
        _reduce(values, sample_weight=sample_weight, reduction=reduction, dtype=dtype)
    )


def wrap_loss_function(fn):
    """A ``keras.losses.Loss`` around a loss function, as ``compile`` wraps ``"mae"``."""
    from keras.src.losses.losses import LossFunctionWrapper

    return LossFunctionWrapper(fn, name=getattr(fn, "__name__", None))
