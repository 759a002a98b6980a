import os
import tempfile

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from scipy import ndimage
from skimage.metrics import structural_similarity

from tfrestore.metrics import MS_SSIM_WEIGHTS, MSSSIM, SSIM, ms_ssim, ms_ssim_min_size, ssim


# ---------------------------------------------------------------- NumPy reference
def _np_window(size=11, sigma=1.5):
    x = np.arange(size) - (size - 1) / 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    return np.outer(g, g) / np.outer(g, g).sum()


def _np_ssim_cs(a, b, L):
    """Mean SSIM and cs of 2-D arrays, 'valid' Gaussian filtering (Wang's ssim_index.m)."""
    w = _np_window()
    f = lambda z: ndimage.correlate(z, w, mode="constant")[5:-5, 5:-5]  # noqa: E731
    c1, c2 = (0.01 * L) ** 2, (0.03 * L) ** 2
    m1, m2 = f(a), f(b)
    s11, s22, s12 = f(a * a) - m1**2, f(b * b) - m2**2, f(a * b) - m1 * m2
    cs = (2 * s12 + c2) / (s11 + s22 + c2)
    lum = (2 * m1 * m2 + c1) / (m1**2 + m2**2 + c1)
    return (lum * cs).mean(), cs.mean()


def _np_box_down(z, f):
    """imfilter(z, ones(f)/f^2, 'symmetric', 'same') then z(1:f:end, 1:f:end), written out."""
    c = (f + 1) // 2 - 1
    p = np.pad(z, ((c, f - 1 - c), (c, f - 1 - c)), mode="symmetric")
    out = sum(p[i:i + z.shape[0], j:j + z.shape[1]] for i in range(f) for j in range(f)) / f**2
    return out[::f, ::f]


def _np_ms_ssim(a, b, L=1.0, combine="product"):
    """MS-SSIM of one 2-D channel (msssim.m), with the ReLU clamp on per-scale means."""
    vals = []
    for s in range(5):
        ssim_v, cs = _np_ssim_cs(a, b, L)
        vals.append(cs if s < 4 else ssim_v)
        a, b = _np_box_down(a, 2), _np_box_down(b, 2)
    vals, w = np.maximum(np.array(vals), 0), np.array(MS_SSIM_WEIGHTS)
    return np.prod(vals**w) if combine == "product" else (vals * w).sum() / w.sum()


def _pair(rng, shape, sigma=0.15, dtype="float32"):
    y = rng.uniform(size=shape)
    # Smooth images give SSIM values away from 0 (white noise has almost no structure).
    y = ndimage.uniform_filter(y, size=(1, 5, 5, 1))
    p = np.clip(y + rng.normal(0, sigma, size=shape), 0, 1)
    return y.astype(dtype), p.astype(dtype)


def _sk(y, p, L=1.0):
    return np.array([
        structural_similarity(y[i], p[i], data_range=L, channel_axis=-1, gaussian_weights=True,
                              sigma=1.5, use_sample_covariance=False)
        for i in range(len(y))
    ])


# ------------------------------------------------------------------------ SSIM
def test_ssim_matches_skimage_on_random_images(rng):
    y, p = _pair(rng, (3, 33, 40, 3), dtype="float64")
    np.testing.assert_allclose(ssim(y, p).numpy(), _sk(y, p), rtol=1e-10, atol=1e-12)
    y32, p32 = y.astype("float32"), p.astype("float32")
    np.testing.assert_allclose(ssim(y32, p32).numpy(), _sk(y, p), atol=2e-6)


@pytest.mark.parametrize("name", ["kodim05.png", "kodim23.png"])
def test_ssim_matches_skimage_on_real_images(data_dir, name, rng):
    img = np.asarray(Image.open(data_dir / "kodak24" / name).convert("RGB"))[:80, :112]
    noisy = np.clip(np.round(img + rng.normal(0, 15, img.shape)), 0, 255)
    img, noisy = img[None].astype("float64"), noisy[None].astype("float64")
    ref = _sk(img, noisy, 255.0)
    np.testing.assert_allclose(ssim(img, noisy, data_range=255.0).numpy(), ref, rtol=1e-9)
    np.testing.assert_allclose(ssim(img / 255, noisy / 255).numpy(), ref, rtol=1e-9)


def test_ssim_matches_tf_image_ssim_on_grayscale(rng):
    y, p = _pair(rng, (2, 40, 36, 1))
    np.testing.assert_allclose(ssim(y, p).numpy(), tf.image.ssim(y, p, 1.0).numpy(), atol=1e-6)


def test_ssim_color_options_match_numpy_conversions(rng):
    y, p = _pair(rng, (2, 30, 30, 3), dtype="float64")
    luma = np.array([65.481, 128.553, 24.966]) / 255
    gray = np.array([0.298936021293776, 0.587043074451121, 0.114020904255103])
    for color, conv in (("y", lambda x: x @ luma + 16 / 255), ("gray", lambda x: x @ gray)):
        ref = _sk(conv(y)[..., None], conv(p)[..., None])
        np.testing.assert_allclose(ssim(y, p, color=color).numpy(), ref, rtol=1e-9)
    # crop_border removes borders first
    ref = _sk(y[:, 4:-4, 4:-4], p[:, 4:-4, 4:-4])
    np.testing.assert_allclose(ssim(y, p, crop_border=4).numpy(), ref, rtol=1e-9)


@pytest.mark.parametrize("shape,factor", [((1, 384, 520, 1), 2), ((1, 650, 660, 1), 3)])
def test_ssim_auto_downsample_matches_matlab_ssim_m(rng, shape, factor):
    y, p = _pair(rng, shape, dtype="float64")
    # MATLAB round(650 / 256) = round(2.54) = 3; the factor uses round-half-away.
    a, b = _np_box_down(y[0, ..., 0], factor), _np_box_down(p[0, ..., 0], factor)
    ref, _ = _np_ssim_cs(a, b, 1.0)
    np.testing.assert_allclose(ssim(y, p, downsample=True).numpy(), [ref], rtol=1e-9)
    assert abs(float(ssim(y, p)[0]) - ref) > 1e-3  # the option really changes the value


def test_ssim_identity_and_symmetry(rng):
    y, p = _pair(rng, (2, 16, 16, 3))
    np.testing.assert_allclose(ssim(y, y).numpy(), [1.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(ssim(y, p).numpy(), ssim(p, y).numpy(), atol=1e-6)


def test_ssim_gradient_matches_finite_differences(rng):
    y, p = _pair(rng, (1, 16, 16, 1), dtype="float64")
    v = tf.Variable(p)
    with tf.GradientTape() as tape:
        value = tf.reduce_sum(ssim(y, v))
    g = tape.gradient(value, v).numpy()
    d = rng.normal(size=p.shape)
    eps = 1e-5
    plus, minus = (float(tf.reduce_sum(ssim(y, p + s * eps * d))) for s in (1, -1))
    num = (plus - minus) / (2 * eps)
    np.testing.assert_allclose((g * d).sum(), num, rtol=1e-5)


def test_ssim_graph_xla_and_dynamic_shapes(rng):
    y, p = _pair(rng, (2, 24, 28, 3))
    eager = ssim(y, p, color="y").numpy()
    f = lambda a, b: ssim(a, b, color="y")  # noqa: E731
    np.testing.assert_allclose(tf.function(f, jit_compile=True)(y, p).numpy(), eager, atol=1e-5)
    spec = tf.TensorSpec([None, None, None, 3], tf.float32)
    g = tf.function(f, input_signature=[spec, spec])
    np.testing.assert_allclose(g(y, p).numpy(), eager, atol=1e-6)
    with pytest.raises(tf.errors.InvalidArgumentError, match="at least 11"):
        g(y[:, :8], p[:, :8])


# --------------------------------------------------------------------- MS-SSIM
@pytest.mark.parametrize("combine", ["product", "sum"])
def test_ms_ssim_matches_numpy_reference(rng, combine):
    # Odd sizes exercise the symmetric border of the 2x2 downsampling.
    y, p = _pair(rng, (2, 167, 181, 3), dtype="float64")
    ref = [np.mean([_np_ms_ssim(y[i, ..., c], p[i, ..., c], combine=combine) for c in range(3)])
           for i in range(2)]
    np.testing.assert_allclose(ms_ssim(y, p, combine=combine).numpy(), ref, rtol=1e-9)


def test_ms_ssim_matches_tf_image_ssim_multiscale_on_grayscale(rng):
    y, p = _pair(rng, (2, 176, 192, 1))
    np.testing.assert_allclose(
        ms_ssim(y, p).numpy(), tf.image.ssim_multiscale(y, p, 1.0).numpy(), atol=2e-5
    )


def test_ms_ssim_min_size_error_names_minimum(rng):
    assert ms_ssim_min_size() == (11 - 1) * 2**4 + 1 == 161
    y = np.zeros((1, 160, 200, 3), "float32")
    with pytest.raises(ValueError, match=r"at least 161"):
        ms_ssim(y, y)
    y = np.zeros((1, 170, 170, 3), "float32")
    with pytest.raises(ValueError, match=r"after cropping 5 px.*at least 161"):
        ms_ssim(y, y, crop_border=5)
    assert ms_ssim_min_size(7, 3) == 25  # fewer scales / smaller windows accept smaller images
    y = rng.uniform(size=(1, 25, 25, 1)).astype("float32")
    value = ms_ssim(y, y, power_factors=[0.2, 0.3, 0.5], filter_size=7)
    np.testing.assert_allclose(value.numpy(), [1.0], atol=1e-6)


def test_ms_ssim_negative_contrast_is_clamped_with_finite_gradient(rng):
    y, _ = _pair(rng, (2, 161, 161, 1))
    v = tf.Variable(1.0 - y)  # anti-correlated: cs < 0 at every scale
    with tf.GradientTape() as tape:
        value = ms_ssim(y, v)
    g = tape.gradient(value, v).numpy()
    np.testing.assert_array_equal(value.numpy(), [0.0, 0.0])
    assert np.all(np.isfinite(g))
    # sum form clamps too and stays in [0, 1]
    assert np.all(ms_ssim(y, 1.0 - y, combine="sum").numpy() >= 0)


def test_ms_ssim_gradient_finite_and_nonzero(rng):
    y, p = _pair(rng, (1, 161, 161, 1))
    v = tf.Variable(p)
    with tf.GradientTape() as tape:
        value = ms_ssim(y, v)
    g = tape.gradient(value, v).numpy()
    assert np.all(np.isfinite(g)) and np.any(g != 0)


@pytest.mark.parametrize(
    "fn,kwargs,match",
    [
        (ssim, {"filter_size": 0}, "filter_size"),
        (ssim, {"k2": -0.1}, "k2"),
        (ssim, {"color": "lab"}, "color"),
        (ms_ssim, {"combine": "mean"}, "combine"),
        (ms_ssim, {"power_factors": []}, "power_factors"),
    ],
)
def test_bad_options_raise(fn, kwargs, match):
    y = np.zeros((1, 161, 161, 3), "float32")
    with pytest.raises(ValueError, match=match):
        fn(y, y, **kwargs)


@pytest.mark.parametrize(
    "y_true,y_pred,exc,match",
    [
        (np.zeros((16, 16, 3), "f4"), np.zeros((16, 16, 3), "f4"), ValueError, "rank-4"),
        (np.zeros((1, 16, 16, 3), "f4"), np.zeros((1, 16, 17, 3), "f4"), ValueError, "same shape"),
        (np.zeros((1, 16, 16, 3), "u1"), np.zeros((1, 16, 16, 3), "f4"), TypeError, "`y_true`"),
        (np.zeros((1, 16, 16, 3), "f4"), np.full((1, 16, 16, 3), np.inf, "f4"), ValueError, "Inf"),
        (np.zeros((1, 8, 16, 3), "f4"), np.zeros((1, 8, 16, 3), "f4"), ValueError, "at least 11"),
    ],
)
def test_ssim_bad_inputs(y_true, y_pred, exc, match):
    with pytest.raises(exc, match=match):
        ssim(y_true, y_pred)


# --------------------------------------------------------------------- metrics
def test_ssim_metric_streams_and_serializes(rng):
    y1, p1 = _pair(rng, (2, 16, 16, 3))
    y2, p2 = _pair(rng, (3, 16, 16, 3), sigma=0.3)
    m = SSIM(color="gray")
    m.update_state(y1, p1)
    m.update_state(y2, p2)
    ref = np.concatenate([ssim(a, b, color="gray").numpy() for a, b in ((y1, p1), (y2, p2))]).mean()
    np.testing.assert_allclose(float(m.result()), ref, rtol=1e-5)
    config = SSIM(data_range=255.0, color="y", crop_border=4, quantize=True, downsample=True).get_config()
    assert SSIM.from_config(config).get_config() == config
    ser = keras.saving.serialize_keras_object(MSSSIM(combine="sum", power_factors=[0.5, 0.5]))
    de = keras.saving.deserialize_keras_object(ser)
    assert type(de) is MSSSIM and de.combine == "sum" and de.power_factors == (0.5, 0.5)


def test_ms_ssim_power_factors_rename(rng):
    """``weights`` only means pretrained weights; the scale exponents are
    ``power_factors`` (as in ``tf.image.ssim_multiscale``); old configs still load."""
    y = np.zeros((1, 161, 161, 3), "float32")
    with pytest.raises(TypeError, match="`weights` was renamed `power_factors`"):
        ms_ssim(y, y, weights=MS_SSIM_WEIGHTS)
    with pytest.raises(TypeError, match="unexpected keyword argument 'filter'"):
        ms_ssim(y, y, filter=7)
    with pytest.raises(TypeError, match="`weights` was renamed `power_factors`"):
        MSSSIM(weights=[0.5, 0.5])
    config = MSSSIM(power_factors=[0.5, 0.5], combine="sum", name="ms").get_config()
    assert config["power_factors"] == [0.5, 0.5] and "weights" not in config
    assert MSSSIM.from_config(config).get_config() == config
    old = {k: v for k, v in config.items() if k != "power_factors"}
    old["weights"] = [0.5, 0.5]  # a config saved before the rename
    loaded = MSSSIM.from_config(old)
    assert loaded.power_factors == (0.5, 0.5) and loaded.get_config() == config
    ser = keras.saving.serialize_keras_object(MSSSIM(power_factors=[0.5, 0.5]))
    ser["config"]["weights"] = ser["config"].pop("power_factors")
    assert keras.saving.deserialize_keras_object(ser).power_factors == (0.5, 0.5)


def test_metrics_in_compile_evaluate_and_save(rng):
    y, p = _pair(rng, (4, 161, 161, 3))
    inp = keras.Input((161, 161, 3))
    model = keras.Model(inp, keras.layers.Identity()(inp))
    model.compile(loss="mse", metrics=[SSIM(), MSSSIM()])
    out = model.evaluate(p, y, batch_size=2, return_dict=True, verbose=0)
    np.testing.assert_allclose(out["ssim"], ssim(y, p).numpy().mean(), rtol=1e-5)
    np.testing.assert_allclose(out["ms_ssim"], ms_ssim(y, p).numpy().mean(), rtol=1e-5)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.keras")
        model.save(path)
        loaded = keras.saving.load_model(path)
    out2 = loaded.evaluate(p, y, batch_size=4, return_dict=True, verbose=0)
    np.testing.assert_allclose(out2["ms_ssim"], out["ms_ssim"], rtol=1e-5)


def test_metric_under_mirrored_strategy(strategy, rng):
    y, p = _pair(rng, (4, 16, 16, 3))
    with strategy.scope():
        inp = keras.Input((16, 16, 3))
        model = keras.Model(inp, keras.layers.Identity()(inp))
        model.compile(loss="mse", metrics=[SSIM()])
    out = model.evaluate(p, y, batch_size=4, return_dict=True, verbose=0)
    np.testing.assert_allclose(out["ssim"], ssim(y, p).numpy().mean(), rtol=1e-5)
