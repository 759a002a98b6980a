"""Run-time finiteness checks of loss inputs in graph mode (scalar checks only)."""

import numpy as np
import pytest
import tensorflow as tf

from tfrestore.losses import L1
from tfrestore.utils.validation import check_image


def test_graph_check_accepts_large_float16_and_rejects_inf():
    fn = tf.function(lambda x: check_image(x, "y_pred", loss_name="probe"))
    # Finite float16 values whose sum overflows float16: no false alarm.
    big = tf.fill([4, 64, 64, 3], tf.constant(60000.0, tf.float16))
    np.testing.assert_array_equal(fn(big).numpy(), big.numpy())
    for bad in (np.inf, -np.inf, np.nan):
        x = np.zeros((1, 8, 8, 3), np.float16)
        x[0, 3, 5, 1] = bad
        with pytest.raises(tf.errors.InvalidArgumentError, match="probe: `y_pred` contains NaN"):
            fn(tf.constant(x))


def test_check_adds_no_op_to_the_gradient():
    loss = L1(reduction=None)
    y = tf.constant(np.random.default_rng(0).uniform(size=(2, 8, 8, 3)).astype("float32"))

    @tf.function
    def grad(p):
        with tf.GradientTape() as tape:
            tape.watch(p)
            v = tf.reduce_sum(loss(y, p))
        return tape.gradient(v, p)

    graph = grad.get_concrete_function(tf.TensorSpec(y.shape)).graph
    ops = graph.get_operations()
    checks = [op for op in ops if op.type == "CheckNumerics"]
    # tf.debugging.Assert in a tf.function is an If op named .../AssertGuard.
    asserts = [op for op in ops if op.name.endswith("AssertGuard")]
    # The inputs are checked through scalar reductions (Assert on min/max/sum), the
    # loss value and its gradient by (B,) checks: no check of a whole image,
    # forward or backward.
    assert checks and asserts
    assert all(op.inputs[0].shape.rank <= 1 for op in checks)
    assert all(t.shape.rank == 0 for op in asserts for t in op.inputs)
    np.testing.assert_allclose(grad(y + 0.1).numpy(), np.full(y.shape, 1 / 192), rtol=1e-5)
