"""Device set-up and gradient checks shared by :class:`tfrestore.testing.TestCase`.

The 2 logical CPU devices of the distribution check must be configured before
TensorFlow initialises its devices: call :func:`configure_logical_cpus` first
(``tests/conftest.py`` does).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

__all__ = [
    "configure_logical_cpus",
    "get_mirrored_strategy",
    "check_gradient",
    "finite_difference_check",
]

_STRATEGY = None


def configure_logical_cpus(n=2):
    """Split the physical CPU into ``n`` logical devices (idempotent, best effort)."""
    cpus = tf.config.list_physical_devices("CPU")
    try:
        if len(tf.config.get_logical_device_configuration(cpus[0]) or []) < n:
            tf.config.set_logical_device_configuration(
                cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(n)]
            )
    except RuntimeError:
        pass  # already initialised; get_mirrored_strategy reports what it got
    return len(tf.config.list_logical_devices("CPU"))


def get_mirrored_strategy():
    """One process-wide 2-replica ``MirroredStrategy`` (a second instance breaks
    collectives in TF 2.21), or None if only 1 CPU device."""
    global _STRATEGY
    if _STRATEGY is None:
        devices = [d.name for d in tf.config.list_logical_devices("CPU")]
        if len(devices) < 2:
            return None
        _STRATEGY = tf.distribute.MirroredStrategy(devices[:2])
    return _STRATEGY


def check_gradient(loss, y_true, y_pred):
    """Gradient of the reduced loss w.r.t. ``y_pred``; asserts finite and non-zero."""
    yp = tf.Variable(tf.convert_to_tensor(y_pred, tf.float32))
    with tf.GradientTape() as tape:
        value = loss(tf.convert_to_tensor(y_true, tf.float32), yp)
    grad = tape.gradient(value, yp)
    assert grad is not None, f"{loss.name}: no gradient reaches y_pred"
    g = np.asarray(grad)
    assert np.all(np.isfinite(g)), f"{loss.name}: gradient w.r.t. y_pred is not finite"
    assert np.any(g != 0), f"{loss.name}: gradient w.r.t. y_pred is identically zero"
    return g


def finite_difference_check(loss, y_true, y_pred, eps=1e-2, rtol=0.05, atol=1e-6, seed=0):
    """Directional derivative along a random unit direction vs central differences."""
    rng = np.random.default_rng(seed)
    y_pred = np.asarray(y_pred, np.float64)
    d = rng.normal(size=y_pred.shape)
    d /= np.linalg.norm(d)
    yp = tf.Variable(tf.convert_to_tensor(y_pred, tf.float32))
    yt = tf.convert_to_tensor(y_true, tf.float32)
    with tf.GradientTape() as tape:
        v = loss(yt, yp)
    g = np.asarray(tape.gradient(v, yp), np.float64)
    analytic = float(np.sum(g * d))
    plus = float(loss(yt, tf.constant(y_pred + eps * d, tf.float32)))
    minus = float(loss(yt, tf.constant(y_pred - eps * d, tf.float32)))
    numeric = (plus - minus) / (2 * eps)
    np.testing.assert_allclose(
        analytic, numeric, rtol=rtol, atol=atol,
        err_msg=f"{loss.name}: analytic directional derivative != finite differences",
    )
    return analytic, numeric
