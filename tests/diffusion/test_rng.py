import numpy as np
import tensorflow as tf

from tfrestore.diffusion import rng


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
