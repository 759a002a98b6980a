"""Every network runs under the mixed_float16 policy (float16 compute, float32 variables)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfrestore.models import EDSR, FFDNet, LiuDenoiser, UNet, DnCNN, cascade

BUILDERS = {
    "dncnn": (lambda: DnCNN(channels=3, depth=3, filters=8), 16),
    "ffdnet": (lambda: FFDNet(channels=3, depth=3, filters=8), 15),
    "liu_valid": (lambda: LiuDenoiser(padding="valid"), 16),
    "edsr": (lambda: EDSR(scale=2, depth=1, filters=8), 8),
    "unet": (lambda: UNet(filters=4, levels=2, blocks_per_level=1, scales=2), 16),
}


@pytest.mark.parametrize("key", sorted(BUILDERS))
def test_mixed_float16_forward_and_gradient(key, rng):
    keras.config.set_dtype_policy("mixed_float16")  # reset by the autouse fixture
    build, size = BUILDERS[key]
    model = build()
    x = tf.constant(rng.uniform(size=(2, size, size, 3)).astype("float32"))
    inputs = [x, tf.fill((2, 1), 0.1)] if key == "ffdnet" else x
    with tf.GradientTape() as tape:
        out = model(inputs, training=True)
        loss = tf.reduce_mean(tf.cast(out, tf.float32) ** 2)
    grads = tape.gradient(loss, model.trainable_weights)
    assert out.dtype == tf.float16
    assert np.isfinite(out.numpy()).all()
    assert all(g is not None and np.isfinite(g.numpy()).all() for g in grads)


def test_mixed_float16_cascade(rng):
    keras.config.set_dtype_policy("mixed_float16")
    clf = keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            keras.layers.Conv2D(4, 3),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3, dtype="float32"),
        ]
    )
    model = cascade(DnCNN(channels=3, depth=3, filters=8), clf, preprocessing="caffe")
    restored, logits = model(rng.uniform(size=(2, 16, 16, 3)).astype("float32"))
    assert np.isfinite(logits.numpy()).all() and logits.dtype == tf.float32
