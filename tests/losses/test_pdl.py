"""PDLoss: NumPy references, distribution properties, projections, conformance."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl.testing import parameterized

from tfrestore.losses import PDLoss
from tfrestore.losses.wasserstein import wasserstein_1d
from tfrestore.testing import TestCase

# ----------------------------------------------------------------------------- extractors
_K1 = np.random.default_rng(10).normal(size=(1, 1, 3, 6)).astype("float32")
_K3 = (0.3 * np.random.default_rng(11).normal(size=(3, 3, 3, 8))).astype("float32")


@keras.saving.register_keras_serializable(package="tfrestore_tests")
def pixel_features(x):
    """Features = the pixels themselves (C = 3)."""
    return x


@keras.saving.register_keras_serializable(package="tfrestore_tests")
def pointwise_features(x):
    """1x1 conv + ReLU: a spatial permutation of the image permutes the features."""
    return tf.nn.relu(tf.nn.conv2d(x, tf.cast(_K1, x.dtype), 1, "VALID") + tf.cast(0.1, x.dtype))


@keras.saving.register_keras_serializable(package="tfrestore_tests")
def conv_features(x):
    return tf.nn.relu(tf.nn.conv2d(x, tf.cast(_K3, x.dtype), 2, "SAME"))


@keras.saving.register_keras_serializable(package="tfrestore_tests")
def two_layer_features(x):
    return {"a": pointwise_features(x), "b": conv_features(x)}


def _feats(fn, x):
    return np.asarray(fn(tf.constant(x, tf.float32)), np.float64)


# ----------------------------------------------------------------------------- references
def np_pdl(ft, fp, p=1.0, reduction="mean"):
    """Per-image, per-channel sorted |difference|^p of NHWC feature maps."""
    b, c = ft.shape[0], ft.shape[-1]
    a = np.sort(fp.reshape(b, -1, c), axis=1)
    t = np.sort(ft.reshape(b, -1, c), axis=1)
    per_channel = (np.abs(a - t) ** p).mean(axis=1)
    return per_channel.mean(-1) if reduction == "mean" else per_channel.sum(-1)


def np_sliced_w1(ft, fp, n_dirs=20000, seed=0):
    """Monte-Carlo sliced W1 with NumPy directions uniform on the sphere."""
    b, c = ft.shape[0], ft.shape[-1]
    theta = np.random.default_rng(seed).normal(size=(c, n_dirs))
    theta /= np.linalg.norm(theta, axis=0, keepdims=True)
    a = np.sort(fp.reshape(b, -1, c) @ theta, axis=1)
    t = np.sort(ft.reshape(b, -1, c) @ theta, axis=1)
    return np.abs(a - t).mean(axis=(1, 2))


def _pair(rng, shape=(4, 16, 16, 3), sigma=0.15):
    y = rng.uniform(size=shape).astype("float32")
    return y, np.clip(y + rng.normal(0, sigma, size=shape), 0, 1).astype("float32")


BAD = [
    (np.zeros((2, 16, 16, 3), "float32"), np.zeros((2, 12, 16, 3), "float32"), ValueError, "quantiles"),
    (np.zeros((16, 16, 3), "float32"), np.zeros((16, 16, 3), "float32"), ValueError, "rank-4"),
    (np.zeros((2, 16, 16, 3), "float32"), np.zeros((2, 16, 16, 4), "float32"), ValueError, "channels"),
    (np.zeros((2, 16, 16, 3), "float32"), np.full((2, 16, 16, 3), np.inf, "float32"), ValueError, "NaN or Inf"),
    (np.zeros((2, 16, 16, 3), "uint8"), np.zeros((2, 16, 16, 3), "float32"), TypeError, "y_true"),
]


# ----------------------------------------------------------------------------- tests
class PDLossTest(TestCase):
    # Finite differences along a random direction are below float32 resolution for
    # this piecewise-linear loss; see the exact-gradient and FD tests below.
    def _conformance(self, **kwargs):
        y, p = _pair(self.rng)
        self.run_loss_test(PDLoss, {"feature_extractor": conv_features, **kwargs}, y, p,
                           bad_inputs=BAD)

    @parameterized.named_parameters(
        ("identity", {}),
        ("random_sphere", {"projection": "random_sphere", "seed": 3}),  # new directions per call
    )
    def test_conformance(self, kwargs):
        self._conformance(**kwargs)

    @pytest.mark.slow
    def test_conformance_random_pairs(self):
        self._conformance(projection="random_pairs", num_projections=10)

    @pytest.mark.slow
    def test_conformance_fixed_perturbed_identity(self):
        self._conformance(
            projection="perturbed_identity", fixed_projections=True, projection_multiple=2.0
        )

    @pytest.mark.slow
    def test_vgg_backbone_conformance(self):
        y, p = _pair(self.rng, shape=(2, 32, 32, 3))
        self.run_loss_test(PDLoss, {"weights": None}, y, p)


@pytest.mark.parametrize(
    "kwargs",
    [{"p": 2.0}, {"p": 2.0, "projection": "random_sphere", "fixed_projections": True},
     {"projection": "random_pairs", "fixed_projections": True}],
)
def test_finite_differences_along_the_gradient(kwargs, rng):
    y, p = _pair(rng)
    loss = PDLoss(feature_extractor=conv_features, **kwargs)
    yp = tf.Variable(p)
    with tf.GradientTape() as tape:
        value = loss(y, yp)
    g = np.asarray(tape.gradient(value, yp), np.float64)
    d = g / np.linalg.norm(g)
    eps = 1e-3
    plus = float(loss(y, (p + eps * d).astype("float32")))
    minus = float(loss(y, (p - eps * d).astype("float32")))
    numeric = (plus - minus) / (2 * eps)
    np.testing.assert_allclose(numeric, np.linalg.norm(g), rtol=0.02)


@pytest.mark.parametrize("p_order,reduction", [(1.0, "mean"), (2.0, "mean"), (1.5, "sum")])
def test_identity_matches_numpy_per_image_per_channel(p_order, reduction, rng):
    y, p = _pair(rng)
    loss = PDLoss(feature_extractor=pointwise_features, p=p_order, channel_reduction=reduction)
    ref = np_pdl(_feats(pointwise_features, y), _feats(pointwise_features, p), p_order, reduction)
    np.testing.assert_allclose(loss.call(y, p), ref, rtol=1e-5, atol=1e-7)


def test_sum_is_c_times_mean(rng):
    y, p = _pair(rng)
    mean = PDLoss(feature_extractor=pointwise_features).call(y, p)
    total = PDLoss(feature_extractor=pointwise_features, channel_reduction="sum").call(y, p)
    np.testing.assert_allclose(total, 6 * np.asarray(mean), rtol=1e-6)


def test_per_image_not_pooled_over_batch(rng):
    y, p = _pair(rng)
    loss = PDLoss(feature_extractor=pixel_features)
    batch = np.asarray(loss.call(y, p))
    single = [float(loss.call(y[i : i + 1], p[i : i + 1])[0]) for i in range(len(y))]
    np.testing.assert_allclose(batch, single, rtol=1e-6)
    # pooling the batch into one distribution would give a different number
    pooled = np_pdl(*(a.reshape(1, -1, 1, 3).astype(np.float64) for a in (y, p)))
    assert abs(batch.mean() - pooled[0]) > 1e-4


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"projection": "random_sphere", "fixed_projections": True},
     {"projection": "random_pairs", "projection_multiple": 3.0},
     {"projection": "perturbed_identity", "channel_reduction": "sum"}],
)
def test_zero_for_identical_inputs(kwargs, rng):
    y, _ = _pair(rng)
    np.testing.assert_array_equal(PDLoss(feature_extractor=pointwise_features, **kwargs).call(y, y), 0.0)


@pytest.mark.parametrize("projection", ["identity", "random_sphere", "random_pairs", "perturbed_identity"])
def test_invariant_to_spatial_permutation_of_prediction(projection, rng):
    y, p = _pair(rng)
    perm = rng.permutation(16 * 16)
    p_perm = p.reshape(4, -1, 3)[:, perm].reshape(p.shape)
    kw = {} if projection == "identity" else {"fixed_projections": True}
    loss = PDLoss(feature_extractor=pointwise_features, projection=projection, **kw)
    a, b = loss.call(y, p), loss.call(y, p_perm)
    np.testing.assert_allclose(a, b, rtol=1e-6)
    assert np.all(np.asarray(a) > 0)
    # a position-wise loss is not invariant
    assert not np.allclose(np.abs(p - y).mean((1, 2, 3)), np.abs(p_perm - y).mean((1, 2, 3)), rtol=1e-3)


def test_random_sphere_approaches_sliced_wasserstein(rng):
    # Channels shuffled independently: every marginal is unchanged (identity PDL = 0)
    # but the joint distribution is not, which only the sliced distance sees.
    base = rng.uniform(size=(2, 16, 16, 1))
    y = np.clip(base + rng.normal(0, 0.05, (2, 16, 16, 3)), 0, 1).astype("float32")
    p = y.reshape(2, -1, 3).copy()
    for b in range(2):
        for c in range(3):
            p[b, :, c] = p[b, rng.permutation(256), c]
    p = p.reshape(y.shape)
    np.testing.assert_allclose(PDLoss(feature_extractor=pixel_features).call(y, p), 0.0, atol=1e-7)
    loss = PDLoss(feature_extractor=pixel_features, projection="random_sphere",
                  num_projections=6000, fixed_projections=True, seed=7)
    ref = np_sliced_w1(y.astype(np.float64), p.astype(np.float64))
    assert np.all(ref > 0.05)
    np.testing.assert_allclose(loss.call(y, p), ref, rtol=0.02)


def test_gradient_routes_through_the_sort(rng):
    """dL/dp at pixel n = sign(p_n - t_(rank of p_n)) / (B N C): the permutation is held."""
    y, p = _pair(rng, shape=(2, 8, 8, 3))
    yp = tf.Variable(p)
    with tf.GradientTape() as tape:
        value = PDLoss(feature_extractor=pixel_features)(y, yp)
    g = np.asarray(tape.gradient(value, yp)).reshape(2, -1, 3)
    pf, tf_ = p.reshape(2, -1, 3), y.reshape(2, -1, 3)
    ref = np.zeros_like(pf)
    for b in range(2):
        for c in range(3):
            ranks = np.argsort(np.argsort(pf[b, :, c], kind="stable"), kind="stable")
            ref[b, :, c] = np.sign(pf[b, :, c] - np.sort(tf_[b, :, c])[ranks])
    np.testing.assert_allclose(g, ref / (2 * 64 * 3), rtol=1e-5, atol=1e-9)


def test_sort_equals_tf_sort_with_ties_values_and_gradients(rng):
    """wasserstein_1d sorts by gather(argsort) for a cheaper gradient: the same values
    and gradients as tf.sort, also with ties (ReLU features hold many exact zeros)."""
    from tfrestore.losses.wasserstein import _sort

    x = np.maximum(rng.normal(size=(2, 3, 64)), 0.0).astype("float32")
    x[0, 0, :8] = 0.5  # ties away from zero too
    upstream = tf.constant(rng.normal(size=x.shape).astype("float32"))
    xv = tf.Variable(x)
    results = []
    for sort in (_sort, lambda t: tf.sort(t, axis=-1)):
        with tf.GradientTape() as tape:
            values = sort(xv)
            total = tf.reduce_sum(values * upstream)
        results.append((values.numpy(), tape.gradient(total, xv).numpy()))
    (v_new, g_new), (v_ref, g_ref) = results
    np.testing.assert_array_equal(v_new, v_ref)
    np.testing.assert_array_equal(g_new, g_ref)
    assert (x == 0).sum() > 50  # the ties were there


def exact_wasserstein_1d(u, v, p=1.0):
    """Exact ``W_p^p`` of two empirical 1-D distributions of any sizes: integrate
    ``|F_u^-1 - F_v^-1|^p`` over the merged CDF levels (both quantile functions are
    constant between consecutive levels ``i/N`` and ``j/M``)."""
    u, v = np.sort(np.asarray(u, np.float64)), np.sort(np.asarray(v, np.float64))
    levels = np.unique(np.concatenate([np.arange(1, u.size + 1) / u.size,
                                       np.arange(1, v.size + 1) / v.size]))
    width = np.diff(np.concatenate([[0.0], levels]))
    mid = levels - width / 2
    iu, iv = np.floor(mid * u.size).astype(int), np.floor(mid * v.size).astype(int)
    return float(np.sum(width * np.abs(u[iu] - v[iv]) ** p))


def test_quantiles_compare_different_sizes(rng):
    y = rng.uniform(size=(2, 16, 16, 3)).astype("float32")
    p = rng.uniform(size=(2, 12, 10, 3)).astype("float32") ** 2
    with pytest.raises(ValueError, match="quantiles"):
        PDLoss(feature_extractor=pixel_features)(y, p)
    q = 3840  # lcm(256, 120): the midpoint quantiles are then exact
    got = PDLoss(feature_extractor=pixel_features, quantiles=q).call(y, p)
    ref = [np.mean([exact_wasserstein_1d(p[b, ..., c].ravel(), y[b, ..., c].ravel())
                    for c in range(3)]) for b in range(2)]
    np.testing.assert_allclose(got, ref, rtol=1e-5)
    # with Q = N and equal sizes resampling is exact
    y2, p2 = _pair(rng)
    np.testing.assert_allclose(
        PDLoss(feature_extractor=pixel_features, quantiles=256).call(y2, p2),
        PDLoss(feature_extractor=pixel_features).call(y2, p2), rtol=1e-5,
    )


def test_layer_weights_with_dict_extractor(rng):
    y, p = _pair(rng)
    loss = PDLoss(feature_extractor=two_layer_features, layer_weights={"a": 1.0, "b": 0.5})
    ref = np_pdl(_feats(pointwise_features, y), _feats(pointwise_features, p)) + 0.5 * np_pdl(
        _feats(conv_features, y), _feats(conv_features, p)
    )
    np.testing.assert_allclose(loss.call(y, p), ref, rtol=1e-5)
    with pytest.raises(ValueError, match="asks for"):
        PDLoss(feature_extractor=two_layer_features, layers="c")(y, p)


def test_vgg_layers_preactivation_and_weights(rng):
    """Default backbone path: the requested VGG16 taps (pre-ReLU conv4_3, relu2_2)."""
    from tfrestore.features import get_feature_extractor

    y, p = _pair(rng, shape=(2, 32, 32, 3))
    loss = PDLoss(layer_weights={"conv4_3": 1.0, "relu2_2": 0.25}, weights=None)
    fx = get_feature_extractor("vgg16", ["conv4_3", "relu2_2"], weights=None)
    ft, fp = fx(y), fx(p)
    assert float(tf.reduce_min(ft["conv4_3"])) < 0  # pre-activation really is pre-ReLU
    ref = sum(
        w * np_pdl(np.asarray(ft[n], np.float64), np.asarray(fp[n], np.float64))
        for n, w in (("conv4_3", 1.0), ("relu2_2", 0.25))
    )
    np.testing.assert_allclose(loss.call(y, p), ref, rtol=1e-4)
    default = PDLoss(weights=None)
    assert default.layers == ["relu4_3"] and default.layer_weights == {"relu4_3": 1.0}
    assert default.get_config()["projection"] == "identity"
    with pytest.raises(ValueError, match="Unknown vgg16 layer"):
        PDLoss(layers="conv9_1", weights=None)


def test_per_call_projections_change_and_fixed_do_not(rng):
    y, p = _pair(rng)
    fresh = PDLoss(feature_extractor=conv_features, projection="random_sphere")
    a, b = fresh.call(y, p), fresh.call(y, p)
    assert not np.allclose(a, b)
    fixed = PDLoss(feature_extractor=conv_features, projection="random_sphere", fixed_projections=True)
    np.testing.assert_array_equal(fixed.call(y, p), fixed.call(y, p))
    # the sequence is a function of the seed: a new instance repeats it
    again = PDLoss(feature_extractor=conv_features, projection="random_sphere")
    np.testing.assert_allclose(again.call(y, p), a, rtol=1e-6)
    np.testing.assert_allclose(again.call(y, p), b, rtol=1e-6)


def _model(shape, seed=0):
    inp = keras.Input(shape[1:])
    out = keras.layers.Conv2D(shape[-1], 3, padding="same",
                              kernel_initializer=keras.initializers.RandomNormal(0.0, 0.05, seed=seed))(inp)
    return keras.Model(inp, keras.layers.Add()([inp, out]))


def test_mirrored_matches_single_device_over_several_steps(strategy, rng):
    """Per-call random projections: both replicas draw the same directions each step."""
    y, p = _pair(rng, shape=(8, 16, 16, 3))
    kw = {"feature_extractor": conv_features, "projection": "random_sphere", "seed": 5}
    ref = _model(y.shape)
    init = ref.get_weights()
    ref.compile(optimizer=keras.optimizers.SGD(0.5), loss=PDLoss(**kw))
    h_ref = ref.fit(p, y, batch_size=4, epochs=1, shuffle=False, verbose=0)  # 2 steps
    with strategy.scope():
        dist = _model(y.shape)
        dist.set_weights(init)
        dist.compile(optimizer=keras.optimizers.SGD(0.5), loss=PDLoss(**kw))
    h_dist = dist.fit(p, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    np.testing.assert_allclose(h_dist.history["loss"], h_ref.history["loss"], rtol=1e-4)
    for a, b in zip(dist.get_weights(), ref.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert int(keras.ops.convert_to_numpy(dist.loss._draws)) == 2


def test_outside_scope_counter_is_rejected_under_mirrored(strategy, rng):
    y, p = _pair(rng)
    loss = PDLoss(feature_extractor=conv_features, projection="random_sphere")  # outside scope
    with strategy.scope():
        model = _model(y.shape)
        model.compile(optimizer="sgd", loss=loss)
    with pytest.raises(RuntimeError, match="strategy.scope"):
        model.fit(p, y, batch_size=4, epochs=1, verbose=0)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"projection": "random_sphere", "num_projections": 0}, "num_projections"),
        ({"projection": "random_sphere", "projection_multiple": 0.0}, "projection_multiple"),
        ({"projection": "identity", "num_projections": 8}, "identity"),
        ({"projection": "radon"}, "projection"),
        ({"channel_reduction": "sum_channels"}, "channel_reduction"),
        ({"p": 0.5}, "`p`"),
        ({"quantiles": 1}, "quantiles"),
        ({"layers": []}, "layers"),
        ({"layer_weights": {"a": float("nan")}}, "finite"),
        ({"layer_weights": {}}, "layer_weights"),
        ({"layers": ["a"], "layer_weights": {"a": 1.0, "b": 0.5}}, "`layers`.*`layer_weights`"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PDLoss(feature_extractor=two_layer_features, **kwargs)


def test_too_few_projections_for_channels(rng):
    y, p = _pair(rng)
    with pytest.raises(ValueError, match="at least 1"):
        PDLoss(feature_extractor=pixel_features, projection="random_sphere", projection_multiple=0.1).call(y, p)


def test_old_name_is_refused_with_the_new_one_and_functional_helper():
    import tfrestore.losses

    with pytest.raises(AttributeError, match="ProjectedDistributionLoss was renamed PDLoss"):
        tfrestore.losses.ProjectedDistributionLoss
    u = tf.constant([[3.0, 1.0, 2.0, 10.0]])
    v = tf.constant([[0.0, 2.0, 1.0, 4.0]])
    np.testing.assert_allclose(wasserstein_1d(u, v, p=2), [(1 + 1 + 1 + 36) / 4])


def test_frozen_backbone_is_not_saved_with_the_model(tmp_path, rng):
    model = _model((2, 32, 32, 3))
    model.compile(optimizer="sgd", loss=PDLoss(weights=None))
    path = tmp_path / "m.keras"
    model.save(path)
    assert path.stat().st_size < 200_000  # VGG16 up to conv4_3 would be ~30 MB
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.loss, PDLoss) and loaded.loss.layers == ["relu4_3"]


def test_keras_model_extractor_and_unserializable_callable(rng):
    y, p = _pair(rng)
    inp = keras.Input((None, None, 3))
    feats = keras.layers.Conv2D(4, 3, kernel_initializer=keras.initializers.GlorotUniform(seed=1))(inp)
    net = keras.Model(inp, feats)
    loss = PDLoss(feature_extractor=net)
    ref = np_pdl(np.asarray(net(y), np.float64), np.asarray(net(p), np.float64))
    np.testing.assert_allclose(loss.call(y, p), ref, rtol=1e-5)
    assert not net.trainable  # used frozen
    local = PDLoss(feature_extractor=lambda x: x)
    np.testing.assert_allclose(local.call(y, p), np_pdl(y.astype(np.float64), p.astype(np.float64)), rtol=1e-5)
    with pytest.raises(ValueError, match="cannot be serialized"):
        local.get_config()
