"""The Keras internals tfrestore relies on still exist and behave as assumed."""

import keras
import numpy as np
import pytest

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


def test_every_pinned_internal_is_still_there():
    missing = keras_compat.missing_internals()
    assert not missing, (
        f"Keras {keras.__version__} moved or changed internals that "
        "tfrestore/utils/keras_compat.py relies on (pinned in pyproject.toml); update "
        "keras_compat before changing the pin:\n  " + "\n  ".join(missing)
    )


def _dense_model():
    inp = keras.Input((2,))
    return keras.Model(inp, keras.layers.Dense(1, name="d")(inp))


def test_symbolic_build_builds_the_compiled_metrics():
    model = _dense_model()
    model.compile(loss="mse", metrics=["mae"])
    x, y = np.ones((2, 2), "float32"), np.ones((2, 1), "float32")
    with pytest.raises(ValueError, match="not yet been built"):
        model.get_metrics_result()
    keras_compat.symbolic_build(model, (x, y))
    assert set(model.get_metrics_result()) == {"loss", "mae"}


def test_callback_list_history_is_the_history_of_the_list():
    cbs = keras.callbacks.CallbackList([], add_history=True, model=_dense_model())
    assert isinstance(keras_compat.callback_list_history(cbs), keras.callbacks.History)


def test_num_workers_attribute_of_multi_worker_strategies():
    import inspect

    from tensorflow.python.distribute import collective_all_reduce_strategy as cars

    source = inspect.getsource(cars.CollectiveAllReduceExtended)
    assert "self._num_workers =" in source, (
        "tf.distribute's CollectiveAllReduceExtended no longer sets `_num_workers`; "
        "update keras_compat.num_workers"
    )


def test_producing_layer_of_a_functional_tensor():
    model = _dense_model()
    assert keras_compat.producing_layer(model.get_layer("d").output) is model.get_layer("d")
    assert keras_compat.producing_layer(model.get_layer("d").input) is model.layers[0]


def test_backing_variable_is_the_tf_variable_under_a_keras_variable():
    import tensorflow as tf

    model = _dense_model()
    kernel = model.get_layer("d").kernel
    old = keras_compat.backing_variable(kernel)
    assert isinstance(old, tf.Variable) and old.trainable
    keras_compat.set_backing_variable(kernel, tf.Variable(tf.fill(old.shape, 3.0), trainable=False))
    assert not keras_compat.backing_variable(kernel).trainable
    np.testing.assert_array_equal(np.asarray(kernel.value), np.full(old.shape, 3.0, "float32"))


class _Probe(keras.losses.Loss):
    """Records what the stack walks see while Keras runs the loss."""

    def __init__(self, seen):
        super().__init__(name="probe")
        self.seen = seen

    def call(self, y_true, y_pred):
        self.seen.append((keras_compat.find_compile_loss(), keras_compat.keras_step_mode()))
        return keras.ops.mean(keras.ops.square(y_true - y_pred), axis=-1)


def test_stack_walks_find_compile_loss_and_the_step_mode():
    seen = []
    model = _dense_model()
    model.compile(optimizer="sgd", loss=_Probe(seen))
    x, y = np.ones((4, 2), "float32"), np.ones((4, 1), "float32")
    model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    model.evaluate(x, y, batch_size=4, verbose=0)
    assert seen, "the loss was never run"
    for found, _ in seen:
        assert found is not None, (
            "keras_compat.find_compile_loss() no longer finds Keras' CompileLoss on the "
            "stack: the loss=[a, b] single-output check is silently off"
        )
        n_losses, y_pred = found
        assert n_losses == 1 and tuple(y_pred.shape)[-1] == 1
    modes = {mode for _, mode in seen}
    assert modes == {"train", "eval"}, (
        f"keras_compat.keras_step_mode() saw {modes} during fit + evaluate, expected "
        "train and eval: the feature queues would enqueue during evaluation"
    )
    assert keras_compat.find_compile_loss() is None and keras_compat.keras_step_mode() is None
