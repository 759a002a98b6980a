"""Builders shared by the loss tests (fixtures: `--import-mode=importlib` keeps test modules
from importing one another)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfrestore.losses._similarity import (
    conditional_probabilities,
    row_divergence,
    softmax_probabilities,
)


def _generic_unet(seed=0):
    """A small two-input eps-UNet (any Keras model returning (out, h))."""
    keras.utils.set_random_seed(seed)
    xi = keras.Input((None, None, 3))
    ti = keras.Input((), dtype="int32")
    temb = keras.layers.Reshape((1, 1, 8))(keras.layers.Embedding(1000, 8)(ti))
    h = keras.layers.Conv2D(8, 3, padding="same", activation="silu")(xi) + temb
    mid = keras.layers.AveragePooling2D(2)(h)
    out = keras.layers.Conv2D(6, 3, padding="same")(h)
    return keras.Model([xi, ti], [out, mid], name="generic_eps_unet")


def _toy_restorer(seed=0):
    """A one-convolution residual restorer of 16 x 16 RGB images."""
    inp = keras.Input((16, 16, 3))
    out = keras.layers.Conv2D(
        3, 3, padding="same",
        kernel_initializer=keras.initializers.RandomNormal(0.0, 0.05, seed=seed))(inp)
    return keras.Model(inp, keras.layers.Add()([inp, out]))


def _noisy_clean(n=8, seed=0):
    """``n`` clean 16 x 16 images in [0, 1] and their noisy copies (sigma 0.1)."""
    rng = np.random.default_rng(seed)
    clean = rng.uniform(size=(n, 16, 16, 3)).astype("float32")
    noisy = np.clip(clean + rng.normal(0, 0.1, clean.shape), 0, 1).astype("float32")
    return noisy, clean


def _dense_set_divergence(
    fs, ft, qs, qt, qmask, divergence, include_diagonal, eps=1e-6, temperature=None
):
    """The dense formulation of D2SM's set divergence: one (P + q) x (P + q) kernel per
    group, gradients by automatic differentiation (the reference of the blockwise and cached
    paths)."""

    def cosines(f, q):
        g = tf.shape(f)[0]
        cc = tf.matmul(f, f, transpose_b=True)
        cq = tf.einsum("gpd,qd->gpq", f, q)
        qq = tf.broadcast_to(tf.matmul(q, q, transpose_b=True)[None], [g, q.shape[0], q.shape[0]])
        top = tf.concat([cc, cq], axis=2)
        return tf.concat([top, tf.concat([tf.transpose(cq, [0, 2, 1]), qq], axis=2)], axis=1)

    def probabilities(cos, mask):
        if temperature is None:
            return conditional_probabilities((cos + 1.0) * 0.5, mask, include_diagonal)
        return softmax_probabilities(cos, mask, include_diagonal, temperature)

    mask = tf.concat([tf.ones([fs.shape[1]]), qmask], axis=0)
    ps = probabilities(cosines(fs, qs), mask)
    pt = probabilities(cosines(ft, qt), mask)
    return row_divergence(ps, pt, divergence, eps) * mask


@pytest.fixture
def generic_unet():
    return _generic_unet


@pytest.fixture
def toy_restorer():
    return _toy_restorer


@pytest.fixture
def noisy_clean():
    return _noisy_clean


@pytest.fixture
def dense_set_divergence():
    return _dense_set_divergence
