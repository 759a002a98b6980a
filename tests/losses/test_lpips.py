"""LPIPSLoss: conformance on a random backbone, zero on identical images, symmetry."""

import numpy as np

from tfrestore.losses import LPIPSLoss
from tfrestore.testing import TestCase

_CHANNELS = {"alexnet": (64, 192, 384, 256, 256), "vgg16": (64, 128, 256, 512, 512)}


def _random_lins(backbone="alexnet", seed=0):
    r = np.random.default_rng(seed)
    return [np.abs(r.normal(0.1, 0.05, c)).astype("float32") for c in _CHANNELS[backbone]]


class LPIPSLossTest(TestCase):
    def test_loss_conformance_with_random_backbone(self):
        y = self.rng.uniform(size=(2, 48, 48, 3)).astype("float32")
        p = np.clip(y + self.rng.normal(0, 0.1, y.shape), 0, 1).astype("float32")
        f4 = "float32"
        bad = [
            (np.zeros((2, 64, 64, 1), f4), np.zeros((2, 64, 64, 1), f4), ValueError, "3 channels"),
            (np.zeros((2, 16, 16, 3), f4), np.zeros((2, 16, 16, 3), f4), ValueError,
             "minimum input size"),
            (np.zeros((2, 64, 64, 3), f4), np.full((2, 64, 64, 3), np.nan, f4), ValueError, "NaN"),
        ]
        res = self.run_loss_test(
            LPIPSLoss, {"weights": None, "lin_weights": _random_lins()}, y, p, bad_inputs=bad,
            xla_rtol=1e-3, mirrored_rtol=1e-3,
        )
        self.assertTrue(np.all(res["eager"] > 0))


def test_loss_is_zero_for_identical_and_symmetric(rng):
    y = rng.uniform(size=(2, 64, 64, 3)).astype("float32")
    p = rng.uniform(size=(2, 64, 64, 3)).astype("float32")
    loss = LPIPSLoss(weights=None, lin_weights=_random_lins(), reduction=None)
    np.testing.assert_array_equal(loss(y, y), 0.0)
    np.testing.assert_allclose(loss(y, p), loss(p, y), rtol=1e-5)
