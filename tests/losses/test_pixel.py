import numpy as np
import pytest
import tensorflow as tf
from absl.testing import parameterized

from tfrestore.losses import L1, MSE, Charbonnier
from tfrestore.testing import TestCase


def _pair(rng, shape=(4, 16, 16, 3)):
    y = rng.uniform(size=shape).astype("float32")
    return y, np.clip(y + rng.normal(0, 0.1, size=shape), 0, 1).astype("float32")


BAD = [
    (np.zeros((2, 8, 8, 3), "float32"), np.zeros((2, 8, 9, 3), "float32"), ValueError, "same shape"),
    (np.zeros((8, 8, 3), "float32"), np.zeros((8, 8, 3), "float32"), ValueError, "rank-4"),
    (np.zeros((2, 8, 8, 3), "uint8"), np.zeros((2, 8, 8, 3), "float32"), TypeError, "y_true"),
    (np.zeros((2, 8, 8, 3), "float32"), np.full((2, 8, 8, 3), np.nan, "float32"), ValueError, "NaN"),
]


class PixelLossTest(TestCase):
    @parameterized.named_parameters(
        ("l1", L1, {}, lambda t, p: np.abs(p - t).mean(axis=(1, 2, 3))),
        ("mse", MSE, {}, lambda t, p: ((p - t) ** 2).mean(axis=(1, 2, 3))),
        ("charbonnier", Charbonnier, {"eps": 1e-3},
         lambda t, p: np.sqrt((p - t) ** 2 + 1e-6).mean(axis=(1, 2, 3))),
        ("weighted_l1", L1, {"loss_weight": 2.5},
         lambda t, p: 2.5 * np.abs(p - t).mean(axis=(1, 2, 3))),
    )
    def test_conforms_and_matches_numpy(self, cls, kwargs, ref):
        y, p = _pair(self.rng)
        res = self.run_loss_test(cls, kwargs, y, p, bad_inputs=BAD, finite_differences={})
        self.assertAllClose(res["eager"], ref(y.astype(np.float64), p.astype(np.float64)),
                            rtol=1e-5, atol=0)


def test_zero_for_identical_inputs(rng):
    y, _ = _pair(rng)
    assert float(L1()(y, y)) == 0.0
    assert float(MSE()(y, y)) == 0.0


def test_charbonnier_rejects_bad_eps():
    with pytest.raises(ValueError, match="eps"):
        Charbonnier(eps=0)


# ------------------------------------------------------------------ no value range
def _images(shape=(3, 32, 32, 3), seed=0):
    rng = np.random.default_rng(seed)
    y = rng.uniform(0.05, 0.95, size=shape).astype("float32")
    return y, np.clip(y + rng.normal(0, 0.05, shape), 0, 1).astype("float32")


def test_pixel_losses_stay_scale_free():
    from tfrestore.losses import L1

    y, p = _images()
    np.testing.assert_allclose(L1()(255.0 * y, 255.0 * p), 255.0 * L1()(y, p), rtol=1e-5)
