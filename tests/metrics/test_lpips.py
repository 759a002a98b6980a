"""LPIPS v0.1: published TID2013 values, the head formula, the metric (LPIPSLoss is
tested in tests/losses/test_lpips.py)."""

import numpy as np
import pytest
import tensorflow as tf

from tfrestore.losses import LPIPSLoss
from tfrestore.metrics import LPIPS, lpips
from tfrestore.metrics.lpips import LPIPS_LAYERS, LPIPSNetwork, load_lin_weights
from tfrestore.utils import WeightsNotFoundError

NAMES = ["I03.bmp", "I04.bmp", "I06.bmp", "I08.bmp", "I19.bmp"]
PUBLISHED_ALEX = np.array([0.7237, 0.2572, 0.05079, 0.05205, 0.4253])  # results_official.csv
CHANNELS = {"alexnet": (64, 192, 384, 256, 256), "vgg16": (64, 128, 256, 512, 512)}
LIN_FILE = {"alexnet": "lpips_v0.1_alex.npz", "vgg16": "lpips_v0.1_vgg.npz"}


@pytest.fixture
def lpips_weights(weights_dir, monkeypatch):
    for name in ("lpips_v0.1_alex.npz", "alexnet_torchvision_features.npz"):
        if not (weights_dir / name).is_file():
            pytest.skip(f"{name} not in {weights_dir}")
    monkeypatch.setenv("TFRESTORE_WEIGHTS_DIR", str(weights_dir))
    return weights_dir


def _load_pairs(data_dir):
    from PIL import Image

    folder = data_dir / "iqa_calibration"
    if not folder.is_dir():
        pytest.skip(f"{folder} not available")
    # 8-bit RGB -> float in [0, 1], the public input convention
    load = lambda p: np.asarray(Image.open(p).convert("RGB"), np.float32) / 255.0  # noqa: E731
    ref = np.stack([load(folder / "ref" / n) for n in NAMES])
    dist = np.stack([load(folder / "dist" / n) for n in NAMES])
    return ref, dist


@pytest.mark.weights
def test_alex_reproduces_published_tid2013_values(lpips_weights, data_dir):
    ref, dist = _load_pairs(data_dir)
    values = np.asarray(lpips(ref, dist, backbone="alexnet"))
    np.testing.assert_allclose(values, PUBLISHED_ALEX, atol=1e-3)
    # measured residual is < 1e-4; keep a margin only for BLAS differences
    assert np.max(np.abs(values - PUBLISHED_ALEX)) < 2e-4
    np.testing.assert_allclose(lpips(dist, ref, backbone="alexnet"), values, atol=1e-6)  # symmetric
    np.testing.assert_array_equal(lpips(ref[:2], ref[:2], backbone="alexnet"), 0.0)


def np_lpips_head(f0, f1, lins):
    """LPIPS head in NumPy: unit-normalise channels (eps 1e-10), weighted squared
    difference, spatial mean, sum over layers."""
    total = 0.0
    for a, b, w in zip(f0, f1, lins):
        a = np.asarray(a, np.float64)
        b = np.asarray(b, np.float64)
        a = a / (np.sqrt((a**2).sum(-1, keepdims=True)) + 1e-10)
        b = b / (np.sqrt((b**2).sum(-1, keepdims=True)) + 1e-10)
        total = total + (((a - b) ** 2) * w).sum(-1).mean(axis=(1, 2))
    return total


@pytest.mark.weights
@pytest.mark.parametrize("backbone", ["alexnet", "vgg16"])
def test_head_scaling_and_taps_match_numpy(backbone, weights_dir, monkeypatch, rng):
    """The official scaling layer on [-1, 1] inputs and the raw torchvision trunk."""
    from tfrestore.features import get_feature_extractor

    if not (weights_dir / LIN_FILE[backbone]).is_file():
        pytest.skip("LPIPS weights not available")
    monkeypatch.setenv("TFRESTORE_WEIGHTS_DIR", str(weights_dir))
    x0 = rng.uniform(size=(2, 64, 64, 3)).astype("float32")
    x1 = np.clip(x0 + rng.normal(0, 0.1, x0.shape), 0, 1).astype("float32")
    fx = get_feature_extractor(
        backbone, list(LPIPS_LAYERS[backbone]), "torchvision", preprocessing="none"
    )
    shift = np.array([-0.030, -0.088, -0.188], np.float32)
    scale = np.array([0.458, 0.448, 0.450], np.float32)
    f0 = fx(((2 * x0 - 1) - shift) / scale)
    f1 = fx(((2 * x1 - 1) - shift) / scale)
    with np.load(weights_dir / LIN_FILE[backbone]) as data:
        lins = [data[f"lin{k}.model.1.weight"].reshape(-1) for k in range(5)]
    taps = LPIPS_LAYERS[backbone]
    ref = np_lpips_head([f0[n] for n in taps], [f1[n] for n in taps], lins)
    got = np.asarray(lpips(x0, x1, backbone=backbone))
    np.testing.assert_allclose(got, ref, rtol=1e-4)
    np.testing.assert_allclose(lpips(x1, x0, backbone=backbone), got, rtol=1e-5)
    assert [w.shape[0] for w in load_lin_weights(backbone)] == list(CHANNELS[backbone])


def _random_lins(backbone="alexnet", seed=0):
    r = np.random.default_rng(seed)
    return [np.abs(r.normal(0.1, 0.05, c)).astype("float32") for c in CHANNELS[backbone]]


@pytest.mark.parametrize("graph", [False, True])
def test_loss_gradient_matches_automatic_differentiation(rng, graph):
    """The hand-written gradient of the one-sided (loss) term equals autodiff of the
    two-sided formula, also where a feature vector is zero (ReLU maps); the value is
    bit-identical."""
    from tfrestore.metrics.lpips import _distance, distance_to_unit, unit_normalise

    w = np.abs(rng.normal(0.1, 0.05, 16)).astype("float32")
    f = np.maximum(rng.normal(0, 1, (3, 5, 4, 16)), 0).astype("float32")
    f[0, 1, 2] = 0.0
    f[2, 0, :] = 0.0
    target = unit_normalise(tf.constant(np.maximum(rng.normal(0, 1, f.shape), 0), tf.float32))
    weights = tf.constant([0.5, -1.0, 2.0])

    def both(x):
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(x)
            fast = distance_to_unit(target, x, w)
            auto = _distance(target, unit_normalise(x), w)
            loss_fast, loss_auto = tf.reduce_sum(fast * weights), tf.reduce_sum(auto * weights)
        return fast, auto, tape.gradient(loss_fast, x), tape.gradient(loss_auto, x)

    fast, auto, g_fast, g_auto = (tf.function(both) if graph else both)(tf.constant(f))
    np.testing.assert_array_equal(fast, auto)
    assert np.all(np.isfinite(g_fast))  # 1 / eps where f = 0, as autodiff (ReLU stops it)
    np.testing.assert_allclose(g_fast, g_auto, rtol=1e-5, atol=1e-7)


@pytest.mark.weights
def test_metric_streams_and_equals_the_loss(lpips_weights, rng):
    y = rng.uniform(size=(4, 64, 64, 3)).astype("float32")
    p = np.clip(y + rng.normal(0, 0.1, y.shape), 0, 1).astype("float32")
    values = np.asarray(lpips(y, p))
    m = LPIPS()
    m.update_state(y[:2], p[:2])
    m.update_state(y[2:], p[2:])
    np.testing.assert_allclose(float(m.result()), values.mean(), rtol=1e-5)
    np.testing.assert_allclose(LPIPSLoss(reduction=None)(y, p), values, rtol=1e-4)
    clone = LPIPS.from_config(m.get_config())
    assert clone.get_config() == m.get_config() and clone.backbone == "alexnet"


def test_offline_without_weights_names_the_files(tmp_path, monkeypatch):
    import keras

    monkeypatch.setenv("TFRESTORE_WEIGHTS_DIR", str(tmp_path))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(WeightsNotFoundError) as info:
        LPIPSNetwork("alexnet")
    msg = str(info.value)
    assert "lpips_v0.1_alex.npz" in msg and "alexnet_torchvision_features.npz" in msg
    with pytest.raises(WeightsNotFoundError, match="explicit path"):
        LPIPSNetwork("vgg16", lin_weights=tmp_path / "missing.npz")


def test_bad_arguments():
    with pytest.raises(ValueError, match="`backbone` must be one of"):
        LPIPS(backbone="squeeze")
    with pytest.raises(ValueError, match=r"net='alex'.* is backbone='alexnet'"):
        LPIPSLoss(backbone="alex", weights=None)
    with pytest.raises(ValueError, match="channels"):
        LPIPSLoss(weights=None, lin_weights=_random_lins("vgg16"))
    loss = LPIPSLoss(backbone="vgg16", weights=None, lin_weights=_random_lins("vgg16"))
    assert LPIPSLoss.from_config(loss.get_config()).backbone == "vgg16"
