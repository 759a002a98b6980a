"""Shared benchmark utilities: a small restorer and side-by-side step timing."""

from __future__ import annotations

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def small_restorer(channels=3, width=32, depth=4, seed=0):
    """A DnCNN-like residual restorer used by every loss benchmark."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((None, None, channels))
    x = inp
    for _ in range(depth - 1):
        x = keras.layers.Conv2D(width, 3, padding="same", activation="relu")(x)
    x = keras.layers.Conv2D(channels, 3, padding="same")(x)
    return keras.Model(inp, keras.layers.Add()([inp, x]), name="bench_restorer")


def random_pairs(batch, size, channels=3, sigma=0.1, seed=0):
    rng = np.random.default_rng(seed)
    clean = rng.uniform(size=(batch, size, size, channels)).astype("float32")
    noisy = (clean + rng.normal(0, sigma, clean.shape)).astype("float32")
    return noisy, clean


def time_train_steps(loss, *, batch=4, size=64, steps=20, warmup=3, model_fn=small_restorer, jit_compile=False):
    """Median seconds per optimizer step of ``model_fn()`` trained with ``loss``."""
    model = model_fn()
    opt = keras.optimizers.Adam(1e-4)
    noisy, clean = random_pairs(batch, size)
    noisy, clean = tf.constant(noisy), tf.constant(clean)

    @tf.function(jit_compile=jit_compile)
    def step(x, y):
        with tf.GradientTape() as tape:
            value = loss(y, model(x, training=True))
        grads = tape.gradient(value, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        return value

    for _ in range(warmup):
        step(noisy, clean).numpy()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step(noisy, clean).numpy()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def compare(entries, reference, **kwargs):
    """Time each ``name -> loss`` entry, interleaved, and print ratios to ``reference``."""
    results = {name: time_train_steps(loss, **kwargs) for name, loss in entries.items()}
    ref = results[reference]
    print(f"{'loss':<44} {'ms/step':>9} {'ratio':>7}")
    for name, t in results.items():
        print(f"{name:<44} {t * 1e3:9.1f} {t / ref:7.2f}")
    return results
