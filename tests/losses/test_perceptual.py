"""PerceptualLoss: conformance, NumPy reference, sharing, checkpoints, real weights."""

import os

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

from tfrestore.features import WeightsNotFoundError, get_feature_extractor
from tfrestore.losses import L1, PerceptualLoss
from tfrestore.testing import TestCase

PROJ = np.array(
    [[0.5, -1.0, 0.25, 2.0, 0.0], [1.5, 0.5, -0.5, 0.0, 1.0], [-1.0, 0.75, 1.0, 0.5, -2.0]],
    "float32",
)


@keras.saving.register_keras_serializable(package="tfrestore_tests")
class TwoTaps(keras.layers.Layer):
    """Fixed stand-in extractor: 'a' = 1x1 projection to 5 channels, 'b' = 2x2 mean of relu(a)."""

    def call(self, x):
        a = tf.einsum("bhwc,cd->bhwd", x, tf.constant(PROJ, x.dtype))
        return {"a": a, "b": tf.nn.avg_pool2d(tf.nn.relu(a), 2, 2, "VALID")}


def two_taps_numpy(x):
    a = x.astype(np.float64) @ PROJ.astype(np.float64)
    r = np.maximum(a, 0)
    b, h, w, c = r.shape
    return {"a": a, "b": r.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))}


def reference_loss(ft, fp, layers, criterion, channel_reduction):
    total = 0.0
    for name, weight in layers.items():
        d = fp[name] - ft[name]
        e = np.abs(d) if criterion == "l1" else d**2
        e = e.mean(axis=-1) if channel_reduction == "mean" else e.sum(axis=-1)
        total = total + weight * e.mean(axis=(1, 2))
    return total


def _pair(rng, shape=(2, 32, 32, 3), sigma=0.1):
    y = rng.uniform(size=shape).astype("float32")
    return y, np.clip(y + rng.normal(0, sigma, size=shape), 0, 1).astype("float32")


BAD = [
    (
        np.zeros((2, 16, 16, 1), "float32"),
        np.zeros((2, 16, 16, 1), "float32"),
        ValueError,
        "3 channels",
    ),
    (
        np.zeros((2, 16, 16, 3), "float32"),
        np.zeros((2, 16, 17, 3), "float32"),
        ValueError,
        "same shape",
    ),
    (
        np.zeros((2, 2, 2, 3), "float32"),
        np.zeros((2, 2, 2, 3), "float32"),
        ValueError,
        "minimum input size",
    ),
    (
        np.zeros((2, 16, 16, 3), "float32"),
        np.full((2, 16, 16, 3), np.nan, "float32"),
        ValueError,
        "NaN",
    ),
]


# ------------------------------------------------------------------- conformance
class PerceptualLossTest(TestCase):
    def test_conforms_with_builtin_vgg16(self):
        # 16x16 keeps the float16 check fast: CPU float16 convolutions are ~10x slower
        y, p = _pair(self.rng, (2, 16, 16, 3))
        kwargs = {"layer_weights": {"relu2_2": 1.0, "conv3_3": 0.5}, "weights": None,
                  "criterion": "mse"}
        res = self.run_loss_test(PerceptualLoss, kwargs, y, p, bad_inputs=BAD, xla_rtol=1e-3)
        fx = get_feature_extractor("vgg16", ["relu2_2", "conv3_3"], weights=None)
        ref = reference_loss(
            {k: np.asarray(v, np.float64) for k, v in fx(y).items()},
            {k: np.asarray(v, np.float64) for k, v in fx(p).items()},
            kwargs["layer_weights"],
            "mse",
            "mean",
        )
        self.assertAllClose(res["eager"], ref, rtol=1e-4, atol=0)

    def test_conforms_with_custom_keras_extractor(self):
        y, p = _pair(self.rng, (2, 8, 8, 3))
        kwargs = {"layer_weights": {"a": 1.0, "b": 2.0}, "feature_extractor": TwoTaps(),
                  "criterion": "mse"}
        res = self.run_loss_test(PerceptualLoss, kwargs, y, p, finite_differences={})
        ref = reference_loss(
            two_taps_numpy(y), two_taps_numpy(p), kwargs["layer_weights"], "mse", "mean"
        )
        self.assertAllClose(res["eager"], ref, rtol=1e-5, atol=0)


# ------------------------------------------------------------- NumPy reference
@pytest.mark.parametrize("criterion", ["l1", "l2", "mse"])
@pytest.mark.parametrize("channel_reduction", ["mean", "sum"])
def test_matches_numpy_reference(criterion, channel_reduction, rng):
    y, p = _pair(rng, (3, 8, 8, 3), sigma=0.3)
    layers = {"a": 0.7, "b": 1.3}
    loss = PerceptualLoss(
        layer_weights=layers,
        criterion=criterion,
        channel_reduction=channel_reduction,
        feature_extractor=TwoTaps(),
        loss_weight=2.0,
        reduction=None,
    )
    expected = 2.0 * reference_loss(
        two_taps_numpy(y), two_taps_numpy(p), layers, criterion, channel_reduction
    )
    np.testing.assert_allclose(loss(y, p), expected, rtol=1e-5)
    np.testing.assert_allclose(tf.function(loss.call)(y, p), expected, rtol=1e-5)


def test_plain_callable_list_and_tensor_outputs(rng):
    y, p = _pair(rng, (2, 8, 8, 3))
    ref = two_taps_numpy
    as_list = PerceptualLoss(
        ["a", "b"], feature_extractor=lambda x: list(TwoTaps()(x).values()), reduction=None
    )
    expected = reference_loss(ref(y), ref(p), {"a": 1.0, "b": 1.0}, "l1", "mean")
    np.testing.assert_allclose(as_list(y, p), expected, rtol=1e-5)
    single = PerceptualLoss("b", feature_extractor=lambda x: TwoTaps()(x)["b"], reduction=None)
    np.testing.assert_allclose(
        single(y, p), reference_loss(ref(y), ref(p), {"b": 1.0}, "l1", "mean"), rtol=1e-5
    )
    with pytest.raises(ValueError, match="cannot be serialized"):
        single.get_config()
    with pytest.raises(ValueError, match=r"`layers` asks for \[.c.\]"):
        PerceptualLoss("c", feature_extractor=TwoTaps())(y, p)
    with pytest.raises(ValueError, match=r"returned 1 feature map\(s\) but `layers` names 2"):
        PerceptualLoss(["a", "b"], feature_extractor=lambda x: x)(y, p)


def test_liu_sum_reduction_is_channels_times_mean(rng):
    y, p = _pair(rng)
    kw = {"layers": "relu3_3", "weights": None, "criterion": "mse", "reduction": None}
    summed = PerceptualLoss(channel_reduction="sum", **kw)(y, p)
    mean = PerceptualLoss(channel_reduction="mean", **kw)(y, p)
    np.testing.assert_allclose(summed, 256 * np.asarray(mean), rtol=1e-5)


def test_target_features_get_no_gradient(rng):
    y, p = _pair(rng, (2, 16, 16, 3))
    loss = PerceptualLoss("relu2_1", weights=None)
    yt, yp = tf.Variable(y), tf.Variable(p)
    with tf.GradientTape() as tape:
        v = loss(yt, yp)
    g_true, g_pred = tape.gradient(v, [yt, yp])
    assert g_true is None or not np.any(np.asarray(g_true))
    assert np.any(np.asarray(g_pred))


def test_invalid_arguments():
    with pytest.raises(ValueError, match="`criterion` must be one of"):
        PerceptualLoss(weights=None, criterion="fro")
    with pytest.raises(ValueError, match="`channel_reduction` must be one of"):
        PerceptualLoss(weights=None, channel_reduction="max")
    with pytest.raises(TypeError, match=r"`layer_weights\['relu3_3'\]` must be a real weight"):
        PerceptualLoss(layer_weights={"relu3_3": "1"}, weights=None)
    with pytest.raises(ValueError, match="at least one layer"):
        PerceptualLoss(layer_weights={}, weights=None)
    with pytest.raises(ValueError, match="at least one layer"):
        PerceptualLoss([], weights=None)
    with pytest.raises(TypeError, match="per-layer weights go in `layer_weights"):
        PerceptualLoss({"relu3_3": 1.0}, weights=None)
    with pytest.raises(TypeError, match="`layer_weights` must be a dict"):
        PerceptualLoss("relu3_3", "vgg16", None, None, None, "mse")  # criterion's old place
    with pytest.raises(ValueError, match="Unknown vgg16 layer"):
        PerceptualLoss("relu3_4", weights=None)
    with pytest.raises(TypeError, match="`feature_extractor` must be"):
        PerceptualLoss(feature_extractor=3)


# ------------------------------------------------- sharing, config, checkpoints
def test_losses_share_one_backbone_and_config_rebuilds_through_cache():
    a = PerceptualLoss("relu3_3", weights=None)
    b = PerceptualLoss(layer_weights={"relu1_2": 1.0, "relu4_3": 0.1}, weights=None,
                       criterion="mse")
    assert a._source.network()._backbone is b._source.network()._backbone
    config = a.get_config()
    assert (
        config["weights"] is None
        and config["backbone"] == "vgg16"
        and config["feature_extractor"] is None
    )
    clone = PerceptualLoss.from_config(config)
    assert clone._source.network()._backbone is a._source.network()._backbone
    assert clone.get_config() == config


def test_accepts_a_feature_extractor_and_stores_its_spec():
    fx = get_feature_extractor("vgg19", ["conv5_4"], weights=None)
    loss = PerceptualLoss("conv5_4", feature_extractor=fx)
    config = loss.get_config()
    assert (config["backbone"], config["weights"], config["feature_extractor"]) == (
        "vgg19",
        None,
        None,
    )
    assert loss._source.network()._backbone is fx._backbone
    assert PerceptualLoss.from_config(config)._source.network()._backbone is fx._backbone
    # a non-default normalisation travels with it
    custom = get_feature_extractor("vgg19", ["conv5_4"], weights=None, preprocessing={"mean": 0.5})
    config = PerceptualLoss("conv5_4", feature_extractor=custom).get_config()
    assert config["preprocessing"] == {
        "mean": [0.5] * 3,
        "std": [1.0] * 3,
        "scale": 1.0,
        "bgr": False,
    }
    clone = PerceptualLoss.from_config(config)
    assert clone._source.network().preprocessing == custom.preprocessing


def _generator(name="gen"):
    inp = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name=f"{name}_c1")(inp)
    out = keras.layers.Conv2D(3, 3, padding="same", name=f"{name}_c2")(x)
    return keras.Model(inp, out, name=name)


def _h5_datasets(path):
    found = []
    with h5py.File(path, "r") as f:
        f.visititems(
            lambda name, obj: (
                found.append((name, obj.shape)) if isinstance(obj, h5py.Dataset) else None
            )
        )
    return found


def test_checkpoints_hold_no_backbone_and_generator_weights_load(tmp_path, rng):
    keras.utils.set_random_seed(0)
    model = _generator()
    model.compile(
        optimizer="adam", loss=L1() + 0.1 * PerceptualLoss("relu2_2", weights=None)
    )
    y, p = _pair(rng, (2, 16, 16, 3))
    model.fit(p, y, epochs=1, verbose=0)
    model.save_weights(str(tmp_path / "model.weights.h5"))
    datasets = _h5_datasets(tmp_path / "model.weights.h5")
    expected = [tuple(w.shape) for w in model.weights + model.optimizer.variables]
    assert sorted(shape for _, shape in datasets) == sorted(expected)
    assert not any(
        shape and shape[-1] in (64, 128) for _, shape in datasets
    )  # no VGG kernels/biases
    # .keras archives likewise stay small (VGG16 would add ~59 MB)
    model.save(str(tmp_path / "model.keras"))
    assert os.path.getsize(tmp_path / "model.keras") < 200_000
    # weights of the bare generator load into the compiled model (keras_notes §1.6)
    keras.utils.set_random_seed(1)
    bare = _generator()
    bare.save_weights(str(tmp_path / "generator.weights.h5"))
    model.load_weights(str(tmp_path / "generator.weights.h5"))
    for a, b in zip(model.get_weights(), bare.get_weights()):
        np.testing.assert_array_equal(a, b)
    loaded = keras.saving.load_model(str(tmp_path / "model.keras"))
    np.testing.assert_allclose(loaded.loss(y, p), model.loss(y, p), rtol=1e-6)


def test_mixed_float16_value_close_to_float32(rng):
    y, p = _pair(rng, (2, 16, 16, 3))
    ref = PerceptualLoss("relu2_2", weights=None, reduction=None)(y, p)
    keras.config.set_dtype_policy("mixed_float16")
    loss = PerceptualLoss("relu2_2", weights=None, reduction=None)
    assert loss._source.network().dtype_policy == "mixed_float16"
    value = loss(y, tf.cast(p, tf.float16))
    assert value.dtype == tf.float32
    np.testing.assert_allclose(value, ref, rtol=2e-2)


def test_offline_error_from_the_loss(tmp_path, monkeypatch):
    monkeypatch.setenv("TFRESTORE_WEIGHTS_DIR", str(tmp_path))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))

    def no_network(fname, origin, **kwargs):
        raise Exception("URL fetch failure")

    monkeypatch.setattr(keras.utils, "get_file", no_network)
    with pytest.raises(
        WeightsNotFoundError, match="put `vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5`"
    ):
        PerceptualLoss("relu3_3", weights="imagenet")


# ------------------------------------------------------------------ real weights
def _kodak_crop(data_dir, size=64):
    path = data_dir / "kodak24" / "kodim23.png"
    if not path.exists():
        pytest.skip(f"{path} not available")
    img = tf.image.decode_png(tf.io.read_file(str(path)), channels=3)
    img = tf.image.convert_image_dtype(img, tf.float32).numpy()
    return img[None, 200 : 200 + size, 300 : 300 + size, :]


def test_torchvision_vgg16_relu3_3_grows_with_noise(weights_dir, data_dir, monkeypatch):
    monkeypatch.setenv("TFRESTORE_WEIGHTS_DIR", str(weights_dir))
    y = _kodak_crop(data_dir)
    loss = PerceptualLoss("relu3_3", weights="torchvision", criterion="mse", reduction=None)
    assert loss.get_config()["weights"] == "torchvision"
    rng = np.random.default_rng(0)
    noise = rng.normal(size=y.shape).astype("float32")
    values = [float(loss(y, np.clip(y + s * noise, 0, 1))[0]) for s in (0.0, 0.02, 0.05, 0.1)]
    assert values[0] == 0.0 and values[1] < values[2] < values[3]
    # and the loss is the NumPy formula applied to the real features
    fx = get_feature_extractor("vgg16", "relu3_3", weights="torchvision")
    p = np.clip(y + 0.05 * noise, 0, 1)
    ref = reference_loss(
        {"relu3_3": np.asarray(fx(y)["relu3_3"], np.float64)},
        {"relu3_3": np.asarray(fx(p)["relu3_3"], np.float64)},
        {"relu3_3": 1.0},
        "mse",
        "mean",
    )
    np.testing.assert_allclose(loss(y, p), ref, rtol=1e-4)
