"""PyTorch -> Keras tensor layouts, by layer kind (generic, no model knowledge).

Conv2d ``(O, I, kh, kw)`` -> ``(kh, kw, I, O)``; Conv1d 1x1 ``(O, I, 1)`` and Linear
``(O, I)`` -> Dense ``(I, O)``; vectors (biases, norm scales) unchanged. All values
are cast to float32.

>>> import numpy as np
>>> w = np.zeros((8, 3, 5, 5), "float32")  # torch Conv2d weight
>>> layer_kind("conv.weight", w.ndim)
'conv2d'
>>> to_keras_layout(w, "conv2d").shape
(5, 5, 3, 8)
"""

from __future__ import annotations

import numpy as np

__all__ = ["layer_kind", "to_keras_layout"]


def layer_kind(key, ndim):
    """The layer kind of a PyTorch state-dict entry from its name and rank:
    ``"vector"``, ``"conv2d"``, ``"conv1d"`` or ``"linear"``."""
    if key.endswith(".bias") or ndim == 1:
        return "vector"
    if ndim == 4:
        return "conv2d"
    if ndim == 3:
        return "conv1d"
    return "linear"


def to_keras_layout(array, kind):
    """One PyTorch tensor → the Keras layout for its layer kind."""
    a = np.asarray(array, dtype=np.float32)
    if kind == "conv2d":
        return np.ascontiguousarray(a.transpose(2, 3, 1, 0))
    if kind == "conv1d":
        return np.ascontiguousarray(a[:, :, 0].T)
    if kind == "linear":
        return np.ascontiguousarray(a.T)
    return a
