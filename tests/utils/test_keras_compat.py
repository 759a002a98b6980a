"""The Keras internals tfrestore relies on still exist and behave as assumed."""

import keras
import numpy as np

from tfrestore.utils import keras_compat


def test_model_metric_list_is_what_model_metrics_extends():
    inp = keras.Input((2,))
    model = keras.Model(inp, keras.layers.Dense(1)(inp))
    model.compile(loss="mse")
    extra = keras.metrics.Mean(name="extra")
    keras_compat.model_metric_list(model).append(extra)
    assert extra in model.metrics


def test_reduce_weighted_values_matches_keras_loss_reduction():
    values = np.array([1.0, 2.0, 3.0, 6.0], "float32")
    sw = np.array([1.0, 0.0, 2.0, 1.0], "float32")
    got = keras_compat.reduce_weighted_values(values, sw, "sum_over_batch_size", "float32")
    np.testing.assert_allclose(float(got), (1 + 6 + 6) / 4, rtol=1e-6)


def test_wrap_loss_function_is_a_keras_loss():
    wrapped = keras_compat.wrap_loss_function(keras.losses.mean_absolute_error)
    assert isinstance(wrapped, keras.losses.Loss)
    assert wrapped.name == "mean_absolute_error"
