"""Pretrained weights: numerics against independent NumPy references, Keras files,
torch checkpoints, and the offline resolution / error messages."""

import os

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

from tfrestore.features import WeightsNotFoundError, get_feature_extractor
from tfrestore.features.alexnet import ALEXNET
from tfrestore.features.sources import resolve_weight_source

VGG16_NPZ = "vgg16_torchvision_features.npz"
ALEX_NPZ = "alexnet_torchvision_features.npz"
MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


# ----------------------------------------------------------- NumPy reference nets
def np_conv(x, w, b, stride=1, pad=0):
    """PyTorch Conv2d semantics (cross-correlation, OIHW weights) on NHWC float64."""
    x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    _, _, kh, kw = w.shape
    ho = (x.shape[1] - kh) // stride + 1
    wo = (x.shape[2] - kw) // stride + 1
    out = np.zeros((x.shape[0], ho, wo, w.shape[0]))
    for ky in range(kh):
        for kx in range(kw):
            patch = x[
                :,
                ky : ky + stride * (ho - 1) + 1 : stride,
                kx : kx + stride * (wo - 1) + 1 : stride,
                :,
            ]
            out += patch @ w[:, :, ky, kx].T.astype(np.float64)
    return out + b


def np_maxpool(x, k, s):
    ho, wo = (x.shape[1] - k) // s + 1, (x.shape[2] - k) // s + 1
    out = np.full((x.shape[0], ho, wo, x.shape[3]), -np.inf)
    for ky in range(k):
        for kx in range(k):
            out = np.maximum(
                out, x[:, ky : ky + s * (ho - 1) + 1 : s, kx : kx + s * (wo - 1) + 1 : s, :]
            )
    return out


def np_sequential(x, state, modules):
    """Run a torchvision ``features`` Sequential given as [(kind, args)]; returns every output."""
    outs = []
    for i, (kind, args) in enumerate(modules):
        if kind == "conv":
            x = np_conv(x, state[f"features.{i}.weight"], state[f"features.{i}.bias"], **args)
        elif kind == "relu":
            x = np.maximum(x, 0)
        else:
            x = np_maxpool(x, **args)
        outs.append(x)
    return outs


def torchvision_vgg16_modules():
    cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
    mods = []
    for v in cfg:
        if v == "M":
            mods.append(("pool", {"k": 2, "s": 2}))
        else:
            mods += [("conv", {"stride": 1, "pad": 1}), ("relu", {})]
    return mods


TORCHVISION_ALEXNET = [
    ("conv", {"stride": 4, "pad": 2}),
    ("relu", {}),
    ("pool", {"k": 3, "s": 2}),
    ("conv", {"stride": 1, "pad": 2}),
    ("relu", {}),
    ("pool", {"k": 3, "s": 2}),
    ("conv", {"stride": 1, "pad": 1}),
    ("relu", {}),
    ("conv", {"stride": 1, "pad": 1}),
    ("relu", {}),
    ("conv", {"stride": 1, "pad": 1}),
    ("relu", {}),
    ("pool", {"k": 3, "s": 2}),
]


def _load_npz(path):
    with np.load(path) as d:
        return {k: d[k].astype(np.float64) for k in d.files}


def _assert_features_close(actual, expected, what):
    actual = np.asarray(actual, np.float64)
    scale = np.abs(expected).max()
    assert scale > 0, what
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=2e-5 * scale, err_msg=what)


# ------------------------------------------------------------- torchvision weights
def test_torchvision_vgg16_matches_numpy_reference(weights_dir, monkeypatch, rng):
    monkeypatch.setenv("TFRESTORE_WEIGHTS_DIR", str(weights_dir))
    # features.N indices, counted in the reference Sequential: 2 = conv1_2 (pre-ReLU),
    # 15 = relu3_3, 23 = pool4, 28 = conv5_3 (pre-ReLU)
    taps = {"conv1_2": 2, "relu3_3": 15, "pool4": 23, "conv5_3": 28}
    fx = get_feature_extractor("vgg16", list(taps), weights="torchvision")
    assert fx.preprocessing.spec == "torch"
    x = rng.uniform(size=(2, 16, 16, 3))
    ref = np_sequential(
        (x - MEAN) / STD, _load_npz(weights_dir / VGG16_NPZ), torchvision_vgg16_modules()
    )
    feats = fx(x.astype("float32"))
    for name, idx in taps.items():
        _assert_features_close(feats[name], ref[idx], f"vgg16 {name}")
    assert (ref[taps["conv5_3"]] < 0).any()  # really pre-activation


def test_torchvision_alexnet_matches_numpy_reference(weights_dir, monkeypatch, rng):
    monkeypatch.setenv("TFRESTORE_WEIGHTS_DIR", str(weights_dir))
    taps = {"relu1": 1, "pool1": 2, "conv2": 3, "pool2": 5, "relu4": 9, "conv5": 10, "pool5": 12}
    for weights in ("torchvision", "imagenet", str(weights_dir / ALEX_NPZ)):
        fx = get_feature_extractor("alexnet", list(taps), weights=weights)
    x = rng.uniform(size=(2, 67, 67, 3))
    ref = np_sequential((x - MEAN) / STD, _load_npz(weights_dir / ALEX_NPZ), TORCHVISION_ALEXNET)
    feats = fx(x.astype("float32"))
    for name, idx in taps.items():
        _assert_features_close(feats[name], ref[idx], f"alexnet {name}")


def test_torchvision_pth_checkpoint_without_torch(weights_dir, tmp_path, monkeypatch, rng):
    from tfrestore.testing.torch_writer import save_torch_state_dict

    state = {k: v.astype("float32") for k, v in _load_npz(weights_dir / ALEX_NPZ).items()}
    state["classifier.1.weight"] = np.zeros((4, 9216), "float32")  # a full model state dict
    pth = tmp_path / "alexnet-owt-7be5be79.pth"
    save_torch_state_dict(state, str(pth))
    x = rng.uniform(size=(1, 63, 63, 3)).astype("float32")
    from_npz = get_feature_extractor("alexnet", ["conv5"], weights=str(weights_dir / ALEX_NPZ))(x)
    from_pth = get_feature_extractor("alexnet", ["conv5"], weights=str(pth))(x)
    np.testing.assert_array_equal(from_pth["conv5"], from_npz["conv5"])
    # the official file name is found in $TFRESTORE_WEIGHTS_DIR
    monkeypatch.setenv("TFRESTORE_WEIGHTS_DIR", str(tmp_path))
    assert resolve_weight_source("alexnet", ALEXNET.known_weights, "torchvision").path == str(pth)
    fx = get_feature_extractor("alexnet", ["conv5"], weights="torchvision")
    # the same file under another spelling: the same cached network
    assert fx._backbone is get_feature_extractor("alexnet", ["conv5"], weights=str(pth))._backbone


def test_bad_state_dicts_raise_clear_errors(weights_dir, tmp_path):
    state = _load_npz(weights_dir / ALEX_NPZ)
    bad = tmp_path / "wrong_shape.npz"
    np.savez(bad, **{**state, "features.3.weight": np.zeros((192, 64, 3, 3))})
    with pytest.raises(
        ValueError, match=r"`features.3.weight` has shape \(192, 64, 3, 3\).*\(192, 64, 5, 5\)"
    ):
        get_feature_extractor("alexnet", "conv2", weights=str(bad))
    missing = tmp_path / "missing.npz"
    np.savez(missing, other=np.zeros(3))
    with pytest.raises(ValueError, match=r"no `features.0.weight`"):
        get_feature_extractor("vgg16", "conv1_1", weights=str(missing))
    with pytest.raises(WeightsNotFoundError, match="explicit path"):
        get_feature_extractor("vgg16", "conv1_1", weights=str(tmp_path / "absent.npz"))
    with pytest.raises(ValueError, match="Cannot tell the format"):
        get_feature_extractor("vgg16", "conv1_1", weights=str(tmp_path / "weights.txt"))


# ------------------------------------------------------------------ Keras weights
def _write_legacy_h5(model, path):
    from keras.src.legacy.saving import legacy_h5_format  # the official files' format

    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)


def test_keras_imagenet_vgg19_from_weights_dir(tmp_path, monkeypatch, rng):
    keras.utils.set_random_seed(3)
    app = keras.applications.VGG19(weights=None, include_top=False, input_shape=(None, None, 3))
    _write_legacy_h5(app, tmp_path / "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5")
    monkeypatch.setenv("TFRESTORE_WEIGHTS_DIR", str(tmp_path))
    fx = get_feature_extractor(
        "vgg19", ["relu1_2", "relu3_4", "conv5_4", "relu5_4", "pool5"], weights="imagenet"
    )
    assert fx.preprocessing.spec == "caffe" and fx.weights == "imagenet"

    x = rng.uniform(size=(2, 32, 32, 3)).astype("float32")
    names = ["block1_conv2", "block3_conv4", "block5_conv3", "block5_conv4", "block5_pool"]
    probe = keras.Model(app.input, [app.get_layer(n).output for n in names])
    ref = [
        np.asarray(t, np.float64)
        for t in probe(keras.applications.vgg19.preprocess_input(x * 255.0))
    ]
    feats = fx(x)
    _assert_features_close(feats["relu1_2"], ref[0], "relu1_2")
    _assert_features_close(feats["relu3_4"], ref[1], "relu3_4")
    _assert_features_close(feats["relu5_4"], ref[3], "relu5_4")
    _assert_features_close(feats["pool5"], ref[4], "pool5")
    # pre-ReLU conv5_4 = block5_conv4's kernel applied linearly to block5_conv3
    # (reference_spec §1.2)
    k, b = app.get_layer("block5_conv4").get_weights()
    pre = tf.nn.conv2d(ref[2], k.astype(np.float64), 1, "SAME") + b
    _assert_features_close(feats["conv5_4"], np.asarray(pre), "conv5_4 (pre-ReLU)")
    assert (np.asarray(pre) < 0).any()


def test_keras3_weights_file_for_resnet50_by_path(tmp_path, rng):
    keras.utils.set_random_seed(4)
    app = keras.applications.ResNet50(weights=None, include_top=False, input_shape=(None, None, 3))
    bn = app.get_layer("conv2_block1_1_bn")  # non-default statistics must load too
    bn.moving_mean.assign(np.linspace(-1, 1, bn.moving_mean.shape[0]).astype("float32"))
    path = tmp_path / "resnet50_custom.weights.h5"
    app.save_weights(str(path))
    fx = get_feature_extractor(
        "resnet50", ["conv2_block3_out", "conv3_block4_out"], weights=str(path)
    )
    assert fx.preprocessing.spec == "caffe"
    x = rng.uniform(size=(2, 32, 32, 3)).astype("float32")
    probe = keras.Model(
        app.input, [app.get_layer(n).output for n in ["conv2_block3_out", "conv3_block4_out"]]
    )
    ref = probe(keras.applications.resnet.preprocess_input(x * 255.0), training=False)
    feats = fx(x)
    _assert_features_close(
        feats["conv2_block3_out"], np.asarray(ref[0], np.float64), "conv2_block3_out"
    )
    _assert_features_close(
        feats["conv3_block4_out"], np.asarray(ref[1], np.float64), "conv3_block4_out"
    )


def test_wrong_keras_file_raises_clear_error(tmp_path):
    app = keras.applications.VGG16(weights=None, include_top=False, input_shape=(None, None, 3))
    path = tmp_path / "vgg16_custom.weights.h5"
    app.save_weights(str(path))
    with pytest.raises(ValueError, match="keras.applications.VGG19"):
        get_feature_extractor("vgg19", "relu1_1", weights=str(path))


# ------------------------------------------------------------ offline resolution
@pytest.fixture
def offline(tmp_path, monkeypatch):
    wdir, home = tmp_path / "weights", tmp_path / "keras_home"
    wdir.mkdir()
    (home / "models").mkdir(parents=True)
    monkeypatch.setenv("TFRESTORE_WEIGHTS_DIR", str(wdir))
    monkeypatch.setenv("KERAS_HOME", str(home))
    calls = []

    def no_network(fname, origin, **kwargs):
        calls.append(origin)
        raise Exception(f"URL fetch failure on {origin}: [Errno -2] Name or service not known")

    monkeypatch.setattr(keras.utils, "get_file", no_network)
    return wdir, home / "models", calls


@pytest.mark.parametrize(
    "backbone,weights,filename,origin",
    [
        (
            "vgg19",
            "imagenet",
            "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
            "https://storage.googleapis.com/tensorflow/keras-applications/vgg19/",
        ),
        (
            "resnet101",
            "imagenet",
            "resnet101_weights_tf_dim_ordering_tf_kernels_notop.h5",
            "https://storage.googleapis.com/tensorflow/keras-applications/resnet/",
        ),
        ("vgg16", "torchvision", "vgg16-397923af.pth", "https://download.pytorch.org/models/"),
    ],
)
def test_offline_error_says_which_file_to_put_where(offline, backbone, weights, filename, origin):
    wdir, cache, calls = offline
    with pytest.raises(WeightsNotFoundError) as info:
        get_feature_extractor(
            backbone, "relu1_1" if backbone.startswith("vgg") else "conv1_relu", weights=weights
        )
    msg = str(info.value)
    assert f"put `{filename}`" in msg and str(wdir) in msg and str(cache) in msg
    assert "TFRESTORE_WEIGHTS_DIR" in msg and "pass its path explicitly" in msg
    assert calls == [origin + filename]
    if weights == "torchvision":
        assert "`vgg16_torchvision_features.npz` is accepted" in msg


def test_keras_cache_file_with_wrong_hash_is_not_used(offline):
    _, cache, calls = offline
    (cache / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5").write_bytes(
        b"not the official file"
    )
    with pytest.raises(WeightsNotFoundError, match="Could not download"):
        get_feature_extractor("vgg16", "relu1_1", weights="imagenet")
    assert len(calls) == 1  # it tried to replace the corrupt file


def test_cached_torch_file_is_hash_checked(offline):
    _, cache, calls = offline
    (cache / "alexnet-owt-7be5be79.pth").write_bytes(b"truncated download")
    with pytest.raises(WeightsNotFoundError, match="corrupt or incomplete"):
        get_feature_extractor("alexnet", "relu1", weights="torchvision")
    assert calls == []


def test_weights_dir_npz_is_preferred_to_download(offline, weights_dir):
    wdir, _, calls = offline
    os.symlink(weights_dir / ALEX_NPZ, wdir / ALEX_NPZ)
    source = resolve_weight_source("alexnet", ALEXNET.known_weights, "torchvision")
    assert source.path == str(wdir / ALEX_NPZ) and source.preprocessing == "torch" and calls == []
    assert get_feature_extractor("alexnet", "relu1", weights="torchvision").weights == "torchvision"
