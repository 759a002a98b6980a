import numpy as np
import pytest
import tensorflow as tf
from absl.testing import parameterized

from tfrestore.models import FFDNet, trainable_params
from tfrestore.testing import TestCase


def _copy_weights(src, dst):
    for layer in src.layers:
        if layer.weights:
            dst.get_layer(layer.name).set_weights(layer.get_weights())


@pytest.mark.parametrize("channels,expected", [(1, 485_316), (3, 852_108)])
def test_parameter_counts(channels, expected):
    # KAIR network_ffdnet.py: head (4C+1 -> nc), nb-2 body convs, tail (nc -> 4C), all with bias.
    nb, nc = (15, 64) if channels == 1 else (12, 96)
    arithmetic = (
        (9 * (4 * channels + 1) * nc + nc)
        + (nb - 2) * (9 * nc * nc + nc)
        + (9 * nc * 4 * channels + 4 * channels)
    )
    assert arithmetic == expected
    assert trainable_params(FFDNet(channels=channels)) == expected


@pytest.mark.parametrize("shape", [(2, 8, 8, 3), (1, 7, 9, 3), (1, 1, 1, 3)])
def test_any_size_and_signature(shape, rng):
    model = FFDNet(channels=3, depth=3, filters=8)
    x = rng.uniform(size=shape).astype("float32")
    sigma = np.full((shape[0], 1), 0.1, "float32")
    assert model([x, sigma]).shape == shape
    assert [t.name for t in model.inputs] == ["noisy", "noise_level"]


def test_odd_sizes_use_replicate_padding(rng):
    model = FFDNet(channels=1, depth=3, filters=8)
    x = rng.uniform(size=(1, 7, 5, 1)).astype("float32")
    sigma = np.array([[0.2]], "float32")
    padded = np.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)), mode="edge")
    expected = model([padded, sigma]).numpy()[:, :7, :5]
    np.testing.assert_allclose(model([x, sigma]).numpy(), expected, atol=1e-6)


def test_pixel_unshuffle_and_noise_map_layout(rng):
    model = FFDNet(channels=3, depth=3, filters=8)
    x = rng.uniform(size=(2, 4, 6, 3)).astype("float32")
    sigma = np.array([[0.1], [0.3]], "float32")
    first = tf.keras.Model(model.inputs, model.get_layer("concat_noise_map").output)
    got = first([x, sigma]).numpy()
    assert got.shape == (2, 2, 3, 13)  # 4C + 1
    # TF space_to_depth: channel (i*2 + j)*C + c holds pixel (2h+i, 2w+j, c).
    for i in range(2):
        for j in range(2):
            np.testing.assert_array_equal(
                got[..., (i * 2 + j) * 3 : (i * 2 + j) * 3 + 3], x[:, i::2, j::2]
            )
    np.testing.assert_array_equal(got[..., 12], np.broadcast_to(sigma[:, :, None], (2, 2, 3)))


def test_blind_scalar_and_map_inputs_agree(rng):
    scalar = FFDNet(channels=3, depth=3, filters=8)
    blind = FFDNet(channels=3, depth=3, filters=8, sigma=25 / 255)
    mapped = FFDNet(channels=3, depth=3, filters=8, sigma_input="map")
    _copy_weights(scalar, blind)
    _copy_weights(scalar, mapped)
    x = rng.uniform(size=(2, 6, 10, 3)).astype("float32")
    ref = scalar([x, np.full((2, 1), 25 / 255, "float32")]).numpy()
    np.testing.assert_allclose(blind(x).numpy(), ref, atol=1e-6)
    np.testing.assert_allclose(
        mapped([x, np.full((2, 6, 10, 1), 25 / 255, "float32")]).numpy(), ref, atol=1e-6
    )
    assert len(blind.inputs) == 1


def test_noise_level_steers_the_output(rng):
    model = FFDNet(channels=1, depth=3, filters=8)
    x = tf.constant(rng.uniform(size=(1, 8, 8, 1)).astype("float32"))
    sigma = tf.Variable([[0.1]])
    with tf.GradientTape() as tape:
        out = tf.reduce_sum(model([x, sigma]))
    assert abs(float(tape.gradient(out, sigma)[0, 0])) > 0


def test_bad_inputs():
    model = FFDNet(channels=3, depth=3, filters=8)
    with pytest.raises(ValueError, match="expected shape=\\(None, None, None, 3\\)|3 channel"):
        model([np.zeros((1, 8, 8, 1), "float32"), np.zeros((1, 1), "float32")])
    with pytest.raises(ValueError, match="sigma_input"):
        FFDNet(sigma_input="vector")



class FFDNetTest(TestCase):
    SMALL = {"channels": 3, "depth": 3, "filters": 8}

    def test_model_with_noise_level_input(self):
        self.run_model_test(
            FFDNet, self.SMALL, (2, 16, 16, 3),
            make_inputs=lambda x: [x, np.full((x.shape[0], 1), 0.1, "float32")],
        )

    def test_model_blind(self):
        self.run_model_test(FFDNet, {**self.SMALL, "sigma": 25 / 255}, (2, 16, 16, 3))

    @parameterized.named_parameters(
        ("sigma_input", {}),
        ("blind", {"sigma": 0.1}),
        ("noise_map_batch_norm", {"sigma_input": "map", "batch_norm": True}),
    )
    def test_roundtrip(self, kwargs):
        model = FFDNet(channels=3, depth=3, filters=8, **kwargs)
        x = self.rng.uniform(size=(2, 6, 6, 3)).astype("float32")
        if "sigma" in kwargs:
            inputs = x
        elif kwargs.get("sigma_input") == "map":
            inputs = [x, np.full((2, 6, 6, 1), 0.1, "float32")]
        else:
            inputs = [x, np.full((2, 1), 0.1, "float32")]
        self.run_model_saving_test(model, inputs)
