"""Degradations: statistics, formulas against NumPy, determinism under a seed, configs, errors."""

import numpy as np
import pytest
import tensorflow as tf
from scipy.signal import convolve2d

from tfrestore.data import bicubic_downsample
from tfrestore.data import degradations as D

IMG = tf.random.stateless_uniform((3, 24, 28, 3), seed=[9, 9])

# name -> (function, kwargs); every stochastic degradation of the module.
FUNCS = {
    "gaussian_fixed": (D.add_gaussian_noise, {"sigma": 0.1}),
    "gaussian_blind": (D.add_gaussian_noise, {"sigma": (0.0, 75 / 255)}),
    "haze": (D.add_haze, {}),
    "rain": (D.add_rain, {}),
    "low_light": (D.low_light, {}),
    "low_light_poisson": (D.low_light, {"exact_poisson": True}),
    "jpeg": (D.jpeg_compress, {}),
    "motion_trajectory": (D.motion_blur, {"kernel_size": 9, "length": (3, 9)}),
    "motion_linear": (D.motion_blur, {"kernel_size": 9, "length": (3, 9), "kind": "linear"}),
}


@pytest.mark.parametrize("name", sorted(FUNCS))
def test_deterministic_under_seed_and_seed_sensitive(name):
    fn, kw = FUNCS[name]
    a = fn(IMG, [1, 2], **kw).numpy()
    b = fn(IMG, tf.constant([1, 2]), **kw).numpy()
    c = fn(IMG, [1, 3], **kw).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.shape == IMG.shape and a.dtype == np.float32
    # tf.function with unknown shapes (as in tf.data) gives the same values.
    g = tf.function(
        lambda x, s: fn(x, s, **kw),
        input_signature=[tf.TensorSpec([None, None, None, 3]), tf.TensorSpec([2], tf.int64)],
    )
    np.testing.assert_allclose(g(IMG, tf.constant([1, 2], tf.int64)).numpy(), a, atol=1e-6)
    single = fn(IMG[0], [1, 2], **kw)
    assert single.shape == IMG.shape[1:]


def test_gaussian_noise_std_matches_sigma(rng):
    x = tf.fill((4, 128, 128, 3), 0.5)
    for sigma in (5 / 255, 25 / 255, 50 / 255):
        y = D.add_gaussian_noise(x, 7, sigma).numpy()
        assert abs((y - 0.5).std() - sigma) < 0.01 * sigma + 1e-4
        assert abs((y - 0.5).mean()) < 0.01 * sigma + 2e-4


def test_blind_noise_per_image_sigma_and_map():
    x = tf.fill((64, 48, 48, 3), 0.5)
    y, p = D.add_gaussian_noise(x, [3, 4], (0.0, 75 / 255), return_params=True)
    sig = p["sigma"].numpy()
    assert sig.shape == (64,) and sig.min() >= 0 and sig.max() <= 75 / 255
    assert sig.std() > 0.05  # really drawn per image, spread over the range
    measured = (y.numpy() - 0.5).reshape(64, -1).std(axis=1)
    np.testing.assert_allclose(measured, sig, atol=0.01)
    assert p["sigma_map"].shape == (64, 48, 48, 1)
    np.testing.assert_allclose(p["sigma_map"].numpy()[:, 5, 7, 0], sig)


def test_noise_clipping():
    x = tf.fill((1, 32, 32, 3), 0.95)
    assert float(tf.reduce_max(D.add_gaussian_noise(x, 0, 0.2))) > 1.0
    clipped = D.add_gaussian_noise(x, 0, 0.2, clip=True)
    assert float(tf.reduce_max(clipped)) <= 1.0 and float(tf.reduce_min(clipped)) >= 0.0


def test_haze_follows_scattering_model():
    y, p = D.add_haze(IMG, [5, 5], return_params=True)
    t, a = p["transmission"].numpy(), p["airlight"].numpy()
    ref = IMG.numpy() * t + a[:, None, None, None] * (1 - t)
    np.testing.assert_allclose(y.numpy(), ref, atol=1e-6)
    np.testing.assert_allclose(
        t, np.exp(-p["beta"].numpy()[:, None, None, None] * p["depth_map"].numpy()), rtol=1e-5
    )
    assert 0 < t.min() and t.max() <= 1
    # vertical proxy: transmission increases from the top (far) to the bottom (near)
    _, pv = D.add_haze(IMG, 1, depth_map="vertical", beta=1.0, return_params=True)
    col = pv["transmission"].numpy()[0, :, 0, 0]
    assert np.all(np.diff(col) > 0) and abs(col[0] - np.exp(-1)) < 1e-6 and abs(col[-1] - 1) < 1e-6
    _, pu = D.add_haze(IMG, 1, depth_map="uniform", beta=0.5, return_params=True)
    np.testing.assert_allclose(pu["transmission"].numpy(), np.exp(-0.5), rtol=1e-6)
    depth = np.linspace(0, 2, 24 * 28, dtype=np.float32).reshape(24, 28, 1)
    _, pd = D.add_haze(IMG, 1, depth_map=depth, beta=1.0, return_params=True)
    np.testing.assert_allclose(pd["transmission"].numpy()[2], np.exp(-depth), rtol=1e-5)


def test_rain_brightens_within_range():
    dark = tf.zeros((2, 64, 64, 3))
    y, p = D.add_rain(dark, [0, 1], return_params=True)
    y = y.numpy()
    assert y.min() >= 0 and y.max() <= 1 and (y > 0.2).mean() > 0.01
    np.testing.assert_allclose(y[..., :1], p["streaks"].numpy(), atol=1e-6)  # screen blend on black
    # vertical streaks: more correlation along rows than columns
    s = p["streaks"].numpy()[0, ..., 0]
    _, pv = D.add_rain(dark, [0, 1], angle=0.0, length=20, return_params=True)
    s = pv["streaks"].numpy()[0, ..., 0]
    vert = np.corrcoef(s[1:].ravel(), s[:-1].ravel())[0, 1]
    horiz = np.corrcoef(s[:, 1:].ravel(), s[:, :-1].ravel())[0, 1]
    assert vert > 0.8 and vert > horiz + 0.3


def test_low_light_formula_and_noise_variance():
    x = tf.fill((1, 128, 128, 1), 0.6)
    clean = D.low_light(x, 0, gamma=2.2, exposure=0.3, shot_noise=0.0, read_noise=0.0).numpy()
    np.testing.assert_allclose(clean, 0.3 * 0.6**2.2, rtol=1e-5)
    y0 = 0.3 * 0.6**2.2
    for exact in (False, True):
        noisy = D.low_light(
            tf.fill((4, 128, 128, 1), 0.6),
            1,
            gamma=2.2,
            exposure=0.3,
            shot_noise=0.01,
            read_noise=0.02,
            exact_poisson=exact,
            clip=False,
        ).numpy()
        np.testing.assert_allclose(noisy.var(), 0.01 * y0 + 0.02**2, rtol=0.05)
        np.testing.assert_allclose(noisy.mean(), y0, atol=2e-3)


def test_jpeg_quality_and_artifacts():
    x = IMG
    y, p = D.jpeg_compress(x, 3, quality=(20, 40), return_params=True)
    q = p["quality"].numpy()
    assert q.dtype == np.int32 and q.min() >= 20 and q.max() <= 40
    lo = D.jpeg_compress(x, 3, quality=5).numpy()
    hi = D.jpeg_compress(x, 3, quality=95).numpy()
    err = lambda t: np.abs(t - x.numpy()).mean()  # noqa: E731
    assert err(lo) > err(hi) > 0
    assert np.allclose(hi * 255, np.round(hi * 255), atol=1e-4)  # decoded 8-bit values
    grey = D.jpeg_compress(x[..., :1], 0, quality=50)
    assert grey.shape == (3, 24, 28, 1)


def test_motion_kernels_and_convolution():
    k = D.motion_kernel([1, 2], 5, kernel_size=11, length=(4, 11)).numpy()
    assert k.shape == (5, 11, 11) and k.min() >= 0
    np.testing.assert_allclose(k.sum(axis=(1, 2)), 1.0, rtol=1e-5)
    assert len({kk.tobytes() for kk in k}) == 5  # a different kernel per image
    x = tf.random.stateless_uniform((2, 20, 20, 1), seed=[4, 4])
    y, p = D.motion_blur(x, [8, 8], kernel_size=7, length=(3, 7), return_params=True)
    kern = p["kernel"].numpy()
    for b in range(2):
        padded = np.pad(x.numpy()[b, ..., 0], 3, mode="reflect")
        ref = convolve2d(padded, kern[b], mode="valid")
        np.testing.assert_allclose(y.numpy()[b, ..., 0], ref, atol=1e-5)
    # a fixed asymmetric kernel: true convolution, not correlation
    fixed = np.zeros((3, 3), np.float32)
    fixed[1, 2] = 1.0  # shifts the image one pixel to the right
    out = D.motion_blur(x, 0, kernel=fixed).numpy()
    np.testing.assert_allclose(out[:, :, 1:], x.numpy()[:, :, :-1], atol=1e-6)
    lin = D.motion_kernel(0, kernel_size=9, length=9, kind="linear", angle=90.0).numpy()
    assert np.allclose(lin[4], 1 / 9, atol=1e-6)  # horizontal line through the centre


def test_bicubic_downsample_shapes_and_range():
    y = bicubic_downsample(IMG[:, :24, :24], 4)
    assert y.shape == (3, 6, 6, 3)
    assert float(tf.reduce_min(y)) >= 0 and float(tf.reduce_max(y)) <= 1
    assert D.BicubicDownsample(3)(IMG[0, :24, :24], 0).shape == (8, 8, 3)


def test_configs_round_trip_and_compose():
    degs = [
        D.GaussianNoise(sigma=(0.0, 0.3), sigma_map=True),
        D.BicubicDownsample(2, quantize=True),
        D.Haze(beta=(1.0, 2.0), depth_map="vertical"),
        D.Rain(angle=10.0),
        D.LowLight(gamma=2.0),
        D.JPEG(quality=(40, 60)),
        D.MotionBlur(kernel_size=7, length=(3, 7), kind="linear"),
        D.Compose(
            [D.MotionBlur(kernel_size=5, length=3), D.BicubicDownsample(2), D.GaussianNoise(0.05)]
        ),
        D.Identity(),
    ]
    x = IMG[:, :16, :16]
    for d in degs:
        spec = d.to_dict()
        clone = D.get_degradation(spec)
        assert type(clone) is type(d) and clone.get_config() == d.get_config()
        out_a, out_b = d(x, [1, 1]), clone(x, [1, 1])
        for a, b in zip(tf.nest.flatten(out_a), tf.nest.flatten(out_b)):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    comp = degs[-2]
    assert comp.scale == 2 and comp(x, 0).shape == (3, 8, 8, 3)
    # yaml/json-style lists are accepted
    assert D.get_degradation({"type": "jpeg", "quality": [30, 50]}).get_config()["quality"] == (
        30,
        50,
    )


@pytest.mark.parametrize(
    "call, new",
    [
        (lambda: D.motion_kernel(0, size=9), "kernel_size"),
        (lambda: D.motion_blur(IMG, 0, size=9), "kernel_size"),
        (lambda: D.MotionBlur(size=9), "kernel_size"),
        (lambda: D.add_haze(IMG, 0, depth="vertical"), "depth_map"),
        (lambda: D.Haze(depth="vertical"), "depth_map"),
    ],
    ids=["motion_kernel", "motion_blur", "MotionBlur", "add_haze", "Haze"],
)
def test_renamed_keyword_raises_naming_the_new_one(call, new):
    # issue 20: `size` is an output size and `depth` a model's layer count elsewhere
    old = {"kernel_size": "size", "depth_map": "depth"}[new]
    with pytest.raises(TypeError, match=f"`{old}` was renamed `{new}`"):
        call()


def test_other_unknown_keywords_still_refused():
    with pytest.raises(TypeError, match="unexpected keyword argument 'sise'"):
        D.motion_blur(IMG, 0, sise=9)
    with pytest.raises(TypeError, match="unexpected keyword argument 'deph'"):
        D.add_haze(IMG, 0, deph="vertical")


@pytest.mark.parametrize(
    "cls, old_config, new_config",
    [
        (
            D.MotionBlur,
            {"size": 7, "length": [3, 7], "kind": "linear", "angle": 30.0, "curvature": 0.5},
            {"kernel_size": 7, "length": (3, 7), "kind": "linear", "angle": 30.0},
        ),
        (
            D.Haze,
            {"beta": [1.0, 2.0], "airlight": [0.7, 1.0], "depth": "vertical"},
            {"beta": (1.0, 2.0), "airlight": (0.7, 1.0), "depth_map": "vertical"},
        ),
    ],
    ids=["MotionBlur", "Haze"],
)
def test_config_saved_with_old_key_still_builds_the_same(cls, old_config, new_config):
    x = IMG[:, :16, :16]
    expected = cls(**new_config)
    want = expected(x, [2, 3]).numpy()
    old_key, new_key = {D.MotionBlur: ("size", "kernel_size"), D.Haze: ("depth", "depth_map")}[cls]
    assert new_key in expected.get_config() and old_key not in expected.get_config()
    saved = {"type": cls.name, **old_config}
    built = [
        cls.from_config(dict(old_config)),
        D.get_degradation(saved),
        D.get_degradation({"type": cls.name, "args": dict(old_config)}),
        D.build_degradation({"type": cls.name, "args": dict(old_config)}),
        # a Compose saved inside a run config, its stage holding the old key
        D.get_degradation({"type": "compose", "degradations": [saved]}).degradations[0],
    ]
    for deg in built:
        assert type(deg) is cls and deg.get_config() == expected.get_config()
        np.testing.assert_array_equal(deg(x, [2, 3]).numpy(), want)


def test_dehaze_recipe_uses_depth_map():
    import pathlib

    import yaml

    path = pathlib.Path(__file__).resolve().parents[2] / "train" / "configs" / "dehaze.yaml"
    deg = yaml.safe_load(path.read_text())["data"]["degradation"]
    assert "depth_map" in deg["args"] and "depth" not in deg["args"]
    assert D.build_degradation(deg).get_config()["depth_map"] == "random"


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="sigma"):
        D.add_gaussian_noise(IMG, 0, (0.3, 0.1))
    with pytest.raises(ValueError, match="sigma"):
        D.add_gaussian_noise(IMG, 0, -0.1)
    with pytest.raises(ValueError, match="rank 3 or 4"):
        D.add_haze(tf.zeros((4, 4)), 0)
    with pytest.raises(TypeError, match="float"):
        D.add_rain(tf.zeros((4, 4, 3), tf.uint8), 0)
    with pytest.raises(ValueError, match="shape \\[2\\]"):
        D.add_gaussian_noise(IMG, [1, 2, 3])
    with pytest.raises(TypeError, match="seed"):
        D.add_gaussian_noise(IMG, None)
    with pytest.raises(ValueError, match="quality"):
        D.jpeg_compress(IMG, 0, quality=(50, 120))
    with pytest.raises(ValueError, match="kernel_size"):
        D.motion_kernel(0, kernel_size=8)
    with pytest.raises(ValueError, match="depth_map"):
        D.add_haze(IMG, 0, depth_map="sky")
    with pytest.raises(ValueError, match="too small for a 15x15 kernel"):
        D.motion_blur(tf.zeros((1, 6, 40, 3)), 0, kernel_size=15)
    with pytest.raises(ValueError, match="Unknown degradation"):
        D.get_degradation("blurr")
    with pytest.raises(TypeError, match="unknown argument"):
        D.Haze(betta=1.0)
    with pytest.raises(ValueError, match="only the last stage"):
        D.Compose([D.GaussianNoise(0.1, sigma_map=True), D.JPEG()])(IMG, 0)


def test_usable_in_tf_data_map():
    ds = tf.data.Dataset.from_tensor_slices(IMG).batch(3).enumerate()
    deg = D.Compose([D.Rain(), D.JPEG(quality=70)])
    ds = ds.map(lambda i, x: deg(x, tf.stack([tf.constant(5, tf.int64), i])))
    out = next(iter(ds)).numpy()
    np.testing.assert_array_equal(out, deg(IMG, tf.constant([5, 0], tf.int64)).numpy())


def test_real_photo_noise_std(data_dir):
    from tfrestore.data import read_image

    x = read_image(data_dir / "kodak24" / "kodim23.png")[:128, :128]
    y = D.add_gaussian_noise(x, [0, 0], 25 / 255).numpy()
    assert abs((y - x).std() - 25 / 255) < 0.003


def test_noise_levels_above_the_data_range_are_refused():
    """Issue 21: sigma 25 on [0, 1] images is the paper's 25/255; refuse it, naming the fix."""
    from tfrestore.data import get_degradation

    with pytest.raises(ValueError, match=r"`sigma` 25 is above the data range 1.*25/255"):
        get_degradation({"type": "gaussian_noise", "sigma": 25})
    with pytest.raises(ValueError, match=r"did you mean \(0, 75/255\)"):
        D.GaussianNoise(sigma=(0, 75))
    with pytest.raises(ValueError, match="did you mean 25/255"):
        D.add_gaussian_noise(IMG, 0, sigma=25)
    with pytest.raises(ValueError, match="read_noise.*did you mean 3/255"):
        D.LowLight(read_noise=3)
    # a [0, 255] pipeline says so
    deg = get_degradation({"type": "gaussian_noise", "sigma": 25, "data_range": 255, "clip": True})
    noisy = np.asarray(deg(tf.fill((32, 32, 3), 128.0), 0))
    assert 10 < noisy.std() < 40 and noisy.max() <= 255
    assert deg.get_config()["data_range"] == 255
    assert "data_range" not in D.GaussianNoise(0.1).get_config()  # unchanged configs
    D.GaussianNoise(sigma=1.0)  # at the data range: allowed


def test_get_degradation_takes_both_spellings_also_in_compose_stages():
    from tfrestore.data import get_degradation

    flat = get_degradation({"type": "gaussian_noise", "sigma": 0.1})
    nested = get_degradation({"type": "gaussian_noise", "args": {"sigma": 0.1}})
    assert repr(flat) == repr(nested)
    chain = get_degradation({"type": "compose", "args": {"degradations": [
        {"type": "gaussian_noise", "args": {"sigma": 0.1}}, {"type": "jpeg", "quality": 50}]}})
    assert [type(d).__name__ for d in chain.degradations] == ["GaussianNoise", "JPEG"]
    assert repr(chain.degradations[0]) == repr(flat)
    for bad, needle in [({"type": "gaussian_noise", "sigmaa": 1}, "no parameter 'sigmaa'"),
                        ({"type": "gaussian_noise", "args": [1]}, "'args' must be a mapping"),
                        ({"sigma": 1}, "no 'type' given")]:
        with pytest.raises(ValueError, match=needle):  # ValueError: a user error, not a bug
            get_degradation(bad)


def test_build_degradation_reads_the_config_spelling_and_names_the_key():
    deg = D.build_degradation({"type": "gaussian_noise", "args": {"sigma": 0.1, "clip": True}})
    assert deg.get_config() == D.GaussianNoise(sigma=0.1, clip=True).get_config()
    assert isinstance(D.build_degradation({"type": "identity"}), D.Identity)
    with pytest.raises(ValueError, match=r"^config key 'data\.val\.degradation': .*'sigmaa'"):
        D.build_degradation({"type": "gaussian_noise", "args": {"sigmaa": 1}},
                            "data.val.degradation")


def test_degrade_image_adds_a_batch_axis_and_keeps_extra_inputs():
    clean = IMG[0, :16, :16].numpy()
    out = D.degrade_image(D.GaussianNoise(sigma=0.1), clean, [3, 1])
    assert isinstance(out, np.ndarray) and out.shape == (1, 16, 16, 3)
    np.testing.assert_array_equal(out, D.GaussianNoise(sigma=0.1)(clean[None], [3, 1]).numpy())
    noisy, sigma_map = D.degrade_image(D.GaussianNoise(sigma=0.1, sigma_map=True), clean, [3, 1])
    assert noisy.shape == (1, 16, 16, 3) and np.allclose(sigma_map, 0.1)
