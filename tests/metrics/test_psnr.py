import os
import tempfile

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio

from tfrestore.metrics import PSNR, psnr


def _pair(rng, shape=(3, 24, 20, 3), sigma=0.1, scale=1.0):
    y = rng.uniform(size=shape)
    p = np.clip(y + rng.normal(0, sigma, size=shape), 0, 1)
    return (y * scale).astype("float32"), (p * scale).astype("float32")


def _y_channel(x, data_range):
    """BT.601 luma as MATLAB rgb2ycbcr / BasicSR (independent NumPy formula)."""
    r, g, b = (x[..., i] / data_range for i in range(3))
    return data_range * (16.0 + 65.481 * r + 128.553 * g + 24.966 * b) / 255.0


def test_matches_skimage_on_random_images(rng):
    y, p = _pair(rng)
    y64, p64 = y.astype(np.float64), p.astype(np.float64)
    ref = [peak_signal_noise_ratio(a, b, data_range=1.0) for a, b in zip(y64, p64)]
    np.testing.assert_allclose(psnr(y, p).numpy(), ref, rtol=1e-5)


@pytest.mark.parametrize("name", ["kodim03.png", "kodim19.png"])
def test_matches_skimage_on_real_images(data_dir, name, rng):
    img = np.asarray(Image.open(data_dir / "kodak24" / name).convert("RGB"))[:96, :128]
    noisy = np.clip(np.round(img + rng.normal(0, 12, img.shape)), 0, 255).astype(np.uint8)
    ref = peak_signal_noise_ratio(img, noisy, data_range=255)
    # [0, 255] floats with data_range=255 and [0, 1] floats with data_range=1 agree.
    v255 = psnr(img[None].astype("float64"), noisy[None].astype("float64"), data_range=255.0)
    v1 = psnr(img[None] / 255.0, noisy[None] / 255.0)
    np.testing.assert_allclose(v255.numpy(), [ref], rtol=1e-10)
    np.testing.assert_allclose(v1.numpy(), [ref], rtol=1e-10)


def test_y_channel_and_crop_border_match_numpy(rng):
    y, p = _pair(rng, shape=(2, 20, 22, 3), scale=255.0)
    c = 3
    yt, yp = _y_channel(y.astype(np.float64), 255.0), _y_channel(p.astype(np.float64), 255.0)
    yt, yp = yt[:, c:-c, c:-c], yp[:, c:-c, c:-c]
    mse = ((yt - yp) ** 2).mean(axis=(1, 2))
    ref = 10 * np.log10(255.0**2 / mse)
    got = psnr(y, p, data_range=255.0, color="y", crop_border=c).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-5)
    # A single-channel image is used as is for every colour option.
    np.testing.assert_allclose(
        psnr(y[..., :1], p[..., :1], color="y").numpy(), psnr(y[..., :1], p[..., :1]).numpy()
    )


def test_quantize_equals_8bit_round_trip(rng):
    y, p = _pair(rng)
    p = p + 0.02  # some values above 1: clipped like a saved 8-bit image
    to8 = lambda x: np.floor(np.clip(x, 0, 1) * 255 + 0.5) / 255  # noqa: E731
    ref = psnr(to8(y.astype(np.float64)), to8(p.astype(np.float64))).numpy()
    np.testing.assert_allclose(psnr(y, p, quantize=True).numpy(), ref, rtol=1e-5)
    assert not np.allclose(psnr(y, p).numpy(), ref, rtol=1e-5)


def test_identical_images_give_inf_and_known_values():
    y = np.full((2, 8, 8, 3), 0.5, "float32")
    assert np.all(np.isinf(psnr(y, y).numpy()))
    d = np.array([0.1, 0.001], "float32")[:, None, None, None]
    np.testing.assert_allclose(psnr(y, y + d).numpy(), [20.0, 60.0], rtol=1e-4)


def test_graph_and_xla_equal_eager(rng):
    y, p = _pair(rng)
    eager = psnr(y, p, color="y", crop_border=2).numpy()
    f = lambda a, b: psnr(a, b, color="y", crop_border=2)  # noqa: E731
    np.testing.assert_allclose(tf.function(f)(y, p).numpy(), eager, rtol=1e-6)
    np.testing.assert_allclose(tf.function(f, jit_compile=True)(y, p).numpy(), eager, rtol=1e-5)


def Z(shape, dtype="float32", fill=0.0):  # noqa: N802
    return np.full(shape, fill, dtype)


IMG = (1, 8, 8, 3)


@pytest.mark.parametrize(
    "y_true,y_pred,kwargs,exc,match",
    [
        (Z((8, 8, 3)), Z((8, 8, 3)), {}, ValueError, "rank-4"),
        (Z(IMG), Z((1, 8, 9, 3)), {}, ValueError, "same shape"),
        (Z(IMG, "uint8"), Z(IMG), {}, TypeError, "`y_true`"),
        (Z(IMG), Z(IMG, "int32"), {}, TypeError, "`y_pred`"),
        (Z(IMG), Z(IMG, fill=np.nan), {}, ValueError, "NaN"),
        (Z((1, 8, 8, 4)), Z((1, 8, 8, 4)), {"color": "y"}, ValueError, "3 channels"),
        (Z(IMG), Z(IMG), {"crop_border": 4}, ValueError, "crop_border"),
        (Z(IMG), Z(IMG), {"data_range": 0}, ValueError, "data_range"),
        (Z(IMG), Z(IMG), {"color": "ycbcr"}, ValueError, "color"),
    ],
)
def test_bad_inputs_raise_clear_errors(y_true, y_pred, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        psnr(y_true, y_pred, **kwargs)


def test_metric_streams_mean_over_images(rng):
    y1, p1 = _pair(rng, shape=(3, 16, 16, 3))
    y2, p2 = _pair(rng, shape=(1, 16, 16, 3), sigma=0.3)
    m = PSNR()
    m.update_state(y1, p1)
    m.update_state(y2, p2)
    per_image = np.concatenate([psnr(y1, p1).numpy(), psnr(y2, p2).numpy()])
    np.testing.assert_allclose(float(m.result()), per_image.mean(), rtol=1e-5)
    m.reset_state()
    m.update_state(y1, p1, sample_weight=[1.0, 0.0, 3.0])
    v = psnr(y1, p1).numpy()
    np.testing.assert_allclose(float(m.result()), (v[0] + 3 * v[2]) / 4, rtol=1e-5)


def test_metric_config_serialization_and_keras_fit_evaluate_save(rng):
    m = PSNR(data_range=255.0, color="y", crop_border=2, quantize=True, name="psnr_y")
    config = m.get_config()
    assert config["data_range"] == 255.0 and config["color"] == "y" and config["crop_border"] == 2
    assert PSNR.from_config(config).get_config() == config
    de = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(m))
    assert type(de) is PSNR and de.get_config() == config

    y, p = _pair(rng, shape=(4, 16, 16, 3))
    inp = keras.Input((16, 16, 3))
    model = keras.Model(inp, keras.layers.Identity()(inp))
    model.compile(loss="mse", metrics=[PSNR(), PSNR(color="y", crop_border=1, name="psnr_y")])
    out = model.evaluate(p, y, batch_size=2, return_dict=True, verbose=0)
    np.testing.assert_allclose(out["psnr"], psnr(y, p).numpy().mean(), rtol=1e-5)
    ref_y = psnr(y, p, color="y", crop_border=1).numpy().mean()
    np.testing.assert_allclose(out["psnr_y"], ref_y, rtol=1e-5)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.keras")
        model.save(path)
        loaded = keras.saving.load_model(path)
        out2 = loaded.evaluate(p, y, batch_size=2, return_dict=True, verbose=0)
    np.testing.assert_allclose(out2["psnr_y"], out["psnr_y"], rtol=1e-6)


def test_metric_rejects_bad_options():
    with pytest.raises(ValueError, match="data_range"):
        PSNR(data_range=-1)
    with pytest.raises(ValueError, match="crop_border"):
        PSNR(crop_border=-2)
