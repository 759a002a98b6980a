"""Reusable conformance harness that every tfrestore loss must pass.

``run_loss_test(cls, init_kwargs, y_true, y_pred)`` checks, on fresh instances:

* per-sample output of shape ``(B,)``;
* eager == ``tf.function`` == XLA (``jit_compile=True``);
* ``get_config`` / ``from_config`` and ``keras.saving`` (de)serialization round trips;
* ``.keras`` save/load of a compiled model keeps the loss and its value;
* one ``fit`` step under ``MirroredStrategy`` over 2 logical CPUs equals a
  single-device step (this catches scalar returns and missing ``all_gather``);
* the gradient w.r.t. ``y_pred`` is finite and non-zero (and optionally matches
  central finite differences along a random direction);
* under the ``mixed_float16`` policy, value and gradient are finite;
* each bad input raises the documented exception.

The 2 logical CPU devices must be configured before TensorFlow initialises its
devices: call :func:`configure_logical_cpus` first (``tests/conftest.py`` does).
"""

from __future__ import annotations

import os
import tempfile

import keras
import numpy as np
import tensorflow as tf

__all__ = [
    "configure_logical_cpus",
    "get_mirrored_strategy",
    "run_loss_test",
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


def _fresh(cls, init_kwargs):
    return cls(**dict(init_kwargs))


def _per_sample(loss, y_true, y_pred):
    return loss.call(tf.convert_to_tensor(y_true), tf.convert_to_tensor(y_pred))


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


def _tiny_model(shape, seed=0):
    c = shape[-1]
    inp = keras.Input(shape=shape[1:])
    x = keras.layers.Conv2D(
        c, 3, padding="same",
        kernel_initializer=keras.initializers.RandomNormal(stddev=0.05, seed=seed),
        bias_initializer="zeros", name="conv",
    )(inp)
    out = keras.layers.Add(name="residual")([inp, x])
    return keras.Model(inp, out, name="tiny_restorer")


def _assert_close(a, b, rtol, atol, what):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol, err_msg=what)


def run_loss_test(
    cls,
    init_kwargs,
    y_true,
    y_pred,
    *,
    rtol=1e-4,
    atol=1e-6,
    xla=True,
    xla_rtol=None,
    mirrored=True,
    mirrored_rtol=1e-4,
    saving=True,
    mixed_precision=True,
    gradient=True,
    finite_differences=False,
    fd_kwargs=None,
    bad_inputs=(),
    stateful=False,
):
    """Run the conformance checks; raises ``AssertionError`` on the first failure.

    Args:
        cls: the loss class; ``init_kwargs`` build a fresh instance per check.
        y_true, y_pred: NumPy NHWC batches (batch even, for the 2-replica check).
        stateful: the loss changes internal state on each call (e.g. a queue):
            each comparison uses fresh instances called the same number of times.
        bad_inputs: iterable of ``(y_true, y_pred, exception_type, match)``;
            ``match`` is a substring expected in the message.
    Returns:
        dict with the eager per-sample values and the gradient.
    """
    y_true = np.asarray(y_true, np.float32)
    y_pred = np.asarray(y_pred, np.float32)
    results = {}

    # 1. eager, per-sample shape
    loss = _fresh(cls, init_kwargs)
    eager = np.asarray(_per_sample(loss, y_true, y_pred))
    assert eager.shape == (y_true.shape[0],), (
        f"{cls.__name__}.call must return per-sample values of shape "
        f"({y_true.shape[0]},), got {eager.shape}"
    )
    assert np.all(np.isfinite(eager)), f"{cls.__name__}: non-finite loss values {eager}"
    results["eager"] = eager
    reduced = float(_fresh(cls, init_kwargs)(y_true, y_pred))
    _assert_close(reduced, eager.mean(), 1e-5, 1e-6, "reduced loss != mean of per-sample values")

    # 2. tf.function and XLA
    loss_g = _fresh(cls, init_kwargs)
    graph = np.asarray(tf.function(lambda a, b: loss_g.call(a, b))(y_true, y_pred))
    _assert_close(graph, eager, rtol, atol, f"{cls.__name__}: tf.function != eager")
    if xla:
        loss_x = _fresh(cls, init_kwargs)
        xla_v = np.asarray(
            tf.function(lambda a, b: loss_x.call(a, b), jit_compile=True)(y_true, y_pred)
        )
        _assert_close(xla_v, eager, xla_rtol or rtol, atol, f"{cls.__name__}: XLA != eager")

    # 3. config round trips
    loss = _fresh(cls, init_kwargs)
    config = loss.get_config()
    clone = cls.from_config(config)
    assert clone.get_config() == config, f"{cls.__name__}: get_config round trip differs"
    ser = keras.saving.serialize_keras_object(loss)
    de = keras.saving.deserialize_keras_object(ser)
    assert type(de) is cls and de.get_config() == config, (
        f"{cls.__name__}: keras.saving (de)serialization failed; is it registered with "
        f"register_keras_serializable(package='tfrestore')?"
    )
    if not stateful:
        _assert_close(_per_sample(clone, y_true, y_pred), eager, rtol, atol, "from_config value")
    # Every __init__ argument must appear in the config (keras-cv's serialization test).
    import inspect

    params = [
        p for p in inspect.signature(cls.__init__).parameters.values()
        if p.name not in ("self",) and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    ]
    missing = [p.name for p in params if p.name not in config]
    assert not missing, f"{cls.__name__}.get_config() lacks __init__ arguments {missing}"

    # 4. .keras save/load of a compiled model
    if saving:
        with tempfile.TemporaryDirectory() as tmp:
            model = _tiny_model(y_true.shape)
            model.compile(optimizer="sgd", loss=_fresh(cls, init_kwargs))
            path = os.path.join(tmp, "model.keras")
            model.save(path)
            loaded = keras.saving.load_model(path)
            assert type(loaded.loss) is cls, f"{cls.__name__}: .keras load lost the loss"
            assert loaded.loss.get_config() == model.loss.get_config()
            _assert_close(
                _per_sample(loaded.loss, y_true, y_pred),
                _per_sample(model.loss, y_true, y_pred),
                rtol, atol, f"{cls.__name__}: loss value after .keras load",
            )
            model.save_weights(os.path.join(tmp, "w.weights.h5"))
            loaded.load_weights(os.path.join(tmp, "w.weights.h5"))

    # 5. MirroredStrategy (2 logical CPUs) == single device, one training step
    if mirrored:
        strategy = get_mirrored_strategy()
        assert strategy is not None, (
            "MirroredStrategy check needs 2 logical CPU devices: call "
            "tfrestore.testing.configure_logical_cpus() before TensorFlow starts"
        )
        assert y_true.shape[0] % 2 == 0, "use an even batch for the Mirrored check"
        ref = _tiny_model(y_true.shape)
        init = [w.copy() for w in ref.get_weights()]
        ref.compile(optimizer=keras.optimizers.SGD(0.1), loss=_fresh(cls, init_kwargs))
        h_ref = ref.fit(y_pred, y_true, batch_size=y_true.shape[0], epochs=1, shuffle=False, verbose=0)
        with strategy.scope():
            dist = _tiny_model(y_true.shape)
            dist.set_weights(init)
            dist.compile(optimizer=keras.optimizers.SGD(0.1), loss=_fresh(cls, init_kwargs))
        h_dist = dist.fit(y_pred, y_true, batch_size=y_true.shape[0], epochs=1, shuffle=False, verbose=0)
        _assert_close(
            h_dist.history["loss"][0], h_ref.history["loss"][0], mirrored_rtol, atol,
            f"{cls.__name__}: Mirrored loss != single-device loss",
        )
        for a, b in zip(dist.get_weights(), ref.get_weights()):
            _assert_close(
                a, b, mirrored_rtol, 1e-6,
                f"{cls.__name__}: Mirrored update != single-device update (scalar "
                f"return or missing all_gather?)",
            )

    # 6. gradient
    if gradient:
        results["gradient"] = check_gradient(_fresh(cls, init_kwargs), y_true, y_pred)
    if finite_differences:
        finite_difference_check(_fresh(cls, init_kwargs), y_true, y_pred, **(fd_kwargs or {}))

    # 7. mixed precision
    if mixed_precision:
        previous = keras.config.dtype_policy()
        keras.config.set_dtype_policy("mixed_float16")
        try:
            loss_m = _fresh(cls, init_kwargs)
            yp16 = tf.Variable(tf.cast(y_pred, tf.float16))
            with tf.GradientTape() as tape:
                v = loss_m(tf.constant(y_true), yp16)
            g = tape.gradient(v, yp16)
            assert np.isfinite(float(v)), f"{cls.__name__}: non-finite value under mixed_float16"
            assert g is not None and np.all(np.isfinite(np.asarray(g, np.float32))), (
                f"{cls.__name__}: non-finite gradient under mixed_float16"
            )
        finally:
            keras.config.set_dtype_policy(previous)

    # 8. bad inputs
    for bad_true, bad_pred, exc, match in bad_inputs:
        loss = _fresh(cls, init_kwargs)
        try:
            loss(bad_true, bad_pred)
        except exc as e:  # noqa: PERF203
            assert match in str(e), f"{cls.__name__}: error {e!r} does not mention {match!r}"
        else:
            raise AssertionError(f"{cls.__name__}: expected {exc.__name__} ({match!r})")
    return results
