"""tfrestore.testing.TestCase: each check fails on an object that breaks its contract
(a harness that cannot fail guards nothing)."""

import keras
import numpy as np
import tensorflow as tf

from tfrestore.losses import L1
from tfrestore.models import DnCNN
from tfrestore.testing import TestCase

_PKG = "tfrestore_harness_tests"


@keras.saving.register_keras_serializable(package=_PKG)
class PowerLoss(keras.losses.Loss):
    """Per-sample mean |d|^power; ``get_config`` forgets ``power`` unless ``complete``."""

    def __init__(self, power=2.0, complete=True, name="power_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.power, self.complete = power, complete

    def call(self, y_true, y_pred):
        return tf.reduce_mean(tf.abs(y_pred - y_true) ** self.power, axis=[1, 2, 3])

    def get_config(self):
        config = {**super().get_config(), "complete": self.complete}
        return {**config, "power": self.power} if self.complete else config


@keras.saving.register_keras_serializable(package=_PKG)
class EagerOnlyLoss(PowerLoss):
    """A different value when traced: what a Python-side branch on tensor values does."""

    def call(self, y_true, y_pred):
        value = super().call(y_true, y_pred)
        return value if tf.executing_eagerly() else 2.0 * value


@keras.saving.register_keras_serializable(package=_PKG)
class BatchCentredLoss(PowerLoss):
    """Centres y_pred on the batch mean: a set statistic that needs an all_gather."""

    def call(self, y_true, y_pred):
        centred = y_pred - tf.reduce_mean(y_pred, axis=0, keepdims=True)
        return tf.reduce_mean(tf.square(centred - y_true), axis=[1, 2, 3])


@keras.saving.register_keras_serializable(package=_PKG)
class OverflowLoss(PowerLoss):
    """exp(20 y_pred) in float16 (max 65504) overflows for y_pred > 0.56."""

    def call(self, y_true, y_pred):
        e = tf.exp(20.0 * tf.cast(y_pred, tf.float16))
        return tf.reduce_mean(tf.cast(e, tf.float32) - y_true, [1, 2, 3])


@keras.saving.register_keras_serializable(package=_PKG)
class Scale(keras.layers.Layer):
    """Multiplies by ``factor``; ``get_config`` forgets it, so a reload changes outputs."""

    def __init__(self, factor=1.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, x):
        return x * self.factor

    def get_config(self):
        config = super().get_config()
        config.pop("factor", None)
        return config


@keras.saving.register_keras_serializable(package=_PKG)
class UnusedWeight(keras.layers.Layer):
    """A trainable weight no output depends on."""

    def build(self, shape):
        self.unused = self.add_weight(shape=(1,), name="unused")

    def call(self, x):
        return x


def _model(layer):
    inp = keras.Input((None, None, 3))
    return keras.Model(inp, layer(keras.layers.Conv2D(3, 3, padding="same")(inp)))


def _float32_model():
    inp = keras.Input((None, None, 3))
    return keras.Model(inp, keras.layers.Conv2D(3, 3, padding="same", dtype="float32")(inp))


class TestCaseChecksTest(TestCase):
    def setUp(self):
        super().setUp()
        self.y, self.p = self.image_pair((2, 8, 8, 3))

    def test_serialization_needs_every_init_argument_in_the_config(self):
        self.run_serialization_test(PowerLoss())
        with self.assertRaisesRegex(AssertionError, r"lacks __init__ arguments \['power'\]"):
            self.run_serialization_test(PowerLoss(complete=False))

    def test_graph_check_compares_traced_and_eager_values(self):
        self.run_graph_test(PowerLoss(), self.y, self.p)
        with self.assertRaisesRegex(AssertionError, "tf.function != eager"):
            self.run_graph_test(EagerOnlyLoss(), self.y, self.p)

    def test_per_sample_check_needs_shape_b(self):
        self.run_per_sample_test(PowerLoss(), self.y, self.p)
        scalar = PowerLoss()
        scalar.call = lambda a, b: tf.reduce_mean(tf.abs(b - a))
        with self.assertRaisesRegex(AssertionError, r"per-sample values of shape \(2,\)"):
            self.run_per_sample_test(scalar, self.y, self.p)

    def test_bad_input_check_needs_the_exception_and_its_message(self):
        mismatch = (self.y, self.p[:, :, :7], ValueError, "same shape")
        self.run_bad_input_test(L1(), [mismatch])
        with self.assertRaisesRegex(AssertionError, "wrong message"):
            self.run_bad_input_test(L1(), [mismatch[:3] + ("no such words",)])
        with self.assertRaisesRegex(AssertionError, "expected ValueError"):
            self.run_bad_input_test(L1(), [(self.y, self.p, ValueError, "same shape")])

    def test_gradient_check_needs_a_gradient(self):
        self.run_gradient_test(PowerLoss(), self.y, self.p, finite_differences={})
        blocked = PowerLoss()
        blocked.call = lambda a, b: PowerLoss.call(blocked, a, tf.stop_gradient(b))
        with self.assertRaisesRegex(AssertionError, "no gradient reaches y_pred"):
            self.run_gradient_test(blocked, self.y, self.p)

    def test_precision_check_needs_finite_float16_values(self):
        small = 0.5 * self.p  # exp(20 * 0.5) = 22026 fits float16
        self.run_precision_test(OverflowLoss, self.y, small)
        with self.assertRaisesRegex(AssertionError, "non-finite value under mixed_float16"):
            self.run_precision_test(OverflowLoss, self.y, np.full_like(self.p, 0.9))

    def test_distribution_check_catches_replica_local_set_statistics(self):
        with self.assertRaisesRegex(TypeError, "factory"):
            self.run_distribution_test(PowerLoss(), self.y, self.p)
        self.run_distribution_test(PowerLoss, self.y, self.p)
        with self.assertRaisesRegex(AssertionError, "Mirrored loss != single-device loss"):
            self.run_distribution_test(BatchCentredLoss, self.y, self.p)

    def test_model_saving_check_compares_outputs(self):
        self.run_model_saving_test(_model(Scale(1.0)), self.p)
        with self.assertRaisesRegex(AssertionError, "output after .keras load"):
            self.run_model_saving_test(_model(Scale(3.0)), self.p)

    def test_model_gradient_check_needs_every_weight(self):
        self.run_model_gradient_test(_model(Scale(1.0)), self.p)
        with self.assertRaisesRegex(AssertionError, "no gradient reaches"):
            self.run_model_gradient_test(_model(UnusedWeight()), self.p)

    def test_model_shape_and_precision_checks(self):
        model = DnCNN(channels=3, depth=3, filters=4)
        with self.assertRaisesRegex(AssertionError, "output shapes"):
            self.run_model_shape_test(model, self.p, (2, 16, 8, 3))
        self.run_model_precision_test(lambda: DnCNN(channels=3, depth=3, filters=4), self.p)
        # a float16 final layer (Keras' practice is float32 outputs under mixed precision)
        with self.assertRaisesRegex(AssertionError, "output dtypes under mixed_float16"):
            self.run_model_precision_test(lambda: _model(Scale(1.0)), self.p)
        # a model that ignores the policy (every layer float32) is no mixed-precision model
        with self.assertRaisesRegex(AssertionError, "no layer computes in float16"):
            self.run_model_precision_test(_float32_model, self.p)
