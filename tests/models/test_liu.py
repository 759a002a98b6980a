"""LiuDenoiser: parameter count, shape arithmetic, Caffe padding equivalences and a
full NumPy re-implementation of the released graph (reference spec section 2.2)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfrestore.models import LiuDenoiser, trainable_params
from tfrestore.testing import TestCase


# ----------------------------------------------------------------- NumPy references
def np_conv(x, w, b=None, stride=1, pad=0):
    """Caffe/PyTorch cross-correlation: NHWC input, HWIO kernel, symmetric zero pad."""
    x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    kh, kw = w.shape[:2]
    oh = (x.shape[1] - kh) // stride + 1
    ow = (x.shape[2] - kw) // stride + 1
    out = np.zeros((x.shape[0], oh, ow, w.shape[3]))
    for i in range(kh):
        for j in range(kw):
            patch = x[
                :, i : i + stride * (oh - 1) + 1 : stride, j : j + stride * (ow - 1) + 1 : stride
            ]
            out += patch @ w[i, j]
    return out if b is None else out + b


def np_deconv(x, w_torch, b=None, stride=2, pad=1):
    """PyTorch ConvTranspose2d / Caffe Deconvolution by scatter-add; weight (in, out, kh, kw)."""
    n, h, wd, _ = x.shape
    _, cout, kh, kw = w_torch.shape
    full = np.zeros((n, (h - 1) * stride + kh, (wd - 1) * stride + kw, cout))
    for i in range(kh):
        for j in range(kw):
            full[
                :, i : i + stride * (h - 1) + 1 : stride, j : j + stride * (wd - 1) + 1 : stride
            ] += (x @ w_torch[:, :, i, j])
    out = full[:, pad : full.shape[1] - pad, pad : full.shape[2] - pad]
    return out if b is None else out + b


def np_bn(x, layer):
    gamma, beta, mean, var = (v.numpy().astype(np.float64) for v in layer.weights)
    return gamma * (x - mean) / np.sqrt(var + layer.epsilon) + beta


def np_liu(model, x, padding):
    """Forward pass of the prototxt graph with the Keras model's weights (inference BN)."""
    L = model.get_layer
    relu = lambda t: np.maximum(t, 0)  # noqa: E731

    def conv(name, t, stride=1, pad=None):
        layer = L(name)
        ws = [v.numpy().astype(np.float64) for v in layer.weights]
        k = ws[0].shape[0]
        return np_conv(
            t, ws[0], ws[1] if len(ws) > 1 else None, stride, k // 2 if pad is None else pad
        )

    def deconv(name, t):
        k, b = (v.numpy().astype(np.float64) for v in L(name).weights)
        return np_deconv(t, k.transpose(3, 2, 0, 1), b)  # Keras (kh, kw, out, in) -> torch layout

    def bottleneck(name, t):
        h = relu(np_bn(conv(f"{name}_conv1", t), L(f"{name}_bn1")))
        h = relu(np_bn(conv(f"{name}_conv2", h), L(f"{name}_bn2")))
        h = np_bn(conv(f"{name}_conv3", h), L(f"{name}_bn3"))
        return relu(t + h)

    edge = 0 if padding == "valid" else None
    c0 = conv("conv0", x, pad=edge)
    r1 = bottleneck("res1", relu(np_bn(conv("conv1", c0, stride=2, pad=1), L("conv1_bn"))))
    r2 = bottleneck("res2", relu(np_bn(conv("conv2", r1, stride=2, pad=1), L("conv2_bn"))))
    h = np.concatenate([r1, deconv("upsample_r2", r2)], -1)
    r3 = bottleneck("res3", relu(np_bn(conv("conv3", h), L("conv3_bn"))))
    h = np.concatenate([c0, deconv("upsample_r3", r3)], -1)
    out = conv("concat_reduction", h, pad=edge)
    skip = x[:, 3:-3, 3:-3] if padding == "valid" else x
    return out + skip


def _randomize_bn(model, rng):
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            g, b, m, v = layer.weights
            for var, val in (
                (g, rng.uniform(0.5, 1.5, g.shape)),
                (b, rng.normal(0, 0.1, b.shape)),
                (m, rng.normal(0, 0.1, m.shape)),
                (v, rng.uniform(0.5, 2.0, v.shape)),
            ):
                var.assign(val.astype("float32"))


# ----------------------------------------------------------------------- tests
def test_parameter_count_matches_spec_and_paper():
    # Independent arithmetic of the prototxt (spec 2.2): convs with bias, BN gamma/beta.
    def conv(k, i, o, bias=True):
        return k * k * i * o + (o if bias else 0)

    def bottleneck(c, m):
        return (
            conv(1, c, m, False)
            + 2 * m
            + conv(3, m, m, False)
            + 2 * m
            + conv(1, m, c, False)
            + 2 * c
        )

    expected = (
        conv(5, 3, 64)
        + conv(3, 64, 128)
        + 256
        + bottleneck(128, 32)
        + conv(3, 128, 128)
        + 256
        + bottleneck(128, 32)
        + conv(4, 128, 32)
        + conv(3, 160, 256)
        + 512
        + bottleneck(256, 64)
        + conv(4, 256, 64)
        + conv(3, 128, 3)
    )
    assert expected == 1_033_443
    for padding in ("valid", "same"):
        model = LiuDenoiser(padding=padding)
        assert trainable_params(model) == 1_033_443
        # The paper's Table I row "3 scales, skip, (128,32,32,128)/(256,64,64,256)": 1,026k.
        assert abs(trainable_params(model) - 1_026_000) / 1_026_000 < 0.01


@pytest.mark.parametrize("side,expected", [(8, 2), (12, 6), (40, 34), (48, 42)])
def test_valid_shape_arithmetic(side, expected):
    model = LiuDenoiser(padding="valid")
    assert model(np.zeros((1, side, side + 4, 3), "float32")).shape == (
        1,
        expected,
        expected + 4,
        3,
    )


def test_same_keeps_size():
    out = LiuDenoiser(padding="same")(np.zeros((2, 16, 8, 3), "float32"))
    assert out.shape == (2, 16, 8, 3)


@pytest.mark.parametrize(
    "padding,shape,match",
    [
        ("valid", (1, 14, 12, 3), r"height and width minus 4 divisible by 4, got 14x12"),
        ("valid", (1, 4, 4, 3), r"at least 8x8"),
        ("same", (1, 18, 16, 3), r"height and width divisible by 4, got 18x16"),
        # Keras' own input check names the model and the expected NHWC shape.
        ("same", (1, 16, 16, 1), r"LiuDenoiser: `inputs` must have 3 channel\(s\)"),
        ("same", (1, 3, 16, 16), r"liu_denoiser.*expected shape=\(None, None, None, 3\)"),
        ("same", (16, 16, 3), r"Expected shape \(None, None, None, 3\)"),
    ],
)
def test_bad_inputs_raise_clear_errors(padding, shape, match):
    with pytest.raises(ValueError, match=match):
        LiuDenoiser(padding=padding)(np.zeros(shape, "float32"))


def test_bad_sizes_raise_in_graph_mode_with_dynamic_shapes():
    model = LiuDenoiser(padding="valid")
    fn = tf.function(model, input_signature=[tf.TensorSpec((None, None, None, 3))])
    assert fn(tf.zeros((1, 12, 12, 3))).shape == (1, 6, 6, 3)
    with pytest.raises(tf.errors.InvalidArgumentError, match="minus 4 divisible by 4"):
        fn(tf.zeros((1, 14, 14, 3)))


def test_bad_padding_argument():
    with pytest.raises(ValueError, match="`padding` must be one of"):
        LiuDenoiser(padding="caffe")


def test_caffe_stride2_pad1_conv_equals_zeropad_valid(rng):
    # Caffe/PyTorch 3x3 / stride 2 / pad 1 on an even input.
    x = rng.normal(size=(2, 10, 12, 5))
    w = rng.normal(size=(3, 3, 5, 7))
    b = rng.normal(size=(7,))
    ref = np_conv(x, w, b, stride=2, pad=1)
    conv = keras.layers.Conv2D(7, 3, strides=2, padding="valid")
    got = conv(keras.layers.ZeroPadding2D(1)(x.astype("float32")))
    conv.set_weights([w.astype("float32"), b.astype("float32")])
    got = conv(keras.layers.ZeroPadding2D(1)(x.astype("float32"))).numpy()
    assert got.shape == ref.shape == (2, 5, 6, 7)
    np.testing.assert_allclose(got, ref, atol=1e-4)
    # Keras 'same' pads only bottom/right on even inputs: a different result.
    same = keras.layers.Conv2D(7, 3, strides=2, padding="same")
    same.build((None, 10, 12, 5))
    same.set_weights([w.astype("float32"), b.astype("float32")])
    assert np.abs(same(x.astype("float32")).numpy() - ref).max() > 0.5


def test_caffe_deconv_4_2_1_equals_conv2d_transpose_same(rng):
    x = rng.normal(size=(2, 5, 3, 6))
    w_torch = rng.normal(size=(6, 4, 4, 4))  # (in, out, kh, kw)
    b = rng.normal(size=(4,))
    ref = np_deconv(x, w_torch, b)
    layer = keras.layers.Conv2DTranspose(4, 4, strides=2, padding="same")
    layer.build((None, 5, 3, 6))
    layer.set_weights(
        [w_torch.transpose(2, 3, 1, 0).astype("float32"), b.astype("float32")]
    )  # no flip
    got = layer(x.astype("float32")).numpy()
    assert got.shape == ref.shape == (2, 10, 6, 4)
    np.testing.assert_allclose(got, ref, atol=1e-4)


@pytest.mark.parametrize("padding,side", [("valid", 12), ("same", 8)])
def test_forward_matches_numpy_reimplementation(padding, side, rng):
    keras.utils.set_random_seed(3)
    model = LiuDenoiser(padding=padding)
    _randomize_bn(model, rng)
    x = rng.normal(size=(2, side, side + 4, 3))
    got = model(x.astype("float32"), training=False).numpy()
    ref = np_liu(model, x, padding)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-3 * np.abs(ref).max())


def test_global_residual_uses_centre_crop_in_valid_mode():
    model = LiuDenoiser(padding="valid")
    last = model.get_layer("concat_reduction")
    last.set_weights([np.zeros_like(w) for w in last.get_weights()])
    x = np.random.default_rng(0).normal(size=(1, 16, 20, 3)).astype("float32")
    np.testing.assert_array_equal(model(x).numpy(), x[:, 3:-3, 3:-3])


def test_caffe_conventions():
    model = LiuDenoiser()
    bn = model.get_layer("conv1_bn")
    assert (bn.epsilon, bn.momentum) == (1e-5, 0.999)
    assert not model.get_layer("res1_conv2").use_bias
    np.testing.assert_array_equal(model.get_layer("conv3").bias.numpy(), np.float32(0.2))
    np.testing.assert_array_equal(model.get_layer("upsample_r3").bias.numpy(), 0.0)



class LiuDenoiserTest(TestCase):
    def test_model_valid(self):
        # valid: sizes 4 + 4k; the output is 6 px smaller (3 per side)
        self.run_model_test(
            LiuDenoiser, {"padding": "valid"}, (2, 16, 16, 3), multiple=4, offset=4,
            output_shape=lambda s: (s[0], s[1] - 6, s[2] - 6, s[3]),
        )

    def test_model_same(self):
        self.run_model_test(LiuDenoiser, {"padding": "same"}, (2, 16, 16, 3), multiple=4)

    def test_keras_roundtrip_keeps_batch_norm_statistics(self):
        model = LiuDenoiser(padding="valid")
        _randomize_bn(model, self.rng)  # moving statistics must survive too
        x = self.rng.uniform(size=(2, 12, 12, 3)).astype("float32")
        self.run_model_saving_test(model, x)
