"""Parameter counting used in the networks' documentation and tests."""

from __future__ import annotations

import numpy as np

__all__ = ["trainable_params"]


def trainable_params(model):
    """Number of trainable scalars of ``model`` (BN scale/offset included, moving stats not).

    >>> import keras
    >>> from tfrestore.models import trainable_params
    >>> trainable_params(keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]))
    10
    """
    return int(sum(int(np.prod(w.shape)) for w in model.trainable_weights))
