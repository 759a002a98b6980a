"""``TestCase``: the conformance checks every tfrestore loss and restorer passes.

Each ``run_*_test`` method does one check and raises ``AssertionError`` on failure;
:meth:`TestCase.run_loss_test` and :meth:`TestCase.run_model_test` compose them. Subclass
it in a test file (pytest collects ``unittest`` classes) and parametrise with
``absl.testing.parameterized``::

    class L1Test(TestCase):
        def test_conformance(self):
            y, p = self.image_pair((4, 16, 16, 3))
            self.run_loss_test(L1, {}, y, p)

The distribution check needs 2 logical CPU devices, configured before TensorFlow
initialises its devices: call :func:`configure_logical_cpus` first (``tests/conftest.py``
does).
"""

from __future__ import annotations

import functools
import inspect
import os
import tempfile

import keras
import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from tfrestore.testing.loss_harness import (
    check_gradient,
    finite_difference_check,
    get_mirrored_strategy,
)

__all__ = ["TestCase"]


def _factory(loss):
    """A zero-argument callable returning the loss: ``loss`` itself when it is an
    instance (stateless checks may share it), else ``loss`` is already a factory."""
    if isinstance(loss, keras.losses.Loss):
        return lambda: loss
    return loss


def _require_factory(loss, why):
    if isinstance(loss, keras.losses.Loss):
        raise TypeError(f"pass a zero-argument factory of {_name(loss)}, not an instance: {why}")
    return loss


def _name(loss):
    return getattr(loss, "name", None) or type(loss).__name__


def _tiny_model(shape, seed=0):
    """Residual 3x3 conv: a trainable stand-in restorer for losses' fit checks."""
    c = shape[-1]
    inp = keras.Input(shape=shape[1:])
    x = keras.layers.Conv2D(
        c, 3, padding="same",
        kernel_initializer=keras.initializers.RandomNormal(stddev=0.05, seed=seed),
        bias_initializer="zeros", name="conv",
    )(inp)
    out = keras.layers.Add(name="residual")([inp, x])
    return keras.Model(inp, out, name="tiny_restorer")


def _shapes(value):
    return [tuple(t.shape) for t in keras.tree.flatten(value)]


class TestCase(parameterized.TestCase):
    """Base class for tfrestore tests; ``self.rng`` is a fresh seeded generator per test."""

    def setUp(self):
        super().setUp()
        self.rng = np.random.default_rng(1234)

    def image_pair(self, shape, sigma=0.1):
        """Uniform targets and a clipped noisy prediction, float32 NHWC."""
        y = self.rng.uniform(size=shape).astype("float32")
        return y, np.clip(y + self.rng.normal(0, sigma, size=shape), 0, 1).astype("float32")

    def assertAllClose(self, a, b, rtol=1e-6, atol=1e-6, msg=""):  # noqa: N802 (unittest style)
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol, err_msg=msg)

    # ------------------------------------------------------------------ generic checks
    def run_serialization_test(self, obj):
        """``get_config``/``from_config`` and ``keras.saving`` round trips keep the config,
        and every ``__init__`` argument is in the config.

        Args:
            obj: a Keras-serialisable object (loss, layer, metric).
        Returns:
            the ``from_config`` clone.
        """
        cls = type(obj)
        config = obj.get_config()
        clone = cls.from_config(config)
        self.assertEqual(clone.get_config(), config, f"{cls.__name__}: get_config round trip")
        de = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(obj))
        self.assertIs(
            type(de), cls,
            f"{cls.__name__}: keras.saving round trip gave {type(de).__name__}; is it registered "
            f"with register_keras_serializable(package='tfrestore')?",
        )
        self.assertEqual(de.get_config(), config, f"{cls.__name__}: keras.saving round trip")
        params = [
            p.name for p in inspect.signature(cls.__init__).parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
        ]
        missing = [p for p in params if p not in config]
        self.assertFalse(missing, f"{cls.__name__}.get_config() lacks __init__ arguments {missing}")
        return clone

    def run_graph_test(self, loss, y_true, y_pred, *, rtol=1e-4, atol=1e-6, xla_rtol=None):
        """Per-sample values agree in eager mode, ``tf.function`` and XLA.

        Args:
            loss: a loss instance, or a zero-argument factory for losses with state
                (each mode then gets a fresh instance called once).
            y_true, y_pred: float tensor (B, H, W, C). The batches.
            xla_rtol: float or None. Tolerance of the XLA comparison (default ``rtol``).
        Returns:
            the eager per-sample values.
        """
        make = _factory(loss)
        y_true, y_pred = tf.constant(y_true, tf.float32), tf.constant(y_pred, tf.float32)
        eager = np.asarray(make().call(y_true, y_pred))
        graph_loss, xla_loss = make(), make()
        graph = tf.function(lambda a, b: graph_loss.call(a, b))(y_true, y_pred)
        self.assertAllClose(graph, eager, rtol, atol, f"{_name(graph_loss)}: tf.function != eager")
        xla = tf.function(lambda a, b: xla_loss.call(a, b), jit_compile=True)(y_true, y_pred)
        self.assertAllClose(xla, eager, xla_rtol or rtol, atol, f"{_name(xla_loss)}: XLA != eager")
        return eager

    def run_distribution_test(self, loss, y_true, y_pred, *, rtol=1e-4, atol=1e-6):
        """One ``fit`` step under ``MirroredStrategy`` (2 logical CPUs) equals a
        single-device step: same loss, same updated weights. This catches scalar returns
        and sets that need an ``all_gather``.

        Args:
            loss: a zero-argument factory (the replicated model needs its own instance,
                built inside the strategy scope).
            y_true, y_pred: NHWC batches with an even batch size.
        """
        _require_factory(loss, "the replicated model builds its own inside the strategy scope")
        strategy = get_mirrored_strategy()
        self.assertIsNotNone(
            strategy,
            "the distribution check needs 2 logical CPU devices: call "
            "tfrestore.testing.configure_logical_cpus() before TensorFlow starts",
        )
        y_true, y_pred = np.asarray(y_true, np.float32), np.asarray(y_pred, np.float32)
        batch = y_true.shape[0]
        self.assertEqual(batch % 2, 0, "use an even batch for the distribution check")
        ref = _tiny_model(y_true.shape)
        init = [w.copy() for w in ref.get_weights()]
        ref.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss())
        h_ref = ref.fit(y_pred, y_true, batch_size=batch, epochs=1, shuffle=False, verbose=0)
        with strategy.scope():
            dist = _tiny_model(y_true.shape)
            dist.set_weights(init)
            dist.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss())
        h_dist = dist.fit(y_pred, y_true, batch_size=batch, epochs=1, shuffle=False, verbose=0)
        name = _name(dist.loss)
        self.assertAllClose(
            h_dist.history["loss"][0], h_ref.history["loss"][0], rtol, atol,
            f"{name}: Mirrored loss != single-device loss",
        )
        for a, b in zip(dist.get_weights(), ref.get_weights()):
            self.assertAllClose(
                a, b, rtol, 1e-6,
                f"{name}: Mirrored update != single-device update (scalar return or "
                f"missing all_gather?)",
            )

    def run_precision_test(self, loss, y_true, y_pred):
        """Under the ``mixed_float16`` policy the loss value and its gradient w.r.t. a
        float16 prediction are finite.

        Args:
            loss: a zero-argument factory (the instance must be built under the policy).
        """
        _require_factory(loss, "the instance must be built under the mixed_float16 policy")
        previous = keras.config.dtype_policy()
        keras.config.set_dtype_policy("mixed_float16")
        try:
            instance = loss()
            yp16 = tf.Variable(tf.cast(y_pred, tf.float16))
            with tf.GradientTape() as tape:
                value = instance(tf.constant(y_true, tf.float32), yp16)
            grad = tape.gradient(value, yp16)
        finally:
            keras.config.set_dtype_policy(previous)
        name = _name(instance)
        self.assertTrue(np.isfinite(float(value)), f"{name}: non-finite value under mixed_float16")
        self.assertIsNotNone(grad, f"{name}: no gradient under mixed_float16")
        self.assertTrue(
            np.all(np.isfinite(np.asarray(grad, np.float32))),
            f"{name}: non-finite gradient under mixed_float16",
        )

    def run_gradient_test(self, loss, y_true, y_pred, *, finite_differences=None):
        """The gradient of the reduced loss w.r.t. ``y_pred`` is finite and non-zero.

        Args:
            loss: a loss instance or a zero-argument factory.
            finite_differences: None, or keyword arguments of
                :func:`finite_difference_check` (``{}`` for its defaults) to also compare
                the directional derivative along a random direction with central
                differences.
        Returns:
            the gradient as a NumPy array.
        """
        make = _factory(loss)
        grad = check_gradient(make(), y_true, y_pred)
        if finite_differences is not None:
            finite_difference_check(make(), y_true, y_pred, **finite_differences)
        return grad

    def run_bad_input_test(self, loss, bad_inputs):
        """Each bad input raises the documented exception.

        Args:
            loss: a loss instance or a zero-argument factory.
            bad_inputs: iterable of ``(y_true, y_pred, exception_type, match)``; ``match``
                is a substring expected in the message.
        """
        make = _factory(loss)
        for bad_true, bad_pred, exc, match in bad_inputs:
            instance = make()
            with self.assertRaises(exc, msg=f"{_name(instance)}: expected {exc.__name__}") as cm:
                instance(bad_true, bad_pred)
            self.assertIn(match, str(cm.exception), f"{_name(instance)}: wrong message")

    def run_loss_saving_test(self, loss, y_true, y_pred, *, rtol=1e-4, atol=1e-6):
        """A model compiled with the loss survives ``.keras`` save/load: same loss class,
        config and value; its weights file loads back.

        Args:
            loss: a loss instance or a zero-argument factory.
        """
        instance = _factory(loss)()
        y_true, y_pred = tf.constant(y_true, tf.float32), tf.constant(y_pred, tf.float32)
        with tempfile.TemporaryDirectory() as tmp:
            model = _tiny_model(tuple(y_true.shape))
            model.compile(optimizer="sgd", loss=instance)
            path = os.path.join(tmp, "model.keras")
            model.save(path)
            loaded = keras.saving.load_model(path)
            name = _name(instance)
            self.assertIs(type(loaded.loss), type(instance), f"{name}: .keras load lost the loss")
            self.assertEqual(loaded.loss.get_config(), instance.get_config())
            self.assertAllClose(
                loaded.loss.call(y_true, y_pred), instance.call(y_true, y_pred), rtol, atol,
                f"{name}: loss value after .keras load",
            )
            model.save_weights(os.path.join(tmp, "w.weights.h5"))
            loaded.load_weights(os.path.join(tmp, "w.weights.h5"))

    # ------------------------------------------------------------------ losses
    def run_loss_test(
        self,
        cls,
        init_kwargs,
        y_true,
        y_pred,
        *,
        rtol=1e-4,
        atol=1e-6,
        xla_rtol=None,
        mirrored_rtol=1e-4,
        finite_differences=None,
        bad_inputs=(),
        stateful=False,
    ):
        """Every conformance check of a loss, each on fresh instances: per-sample ``(B,)``
        values, reductions, graph/XLA, config round trips, compiled-model ``.keras`` round
        trip, distribution, gradient, mixed precision and bad inputs.

        Args:
            cls: type. The loss class; ``init_kwargs`` build each fresh instance.
            y_true, y_pred: float tensor (B, H, W, C). Batches (even ``B``, for the
                distribution check).
            rtol, atol: float. Tolerances of eager/graph/saved comparisons.
            xla_rtol, mirrored_rtol: float or None. Tolerances of the XLA and distribution
                checks.
            finite_differences: dict or None. As in :meth:`run_gradient_test`.
            bad_inputs: sequence. As in :meth:`run_bad_input_test`.
            stateful: bool. The loss changes state on each call (a queue): the value of
                the ``from_config`` clone is then not compared with an instance called before.
        Returns:
            dict with the eager per-sample values (``"eager"``) and the gradient.
        """
        make = functools.partial(cls, **dict(init_kwargs))
        y_true = np.asarray(y_true, np.float32)
        y_pred = np.asarray(y_pred, np.float32)
        eager = self.run_per_sample_test(make, y_true, y_pred)
        self.run_graph_test(make, y_true, y_pred, rtol=rtol, atol=atol, xla_rtol=xla_rtol)
        clone = self.run_serialization_test(make())
        if not stateful:
            self.assertAllClose(
                clone.call(y_true, y_pred), eager, rtol, atol, f"{cls.__name__}: from_config value"
            )
        self.run_loss_saving_test(make, y_true, y_pred, rtol=rtol, atol=atol)
        self.run_distribution_test(make, y_true, y_pred, rtol=mirrored_rtol, atol=atol)
        grad = self.run_gradient_test(make, y_true, y_pred, finite_differences=finite_differences)
        self.run_precision_test(make, y_true, y_pred)
        self.run_bad_input_test(make, bad_inputs)
        return {"eager": eager, "gradient": grad}

    def run_per_sample_test(self, loss, y_true, y_pred):
        """``call`` returns finite per-sample values of shape ``(B,)`` and the reduced loss
        is their mean.

        Args:
            loss: a loss instance or a zero-argument factory.
        Returns:
            the per-sample values.
        """
        make = _factory(loss)
        instance = make()
        y_true, y_pred = tf.constant(y_true, tf.float32), tf.constant(y_pred, tf.float32)
        per_sample = np.asarray(instance.call(y_true, y_pred))
        batch = y_true.shape[0]
        self.assertEqual(
            per_sample.shape, (batch,),
            f"{_name(instance)}.call must return per-sample values of shape ({batch},)",
        )
        self.assertTrue(np.all(np.isfinite(per_sample)), f"non-finite loss values {per_sample}")
        reduced = float(make()(y_true, y_pred))
        self.assertAllClose(reduced, per_sample.mean(), 1e-5, 1e-6, "reduced != mean per-sample")
        return per_sample

    # ------------------------------------------------------------------ restorers
    def run_model_test(
        self,
        builder,
        init_kwargs,
        input_shape,
        *,
        output_shape=None,
        make_inputs=None,
        multiple=1,
        offset=0,
        atol=0.0,
    ):
        """Every conformance check of a restorer: output shape, any input size, ``.keras``
        round trip, gradient to the weights, mixed precision (float32 outputs, see
        :meth:`run_model_precision_test`).

        Args:
            builder: callable. The model factory (``DnCNN``...); ``init_kwargs`` build
                each model.
            input_shape: tuple (B, H, W, C). Shape of the image input.
            output_shape: callable or None. Maps an input shape to the expected output
                shape (a list of shapes for several outputs); default: the input shape.
            make_inputs: callable or None. Maps an image batch to the model's inputs (e.g.
                adds a noise level); default: the batch itself.
            multiple, offset: int. The model accepts heights and widths
                ``offset + k * multiple`` only; the any-size check uses ``k`` = 3 and 5
                (with ``multiple=1``: 3x5 pixels, sizes that are multiples of nothing).
            atol: float. Tolerance between the outputs of the saved and reloaded model.
        """
        make_inputs = make_inputs or (lambda x: x)
        output_shape = output_shape or (lambda s: tuple(s))
        model = builder(**dict(init_kwargs))
        x = self.rng.uniform(size=input_shape).astype("float32")
        self.run_model_shape_test(model, make_inputs(x), output_shape(input_shape))
        batch = input_shape[0] // 2 or 1
        size = (batch, offset + 3 * multiple, offset + 5 * multiple, input_shape[-1])
        small = self.rng.uniform(size=size).astype("float32")
        self.run_model_shape_test(model, make_inputs(small), output_shape(size))
        self.run_model_saving_test(model, make_inputs(x), atol=atol)
        self.run_model_gradient_test(model, make_inputs(x))
        self.run_model_precision_test(
            functools.partial(builder, **dict(init_kwargs)), make_inputs(x)
        )

    def run_model_shape_test(self, model, inputs, expected):
        """The model maps ``inputs`` to outputs of the ``expected`` shape(s)."""
        expected = expected if isinstance(expected, list) else [expected]
        got = _shapes(model(inputs))
        self.assertEqual(got, [tuple(s) for s in expected], f"{model.name}: output shapes")

    def run_model_saving_test(self, model, inputs, *, atol=0.0):
        """``.keras`` save/load keeps the class, the parameter count and the outputs.

        Returns:
            the reloaded model.
        """
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, f"{model.name}.keras")
            model.save(path)
            loaded = keras.saving.load_model(path)
        self.assertIs(type(loaded), type(model), f"{model.name}: .keras load changed the class")
        self.assertEqual(loaded.count_params(), model.count_params())
        before = keras.tree.flatten(model.predict(inputs, verbose=0))
        after = keras.tree.flatten(loaded.predict(inputs, verbose=0))
        for a, b in zip(before, after, strict=True):
            self.assertAllClose(b, a, 0.0, atol, f"{model.name}: output after .keras load")
        return loaded

    def run_model_gradient_test(self, model, inputs):
        """In a training step, every trainable weight gets a finite gradient and some
        gradient is non-zero."""
        with tf.GradientTape() as tape:
            outputs = model(inputs, training=True)
            loss = tf.add_n(
                [tf.reduce_mean(tf.cast(o, tf.float32) ** 2) for o in keras.tree.flatten(outputs)]
            )
        weights = model.trainable_weights
        self.assertTrue(weights, f"{model.name}: no trainable weights")
        grads = tape.gradient(loss, weights)
        for w, g in zip(weights, grads):
            self.assertIsNotNone(g, f"{model.name}: no gradient reaches {w.path}")
            self.assertTrue(
                np.all(np.isfinite(g)), f"{model.name}: non-finite gradient of {w.path}"
            )
        self.assertTrue(
            any(np.any(np.asarray(g) != 0) for g in grads), f"{model.name}: all gradients are 0"
        )

    def run_model_precision_test(self, build, inputs):
        """Built under ``mixed_float16``, the model keeps float32 variables, computes in
        float16, returns finite float32 outputs (Keras' mixed-precision practice: the last
        layer runs in float32, so losses and metrics see float32) and trains with finite
        gradients.

        Args:
            build: a zero-argument model factory (called under the policy).
        """
        previous = keras.config.dtype_policy()
        keras.config.set_dtype_policy("mixed_float16")
        try:
            model = build()
            self.assertTrue(
                all(v.dtype == "float32" for v in model.weights),
                f"{model.name}: variables must stay float32 under mixed_float16",
            )
            layers = [
                la for la in model._flatten_layers(include_self=False)
                if not isinstance(la, (keras.Model, keras.layers.InputLayer))
            ]
            self.assertTrue(
                any(la.compute_dtype == "float16" for la in layers),
                f"{model.name}: no layer computes in float16 under mixed_float16",
            )
            outputs = keras.tree.flatten(model(inputs))
            got = [o.dtype.name for o in outputs]
            self.assertEqual(
                got, ["float32"] * len(outputs),
                f"{model.name}: output dtypes under mixed_float16 (give the final layer "
                f"dtype='float32')",
            )
            for o in outputs:
                self.assertTrue(
                    np.all(np.isfinite(np.asarray(o, np.float32))),
                    f"{model.name}: non-finite output under mixed_float16",
                )
            self.run_model_gradient_test(model, inputs)
        finally:
            keras.config.set_dtype_policy(previous)
