"""The Keras internals tfrestore relies on still exist and behave as assumed."""

import keras
import numpy as np
import pytest

from tfrestore.utils import keras_compat


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


def test_compute_loss_hook_takes_the_training_flag():
    """RestorationModel overrides Keras' documented ``compute_loss``; its
    ``training`` argument (Keras 3.3+) is what freezes the feature queues."""
    import inspect

    params = inspect.signature(keras.Model.compute_loss).parameters
    assert list(params)[1:6] == ["x", "y", "y_pred", "sample_weight", "training"], (
        f"Keras {keras.__version__} changed Model.compute_loss{inspect.signature(keras.Model.compute_loss)}; "
        "update tfrestore.models.RestorationModel.compute_loss"
    )
