import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage
from skimage.metrics import structural_similarity

from tfrestore.losses import L1, MSSSIMLoss, SSIMLoss, WeightedSum
from tfrestore.metrics import ms_ssim, ssim
from tfrestore.testing import TestCase


def _pair(rng, shape, sigma=0.1):
    y = ndimage.uniform_filter(rng.uniform(size=shape), size=(1, 3, 3, 1))
    p = np.clip(y + rng.normal(0, sigma, size=shape), 0, 1)
    return y.astype("float32"), p.astype("float32")


def _bad(size, min_match):
    img, f4 = (2, size, size, 3), "float32"
    return [
        (np.zeros(img, f4), np.zeros((2, size, size + 1, 3), f4), ValueError, "same shape"),
        (np.zeros(img[1:], f4), np.zeros(img[1:], f4), ValueError, "rank-4"),
        (np.zeros(img, "uint8"), np.zeros(img, f4), TypeError, "y_true"),
        (np.zeros(img, f4), np.full(img, np.nan, f4), ValueError, "NaN"),
        (np.zeros((2, 8, 8, 3), f4), np.zeros((2, 8, 8, 3), f4), ValueError, min_match),
    ]


class SSIMLossTest(TestCase):
    def test_conforms_and_matches_skimage(self):
        y, p = _pair(self.rng, (2, 32, 32, 3))
        res = self.run_loss_test(
            SSIMLoss, {}, y, p, bad_inputs=_bad(32, "at least 11"),
            finite_differences={"eps": 1e-3},
        )
        sk = lambda a, b: structural_similarity(  # noqa: E731
            a.astype(np.float64), b.astype(np.float64), data_range=1.0, channel_axis=-1,
            gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
        )
        ref = [1 - sk(y[i], p[i]) for i in range(2)]
        self.assertAllClose(res["eager"], ref, rtol=0, atol=2e-6)


def test_ssim_loss_options_equal_one_minus_metric(rng):
    y, p = _pair(rng, (2, 24, 24, 3))
    loss = SSIMLoss(data_range=255.0, color="y", filter_size=7, filter_sigma=1.0, k1=0.02, k2=0.05,
                    loss_weight=2.0)
    got = loss.call(tf.constant(y * 255), tf.constant(p * 255)).numpy()
    ref = 2.0 * (1 - ssim(y * 255, p * 255, data_range=255.0, color="y", filter_size=7,
                          filter_sigma=1.0, k1=0.02, k2=0.05).numpy())
    np.testing.assert_allclose(got, ref, rtol=1e-5)
    assert SSIMLoss.from_config(loss.get_config()).get_config() == loss.get_config()


class MSSSIMLossTest(TestCase):
    def test_conforms(self):
        y, p = _pair(self.rng, (2, 176, 176, 3))
        res = self.run_loss_test(MSSSIMLoss, {}, y, p, bad_inputs=_bad(176, "at least 161"))
        self.assertAllClose(res["eager"], 1 - ms_ssim(y, p).numpy(), rtol=0, atol=1e-6)

    def test_sum_form_and_fewer_scales(self):
        # graph, serialisation and gradient; the full harness runs on the default above
        y, p = _pair(self.rng, (2, 48, 48, 1))
        kwargs = {"power_factors": [0.3, 0.3, 0.4], "combine": "sum", "filter_size": 7,
                  "color": "gray"}
        loss = MSSSIMLoss(**kwargs)
        eager = self.run_per_sample_test(loss, y, p)
        self.run_graph_test(loss, y, p)
        self.run_serialization_test(loss)
        self.run_gradient_test(loss, y, p)
        ref = 1 - ms_ssim(y, p, power_factors=[0.3, 0.3, 0.4], combine="sum", filter_size=7).numpy()
        self.assertAllClose(eager, ref, rtol=0, atol=1e-6)


def test_ms_ssim_loss_power_factors_rename(rng):
    """``weights`` only means pretrained weights; the scale exponents are
    ``power_factors`` (as in ``tf.image.ssim_multiscale``); old configs still load."""
    with pytest.raises(TypeError, match="`weights` was renamed `power_factors`"):
        MSSSIMLoss(weights=[0.5, 0.5])
    loss = MSSSIMLoss(power_factors=[0.5, 0.5], combine="sum", filter_size=7)
    config = loss.get_config()
    assert config["power_factors"] == [0.5, 0.5] and "weights" not in config
    assert MSSSIMLoss.from_config(config).get_config() == config
    old = {k: v for k, v in config.items() if k != "power_factors"}
    old["weights"] = [0.5, 0.5]  # a config saved before the rename
    loaded = MSSSIMLoss.from_config(old)
    assert loaded.power_factors == (0.5, 0.5) and loaded.get_config() == config
    ser = keras.saving.serialize_keras_object(loss)
    ser["config"]["weights"] = ser["config"].pop("power_factors")
    de = keras.saving.deserialize_keras_object(ser)
    assert type(de) is MSSSIMLoss and de.power_factors == (0.5, 0.5)
    y, p = _pair(rng, (2, 32, 32, 1))
    np.testing.assert_allclose(de(y, p).numpy(), loss(y, p).numpy(), rtol=1e-6)


def test_ms_ssim_loss_gradient_finite_for_anticorrelated_prediction(rng):
    y, _ = _pair(rng, (2, 161, 161, 1))
    v = tf.Variable(1.0 - y)
    with tf.GradientTape() as tape:
        value = MSSSIMLoss()(y, v)
    g = tape.gradient(value, v).numpy()
    assert float(value) == pytest.approx(1.0)
    assert np.all(np.isfinite(g))


def test_ssim_losses_compose_and_reject_bad_options(rng):
    y, p = _pair(rng, (2, 16, 16, 3))
    total = L1() + 0.5 * SSIMLoss()
    assert isinstance(total, WeightedSum)
    ref = np.abs(p - y).mean() + 0.5 * (1 - ssim(y, p).numpy()).mean()
    np.testing.assert_allclose(float(total(y, p)), ref, rtol=1e-5)
    with pytest.raises(ValueError, match="data_range"):
        SSIMLoss(data_range=0)
    with pytest.raises(ValueError, match="combine"):
        MSSSIMLoss(combine="mean")


# ------------------------------------------------------------------ value range
def _images(shape=(3, 32, 32, 3), seed=0):
    rng = np.random.default_rng(seed)
    y = rng.uniform(0.05, 0.95, size=shape).astype("float32")
    return y, np.clip(y + rng.normal(0, 0.05, shape), 0, 1).astype("float32")


def test_ssim_range_follows_data_range():
    from tfrestore.losses import SSIMLoss

    y, p = _images()
    with pytest.raises(ValueError, match=r"or set `data_range`"):
        SSIMLoss()(255.0 * y, 255.0 * p)
    np.testing.assert_allclose(SSIMLoss(data_range=255.0)(255.0 * y, 255.0 * p),
                               SSIMLoss()(y, p), rtol=1e-5)
