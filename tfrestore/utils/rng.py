"""Counter-based random numbers that are identical in eager, graph and XLA.

``tf.random.stateless_*`` cannot be used by a loss that must give the same values
with ``jit_compile=True``: with a run-time seed tensor XLA derives its own Philox
key and returns different numbers than the TensorFlow kernels (measured on TF 2.21:
``stateless_normal`` differs by up to 5.3 for the same seed, with ``alg="philox"``
and int32 or int64 seeds; only compile-time constant seeds agree, because the TF
kernel constant-folds them). So tfrestore draws every random number here, with
Philox-4x32-10 (Salmon et al., SC'11; the generator behind TF's ``alg="philox"``)
written in plain uint32/uint64 integer ops, which XLA and the TF kernels evaluate
bit-identically.

One API for every user (PDL/Contextual projections and subsets, DiffLoss's t and
ε)::

    uniform(shape, seed, counter, stream=0, row_offset=0)   # float32 in (0, 1)
    normal(shape, seed, counter, stream=0, row_offset=0)    # N(0, 1), Box-Muller
    randint(shape, low, high, seed, counter, stream=0, row_offset=0)

* ``seed``: a Python int, the Philox key (64 bits used).
* ``counter``: an int64 scalar (tensor), typically a loss's call counter: a new
  counter gives a new, independent draw.
* ``stream``: a Python int naming the draw, so that two draws of one call (e.g.
  t and ε) are independent. :func:`normal` reads the uniform streams
  ``2 * stream + 1`` and ``2 * stream + 2``: give a uniform draw and a normal draw
  of the same call stream numbers that do not collide with these.
* ``row_offset``: values are addressed by their **global element index**, so a
  replica holding rows ``[offset, offset + B)`` of a global batch draws exactly the
  rows a single device would.

Word ``i`` of a draw is lane ``i % 4`` of the Philox block
``(i // 4, counter_lo, counter_hi, stream)`` under the key ``(seed_lo, seed_hi)``.

>>> import tensorflow as tf
>>> from tfrestore.utils import rng
>>> a = rng.uniform([4, 3], seed=0, counter=tf.constant(3))
>>> b = rng.uniform([2, 3], seed=0, counter=tf.constant(3), row_offset=2)
>>> bool(tf.reduce_all(a[2:] == b))  # bit-exact: integer ops only
True
>>> n4 = rng.normal([4, 3], seed=0, counter=tf.constant(3))
>>> n2 = rng.normal([2, 3], seed=0, counter=tf.constant(3), row_offset=2)
>>> bool(tf.reduce_all(tf.abs(n4[2:] - n2) < 1e-6))  # log/cos may differ in the last ulp
True
>>> t = rng.randint([1000], 0, 10, seed=1, counter=tf.constant(0))
>>> int(tf.reduce_min(t)), int(tf.reduce_max(t))
(0, 9)
"""

from __future__ import annotations

import math

import tensorflow as tf

__all__ = ["philox4x32", "random_bits", "uniform", "normal", "randint"]

_PHILOX_M = (0xD2511F53, 0xCD9E8D57)
_PHILOX_W = (0x9E3779B9, 0xBB67AE85)


def _u32(x):
    return tf.constant(x & 0xFFFFFFFF, tf.uint32)


def _mulhilo(m, x):
    prod = tf.cast(x, tf.uint64) * tf.constant(m, tf.uint64)
    hi = tf.cast(tf.bitwise.right_shift(prod, tf.constant(32, tf.uint64)), tf.uint32)
    lo = tf.cast(tf.bitwise.bitwise_and(prod, tf.constant(0xFFFFFFFF, tf.uint64)), tf.uint32)
    return hi, lo


def philox4x32(counter, key, rounds=10):
    """Philox-4x32 block function: ``counter`` = 4 uint32 tensors (same shape),
    ``key`` = 2 uint32 scalars; returns 4 uint32 tensors of random bits."""
    c0, c1, c2, c3 = counter
    k0, k1 = key
    xor = tf.bitwise.bitwise_xor
    for r in range(rounds):
        if r:
            k0 = k0 + _u32(_PHILOX_W[0])
            k1 = k1 + _u32(_PHILOX_W[1])
        hi0, lo0 = _mulhilo(_PHILOX_M[0], c0)
        hi1, lo1 = _mulhilo(_PHILOX_M[1], c2)
        c0, c1, c2, c3 = xor(xor(hi1, c1), k0), lo1, xor(xor(hi0, c3), k1), lo0
    return c0, c1, c2, c3


def _shape_and_size(shape):
    """``(shape for tf.reshape, element count)``: a tuple of ints stays static (the
    result keeps its static shape); a tensor (``tf.shape(x)``, or a scalar length)
    is dynamic."""
    if tf.is_tensor(shape):
        shape = tf.cast(tf.reshape(shape, [-1]), tf.int64)
        return shape, tf.reduce_prod(shape)
    shape = tuple(int(s) for s in shape)
    return shape, math.prod(shape)


def random_bits(shape, seed, counter, stream=0, row_offset=0):
    """uint32 random words of ``shape`` for ``(seed, counter, stream)``, rows starting
    at global row ``row_offset`` (see the module docstring)."""
    shape, n = _shape_and_size(shape)
    if isinstance(row_offset, int) and row_offset == 0:
        start = 0
    else:
        row = tf.reduce_prod(tf.cast(shape, tf.int64)[1:])
        start = tf.cast(row_offset, tf.int64) * row
    first = start // 4
    blocks = tf.range(first, (start + n + 3) // 4, dtype=tf.int64)
    idx = tf.cast(blocks, tf.uint32)
    counter = tf.cast(counter, tf.int64)
    lo = tf.cast(tf.bitwise.bitwise_and(counter, 0xFFFFFFFF), tf.uint32)
    hi = tf.cast(tf.bitwise.bitwise_and(tf.bitwise.right_shift(counter, 32), 0xFFFFFFFF),
                 tf.uint32)
    ones = tf.ones_like(idx)
    words = philox4x32((idx, lo * ones, hi * ones, _u32(stream) * ones),
                       (_u32(seed), _u32(seed >> 32)))
    flat = tf.reshape(tf.stack(words, axis=-1), (-1,))
    skip = start - 4 * first
    if isinstance(skip, int):
        flat = flat[:n]
    else:
        flat = tf.slice(flat, tf.reshape(skip, [1]), tf.reshape(tf.cast(n, tf.int64), [1]))
    return tf.reshape(flat, shape)


def _unit(bits):
    # top 24 bits -> the open interval (0, 1): never exactly 0 or 1 (log-safe)
    return (tf.cast(tf.bitwise.right_shift(bits, _u32(8)), tf.float32) + 0.5) * (
        1.0 / 16777216.0
    )


def uniform(shape, seed, counter, stream=0, row_offset=0):
    """Uniform float32 in the open interval (0, 1), 24 random bits per value."""
    return _unit(random_bits(shape, seed, counter, stream, row_offset))


def normal(shape, seed, counter, stream=0, row_offset=0, dtype=tf.float32):
    """Standard normal (Box-Muller on the uniform streams ``2*stream+1`` and
    ``2*stream+2``)."""
    u1 = uniform(shape, seed, counter, 2 * stream + 1, row_offset)
    u2 = uniform(shape, seed, counter, 2 * stream + 2, row_offset)
    z = tf.sqrt(-2.0 * tf.math.log(u1)) * tf.cos((2.0 * math.pi) * u2)
    return tf.cast(z, dtype)


def randint(shape, low, high, seed, counter, stream=0, row_offset=0):
    """Integers uniform in ``[low, high)`` (int32), from 24 random bits per value."""
    if not high > low:
        raise ValueError(f"randint needs high > low, got [{low}, {high}).")
    top = tf.cast(tf.bitwise.right_shift(random_bits(shape, seed, counter, stream, row_offset),
                                         _u32(8)), tf.int64)
    value = low + tf.bitwise.right_shift(top * (high - low), 24)
    return tf.cast(value, tf.int32)
