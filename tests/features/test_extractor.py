"""get_feature_extractor: layer names, geometry, sharing, freezing, dtype policies."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfrestore.features import (
    FeatureExtractor,
    Preprocessing,
    available_backbones,
    clear_cache,
    get_feature_extractor,
)


def _images(rng, n=2, size=32):
    return rng.uniform(size=(n, size, size, 3)).astype("float32")


def test_available_backbones():
    assert available_backbones() == ["alexnet", "resnet101", "resnet50", "vgg16", "vgg19"]


@pytest.mark.parametrize(
    "backbone,n_convs", [("vgg16", (2, 2, 3, 3, 3)), ("vgg19", (2, 2, 4, 4, 4))]
)
def test_vgg_pre_and_post_activation_taps(backbone, n_convs, rng):
    last = f"conv5_{n_convs[-1]}"
    fx = get_feature_extractor(
        backbone, [last, f"relu5_{n_convs[-1]}", "pool5", "relu1_1"], weights=None
    )
    f = {k: np.asarray(v) for k, v in fx(_images(rng)).items()}
    assert f[last].shape == (2, 2, 2, 512)
    assert f["relu1_1"].shape == (2, 32, 32, 64)
    assert f["pool5"].shape == (2, 1, 1, 512)
    # pre-activation really is before the ReLU: it has negative values, the ReLU is its max(0, .)
    assert (f[last] < 0).any()
    np.testing.assert_allclose(
        f[f"relu5_{n_convs[-1]}"], np.maximum(f[last], 0), rtol=1e-6, atol=1e-6
    )
    np.testing.assert_allclose(
        f["pool5"], f[f"relu5_{n_convs[-1]}"].max(axis=(1, 2), keepdims=True), rtol=1e-6
    )
    names = fx.valid_layers
    assert len(names) == 2 * sum(n_convs) + 5  # conv + relu per convolution, one pool per block


def test_keras_block_names_are_refused_with_their_equivalent():
    with pytest.raises(ValueError, match=r"'block4_conv3' is a Keras Applications name.*"
                                         r"use 'relu4_3'.*'conv4_3' is the one before"):
        get_feature_extractor("vgg16", ["block4_conv3"], weights=None)
    with pytest.raises(ValueError, match=r"'block2_pool'.*use 'pool2'\.$"):
        get_feature_extractor("vgg19", "block2_pool", weights=None)
    from tfrestore.losses import D2SMLoss, PDLoss

    with pytest.raises(ValueError, match="use 'relu5_4'"):
        D2SMLoss(layers="block5_conv4", weights=None)
    with pytest.raises(ValueError, match="use 'relu2_2'"):
        PDLoss(layer_weights={"block2_conv2": 1.0}, weights=None)


@pytest.mark.parametrize(
    "backbone,layer,stride,rf,channels",
    [
        # published receptive fields (Araujo et al., Distill 2019; standard VGG/AlexNet tables)
        ("vgg16", "relu3_3", 4, 40, 256),
        ("vgg16", "conv5_3", 16, 196, 512),
        ("vgg16", "pool5", 32, 212, 512),
        ("vgg19", "conv5_4", 16, 252, 512),
        ("alexnet", "relu1", 4, 11, 64),
        ("alexnet", "relu2", 8, 51, 192),
        ("alexnet", "pool5", 32, 195, 256),
        ("resnet50", "conv5_block3_out", 32, 483, 2048),
        ("resnet50", "conv4_block6_out", 16, 291, 1024),
    ],
)
def test_geometry_matches_published_values(backbone, layer, stride, rf, channels):
    fx = get_feature_extractor(backbone, layer, weights=None)
    assert fx.stride(layer) == stride
    assert fx.receptive_field(layer) == rf
    assert fx.channels(layer) == channels


def test_resnet101_receptive_field():
    fx = get_feature_extractor("resnet101", "conv5_block3_out", weights=None)
    assert fx.receptive_field("conv5_block3_out") == 1027  # resnet_v1_101, Araujo et al.


def test_min_input_size_matches_actual_shapes(rng):
    fx = get_feature_extractor("alexnet", ["pool5"], weights=None)
    m = fx.min_input_size("pool5")
    assert m == 63  # (63 + 4 - 11) // 4 + 1 = 15 -> 7 -> 3 -> 1
    assert fx(_images(rng, 1, m))["pool5"].shape == (1, 1, 1, 256)
    with pytest.raises(ValueError, match="minimum input size 63x63"):
        fx(_images(rng, 1, m - 1))
    assert get_feature_extractor("vgg16", "pool5", weights=None).min_input_size("pool5") == 32
    assert get_feature_extractor("vgg16", "relu3_3", weights=None).min_input_size("relu3_3") == 4


def test_alexnet_shapes_follow_pytorch_padding(rng):
    fx = get_feature_extractor(
        "alexnet", ["relu1", "pool1", "relu2", "pool2", "relu5", "pool5"], weights=None
    )
    shapes = {k: tuple(v.shape[1:3]) for k, v in fx(_images(rng, 1, 224)).items()}
    # torchvision AlexNet on 224x224: 55, 27, 27, 13, 13, 6
    assert shapes == {
        "relu1": (55, 55),
        "pool1": (27, 27),
        "relu2": (27, 27),
        "pool2": (13, 13),
        "relu5": (13, 13),
        "pool5": (6, 6),
    }
    assert "pad1" not in fx.valid_layers


def test_unknown_names_raise_with_valid_names():
    with pytest.raises(ValueError, match=r"Unknown vgg19 layer 'conv5_5'.*conv5_4"):
        get_feature_extractor("vgg19", "conv5_5", weights=None)
    with pytest.raises(ValueError, match=r"conv4_block6_out.*174 layer names"):
        get_feature_extractor("resnet50", "conv4_block7_out", weights=None)
    with pytest.raises(ValueError, match="relu1, pool1"):
        get_feature_extractor("alexnet", "pad1", weights=None)
    with pytest.raises(ValueError, match="`backbone` must be one of"):
        get_feature_extractor("vgg11", "relu1_1", weights=None)
    with pytest.raises(ValueError, match="`weights` for vgg16 must be one of"):
        get_feature_extractor("vgg16", "relu1_1", weights="imagenet21k")
    with pytest.raises(ValueError, match="at least one layer"):
        get_feature_extractor("vgg16", [], weights=None)


def test_backbone_is_built_once_and_shared(rng):
    a = get_feature_extractor("vgg16", ["relu3_3"], weights=None)
    b = get_feature_extractor("vgg16", ["relu1_2", "conv4_3"], weights=None)
    assert a._backbone is b._backbone
    backbone_ids = {id(v) for v in a._backbone.weights}
    assert len(backbone_ids) == 26  # 13 convolutions
    # the tap models hold the backbone's own variables (no copies), only the prefix they need
    assert {id(v) for v in a.model.weights} <= backbone_ids and len(a.model.weights) == 14
    assert {id(v) for v in b.model.weights} <= backbone_ids and len(b.model.weights) == 20
    # another dtype policy is another network
    c = get_feature_extractor("vgg16", ["relu3_3"], weights=None, dtype="mixed_float16")
    assert c._backbone is not a._backbone
    # `dtype` takes a policy object as Keras layers do: the same policy, the same network
    policy = keras.DTypePolicy("mixed_float16")
    d = get_feature_extractor("vgg16", ["relu1_2"], weights=None, dtype=policy)
    assert d._backbone is c._backbone and d.dtype_policy == "mixed_float16"


def test_dtype_policy_keyword_is_refused_naming_dtype():
    with pytest.raises(TypeError, match="`dtype_policy` was renamed `dtype`"):
        get_feature_extractor("vgg16", "relu1_1", weights=None, dtype_policy="float32")
    with pytest.raises(TypeError, match="unexpected keyword argument 'layer'"):
        get_feature_extractor("vgg16", "relu1_1", weights=None, layer="relu1_1")
    from tfrestore.metrics.lpips import LPIPSNetwork, get_lpips_network

    with pytest.raises(TypeError, match="LPIPSNetwork: `dtype_policy` was renamed `dtype`"):
        LPIPSNetwork("alexnet", None, dtype_policy="float32")
    with pytest.raises(TypeError, match="get_lpips_network: `dtype_policy` was renamed `dtype`"):
        get_lpips_network("alexnet", None, dtype_policy="float32")


def test_tap_model_is_one_functional_model_over_the_backbone_layers():
    fx = get_feature_extractor("vgg16", ["relu2_2", "conv1_1", "relu2_2"], weights=None)
    assert isinstance(fx.model, keras.Model) and fx.model.input is fx._backbone.input
    assert list(fx.model.output) == ["relu2_2", "conv1_1"]  # duplicates tapped once
    assert fx.model.output["conv1_1"] is fx._backbone.get_layer("conv1_1").output


def test_frozen_training_false_and_gradients_reach_input(rng):
    fx = get_feature_extractor("resnet50", ["conv2_block1_out"], weights=None)
    bn = fx._backbone.get_layer("conv1_bn")
    before = np.asarray(bn.moving_mean).copy()
    x = tf.Variable(_images(rng))
    with tf.GradientTape() as tape:
        y = tf.reduce_sum(fx(x)["conv2_block1_out"] ** 2)
    g = tape.gradient(y, x)
    assert g is not None and np.all(np.isfinite(g)) and np.any(np.asarray(g) != 0)
    np.testing.assert_array_equal(np.asarray(bn.moving_mean), before)  # BatchNorm in inference mode
    assert fx.model.trainable_weights == [] and fx._backbone.trainable_weights == []


def test_inside_a_trained_model_nothing_of_the_extractor_trains(rng):
    fx = get_feature_extractor("vgg16", ["relu2_2"], weights=None)
    inp = keras.Input((16, 16, 3))
    out = keras.layers.Conv2D(3, 3, padding="same", name="gen")(inp)
    model = keras.Model(inp, out)
    before = [np.asarray(w).copy() for w in fx.model.weights]
    opt = keras.optimizers.SGD(0.1)
    x = _images(rng, 2, 16)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(fx(model(x, training=True))["relu2_2"])
    grads = tape.gradient(loss, model.trainable_variables)
    assert all(g is not None for g in grads)
    opt.apply_gradients(zip(grads, model.trainable_variables))
    for a, w in zip(before, fx.model.weights):
        np.testing.assert_array_equal(a, np.asarray(w))


def test_random_weights_are_deterministic_across_builds(rng):
    x = _images(rng)
    a = np.asarray(get_feature_extractor("alexnet", "relu3", weights=None)(x)["relu3"])
    clear_cache()
    b = np.asarray(get_feature_extractor("alexnet", "relu3", weights=None)(x)["relu3"])
    np.testing.assert_array_equal(a, b)


def test_mixed_float16_features(rng):
    x = _images(rng, 2, 16)
    ref = get_feature_extractor("vgg16", ["relu3_3", "conv5_3"], weights=None)(x)
    keras.config.set_dtype_policy("mixed_float16")
    fx = get_feature_extractor("vgg16", ["relu3_3", "conv5_3"], weights=None)
    assert fx.dtype_policy == "mixed_float16"
    f16 = fx(tf.cast(x, tf.float16))
    for k in ref:
        assert f16[k].dtype == tf.float16
        np.testing.assert_allclose(
            np.asarray(f16[k], np.float32), ref[k], rtol=0.05, atol=0.05 * np.abs(ref[k]).max()
        )
    xv = tf.Variable(tf.cast(x, tf.float16))
    with tf.GradientTape() as tape:
        y = tf.reduce_sum(tf.cast(fx(xv)["conv5_3"], tf.float32))
    assert np.all(np.isfinite(np.asarray(tape.gradient(y, xv), np.float32)))


def test_works_in_graph_and_xla(rng):
    fx = get_feature_extractor("alexnet", ["relu2", "conv5"], weights=None)
    x = _images(rng, 2, 64)
    eager = fx(x)
    graph = tf.function(fx)(x)
    xla = tf.function(fx, jit_compile=True)(x)
    for k in eager:
        np.testing.assert_allclose(graph[k], eager[k], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(xla[k], eager[k], rtol=1e-4, atol=1e-4)


def test_bad_images_raise_clear_errors(rng):
    fx = get_feature_extractor("vgg16", "relu3_3", weights=None)
    with pytest.raises(ValueError, match=r"\(batch, height, width, 3\)"):
        fx(np.zeros((2, 3, 16, 16), "float32"))
    with pytest.raises(ValueError, match="NHWC"):
        fx(np.zeros((16, 16, 3), "float32"))
    with pytest.raises(TypeError, match="floating-point"):
        fx(np.zeros((1, 16, 16, 3), "uint8"))
    with pytest.raises(ValueError, match="smaller than the minimum input size 4x4"):
        fx(np.zeros((1, 3, 3, 3), "float32"))


def test_preprocessing_modes(rng):
    x = _images(rng, 1, 4)
    caffe = keras.applications.vgg16.preprocess_input(x * 255.0)
    np.testing.assert_allclose(Preprocessing("caffe")(x), caffe, rtol=1e-5, atol=1e-4)
    torch = (x - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(Preprocessing("torch")(x), torch, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(Preprocessing("none")(x), x)
    div2k = Preprocessing({"mean": (0.4488, 0.4371, 0.4040)})
    np.testing.assert_allclose(
        div2k(x), x - np.array([0.4488, 0.4371, 0.4040]), rtol=1e-6, atol=1e-7
    )
    np.testing.assert_allclose(div2k.numpy(x), div2k(x), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="`preprocessing` must be one of"):
        Preprocessing("imagenet")
    with pytest.raises(ValueError, match="std"):
        Preprocessing({"std": 0})
    # the extractor applies what the weights imply, or an explicit override
    assert get_feature_extractor("vgg16", "relu1_1", weights=None).preprocessing.spec == "torch"
    fx = get_feature_extractor("vgg16", "relu1_1", weights=None, preprocessing="none")
    assert fx.preprocessing.spec == "none"
    direct = fx.model(x, training=False)["relu1_1"]
    np.testing.assert_allclose(fx(x)["relu1_1"], direct, rtol=1e-6)


def test_feature_extractor_repr_and_type():
    fx = get_feature_extractor("vgg19", ["conv5_4"], weights=None)
    assert isinstance(fx, FeatureExtractor)
    assert repr(fx) == (
        "FeatureExtractor(backbone='vgg19', layers=['conv5_4'], weights=None, "
        "preprocessing='torch')"
    )


def test_feature_source_calls_the_tap_model_and_refuses_too_small_images(rng):
    from tfrestore.features.feature_source import FeatureSource

    src = FeatureSource("conv5_3", "vgg16", None, owner="demo")
    fx = src.network()
    x = _images(rng, 1, 32)
    direct = fx.model(fx.preprocessing(x), training=False)["conv5_3"]
    np.testing.assert_allclose(src(x)["conv5_3"], direct, rtol=1e-6)
    with pytest.raises(ValueError, match=r"demo: `images` is 8x8 pixels, smaller than the "
                                         r"minimum input size of vgg16 layers \['conv5_3'\]"):
        src(_images(rng, 1, 8))
