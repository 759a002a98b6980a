"""Projection directions of the Projected Distribution Loss (PDL, Table VIII).

``identity`` needs no matrix; the random kinds are drawn with the counter-based
Philox generator, bit-identical in eager, graph, XLA and on every replica.
"""

from __future__ import annotations

import tensorflow as tf

from tfrestore.utils import rng

__all__ = ["PROJECTIONS", "projection_matrix"]

PROJECTIONS = ("identity", "random_sphere", "random_pairs", "perturbed_identity")


def projection_matrix(kind, channels, num_projections, seed, stream, perturbation=0.1):
    """``(C, P)`` matrix of unit-norm projection directions (columns), a deterministic
    function of ``(seed, stream)`` (:mod:`tfrestore.utils.rng`; ``stream`` is its ``counter``).

    >>> import tensorflow as tf
    >>> theta = projection_matrix("random_sphere", 4, 6, seed=0, stream=tf.constant(0, tf.int64))
    >>> tuple(theta.shape), bool(tf.reduce_all(tf.abs(tf.norm(theta, axis=0) - 1) < 1e-5))
    ((4, 6), True)
    """
    c, p = int(channels), int(num_projections)
    if kind == "random_sphere":
        # Normalised Gaussian vectors are uniform on the sphere (Monte-Carlo sliced W).
        theta = rng.normal((c, p), seed, stream, 0)
    elif kind == "random_pairs":
        if c < 2:
            raise ValueError(f"projection='random_pairs' needs at least 2 channels, got {c}.")
        first = tf.cast(rng.uniform((p,), seed, stream, 10) * c, tf.int32)
        offset = 1 + tf.cast(rng.uniform((p,), seed, stream, 11) * (c - 1), tf.int32)
        first = tf.minimum(first, c - 1)
        second = (first + tf.minimum(offset, c - 1)) % c  # always a different channel
        ab = rng.normal((2, p), seed, stream, 6)
        theta = tf.one_hot(first, c, axis=0) * ab[0] + tf.one_hot(second, c, axis=0) * ab[1]
    elif kind == "perturbed_identity":
        base = tf.one_hot(tf.range(p) % c, c, axis=0)  # identity columns, cycled if P > C
        theta = base + perturbation * rng.normal((c, p), seed, stream, 0)
    else:  # pragma: no cover - validated in __init__
        raise ValueError(f"unknown projection {kind!r}")
    return theta / tf.maximum(tf.norm(theta, axis=0, keepdims=True), 1e-12)
