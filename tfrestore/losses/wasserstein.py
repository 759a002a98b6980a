"""1-D p-Wasserstein distance of empirical distributions, by sorting.

For two samples of equal size ``N``, ``W_p(u, v)^p = (1/N) Σ_i |u_(i) - v_(i)|^p``
with ``u_(i), v_(i)`` sorted ascending; samples of different sizes are compared
through their empirical quantile functions (``quantiles=Q``). Used by
:class:`tfrestore.losses.PDLoss` on projected features.
"""

from __future__ import annotations

import tensorflow as tf

__all__ = ["wasserstein_1d"]


def _resample_sorted(u, quantiles):
    """The empirical quantile function of sorted samples ``u`` (..., N) at the
    ``quantiles`` cell midpoints ``(k + 1/2) / Q``, k = 0 … Q−1.

    The empirical quantile function is the step function ``F⁻¹(q) = u_(⌊qN⌋)``
    (0-based), and ``W_p^p = ∫₀¹ |F_u⁻¹(q) − F_v⁻¹(q)|^p dq``; the midpoint rule
    integrates it exactly when ``Q`` is a multiple of both sample counts, and
    with an error of at most one cell per breakpoint otherwise. (Linear
    interpolation between order statistics, as ``np.quantile`` does, shrinks the
    tails towards the median and underestimates the distance: −2.7 % on average,
    up to −9.7 %, for two samples of 100 normal values at Q = 1000.) Indices are
    integer arithmetic, so they are exact for any size.
    """
    n = tf.shape(u, out_type=tf.int64)[-1]
    k = tf.range(quantiles, dtype=tf.int64)
    idx = tf.math.floordiv((2 * k + 1) * n, 2 * quantiles)
    return tf.gather(u, idx, axis=-1)


def _sort(x):
    """Ascending sort along the last axis, as ``tf.gather(x, tf.argsort(x))``.

    The same values and, through the same top-k indices, the same gradient as
    ``tf.sort``, but the gradient is a gather's (a segment sum) instead of
    ``tf.sort``'s top-k scatter: forward + backward of (4, 512, 256) samples
    15-18 ms instead of 26-28 ms on 2 CPU cores; the forward pass alone costs
    2 ms more.
    """
    rank = x.shape.rank
    if rank is None:
        return tf.sort(x, axis=-1)
    return tf.gather(x, tf.argsort(x, axis=-1), axis=-1, batch_dims=rank - 1)


def wasserstein_1d(u, v, p=1.0, quantiles=None):
    """Per-row 1-D ``W_p^p`` between the empirical distributions in the last axis.

    ``u`` and ``v`` are ``(..., N)`` and ``(..., M)`` samples (unsorted). Returns
    ``mean_i |u_(i) - v_(i)|^p`` over the sorted samples, shape ``(...)``. With
    ``quantiles=Q`` both empirical quantile functions are sampled at the ``Q`` cell
    midpoints ``(k + 1/2) / Q``, which allows ``N != M`` (exact when ``Q`` is a
    multiple of ``N`` and ``M``). Gradients flow through the sort to the unsorted
    samples.

    >>> import numpy as np
    >>> u = np.array([[3.0, 1.0, 2.0]], "float32"); v = np.array([[0.0, 2.0, 1.0]], "float32")
    >>> float(wasserstein_1d(u, v)[0])  # sorted: |1-0|, |2-1|, |3-2|
    1.0
    """
    u = _sort(tf.convert_to_tensor(u))
    v = _sort(tf.convert_to_tensor(v))
    if quantiles is not None:
        u = _resample_sorted(u, int(quantiles))
        v = _resample_sorted(v, int(quantiles))
    d = tf.abs(u - v)
    if p == 1:
        pass
    elif p == 2:
        d = tf.square(d)
    else:
        d = tf.pow(d, tf.cast(p, d.dtype))
    return tf.reduce_mean(d, axis=-1)
