import keras
import numpy as np
import pytest

from tfrestore.models import EDSR, trainable_params
from tfrestore.testing import TestCase


def _edsr_count(blocks, f, scale, c=3):
    conv = lambda i, o: 9 * i * o + o  # noqa: E731
    up = 2 * conv(f, 4 * f) if scale == 4 else conv(f, scale * scale * f)
    return conv(c, f) + blocks * 2 * conv(f, f) + conv(f, f) + up + conv(f, c)


@pytest.mark.parametrize(
    "variant,scale,expected",
    [
        ("baseline", 2, 1_369_859),  # EDSR paper: baseline 1.37M
        ("baseline", 3, 1_554_499),
        ("baseline", 4, 1_517_571),
    ],
)
def test_parameter_counts(variant, scale, expected):
    assert _edsr_count(16, 64, scale) == expected
    assert trainable_params(EDSR(scale=scale, variant=variant)) == expected


@pytest.mark.slow
def test_large_x4_parameter_count():
    # EDSR paper: 43M parameters for the large model.
    assert _edsr_count(32, 256, 4) == 43_089_923
    assert trainable_params(EDSR(scale=4, variant="large")) == 43_089_923


def test_large_variant_configuration():
    model = EDSR(scale=2, variant="large", depth=2, filters=8)
    assert model.get_layer("block0_scale").scale == 0.1
    assert trainable_params(model) == _edsr_count(2, 8, 2)


@pytest.mark.parametrize("scale", [2, 3, 4, 8])
def test_output_size(scale):
    out = EDSR(scale=scale, depth=1, filters=4)(np.zeros((1, 3, 5, 3), "float32"))
    assert out.shape == (1, 3 * scale, 5 * scale, 3)


def test_mean_shift_and_depth_to_space(rng):
    model = EDSR(scale=2, depth=1, filters=4)
    tail = model.get_layer("tail")
    tail.set_weights([np.zeros_like(w) for w in tail.get_weights()])
    out = model(np.zeros((1, 3, 3, 3), "float32")).numpy()
    np.testing.assert_allclose(out, np.broadcast_to([0.4488, 0.4371, 0.4040], out.shape), atol=1e-7)
    # depth_to_space layout: channel (i*2 + j)*C + c -> pixel (2h+i, 2w+j, c)
    x = rng.normal(size=(1, 2, 3, 8)).astype("float32")
    y = model.get_layer("upsample0_shuffle")(x).numpy()
    for i in range(2):
        for j in range(2):
            np.testing.assert_array_equal(
                y[:, i::2, j::2], x[..., (i * 2 + j) * 2 : (i * 2 + j) * 2 + 2]
            )


def test_bad_arguments():
    with pytest.raises(ValueError, match="power of 2 or 3"):
        EDSR(scale=5)
    with pytest.raises(ValueError, match="variant"):
        EDSR(variant="huge")
    with pytest.raises(ValueError, match="rgb_mean"):
        EDSR(channels=1)
    model = EDSR(channels=1, rgb_mean=None, depth=1, filters=4)
    with pytest.raises(ValueError, match="1 channel"):
        model(np.zeros((1, 4, 4, 3), "float32"))


@pytest.mark.parametrize("scale", [2, 4])
def test_untrained_output_stays_in_range(scale, rng):
    # No normalisation in the residual blocks: with He init the untrained x4 baseline produced
    # outputs up to 4e4 for [0, 1] inputs (L1 ~6e3 at step 1). PyTorch's default conv init keeps
    # it near the mean colour, as in the reference code.
    keras.utils.set_random_seed(0)
    model = EDSR(scale=scale)
    x = rng.uniform(size=(2, 24, 24, 3)).astype("float32")
    out = model(x).numpy()
    assert np.isfinite(out).all()
    assert np.abs(out).max() < 2.0
    assert np.abs(out - np.array([0.4488, 0.4371, 0.4040])).mean() < 0.25
    # each block conv gets its own random kernel (a shared unseeded initializer repeats one)
    k1 = model.get_layer("block0_conv1").get_weights()[0]
    k2 = model.get_layer("block0_conv2").get_weights()[0]
    k3 = model.get_layer("block5_conv1").get_weights()[0]
    assert not np.allclose(k1, k2) and not np.allclose(k1, k3)
    # kaiming_uniform(a=sqrt(5)): U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    bound = 1 / np.sqrt(9 * 64)
    assert np.abs(k1).max() <= bound and np.abs(k1).max() > 0.95 * bound


def test_input_skip_starts_at_bicubic_with_unchanged_parameters(rng):
    import tensorflow as tf

    model = EDSR(scale=2, depth=2, filters=8, input_skip=True)
    assert trainable_params(model) == _edsr_count(2, 8, 2)
    x = rng.uniform(size=(1, 6, 5, 3)).astype("float32")
    bicubic = tf.image.resize(x, (12, 10), method="bicubic").numpy()
    np.testing.assert_allclose(model(x).numpy(), bicubic, atol=1e-6)
    # the residual branch is live: perturbing the tail changes the output
    tail = model.get_layer("tail")
    tail.set_weights([np.full_like(w, 0.01) for w in tail.get_weights()])
    assert np.abs(model(x).numpy() - bicubic).max() > 1e-3


class EDSRTest(TestCase):
    def test_model(self):
        self.run_model_test(
            EDSR, {"scale": 3, "depth": 1, "filters": 8}, (2, 8, 8, 3),
            output_shape=lambda s: (s[0], 3 * s[1], 3 * s[2], s[3]),
        )

    def test_roundtrip_large_variant(self):
        model = EDSR(scale=3, variant="large", depth=2, filters=8)
        x = self.rng.uniform(size=(1, 5, 4, 3)).astype("float32")
        loaded = self.run_model_saving_test(model, x)
        self.assertIsInstance(loaded.get_layer("block0_scale"), keras.layers.Rescaling)
