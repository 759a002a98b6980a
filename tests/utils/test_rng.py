import numpy as np
import pytest
import tensorflow as tf

from tfrestore.utils import rng


def test_eager_graph_and_xla_agree():
    def draw(counter):
        return (rng.normal([3, 8, 8, 3], 5, counter, stream=2, row_offset=1),
                rng.randint([7], 0, 1000, 5, counter, stream=1))

    c = tf.constant(12, tf.int64)
    e = draw(c)
    g = tf.function(draw)(c)
    x = tf.function(draw, jit_compile=True)(c)
    for other in (g, x):
        np.testing.assert_allclose(np.asarray(other[0]), np.asarray(e[0]), atol=1e-6)
        np.testing.assert_array_equal(np.asarray(other[1]), np.asarray(e[1]))


def test_statistics_and_independence():
    z = np.asarray(rng.normal([200_000], 0, tf.constant(0))).astype(np.float64)
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01
    assert abs(np.mean(z ** 3)) < 0.03 and abs(np.mean(z ** 4) - 3) < 0.06
    assert abs(np.corrcoef(z[:-1], z[1:])[0, 1]) < 0.01
    other = np.asarray(rng.normal([200_000], 0, tf.constant(1)))
    assert abs(np.corrcoef(z, other)[0, 1]) < 0.01
    u = np.asarray(rng.uniform([100_000], 1, tf.constant(0)))
    assert 0 < u.min() and u.max() < 1
    hist = np.histogram(u, bins=10, range=(0, 1))[0]
    assert np.all(np.abs(hist - 10_000) < 500)
    t = np.asarray(rng.randint([100_000], 3, 8, 1, tf.constant(0)))
    assert set(np.unique(t)) == {3, 4, 5, 6, 7}
    assert np.all(np.abs(np.bincount(t)[3:] - 20_000) < 800)


def test_philox_known_answers_and_xla_agreement():
    """Random123 known-answer vectors; TF's own Philox bits; eager == XLA."""
    u32 = lambda x: tf.constant([x], tf.uint32)  # noqa: E731
    zero = tf.constant(0, tf.uint32)
    out = rng.philox4x32((u32(0), u32(0), u32(0), u32(0)), (zero, zero))
    assert [int(o[0]) for o in out] == [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]
    out = rng.philox4x32(
        (u32(0x243F6A88), u32(0x85A308D3), u32(0x13198A2E), u32(0x03707344)),
        (tf.constant(0xA4093822, tf.uint32), tf.constant(0x299F31D0, tf.uint32)),
    )
    assert [int(o[0]) for o in out] == [0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1]
    tf_bits = tf.raw_ops.StatelessRandomUniformFullIntV2(
        shape=[8], key=tf.constant([(5 << 32) | 7], tf.uint64),
        counter=tf.constant([0, (3 << 32) | 9], tf.uint64), alg=1, dtype=tf.uint32,
    )
    idx = tf.cast(tf.range(2), tf.uint32)
    mine = rng.philox4x32((idx, idx * 0, idx * 0 + 9, idx * 0 + 3),
                      (tf.constant(7, tf.uint32), tf.constant(5, tf.uint32)))
    np.testing.assert_array_equal(tf.reshape(tf.stack(mine, -1), [-1]), tf_bits)
    f = lambda s: rng.normal((16, 8), 11, s, 2)  # noqa: E731
    s = tf.constant(4, tf.int64)
    np.testing.assert_allclose(tf.function(f, jit_compile=True)(s), f(s), atol=1e-6)


def test_words_are_philox_lanes_addressed_by_global_index():
    """Word i is lane i % 4 of the Philox block (i // 4, counter, stream); a row
    offset reads the same words, also when it starts inside a block."""
    seed, counter, stream = (3 << 32) | 17, tf.constant((7 << 32) | 2, tf.int64), 5
    idx = tf.cast(tf.range(6), tf.uint32)
    ones = tf.ones_like(idx)
    blocks = rng.philox4x32(
        (idx, ones * 2, ones * 7, ones * stream),
        (tf.constant(17, tf.uint32), tf.constant(3, tf.uint32)),
    )
    expected = np.asarray(tf.reshape(tf.stack(blocks, -1), [-1]))[:21].reshape(7, 3)
    got = rng.random_bits((7, 3), seed, counter, stream)
    np.testing.assert_array_equal(np.asarray(got), expected)
    part = rng.random_bits(tf.constant([4, 3]), seed, counter, stream,
                           row_offset=tf.constant(3, tf.int64))
    np.testing.assert_array_equal(np.asarray(part), expected[3:])


def test_randint_rejects_an_empty_range():
    with pytest.raises(ValueError, match="high > low"):
        rng.randint([3], 5, 5, 0, tf.constant(0))
