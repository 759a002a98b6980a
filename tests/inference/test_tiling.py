"""Tiled inference equals whole-image inference (exact once overlap >= receptive field - 1)."""

import keras
import numpy as np
import pytest

from tfrestore.inference.tiling import blend_window, receptive_field, tile_starts, tiled_predict


def conv_net(n_layers, channels=3, out_channels=None, seed=0, activation="relu"):
    """``n_layers`` 3x3 'same' convolutions: receptive field 2 * n_layers + 1."""
    keras.utils.set_random_seed(seed)
    layers = [keras.Input((None, None, channels))]
    for i in range(n_layers):
        last = i == n_layers - 1
        layers.append(
            keras.layers.Conv2D(
                (out_channels or channels) if last else 8,
                3,
                padding="same",
                activation=None if last else activation,
                bias_initializer="random_normal",
            )
        )
    return keras.Sequential(layers)


def sr_net(scale=2, seed=1):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    x = keras.layers.Conv2D(3 * scale * scale, 3, padding="same")(x)
    x = keras.layers.Lambda(lambda t: __import__("tensorflow").nn.depth_to_space(t, scale))(x)
    return keras.Model(inp, x)


def strided_net(seed=2):
    """Downsample x4 and back: translation equivariant only for shifts that are multiples of 4."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(inp)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.Conv2DTranspose(8, 4, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.Conv2DTranspose(3, 4, strides=2, padding="same")(x)
    return keras.Model(inp, keras.layers.Add()([inp, x]))


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(0).random((45, 61, 3), dtype=np.float32)


def whole(model, img):
    return np.asarray(model(img[None], training=False))[0]


@pytest.mark.parametrize("tile,overlap", [(16, 8), (20, 12), ((16, 24), 9)])
@pytest.mark.parametrize("blend", ["linear", "none"])
def test_exact_when_overlap_covers_receptive_field(image, tile, overlap, blend):
    net = conv_net(4)  # receptive field 9
    out = tiled_predict(net, image, tile_size=tile, overlap=overlap, receptive_field=9, blend=blend)
    assert out.shape == image.shape
    np.testing.assert_allclose(out, whole(net, image), atol=2e-6, rtol=0)


def test_overlap_below_receptive_field_is_inexact_at_seams_only(image):
    net = conv_net(4)
    ref = whole(net, image)
    out = tiled_predict(net, image, tile_size=16, overlap=4, receptive_field=9)
    err = np.abs(out - ref).max(axis=-1)
    assert err.max() > 1e-4  # the test can fail: too little overlap must show
    # Away from the seams (farther than the receptive radius from any tile edge) it is exact.
    ys, _, _ = tile_starts(45, 16, 4)
    xs, _, _ = tile_starts(61, 16, 4)
    near = np.zeros(err.shape, bool)
    for s in ys[1:]:
        near[max(0, s - 8) : s + 4 + 8] = True
    for s in xs[1:]:
        near[:, max(0, s - 8) : s + 4 + 8] = True
    assert err[~near].max() < 2e-6


def test_linear_blend_without_receptive_field_is_close(image):
    net = conv_net(4)
    ref = whole(net, image)
    out = tiled_predict(net, image, tile_size=24, overlap=12)
    scale = np.abs(ref).max()
    # Measured: max 5%, mean 0.5% of the output range; errors live in the overlaps only.
    assert np.abs(out - ref).max() < 0.1 * scale
    assert np.abs(out - ref).mean() < 0.01 * scale


def test_super_resolution_scale_is_inferred(image):
    net = sr_net(scale=2)
    out = tiled_predict(net, image, tile_size=16, overlap=6, receptive_field=5, batch_size=3)
    assert out.shape == (90, 122, 3)
    np.testing.assert_allclose(out, whole(net, image), atol=2e-6, rtol=0)


def test_strided_network_needs_align():
    img = np.random.default_rng(1).random((48, 64, 3), dtype=np.float32)
    net = strided_net()
    ref = whole(net, img)
    rf = receptive_field(net, max_size=256)
    assert rf is not None and rf % 2 == 1
    out = tiled_predict(net, img, tile_size=32, overlap=rf, receptive_field=rf, align=4)
    np.testing.assert_allclose(out, ref, atol=5e-6, rtol=0)


def test_align_pads_and_crops_back():
    img = np.random.default_rng(2).random((30, 37, 3), dtype=np.float32)
    net = conv_net(2)
    out = tiled_predict(net, img, tile_size=16, overlap=6, receptive_field=5, align=4)
    assert out.shape == img.shape
    # Interior pixels (away from the padded bottom/right border) are exact.
    np.testing.assert_allclose(out[:-3, :-3], whole(net, img)[:-3, :-3], atol=2e-6, rtol=0)


def test_plain_callable_and_batched_input(image):
    fn = lambda x: x * 2.0 + 1.0  # noqa: E731  pointwise: every tiling is exact
    out = tiled_predict(fn, image[None], tile_size=10, overlap=3)
    assert out.shape == (1,) + image.shape
    np.testing.assert_allclose(out[0], image * 2 + 1, atol=1e-6)


def test_small_image_is_one_tile():
    img = np.ones((5, 7, 1), np.float32)
    calls = []

    def fn(x):
        calls.append(x.shape)
        return x

    out = tiled_predict(fn, img, tile_size=64, overlap=8)
    assert calls == [(1, 5, 7, 1)]
    np.testing.assert_array_equal(out, img)


def test_receptive_field_of_plain_convolutions():
    assert receptive_field(conv_net(3)) == 7
    assert receptive_field(conv_net(5, channels=1)) == 11


def test_blend_windows_sum_to_one_across_an_overlap():
    t, o, m = 20, 8, 2
    a = blend_window(t, False, True, margin=m, ramp=o - 2 * m)
    b = blend_window(t, True, False, margin=m, ramp=o - 2 * m)
    total = np.zeros(2 * t - o)
    total[:t] += a
    total[t - o :] += b
    np.testing.assert_allclose(total, 1.0, atol=1e-6)
    assert np.all(a[t - m :] == 0) and np.all(b[:m] == 0)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(tile_size=16, overlap=16), "overlap"),
        (dict(tile_size=0), "tile_size"),
        (dict(tile_size=16, blend="cosine"), "blend"),
        (dict(tile_size=(16,)), "tile_size"),
        (dict(tile_size=16, batch_size=0), "batch_size"),
        (dict(tile_size=16, receptive_field=-3), "receptive_field"),
    ],
)
def test_bad_arguments(image, kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        tiled_predict(lambda x: x, image, **kwargs)


def test_bad_image_and_model_outputs():
    with pytest.raises(ValueError, match="shape"):
        tiled_predict(lambda x: x, np.zeros((4, 4)), tile_size=2)
    with pytest.raises(ValueError, match="integer multiple"):
        tiled_predict(lambda x: x[:, :-1], np.zeros((8, 8, 3), np.float32), tile_size=4, overlap=1)
    with pytest.raises(ValueError, match="batch"):
        tiled_predict(lambda x: x[0], np.zeros((8, 8, 3), np.float32), tile_size=4, overlap=1)
