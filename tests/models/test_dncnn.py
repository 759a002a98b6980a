import keras
import numpy as np
import pytest

from tfrestore.losses import L1, MSE
from tfrestore.models import DnCNN, trainable_params
from tfrestore.testing import TestCase


def test_dncnn_s_parameter_count():
    # cszn/DnCNN TrainingCodes/dncnn_keras: conv1 with bias, 15 x (conv w/o bias + BN),
    # last conv w/o bias.
    expected = (9 * 1 * 64 + 64) + 15 * (9 * 64 * 64 + 2 * 64) + 9 * 64 * 1
    assert expected == 556_096
    model = DnCNN()
    assert trainable_params(model) == expected
    assert model.count_params() == expected + 15 * 2 * 64  # + BN moving mean/variance
    # The same graph with a bias-free first convolution is the often quoted 556,032.
    assert expected - 64 == 556_032


def test_colour_blind_variant_count():
    # CDnCNN-B: depth 20, 3 channels.
    expected = (9 * 3 * 64 + 64) + 18 * (9 * 64 * 64 + 128) + 9 * 64 * 3
    assert trainable_params(DnCNN(depth=20, channels=3)) == expected


def test_residual_learning_output_is_input_minus_noise(rng):
    model = DnCNN(channels=3, depth=4, filters=8)
    x = rng.normal(size=(2, 9, 11, 3)).astype("float32")
    noise_branch = keras.Model(model.input, model.get_layer("conv4").output)
    np.testing.assert_allclose(model(x).numpy(), x - noise_branch(x).numpy(), atol=1e-6)
    plain = DnCNN(channels=3, depth=4, filters=8, residual=False, batch_norm=False)
    assert trainable_params(plain) == (9 * 3 * 8 + 8) + 2 * (9 * 64 + 8) + 9 * 8 * 3


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 7, 13, 1), (1, 32, 5, 1)])
def test_any_size(shape):
    assert DnCNN(depth=3, filters=4)(np.zeros(shape, "float32")).shape == shape


def test_bad_inputs():
    model = DnCNN(channels=1, depth=3, filters=4)
    with pytest.raises(ValueError, match="DnCNN: `inputs` must have 1 channel"):
        model(np.zeros((1, 8, 8, 3), "float32"))
    with pytest.raises(ValueError, match="channels-first"):
        model(np.zeros((1, 1, 8, 8), "float32"))
    with pytest.raises(ValueError, match="depth"):
        DnCNN(depth=1)


def test_batch_norm_momentum_follows_the_authors_keras_code(rng):
    # momentum 0: inference uses the last training batch's statistics, so a short run is
    # usable at inference (Keras' 0.99 keeps mean 0 / variance 1 for thousands of steps).
    model = DnCNN(channels=3, depth=4, filters=8)
    assert model.get_layer("bn2").momentum == 0.0
    assert DnCNN(depth=4, filters=8, bn_momentum=0.1).get_layer("bn3").momentum == 0.1
    x = rng.uniform(size=(2, 8, 8, 3)).astype("float32")
    model(x, training=True)
    bn = model.get_layer("bn2")
    feats = keras.Model(model.input, model.get_layer("conv2").output)(x).numpy()
    np.testing.assert_allclose(bn.moving_mean.numpy(), feats.mean(axis=(0, 1, 2)), atol=1e-5)


def test_mixed_precision_fit_step(rng):
    # Keras' mixed-precision practice end to end: float16 layers, a float32 final layer (the
    # residual subtraction), float32 outputs for the losses, a loss-scaled optimizer.
    keras.config.set_dtype_policy("mixed_float16")
    model = DnCNN(channels=3, depth=3, filters=4)
    assert model.get_layer("conv2").compute_dtype == "float16"
    assert model.get_layer("subtract_noise").compute_dtype == "float32"
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=[L1(), MSE()], loss_weights=[1, 0.1])
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    y = rng.uniform(size=(4, 8, 8, 3)).astype("float32")
    x = (y + rng.normal(0, 0.1, size=y.shape)).astype("float32")
    before = [w.copy() for w in model.get_weights()]
    history = model.fit(x, y, batch_size=2, epochs=1, verbose=0).history
    assert all(np.isfinite(history[k]).all() for k in ("loss", "l1", "mse"))
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    assert all(w.dtype == "float32" for w in model.weights)
    assert model.predict(x, verbose=0).dtype == np.float32


def test_final_layer_is_float32_only_under_a_mixed_policy():
    plain = DnCNN(depth=3, filters=4)
    keras.config.set_dtype_policy("mixed_float16")
    mixed = DnCNN(depth=3, filters=4)
    mixed_nores = DnCNN(depth=3, filters=4, residual=False)
    keras.config.set_dtype_policy("float32")
    assert plain.get_layer("subtract_noise").dtype_policy.name == "float32"
    assert mixed.get_layer("subtract_noise").dtype_policy.name == "float32"
    assert mixed.get_layer("conv3").dtype_policy.name == "mixed_float16"
    # without the residual the last convolution is the final layer
    assert mixed_nores.get_layer("conv3").dtype_policy.name == "float32"
    # the same layers and weights: a mixed model's weights load into a float32 one
    assert [la.name for la in mixed.layers] == [la.name for la in plain.layers]
    plain.set_weights(mixed.get_weights())


class DnCNNTest(TestCase):
    def test_model(self):
        self.run_model_test(DnCNN, {"channels": 3, "depth": 3, "filters": 8}, (2, 16, 16, 3))

    def test_roundtrip(self):
        self.run_model_saving_test(
            DnCNN(channels=3, depth=4, filters=8),
            self.rng.uniform(size=(2, 10, 10, 3)).astype("float32"),
        )
