"""gradient_ratios: per-term gradient norms w.r.t. y_pred, against hand-derived gradients."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfrestore.losses import (
    L1,
    MSE,
    D2SMLoss,
    WeightedSum,
    format_gradient_ratios,
    gradient_ratios,
    loss_terms,
)


def _pair(seed=0, shape=(2, 8, 8, 3)):
    rng = np.random.default_rng(seed)
    y = rng.uniform(size=shape).astype("float32")
    p = (y + rng.normal(0, 0.2, shape)).astype("float32")
    return y, p


def test_l1_and_mse_match_analytic_gradients():
    y, p = _pair()
    n = y.size
    # d/dp mean|p - y| = sign(p - y) / N ; d/dp mean (p - y)^2 = 2 (p - y) / N
    g_l1 = np.sign(p - y) / n
    g_mse = 2.0 * (p - y) / n
    lam = 0.3
    rows = gradient_ratios(L1() + lam * MSE(), y, p)
    assert [r["term"] for r in rows] == ["l1", "mse"]
    assert rows[0]["grad_norm"] == pytest.approx(np.linalg.norm(g_l1), rel=1e-5)
    assert rows[1]["grad_norm"] == pytest.approx(lam * np.linalg.norm(g_mse), rel=1e-5)
    expected_ratio = lam * np.linalg.norm(g_mse) / np.linalg.norm(g_l1)
    assert rows[1]["ratio"] == pytest.approx(expected_ratio, rel=1e-5)
    assert rows[0]["ratio"] == 1.0
    assert rows[1]["value"] == pytest.approx(lam * np.mean((p - y) ** 2), rel=1e-5)


def test_list_and_pair_spellings_equal_algebra():
    y, p = _pair(1)
    a = gradient_ratios(L1() + 0.1 * MSE(), y, p)
    b = gradient_ratios([L1(), MSE()], y, p, loss_weights=[1.0, 0.1])
    c = gradient_ratios([(L1(), 1.0), (MSE(), 0.1)], y, p)
    d = gradient_ratios(WeightedSum([L1(), MSE()], [1.0, 0.1]), y, p)
    for other in (b, c, d):
        for r1, r2 in zip(a, other):
            assert r1["term"] == r2["term"]
            assert r1["grad_norm"] == pytest.approx(r2["grad_norm"], rel=1e-6)
            assert r1["ratio"] == pytest.approx(r2["ratio"], rel=1e-6)


def test_reference_by_name_and_index():
    y, p = _pair(2)
    rows = gradient_ratios(L1() + 0.5 * MSE(), y, p, reference="mse")
    assert rows[1]["ratio"] == 1.0
    assert rows[0]["ratio"] == pytest.approx(rows[0]["grad_norm"] / rows[1]["grad_norm"])
    assert gradient_ratios(L1() + 0.5 * MSE(), y, p, reference=1)[0]["ratio"] == pytest.approx(
        rows[0]["ratio"]
    )
    with pytest.raises(ValueError, match="reference"):
        gradient_ratios(L1() + MSE(), y, p, reference="ssim")


def test_model_and_inputs_measure_at_the_prediction():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(3, 3, padding="same")])
    y, x = _pair(3)
    direct = gradient_ratios(L1() + MSE(), y, model(x))
    via_model = gradient_ratios(L1() + MSE(), y, model=model, inputs=x)
    assert [r["grad_norm"] for r in via_model] == pytest.approx([r["grad_norm"] for r in direct])
    with pytest.raises(ValueError, match="model"):
        gradient_ratios(L1(), y)
    with pytest.raises(ValueError, match="not both"):
        gradient_ratios(L1(), y, x, model=model, inputs=x)


def test_duplicate_names_and_bad_input():
    names = [n for n, _, _ in loss_terms([L1(), L1()])]
    assert names == ["l1", "l1_2"]
    with pytest.raises(ValueError, match="one entry per loss"):
        loss_terms([L1(), MSE()], loss_weights=[1.0])
    with pytest.raises(TypeError, match="keras.losses.Loss"):
        loss_terms("l1")


def test_zero_reference_gradient_gives_inf_ratio():
    y, p = _pair(4)
    rows = gradient_ratios(0.0 * L1() + MSE(), y, p)
    assert rows[0]["grad_norm"] == 0.0
    assert rows[1]["ratio"] == float("inf")
    assert "inf" in format_gradient_ratios(rows)


def test_queue_is_not_written_by_a_measurement():
    fx = lambda x: tf.nn.avg_pool2d(x, 4, 4, "VALID")  # noqa: E731
    d2sm = D2SMLoss(feature_extractor=fx, patch_size=None, queue_size=8, image_size=(16, 16))
    # 4 images: with 2 (and an empty queue) each row has one neighbour, so the
    # similarity distributions are constant and the gradient is exactly 0.
    y, p = _pair(5, (4, 16, 16, 3))
    p = np.clip(p, 0, 1)
    q = d2sm._queue
    before = [v.numpy().copy() for v in (q.pred, q.true, q.count)]
    rows = gradient_ratios(L1() + 1.0 * d2sm, y, p)
    after = [v.numpy() for v in (q.pred, q.true, q.count)]
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)
    assert rows[1]["grad_norm"] > 0
