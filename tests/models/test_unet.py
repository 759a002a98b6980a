import numpy as np
import pytest
import tensorflow as tf

from tfrestore.models import UNet, trainable_params
from tfrestore.testing import TestCase

SMALL = dict(filters=4, levels=2, blocks_per_level=1)


def _scale_net_count(c, f, levels, blocks, k):
    conv = lambda i, o, kk=k: kk * kk * i * o + o  # noqa: E731
    n = 0
    for lv in range(levels):
        fl = f * 2**lv
        n += conv(2 * c if lv == 0 else fl // 2, fl)  # encoder entry conv
        n += 2 * blocks * 2 * conv(fl, fl)  # encoder + decoder residual blocks
        if lv > 0:
            n += conv(fl, fl // 2, 4)  # transposed conv up
    return n + conv(f, c)


def test_parameter_count_and_weight_sharing():
    assert trainable_params(UNet()) == _scale_net_count(3, 32, 3, 2, 3)
    small = _scale_net_count(3, 4, 2, 1, 3)
    assert trainable_params(UNet(scales=1, **SMALL)) == small
    assert trainable_params(UNet(scales=3, **SMALL)) == small  # shared across scales
    assert trainable_params(UNet(scales=3, shared_weights=False, **SMALL)) == 3 * small


def test_shapes_and_all_scales(rng):
    x = rng.uniform(size=(2, 16, 24, 3)).astype("float32")
    assert UNet(scales=3, **SMALL)(x).shape == x.shape
    outs = UNet(scales=3, return_all_scales=True, **SMALL)(x)
    assert [tuple(o.shape) for o in outs] == [(2, 4, 6, 3), (2, 8, 12, 3), (2, 16, 24, 3)]


def test_residual_identity_at_init_of_zero_output_conv(rng):
    model = UNet(scales=2, **SMALL)
    net = model.get_layer("unet_scale_net")
    out_conv = net.get_layer("out_conv")
    out_conv.set_weights([np.zeros_like(w) for w in out_conv.get_weights()])
    x = rng.uniform(size=(1, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(model(x).numpy(), x, atol=1e-7)


def test_bad_sizes():
    model = UNet(**SMALL, scales=3)  # needs multiples of 2 ** (3 + 2 - 2) = 8
    with pytest.raises(
        ValueError, match="UNet: `inputs` must have height and width divisible by 8, got 12x16"
    ):
        model(np.zeros((1, 12, 16, 3), "float32"))
    fn = tf.function(model, input_signature=[tf.TensorSpec((None, None, None, 3))])
    with pytest.raises(tf.errors.InvalidArgumentError, match="divisible by 8"):
        fn(tf.zeros((1, 12, 16, 3)))
    with pytest.raises(ValueError, match="levels"):
        UNet(levels=0)


def test_identity_init_returns_the_input_untrained(rng):
    x = rng.uniform(size=(2, 16, 16, 3)).astype("float32")
    model = UNet(scales=2, identity_init=True, **SMALL)
    np.testing.assert_allclose(model(x).numpy(), x, atol=1e-6)
    assert np.abs(UNet(scales=2, **SMALL)(x).numpy() - x).mean() > 1e-2  # default: Glorot
    assert trainable_params(model) == _scale_net_count(3, 4, 2, 1, 3)


class UNetTest(TestCase):
    def test_model(self):
        # sizes must be multiples of 2 ** (scales + levels - 2)
        self.run_model_test(UNet, {**SMALL, "scales": 3}, (2, 16, 16, 3), multiple=8)

    def test_model_returning_all_scales(self):
        self.run_model_test(
            UNet, {**SMALL, "scales": 2, "return_all_scales": True}, (2, 16, 16, 3), multiple=4,
            output_shape=lambda s: [(s[0], s[1] // 2, s[2] // 2, s[3]), tuple(s)],
        )

    def test_roundtrip_unshared_weights(self):
        self.run_model_saving_test(
            UNet(scales=2, shared_weights=False, return_all_scales=True, name="unet2", **SMALL),
            self.rng.uniform(size=(1, 8, 8, 3)).astype("float32"),
        )
