"""ContextualLoss: NumPy reference (CTX_DP / CTX_L2), identity minimum, memory cap."""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfrestore.losses import ContextualLoss
from tfrestore.testing import TestCase
from tfrestore.utils import rng as counter_rng

_K1 = np.random.default_rng(20).normal(size=(1, 1, 3, 5)).astype("float32")
_K3 = (0.3 * np.random.default_rng(21).normal(size=(3, 3, 3, 8))).astype("float32")


@keras.saving.register_keras_serializable(package="tfrestore_tests")
def ctx_pixel_features(x):
    return x


@keras.saving.register_keras_serializable(package="tfrestore_tests")
def ctx_pointwise_features(x):
    return tf.nn.conv2d(x, tf.cast(_K1, x.dtype), 1, "VALID")


@keras.saving.register_keras_serializable(package="tfrestore_tests")
def ctx_conv_features(x):
    return tf.nn.relu(tf.nn.conv2d(x, tf.cast(_K3, x.dtype), 2, "SAME"))


def np_contextual(fx, fy, distance="cosine", h=0.5, eps=1e-5):
    """Mechrez et al. 2018, written directly from the paper / official TF code (float64)."""
    out = []
    for x, y in zip(fx, fy):
        x = x.reshape(-1, x.shape[-1]).astype(np.float64)
        y = y.reshape(-1, y.shape[-1]).astype(np.float64)
        if distance == "cosine":
            mu = y.mean(axis=0)
            xc, yc = x - mu, y - mu
            xc /= np.linalg.norm(xc, axis=1, keepdims=True)
            yc /= np.linalg.norm(yc, axis=1, keepdims=True)
            d = (1.0 - xc @ yc.T) / 2.0
        else:
            d = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
        rel = d / (d.min(axis=1, keepdims=True) + eps)
        w = np.exp((1.0 - rel) / h)
        cx = w / w.sum(axis=1, keepdims=True)
        out.append(-np.log(cx.max(axis=0).mean()))
    return np.array(out)


def _feats(fn, x):
    return np.asarray(fn(tf.constant(x, tf.float32)), np.float64)


def _pair(rng, shape=(4, 12, 12, 3)):
    y = rng.uniform(size=shape).astype("float32")
    p = np.clip(0.5 * y + 0.5 * rng.uniform(size=shape), 0, 1).astype("float32")
    return y, p


BAD = [
    (np.zeros((8, 8, 3), "float32"), np.zeros((8, 8, 3), "float32"), ValueError, "rank-4"),
    (np.zeros((2, 8, 8, 3), "float32"), np.full((2, 8, 8, 3), np.nan, "float32"), ValueError, "NaN"),
    (np.zeros((2, 8, 8, 3), "float32"), np.zeros((4, 8, 8, 3), "float32"), ValueError, "batch size"),
]


class ContextualLossTest(TestCase):
    def _conformance(self, distance):
        y, p = _pair(self.rng)
        self.run_loss_test(
            ContextualLoss, {"feature_extractor": ctx_conv_features, "distance": distance}, y, p,
            bad_inputs=BAD,
        )

    def test_conformance_cosine(self):
        self._conformance("cosine")

    @pytest.mark.slow
    def test_conformance_l2(self):
        self._conformance("l2")


@pytest.mark.parametrize("distance,h", [("cosine", 0.5), ("l2", 0.5), ("cosine", 0.1), ("l2", 1.0)])
def test_matches_numpy_reference(distance, h, rng):
    y, p = _pair(rng, shape=(3, 8, 8, 3))
    loss = ContextualLoss(feature_extractor=ctx_pointwise_features, distance=distance, bandwidth=h)
    fp, ft = _feats(ctx_pointwise_features, p), _feats(ctx_pointwise_features, y)
    ref = np_contextual(fp, ft, distance, h)
    np.testing.assert_allclose(loss.call(y, p), ref, rtol=2e-4, atol=1e-6)


def test_different_sizes_are_sets_of_different_cardinality(rng):
    y = rng.uniform(size=(2, 10, 10, 3)).astype("float32")
    p = rng.uniform(size=(2, 7, 9, 3)).astype("float32")
    got = ContextualLoss(feature_extractor=ctx_pixel_features).call(y, p)
    np.testing.assert_allclose(got, np_contextual(p, y), rtol=2e-4)


@pytest.mark.parametrize("distance", ["cosine", "l2"])
def test_identical_inputs_give_the_minimum(distance, rng):
    y, p = _pair(rng)
    loss = ContextualLoss(feature_extractor=ctx_conv_features, distance=distance)
    same = np.asarray(loss.call(y, y))
    np.testing.assert_allclose(same, 0.0, atol=1e-5)
    assert np.all(np.asarray(loss.call(y, p)) > same + 1e-3)


def test_spatial_permutation_of_prediction_is_free(rng):
    """A set loss: rearranging the prediction's positions does not change it."""
    y, p = _pair(rng)
    perm = rng.permutation(144)
    pp = p.reshape(4, -1, 3)[:, perm].reshape(p.shape)
    loss = ContextualLoss(feature_extractor=ctx_pointwise_features)
    np.testing.assert_allclose(loss.call(y, pp), loss.call(y, p), rtol=1e-5)


def test_cap_raises_before_allocating(rng):
    y, p = _pair(rng, shape=(2, 16, 16, 3))
    loss = ContextualLoss(feature_extractor=ctx_pixel_features, max_positions=100)
    with pytest.raises(ValueError, match="256 feature positions, more than max_positions=100"):
        loss(y, p)
    # shapes only known at run time: an InvalidArgumentError instead of an OOM
    fn = tf.function(lambda a, b: loss.call(a, b),
                     input_signature=[tf.TensorSpec([None, None, None, 3])] * 2)
    with pytest.raises(tf.errors.InvalidArgumentError, match="max_positions=100"):
        fn(y, p)
    assert ContextualLoss(feature_extractor=ctx_pixel_features, max_positions=256).call(y, p).shape == (2,)


def test_cap_subsamples_with_a_warning(rng):
    y, p = _pair(rng, shape=(2, 16, 16, 3))
    loss = ContextualLoss(feature_extractor=ctx_pixel_features, max_positions=100,
                          on_overflow="subsample", seed=3)
    with pytest.warns(UserWarning, match="random subset of max_positions=100"):
        got = loss.call(y, p)
    # the documented subset: the 100 best positions of the seeded uniform scores
    scores = np.asarray(counter_rng.uniform((256,), 3, tf.constant(0, tf.int64), 0))
    idx = np.sort(np.argsort(-scores, kind="stable")[:100])
    sub = lambda a: a.reshape(2, -1, 1, 3)[:, idx]  # noqa: E731
    np.testing.assert_allclose(got, np_contextual(sub(p), sub(y)), rtol=2e-4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        np.testing.assert_allclose(loss.call(y, y), 0.0, atol=1e-5)  # same subset for both
        xla = tf.function(lambda a, b: loss.call(a, b), jit_compile=True)(y, p)
    np.testing.assert_allclose(xla, got, rtol=1e-4)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"distance": "dot"}, "distance"),
        ({"bandwidth": 0.0}, "bandwidth"),
        ({"max_positions": 0}, "max_positions"),
        ({"on_overflow": "ignore"}, "on_overflow"),
        ({"eps": -1.0}, "eps"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ContextualLoss(feature_extractor=ctx_pixel_features, **kwargs)


def test_vgg_backbone_default_layer(rng):
    from tfrestore.features import get_feature_extractor

    y, p = _pair(rng, shape=(2, 32, 32, 3))
    loss = ContextualLoss(
        weights=None, layer_weights={"relu4_3": 1.0, "relu2_2": 0.5}, distance="l2"
    )
    fx = get_feature_extractor("vgg16", ["relu4_3", "relu2_2"], weights=None)
    ft, fp = fx(y), fx(p)
    ref = sum(
        w * np_contextual(np.asarray(fp[n]), np.asarray(ft[n]), "l2")
        for n, w in (("relu4_3", 1.0), ("relu2_2", 0.5))
    )
    np.testing.assert_allclose(loss.call(y, p), ref, rtol=1e-3)
    with pytest.raises(ValueError, match="Unknown vgg16 layer"):
        ContextualLoss(weights=None, layers="conv9_9")


def test_a_one_position_feature_map_is_refused_naming_the_minimum_size(rng):
    # VGG16 relu4_3 has stride 8: an 8x8 image gives a 1x1 map, where CX is 1 (loss exactly 0)
    y, p = _pair(rng, shape=(2, 8, 8, 3))
    loss = ContextualLoss(weights=None, layers="relu4_3")
    with pytest.raises(ValueError, match=r"relu4_3.*1x1 feature map.*at least 16x16 pixels"):
        loss(y, p)
    y, p = _pair(rng, shape=(2, 16, 16, 3))
    assert loss.call(y, p).shape == (2,)  # 2x2: accepted
    # a user's extractor: no geometry, the refusal still names the layer
    pooled = ContextualLoss(feature_extractor=lambda x: tf.reduce_mean(x, [1, 2], keepdims=True))
    with pytest.raises(ValueError, match=r"`y_pred` has a 1x1 feature map.*larger images"):
        pooled(y, p)
    # shapes known only at run time: an InvalidArgumentError
    fn = tf.function(lambda a, b: pooled.call(a, b),
                     input_signature=[tf.TensorSpec([None, None, None, 3])] * 2)
    with pytest.raises(tf.errors.InvalidArgumentError, match="1x1 feature map"):
        fn(y, p)
