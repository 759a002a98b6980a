"""Counter-based stateless random numbers that are identical in eager, graph and XLA.

``tf.random.stateless_*`` are not usable for a loss that must give the same
values with ``jit_compile=True``: with a run-time seed tensor XLA uses its own
Philox/key derivation and returns different numbers than the TensorFlow kernels
(measured on TF 2.21: ``stateless_normal`` differs by up to 5.3 for the same
seed, with ``alg="philox"`` and int32 or int64 seeds; only compile-time constant
seeds agree because they are constant-folded by the TF kernel).

Here every value is a keyed hash of its **global element index**: three rounds
of the MurmurHash3 32-bit finaliser (a bijection of uint32, so distinct indices
never collide within a key) over ``(seed, counter, stream)``; uniforms use the
top 24 bits, normals use Box–Muller. Only uint32 integer ops and float32
``log``/``cos``/``sqrt`` are involved, which XLA and the TF kernels evaluate
alike (up to last-ulp differences of the transcendental functions).

Because values are addressed by index, a replica that holds rows
``[offset, offset + B)`` of a global batch draws exactly the rows the single
device would: ``normal(shape, ..., row_offset=offset)``.

>>> import tensorflow as tf
>>> from tfrestore.diffusion.rng import normal, randint, uniform
>>> a = uniform([4, 2], seed=0, counter=tf.constant(3))
>>> b = uniform([2, 2], seed=0, counter=tf.constant(3), row_offset=2)
>>> bool(tf.reduce_all(a[2:] == b))  # bit-exact: integer hashing only
True
>>> n4 = normal([4, 2], seed=0, counter=tf.constant(3))
>>> n2 = normal([2, 2], seed=0, counter=tf.constant(3), row_offset=2)
>>> bool(tf.reduce_all(tf.abs(n4[2:] - n2) < 1e-6))  # log/cos may differ in the last ulp
True
>>> t = randint([1000], 0, 10, seed=1, counter=tf.constant(0))
>>> int(tf.reduce_min(t)), int(tf.reduce_max(t))
(0, 9)
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

__all__ = ["random_bits", "uniform", "normal", "randint"]

_M1 = np.uint32(0x85EBCA6B)
_M2 = np.uint32(0xC2B2AE35)
_GOLDEN = np.uint32(0x9E3779B9)


def _shr(x, n):
    return tf.bitwise.right_shift(x, tf.constant(n, tf.uint32))


def _fmix32(x):
    x = tf.bitwise.bitwise_xor(x, _shr(x, 16))
    x = x * tf.constant(_M1)
    x = tf.bitwise.bitwise_xor(x, _shr(x, 13))
    x = x * tf.constant(_M2)
    return tf.bitwise.bitwise_xor(x, _shr(x, 16))


def _keys(seed, counter, stream):
    seed = tf.constant(np.uint32(int(seed) & 0xFFFFFFFF))
    stream = tf.constant(np.uint32(int(stream) & 0xFFFFFFFF))
    counter = tf.cast(tf.convert_to_tensor(counter), tf.int64)
    lo = tf.cast(tf.bitwise.bitwise_and(counter, 0xFFFFFFFF), tf.uint32)
    hi = tf.cast(tf.bitwise.right_shift(counter, 32), tf.uint32)
    k0 = _fmix32(seed * tf.constant(_GOLDEN) + stream)
    k1 = _fmix32(tf.bitwise.bitwise_xor(lo, k0) + tf.constant(np.uint32(0x632BE5AB)))
    k2 = _fmix32(tf.bitwise.bitwise_xor(hi, k1) + k0)
    return k0, k1, k2


def random_bits(indices, seed, counter, stream=0):
    """uint32 hash of integer ``indices`` under the key ``(seed, counter, stream)``."""
    k0, k1, k2 = _keys(seed, counter, stream)
    x = tf.cast(indices, tf.uint32)
    x = _fmix32(x + k0)
    x = _fmix32(tf.bitwise.bitwise_xor(x, k1))
    return _fmix32(x + k2)


def _indices(shape, row_offset, per_element=1):
    shape = tf.cast(tf.convert_to_tensor(shape), tf.int64)
    n = tf.reduce_prod(shape)
    row = tf.reduce_prod(shape[1:])
    start = tf.cast(row_offset, tf.int64) * row
    return (start + tf.range(n, dtype=tf.int64)) * per_element, shape


def _to_unit(bits):
    # top 24 bits -> (0, 1), never exactly 0 or 1 (log-safe)
    return (tf.cast(_shr(bits, 8), tf.float32) + 0.5) * (1.0 / 16777216.0)


def uniform(shape, seed, counter, stream=0, row_offset=0):
    """Uniform (0, 1) float32 of ``shape``; rows start at global row ``row_offset``."""
    idx, shape = _indices(shape, row_offset)
    return tf.reshape(_to_unit(random_bits(idx, seed, counter, stream)), shape)


def normal(shape, seed, counter, stream=0, row_offset=0, dtype=tf.float32):
    """Standard normal of ``shape`` (Box–Muller); see :func:`uniform`."""
    idx, shape = _indices(shape, row_offset, per_element=2)
    u1 = _to_unit(random_bits(idx, seed, counter, stream))
    u2 = _to_unit(random_bits(idx + 1, seed, counter, stream))
    z = tf.sqrt(-2.0 * tf.math.log(u1)) * tf.cos((2.0 * math.pi) * u2)
    return tf.cast(tf.reshape(z, shape), dtype)


def randint(shape, low, high, seed, counter, stream=0, row_offset=0):
    """Integers uniform in ``[low, high)`` (int32) of ``shape``."""
    if not high > low:
        raise ValueError(f"randint needs high > low, got [{low}, {high})")
    idx, shape = _indices(shape, row_offset)
    top = tf.cast(_shr(random_bits(idx, seed, counter, stream), 8), tf.int64)
    value = low + tf.bitwise.right_shift(top * (high - low), 24)
    return tf.reshape(tf.cast(value, tf.int32), shape)
