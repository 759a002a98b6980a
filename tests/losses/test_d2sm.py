"""D2SMLoss: arithmetic against an independent NumPy implementation, gradients,
conformance harness, backbone wiring, bad inputs, patch mode and safety rails (the queue
is tested in test_queue.py, the window grid in test_patches.py).

Feature sets are fed directly through an identity "extractor" (images are the
features), so the NumPy reference sees exactly the rows the loss sees.
"""

import itertools
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfrestore.losses import L1, D2SMLoss
from tfrestore.losses.patches import window_grid
from tfrestore.models import RestorationModel
from tfrestore.testing import TestCase


@keras.saving.register_keras_serializable(package="tests_d2sm")
def identity_features(x):
    return x


_KERNEL = np.random.default_rng(7).normal(size=(3, 3, 3, 8)).astype("float32") / 3.0


@keras.saving.register_keras_serializable(package="tests_d2sm")
def tiny_features(x):
    """Fixed random 3x3 conv on centred pixels, then 4x4 average pooling (stride 4)."""
    y = tf.nn.conv2d(tf.cast(x, tf.float32) - 0.5, tf.constant(_KERNEL), 1, "SAME")
    return tf.nn.avg_pool2d(y, 4, 4, "VALID")


# ----------------------------------------------------------------- reference
def np_normalize(f, eps=1e-6):
    f = np.asarray(f, np.float64)
    return f / (np.linalg.norm(f, axis=-1, keepdims=True) + eps)


def np_rows(fs, ft, valid, divergence, include_diagonal, eps=0.0, temperature=None):
    """Per-row divergence of one similarity set (float64, textbook formulas; eps=0:
    0 log 0 = 0)."""
    m = len(fs)
    w = np.outer(np.ones(m), valid.astype(np.float64))
    if not include_diagonal:
        w[np.arange(m), np.arange(m)] = 0.0

    def probs(f):
        if temperature is None:
            k = (f @ f.T + 1.0) / 2.0 * w
        else:  # exp(cos / t), shifted by the largest cosine for float64 range
            k = np.exp((f @ f.T - 1.0) / temperature) * w
        return k / k.sum(1, keepdims=True)

    ps, pt = probs(fs), probs(ft)

    def kl(p, q):
        if eps:
            return (p * (np.log(p + eps) - np.log(q + eps))).sum(1)
        on = p > 0
        return np.where(on, p * (np.log(np.where(on, p, 1)) - np.log(np.where(on, q, 1))), 0).sum(1)

    if divergence == "kl":
        r = kl(ps, pt)
    elif divergence == "ikl":
        r = kl(pt, ps)
    elif divergence == "js":
        mix = (ps + pt) / 2
        r = 0.5 * kl(ps, mix) + 0.5 * kl(pt, mix)
    else:
        r = 0.5 * (kl(ps, pt) + kl(pt, ps))
    return r * valid


def np_d2sm(
    fs,
    ft,
    divergence="kl",
    include_diagonal=False,
    kl_reduction="sum_rows_mean",
    group_by_image=False,
    queue_s=None,
    queue_t=None,
    temperature=None,
    eps=0.0,
):
    """Per-sample values. ``fs, ft``: (B, P, D) raw features; queue: (n, D) valid rows;
    ``eps`` inside the logarithms (the L2 normalisation always adds 1e-6)."""
    fs, ft = np_normalize(fs), np_normalize(ft)
    b, p, _ = fs.shape
    if queue_s is None:
        queue_s = queue_t = np.zeros((0, fs.shape[-1]))
    queue_s, queue_t = np_normalize(queue_s), np_normalize(queue_t)

    def red(n):
        return 1.0 / n**2 if kl_reduction == "mean_all" else 1.0 / n

    if group_by_image:
        out = []
        for i in range(b):
            s = np.concatenate([fs[i], queue_s])
            t = np.concatenate([ft[i], queue_t])
            r = np_rows(s, t, np.ones(len(s)), divergence, include_diagonal, eps, temperature)
            out.append(red(len(s)) * r.sum())
        return np.array(out)
    s = np.concatenate([fs.reshape(b * p, -1), queue_s])
    t = np.concatenate([ft.reshape(b * p, -1), queue_t])
    r = np_rows(s, t, np.ones(len(s)), divergence, include_diagonal, eps, temperature)
    n = len(s)
    total = red(n) * r.sum()
    per = red(n) * (b * r[:b * p].reshape(b, p).sum(1) + r[b * p:].sum())
    np.testing.assert_allclose(per.mean(), total, rtol=1e-10)
    return per


def _features_pair(rng, b=3, h=2, w=2, c=4):
    y = rng.normal(size=(b, h, w, c)).astype("float32")
    p = (y + 0.5 * rng.normal(size=y.shape)).astype("float32")
    return y, p


#: eps inside the logarithms: 0 (the default, the paper) and 1e-6 (the released code)
EPS, EPS_IDS = [0.0, 1e-6], ["eps0", "eps1e-6"]
OPTIONS = list(
    itertools.product(
        ["kl", "ikl", "js", "symmetric_kl"], [True, False], ["mean_all", "sum_rows_mean"]
    )
)


@pytest.mark.parametrize("eps", EPS, ids=EPS_IDS)
@pytest.mark.parametrize("divergence,include_diagonal,kl_reduction", OPTIONS)
def test_whole_image_sets_match_numpy(divergence, include_diagonal, kl_reduction, eps, rng):
    y, p = _features_pair(rng, b=5)
    loss = D2SMLoss(
        feature_extractor=identity_features,
        patch_size=None,
        divergence=divergence,
        include_diagonal=include_diagonal,
        kl_reduction=kl_reduction,
        eps=eps,
        reduction=None,
    )
    got = loss(y, p).numpy()
    ref = np_d2sm(
        p.reshape(5, 1, -1), y.reshape(5, 1, -1), divergence, include_diagonal, kl_reduction,
        eps=eps,
    )
    np.testing.assert_allclose(got, ref, rtol=2e-4, atol=1e-9)
    assert np.all(ref > 0)


@pytest.mark.parametrize("group_by_image", [False, True])
@pytest.mark.parametrize("divergence,include_diagonal,kl_reduction", OPTIONS[::3] + OPTIONS[1::5])
@pytest.mark.parametrize("eps", EPS, ids=EPS_IDS)
def test_patch_sets_match_numpy(
    group_by_image, divergence, include_diagonal, kl_reduction, eps, rng
):
    # 6x6 "images" of 2 channels, 4x4 windows with stride 2 -> 4 windows of 32 values.
    y, p = _features_pair(rng, b=2, h=6, w=6, c=2)
    loss = D2SMLoss(
        feature_extractor=identity_features,
        patch_size=4,
        patch_stride=2,
        group_by_image=group_by_image,
        divergence=divergence,
        include_diagonal=include_diagonal,
        kl_reduction=kl_reduction,
        eps=eps,
        reduction=None,
    )

    def windows(x):
        return np.stack(
            [
                np.stack([x[i, a:a + 4, c:c + 4].ravel() for a in (0, 2) for c in (0, 2)])
                for i in range(len(x))
            ]
        )

    ref = np_d2sm(
        windows(p), windows(y), divergence, include_diagonal, kl_reduction, group_by_image,
        eps=eps,
    )
    np.testing.assert_allclose(loss(y, p).numpy(), ref, rtol=2e-4, atol=1e-9)


@pytest.mark.parametrize("group_by_image", [False, True])
@pytest.mark.parametrize("divergence", ["kl", "ikl", "js"])
@pytest.mark.parametrize("eps", EPS, ids=EPS_IDS)
def test_queue_sets_match_numpy(group_by_image, divergence, eps, rng):
    """Three steps through a queue of 5 rows (2 patch rows per image, batch 2):
    the set is the current rows plus the last min(seen, 5) rows (ring order is
    irrelevant to the loss, so the reference keeps a plain history list)."""
    loss = D2SMLoss(
        feature_extractor=identity_features,
        patch_size=2,
        patch_stride=2,
        group_by_image=group_by_image,
        queue_size=5,
        divergence=divergence,
        eps=eps,
        reduction=None,
    )
    hist_s, hist_t = [], []
    for step in range(3):
        y, p = _features_pair(rng, b=2, h=2, w=4, c=3)
        got = loss(y, p).numpy()
        ws = np.stack([[p[i, :, :2].ravel(), p[i, :, 2:].ravel()] for i in range(2)])
        wt = np.stack([[y[i, :, :2].ravel(), y[i, :, 2:].ravel()] for i in range(2)])
        qs = np.array(hist_s[-5:]).reshape(-1, 12) if hist_s else None
        qt = np.array(hist_t[-5:]).reshape(-1, 12) if hist_t else None
        ref = np_d2sm(ws, wt, divergence, False, "sum_rows_mean", group_by_image, qs, qt,
                      eps=eps)
        np.testing.assert_allclose(got, ref, rtol=2e-4, atol=1e-9, err_msg=f"step {step}")
        hist_s.extend(ws.reshape(4, -1))
        hist_t.extend(wt.reshape(4, -1))
    assert loss.queue_count == 12


TEMPERATURES = [1.0, 0.1, 0.02]


@pytest.mark.parametrize("temperature", TEMPERATURES)
@pytest.mark.parametrize("divergence,include_diagonal", [("kl", False), ("js", True)])
@pytest.mark.parametrize("eps", EPS, ids=EPS_IDS)
def test_temperature_whole_image_sets_match_numpy(
    temperature, divergence, include_diagonal, eps, rng
):
    y, p = _features_pair(rng, b=5)
    loss = D2SMLoss(
        feature_extractor=identity_features,
        patch_size=None,
        divergence=divergence,
        include_diagonal=include_diagonal,
        temperature=temperature,
        eps=eps,
        reduction=None,
    )
    ref = np_d2sm(
        p.reshape(5, 1, -1),
        y.reshape(5, 1, -1),
        divergence,
        include_diagonal,
        temperature=temperature,
        eps=eps,
    )
    np.testing.assert_allclose(loss(y, p).numpy(), ref, rtol=2e-4, atol=1e-9)
    if not include_diagonal:  # with it, small temperatures put all mass on i itself
        assert np.all(ref > 0)


@pytest.mark.parametrize("temperature", TEMPERATURES)
@pytest.mark.parametrize("group_by_image", [False, True])
@pytest.mark.parametrize("eps", EPS, ids=EPS_IDS)
def test_temperature_queue_sets_match_numpy(temperature, group_by_image, eps, rng):
    """Two steps through a queue of 5 rows (2 patch rows per image, batch 2)."""
    loss = D2SMLoss(
        feature_extractor=identity_features,
        patch_size=2,
        patch_stride=2,
        group_by_image=group_by_image,
        queue_size=5,
        temperature=temperature,
        eps=eps,
        reduction=None,
    )
    hist_s, hist_t = [], []
    for step in range(2):
        y, p = _features_pair(rng, b=2, h=2, w=4, c=3)
        got = loss(y, p).numpy()
        ws = np.stack([[p[i, :, :2].ravel(), p[i, :, 2:].ravel()] for i in range(2)])
        wt = np.stack([[y[i, :, :2].ravel(), y[i, :, 2:].ravel()] for i in range(2)])
        qs = np.array(hist_s[-5:]).reshape(-1, 12) if hist_s else None
        qt = np.array(hist_t[-5:]).reshape(-1, 12) if hist_t else None
        ref = np_d2sm(
            ws, wt, "kl", False, "sum_rows_mean", group_by_image, qs, qt, temperature, eps
        )
        np.testing.assert_allclose(got, ref, rtol=2e-4, atol=1e-9, err_msg=f"step {step}")
        hist_s.extend(ws.reshape(4, -1))
        hist_t.extend(wt.reshape(4, -1))


def test_temperature_sharpens_the_distributions_and_round_trips(rng):
    """A small temperature gives a larger divergence (peaked distributions) and
    a finite gradient; None keeps the paper's kernel; the option is serialized."""
    y, p = _features_pair(rng, b=6)
    values = {}
    for t in (None, 1.0, 0.05):
        loss = D2SMLoss(feature_extractor=identity_features, patch_size=None, temperature=t)
        yp = tf.Variable(p)
        with tf.GradientTape() as tape:
            values[t] = loss(y, yp)
        g = tape.gradient(values[t], yp).numpy()
        assert np.all(np.isfinite(g)) and np.any(g != 0)
        assert D2SMLoss.from_config(loss.get_config()).temperature == t
    assert float(values[0.05]) > 10 * float(values[None])
    for bad in (0, -0.1, float("inf"), "0.1"):
        with pytest.raises(ValueError, match="temperature"):
            D2SMLoss(feature_extractor=identity_features, temperature=bad)


@pytest.mark.parametrize("eps", EPS, ids=EPS_IDS)
def test_tiny_temperature_stays_finite(eps, rng):
    """exp(cos / t) would underflow in float32 for t = 1e-3 without the row shift.
    (With eps=0 one-hot rows with the same nearest neighbour give exactly 0.)"""
    y, p = _features_pair(rng, b=4)
    loss = D2SMLoss(
        feature_extractor=identity_features, patch_size=None, temperature=1e-3, eps=eps
    )
    yp = tf.Variable(p)
    with tf.GradientTape() as tape:
        v = loss(y, yp)
    assert np.isfinite(float(v)) and (float(v) > 0 if eps else float(v) >= 0)
    assert np.all(np.isfinite(tape.gradient(v, yp).numpy()))


@pytest.mark.parametrize(
    "kw",
    [
        dict(temperature=0.01),
        dict(temperature=0.01, divergence="symmetric_kl", queue_size=12),  # row sums
        dict(temperature=1e-3, queue_size=12),  # similarity cache (t < 0.003)
        dict(temperature=1e-3, divergence="js", queue_size=12),
        dict(divergence="js", queue_size=12),
    ],
    ids=["dense-t0.01", "sums-t0.01", "cache-t0.001", "cache-js-t0.001", "cache-js"],
)
def test_eps0_probabilities_that_underflow_stay_finite(kw, rng):
    """eps=0 (the default) where float32 probabilities underflow to 0 against
    nonzero ones (small temperatures): 0 log 0 = 0, a finite loss and gradient
    on the dense path and on both queue caches, never NaN."""
    if kw.get("queue_size"):
        kw = dict(kw, image_size=(2, 2), channels=4)
    loss = D2SMLoss(feature_extractor=identity_features, patch_size=None, **kw)
    assert loss.eps == 0.0
    total = 0.0
    for _ in range(3):
        y = rng.normal(size=(4, 2, 2, 4)).astype("float32")
        yp = tf.Variable(y + 0.8 * rng.normal(size=y.shape).astype("float32"))
        with tf.GradientTape() as tape:
            v = loss(y, yp)
        g = tape.gradient(v, yp).numpy()
        # t = 1e-3: one-hot rows with the same nearest neighbour give exactly 0
        assert np.isfinite(float(v)) and float(v) >= 0 and np.all(np.isfinite(g))
        total += float(v)
    assert total > 0


def test_released_code_configuration_matches_numpy(rng):
    """ikl + diagonal + mean over N^2 entries = what variant B of the released code computes."""
    y, p = _features_pair(rng, b=4)
    loss = D2SMLoss(
        feature_extractor=identity_features,
        patch_size=None,
        divergence="ikl",
        include_diagonal=True,
        kl_reduction="mean_all",
        eps=1e-6,
        reduction=None,
    )
    fs, ft = np_normalize(p.reshape(4, -1)), np_normalize(y.reshape(4, -1))
    ks, kt = (fs @ fs.T + 1) / 2, (ft @ ft.T + 1) / 2
    ps, pt = ks / ks.sum(1, keepdims=True), kt / kt.sum(1, keepdims=True)
    code_value = np.mean(pt * np.log((pt + 1e-6) / (ps + 1e-6)))
    np.testing.assert_allclose(float(tf.reduce_mean(loss(y, p))), code_value, rtol=2e-4)


def test_precision_near_the_optimum(rng):
    """The loss is second order in the feature difference; float32 must keep it."""
    y, _ = _features_pair(rng, b=4)
    p = (y * (1 + 1e-3 * rng.normal(size=y.shape))).astype("float32")
    got = D2SMLoss(feature_extractor=identity_features, patch_size=None, reduction=None)(
        y, p
    ).numpy()
    ref = np_d2sm(p.reshape(4, 1, -1), y.reshape(4, 1, -1))
    np.testing.assert_allclose(got, ref, rtol=0.02)


# ----------------------------------------------------------------- behaviour
def _images(rng, b=4, s=16):
    y = rng.uniform(size=(b, s, s, 3)).astype("float32")
    p = np.clip(y + rng.normal(0, 0.15, y.shape), 0, 1).astype("float32")
    return y, p


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(patch_size=8, patch_stride=4),
        dict(patch_size=None, queue_size=8, image_size=16),
        dict(patch_size=8, patch_stride=4, group_by_image=True, queue_size=40),
    ],
)
def test_zero_for_identical_images_and_gradient_otherwise(kwargs, rng):
    y, p = _images(rng)
    loss = D2SMLoss(feature_extractor=tiny_features, reduction=None, **kwargs)
    for _ in range(3):  # also once the queue is full of identical pairs
        np.testing.assert_allclose(loss(y, y).numpy(), 0.0, atol=1e-9)
    yp = tf.Variable(p)
    with tf.GradientTape() as tape:
        value = tf.reduce_mean(loss(y, yp))
    g = tape.gradient(value, yp).numpy()
    assert float(value) > 0
    assert np.all(np.isfinite(g)) and np.any(g != 0)


def test_gradient_with_full_queue_and_none_to_queue(rng):
    loss = D2SMLoss(
        feature_extractor=tiny_features,
        patch_size=None,
        queue_size=8,
        image_size=16,
        reduction=None,
    )
    for _ in range(3):
        loss(*_images(rng))
    assert loss.queue_count == 12  # full (8 slots) and wrapped
    y, p = _images(rng)
    yp = tf.Variable(p)
    queue = loss._queue
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(queue.pred.read_value())
        value = tf.reduce_mean(loss(y, yp))
    g = tape.gradient(value, yp).numpy()
    assert np.all(np.isfinite(g)) and np.any(g != 0)
    assert tape.gradient(value, [queue.pred, queue.true]) == [None, None]


def test_gradient_matches_finite_differences(rng):
    from tfrestore.testing import finite_difference_check

    y, p = _images(rng, b=4, s=8)
    loss = D2SMLoss(
        feature_extractor=tiny_features,
        patch_size=None,
        kl_reduction="sum_rows_mean",
        include_diagonal=True,
    )
    finite_difference_check(loss, y, p, eps=1e-2, rtol=0.05)


class D2SMLossTest(TestCase):
    def test_conformance_harness_patches(self):
        """Patches, one set per image (whole-batch sets are covered by the NumPy, XLA
        and Mirrored tests of the other files)."""
        y, p = _images(self.rng)
        self.run_loss_test(
            D2SMLoss,
            dict(
                feature_extractor=tiny_features,
                patch_size=8,
                patch_stride=4,
                group_by_image=True,
            ),
            y,
            p,
            xla_rtol=1e-3,
            mirrored_rtol=1e-3,
            bad_inputs=[
                (y[:, :6, :6], p[:, :6, :6], ValueError, "patch window"),
                (y, p[:, :, :12], ValueError, "same shape"),
                (y, np.where(p > 0.5, np.nan, p).astype("float32"), ValueError, "NaN"),
            ],
        )

    def test_conformance_harness_queue(self):
        y, p = _images(self.rng)
        self.run_loss_test(
            D2SMLoss,
            dict(
                feature_extractor=tiny_features,
                patch_size=None,
                queue_size=8,
                image_size=16,
                divergence="js",
            ),
            y,
            p,
            stateful=True,
            xla_rtol=1e-3,
            mirrored_rtol=1e-3,
            bad_inputs=[
                (np.concatenate([y, y, y]), np.concatenate([p, p, p]), ValueError, "queue_size=8")
            ],
        )


def test_per_sample_mean_is_the_loss_and_sample_weight_weights_own_rows(rng):
    y, p = _images(rng)
    loss = D2SMLoss(feature_extractor=tiny_features, patch_size=8, patch_stride=4, reduction=None)
    per = loss(y, p).numpy()
    np.testing.assert_allclose(
        float(D2SMLoss(feature_extractor=tiny_features, patch_size=8, patch_stride=4)(y, p)),
        per.mean(),
        rtol=1e-6,
    )
    w = np.array([1.0, 0.0, 0.0, 0.0], "float32")
    weighted = D2SMLoss(
        feature_extractor=tiny_features, patch_size=8, patch_stride=4, reduction="sum"
    )(y, p, sample_weight=w)
    np.testing.assert_allclose(float(weighted), per[0], rtol=1e-6)


def test_loss_weight_and_config_round_trip(rng):
    y, p = _images(rng)
    base = D2SMLoss(feature_extractor=tiny_features, patch_size=8, patch_stride=4, reduction=None)
    heavy = D2SMLoss(
        feature_extractor=tiny_features,
        patch_size=8,
        patch_stride=4,
        loss_weight=3.0,
        reduction=None,
    )
    np.testing.assert_allclose(heavy(y, p), 3.0 * base(y, p).numpy(), rtol=1e-6)
    cfg = heavy.get_config()
    assert cfg["feature_extractor"] is not None and cfg["kl_reduction"] == "sum_rows_mean"
    clone = D2SMLoss.from_config(cfg)
    np.testing.assert_allclose(clone(y, p), heavy(y, p), rtol=1e-6)


def test_keras_model_as_feature_extractor(rng):
    inp = keras.Input((None, None, 3))
    out = keras.layers.Conv2D(
        6, 4, strides=4, kernel_initializer=keras.initializers.RandomNormal(seed=1)
    )(inp)
    fx = keras.Model(inp, out)
    y, p = _images(rng)
    loss = D2SMLoss(
        feature_extractor=fx, patch_size=8, patch_stride=4, reduction=None
    )
    clone = D2SMLoss.from_config(loss.get_config())  # rebuilt from the model config (seeded init)
    with pytest.warns(UserWarning, match="freshly initialised weights"):
        np.testing.assert_allclose(clone(y, p), loss(y, p), rtol=1e-5)
    assert not fx.trainable, "used frozen, as by every feature loss (FeatureSource)"


def test_default_backbone_is_vgg19_conv5_4_pre_relu(rng):
    from tfrestore.features import get_feature_extractor

    y, p = _images(rng, b=2, s=32)
    loss = D2SMLoss(weights=None, patch_size=None, include_diagonal=True, reduction=None)
    fx = get_feature_extractor("vgg19", ["conv5_4"], weights=None)
    fs = fx(tf.constant(p))["conv5_4"].numpy().reshape(2, 1, -1)
    ft = fx(tf.constant(y))["conv5_4"].numpy().reshape(2, 1, -1)
    assert (fs < 0).any(), "conv5_4 is taken before the ReLU"
    np.testing.assert_allclose(
        loss(y, p).numpy(), np_d2sm(fs, ft, include_diagonal=True), rtol=1e-3
    )
    yp = tf.Variable(p)
    with tf.GradientTape() as tape:
        v = tf.reduce_mean(loss(y, yp))
    assert np.any(tape.gradient(v, yp).numpy() != 0)
    div2k = D2SMLoss(weights=None, patch_size=None, preprocessing="div2k_mean", reduction=None)
    mean = div2k._source.network().preprocessing.spec["mean"]
    assert mean == pytest.approx([0.4488, 0.4371, 0.4040])
    assert D2SMLoss.from_config(div2k.get_config()).preprocessing == "div2k_mean"


def test_mixed_float16_feature_extractor(rng):
    keras.config.set_dtype_policy("mixed_float16")
    inp = keras.Input((None, None, 3))
    fx = keras.Model(
        inp,
        keras.layers.Conv2D(
            6, 4, strides=4, kernel_initializer=keras.initializers.RandomNormal(seed=1)
        )(inp),
    )
    keras.config.set_dtype_policy("float32")
    loss = D2SMLoss(
        feature_extractor=fx, patch_size=8, patch_stride=4, queue_size=40, reduction=None
    )
    y, p = _images(rng)
    yp = tf.Variable(tf.cast(p, tf.float16))
    with tf.GradientTape() as tape:
        v = loss(tf.constant(y), yp)
    assert v.dtype == tf.float32 and np.all(np.isfinite(v.numpy())) and np.all(v.numpy() > 0)
    g = tape.gradient(v, yp)
    assert np.all(np.isfinite(g.numpy().astype("float32"))) and np.any(g.numpy() != 0)
    assert loss._queue.pred.dtype == tf.float32


# ----------------------------------------------------------------- bad input
def test_bad_arguments_raise_clear_errors(rng):
    y, p = _images(rng)
    with pytest.raises(ValueError, match="patch window"):
        D2SMLoss(feature_extractor=tiny_features, patch_size=32)(y, p)
    with pytest.raises(ValueError, match="queue_size=3"):
        D2SMLoss(feature_extractor=tiny_features, patch_size=None, queue_size=3, image_size=16)(
            y, p
        )
    with pytest.raises(ValueError, match="image_size"):
        D2SMLoss(feature_extractor=tiny_features, patch_size=None, queue_size=4)
    with pytest.raises(ValueError, match="same shape"):
        D2SMLoss(feature_extractor=tiny_features, patch_size=8)(y, p[:, :12])
    with pytest.raises(ValueError, match="NaN or Inf"):
        D2SMLoss(feature_extractor=tiny_features, patch_size=8)(y, np.full_like(p, np.inf))
    with pytest.raises(ValueError, match="Unknown vgg19 layer"):
        D2SMLoss(weights=None, layers="conv9_9")
    with pytest.raises(ValueError, match=r"`layers` asks for \['b'\].*returns \['a'\]"):
        D2SMLoss(feature_extractor=lambda x: {"a": x}, layers="b", patch_size=None)(y, p)
    with pytest.raises(ValueError, match="D2SM compares one layer"):
        D2SMLoss(feature_extractor=lambda x: {"a": x, "b": x}, patch_size=None)(y, p)
    with pytest.raises(ValueError, match="D2SMLoss compares the features of one layer"):
        D2SMLoss(weights=None, layers=["conv5_4", "conv4_4"])
    assert D2SMLoss(weights=None, layers=["relu1_2"], patch_size=None).layers == "relu1_2"
    with pytest.raises(ValueError, match="fewer than 3 samples"):
        D2SMLoss(feature_extractor=tiny_features, patch_size=None)(y[:1], p[:1])
    with pytest.raises(TypeError, match="patch_mode='feature' was removed.*drop the argument"):
        D2SMLoss(feature_extractor=tiny_features, patch_mode="feature")
    with pytest.raises(TypeError, match=r"patch_mode=\.\.\.\) was removed.*drop the argument"):
        D2SMLoss(feature_extractor=tiny_features, patch_mode="image")
    old = D2SMLoss(weights=None, patch_size=None).get_config()
    assert D2SMLoss.from_config({**old, "patch_mode": "image"}).get_config() == old
    with pytest.raises(ValueError, match="too small"):
        D2SMLoss(feature_extractor=tiny_features, patch_size=None)(y[:, :3, :3], p[:, :3, :3])
    with pytest.raises(ValueError, match="queue was sized"):
        D2SMLoss(feature_extractor=tiny_features, patch_size=None, queue_size=8, image_size=8)(y, p)
    for kwargs, match in [
        (dict(divergence="kld"), "divergence"),
        (dict(kl_reduction="sum"), "kl_reduction"),
        (dict(preprocessing="imagenet"), "preprocessing"),
        (dict(queue_size=-1), "queue_size"),
        (dict(patch_size=0), "patch_size"),
        (dict(patch_size=None, group_by_image=True), "group_by_image"),
        (dict(eps=-1e-6), "eps"),
        (dict(eps=float("inf")), "eps"),
    ]:
        with pytest.raises(ValueError, match=match):
            D2SMLoss(feature_extractor=tiny_features, **kwargs)
    with pytest.raises(TypeError, match="feature_extractor"):
        D2SMLoss(feature_extractor=3)
    with pytest.raises(ValueError, match="cannot be serialized"):
        D2SMLoss(feature_extractor=lambda x: x, patch_size=None).get_config()


# ----------------------------------------------------------------- patch mode
# The window grid of tfrestore.losses.patches, through the loss.


def test_identity_extractor_sees_the_paper_grid_on_512_crops(rng):
    """Cheap end-to-end check of the grid through the loss: with an identity
    extractor the sample rows are the (normalised) pixels of each window."""
    img = rng.uniform(size=(1, 512, 512, 3)).astype("float32")
    loss = D2SMLoss(feature_extractor=lambda x: x, patch_size=224, patch_stride=56)
    rows = loss.features(tf.constant(img)).numpy()
    assert rows.shape == (1, 36, 224 * 224 * 3)
    for k, (y, x) in enumerate(window_grid(512, 512, 224, 56)):
        ref = img[0, y:y + 224, x:x + 224].ravel().astype(np.float64)
        np.testing.assert_allclose(
            rows[0, k], ref / (np.linalg.norm(ref) + 1e-6), rtol=1e-5, atol=1e-8
        )


def _local_extractor():
    """Pointwise linear map + 4x4 average pooling: no padding, stride 4. Windows at
    multiples of 4 see exactly the same cells in both patch modes."""
    w = tf.constant(np.random.default_rng(3).normal(size=(1, 1, 3, 5)).astype("float32"))

    def fx(x):
        return tf.nn.avg_pool2d(tf.nn.conv2d(x - 0.5, w, 1, "VALID"), 4, 4, "VALID")

    return fx


def test_image_mode_is_xla_compatible(rng):
    fx = _local_extractor()
    y = rng.uniform(size=(2, 24, 24, 3)).astype("float32")
    p = np.clip(y + rng.normal(0, 0.2, y.shape), 0, 1).astype("float32")
    loss = D2SMLoss(feature_extractor=fx, patch_size=16, patch_stride=4, reduction=None)
    eager = loss(y, p).numpy()
    xla = tf.function(loss.call, jit_compile=True)(tf.constant(y), tf.constant(p)).numpy()
    np.testing.assert_allclose(xla, eager, rtol=1e-3)


def test_patches_take_the_static_size_from_y_true_when_y_pred_lost_it(rng):
    """Networks like FFDNet output tensors of unknown height/width even on fixed crops;
    the window grid then comes from y_true (the shapes are checked equal at run time)."""
    y = rng.uniform(size=(2, 24, 24, 3)).astype("float32")
    p = np.clip(y + rng.normal(0, 0.1, y.shape), 0, 1).astype("float32")
    loss = D2SMLoss(feature_extractor=lambda x: x, patch_size=16, patch_stride=8)

    @tf.function(input_signature=[tf.TensorSpec([2, 24, 24, 3]), tf.TensorSpec([2, None, None, 3])])
    def f(a, b):
        return loss.call(a, b)

    np.testing.assert_allclose(f(y, p).numpy(), loss.call(y, p).numpy(), rtol=1e-5, atol=1e-7)
    with pytest.raises(tf.errors.InvalidArgumentError):
        f(y, p[:, :20, :20])


# ----------------------------------------------------------------- safety rails
# Safety rails: sets too small to carry a signal (issue 12.1), evaluation on
# another image size than the queue's (issue 10.3), saved Keras-model extractors
# (issue 12.3).


_SAFETY_KERNEL = np.random.default_rng(5).normal(size=(3, 3, 3, 6)).astype("float32") / 3.0


@keras.saving.register_keras_serializable(package="tests_d2sm_safety")
def safety_features(x):
    y = tf.nn.conv2d(tf.cast(x, tf.float32) - 0.5, tf.constant(_SAFETY_KERNEL), 1, "SAME")
    return tf.nn.avg_pool2d(y, 4, 4, "VALID")


def _pair(rng, b, s=16):
    y = rng.uniform(size=(b, s, s, 3)).astype("float32")
    p = np.clip(y + 0.2 * rng.normal(size=y.shape), 0, 1).astype("float32")
    return y, p


def _restorer(seed=0):
    inp = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(
        3,
        3,
        padding="same",
        kernel_initializer=keras.initializers.RandomNormal(stddev=0.1, seed=seed),
    )(inp)
    # A RestorationModel tells its losses when Keras evaluates (validation on another size).
    return RestorationModel(inp, keras.layers.Add()([inp, x]))


# ----------------------------------------------------------- 12.1: set size
def test_two_images_without_queue_and_diagonal_is_an_error(rng):
    y, p = _pair(rng, 2)
    with pytest.raises(ValueError, match=r"fewer than 3 samples.*include_diagonal=False"):
        D2SMLoss(feature_extractor=safety_features, patch_size=None)(y, p)
    # With the diagonal a 2-row set is informative (released code's setting).
    v = D2SMLoss(feature_extractor=safety_features, patch_size=None, include_diagonal=True)(y, p)
    assert float(v) > 0


def test_two_windows_per_image_with_group_by_image_is_an_error(rng):
    y, p = _pair(rng, 4, s=16)  # 8px windows every 8px on 16x8 strips -> 2 windows
    y, p = y[:, :8], p[:, :8]
    with pytest.raises(ValueError, match=r"each image.*2 window\(s\).*group_by_image=True"):
        D2SMLoss(
            feature_extractor=safety_features, patch_size=8, patch_stride=8, group_by_image=True
        )(y, p)


def test_256px_crops_with_default_windows_and_batch_2_is_an_error(rng):
    y, p = _pair(rng, 2, s=256)  # 224/56 windows fit once in 256 px
    with pytest.raises(ValueError, match=r"global batch 2, 1 window\(s\)"):
        D2SMLoss(feature_extractor=safety_features)(y, p)


def test_dynamic_batch_too_small_raises_at_run_time(rng):
    loss = D2SMLoss(feature_extractor=safety_features, patch_size=None)
    fn = tf.function(loss, input_signature=[tf.TensorSpec((None, 16, 16, 3))] * 2)
    y, p = _pair(rng, 3)
    assert float(fn(y, p)) > 0  # 3 rows: fine
    with pytest.raises(tf.errors.InvalidArgumentError, match="fewer than 3 samples"):
        fn(y[:2], p[:2])


def test_fit_with_batch_1_dataset_does_not_train_silently(rng):
    y, p = _pair(rng, 4)
    ds = tf.data.Dataset.from_tensor_slices((p, y)).batch(1)
    assert ds.element_spec[0].shape[0] is None
    model = _restorer()
    model.compile(
        optimizer="sgd",
        loss=D2SMLoss(feature_extractor=safety_features, patch_size=None),
        jit_compile=False,
    )
    with pytest.raises(tf.errors.InvalidArgumentError, match="drop_remainder=True"):
        model.fit(ds, epochs=1, verbose=0, shuffle=False)
    # XLA compiles assertions out; the loss then reads NaN, not a silent 0.
    model = _restorer()
    model.compile(
        optimizer="sgd",
        loss=D2SMLoss(feature_extractor=safety_features, patch_size=None),
        jit_compile=True,
    )
    history = model.fit(ds, epochs=1, verbose=0, shuffle=False)
    assert np.isnan(history.history["loss"][0])
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())


# ------------------------------------------- 10.3: validation on another size
def test_fit_validates_on_another_crop_size_without_the_queue(rng):
    train_y, train_p = _pair(rng, 8, s=16)
    val_y, val_p = _pair(rng, 6, s=32)  # 4x the feature values of a training crop
    model = _restorer()
    loss = D2SMLoss(
        feature_extractor=safety_features, patch_size=None, queue_size=8, image_size=16
    )
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=L1() + loss)
    history = model.fit(
        train_p, train_y, batch_size=4, epochs=2, verbose=0, validation_data=(val_p, val_y)
    )
    assert loss.queue_count == 16  # training rows only
    val = history.history["val_loss"]
    assert len(val) == 2 and np.all(np.isfinite(val))
    # The validation value is the queue-free loss of each validation batch.
    ref = D2SMLoss(feature_extractor=safety_features, patch_size=None)
    pred = model.predict(val_p, batch_size=3, verbose=0)
    expected = np.mean(
        [
            float(ref(val_y[i:i + 3], pred[i:i + 3])) + float(L1()(val_y[i:i + 3], pred[i:i + 3]))
            for i in (0, 3)
        ]
    )
    got = model.evaluate(val_p, val_y, batch_size=3, verbose=0, return_dict=True)["loss"]
    np.testing.assert_allclose(got, expected, rtol=1e-4)
    assert loss.queue_count == 16


def test_training_on_another_size_than_the_queue_is_still_an_error(rng):
    y, p = _pair(rng, 4, s=32)
    loss = D2SMLoss(
        feature_extractor=safety_features, patch_size=None, queue_size=8, image_size=16
    )
    with pytest.raises(ValueError, match="queue was sized for 96.*skip the queue"):
        loss(y, p)


# --------------------------------------- 12.3: a Keras-model extractor is saved
def _keras_extractor(seed):
    inp = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(6, 3, padding="same", name="fx_conv")(inp)
    x = keras.layers.BatchNormalization(name="fx_bn")(x)
    out = keras.layers.AveragePooling2D(4, name="fx_pool")(x)
    fx = keras.Model(inp, out, name="user_extractor")
    # "Trained" weights that no seeded initialiser reproduces.
    r = np.random.default_rng(seed)
    fx.set_weights([r.normal(size=w.shape).astype("float32") for w in fx.get_weights()])
    fx.get_layer("fx_bn").moving_variance.assign(np.abs(r.normal(size=6)).astype("float32") + 0.5)
    return fx


def _compiled_with_keras_extractor(seed):
    model = _restorer()
    loss = D2SMLoss(
        feature_extractor=_keras_extractor(seed), patch_size=None, queue_size=8, image_size=16
    )
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=L1() + loss)
    return model, loss


def test_keras_model_extractor_round_trips_through_keras_file(tmp_path, rng):
    y, p = _pair(rng, 4)
    model, loss = _compiled_with_keras_extractor(seed=1)
    model.fit(p, y, batch_size=4, epochs=1, verbose=0)
    with loss.frozen_queue():
        before = float(loss(y, p))
    path = tmp_path / "m.keras"
    model.save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "fresh weights" warning after a proper load
        loaded = keras.models.load_model(path)
        new = loaded.loss.losses[1]
        for a, b in zip(new._source.network().get_weights(), loss._source.network().get_weights()):
            np.testing.assert_array_equal(a, b)
        with new.frozen_queue():
            np.testing.assert_allclose(float(new(y, p)), before, rtol=1e-6)
    np.testing.assert_array_equal(new.queue_state()[1], loss.queue_state()[1])


def test_keras_model_extractor_round_trips_through_weights_file(tmp_path, rng):
    y, p = _pair(rng, 4)
    model, loss = _compiled_with_keras_extractor(seed=1)
    model.fit(p, y, batch_size=4, epochs=1, verbose=0)
    model.save_weights(tmp_path / "w.weights.h5")
    other, other_loss = _compiled_with_keras_extractor(seed=2)  # different extractor weights
    assert not np.allclose(other_loss(y, p), loss(y, p), rtol=1e-3, atol=0)
    other.load_weights(tmp_path / "w.weights.h5")
    other_net, net = other_loss._source.network(), loss._source.network()
    for a, b in zip(other_net.get_weights(), net.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_extractor_rebuilt_without_saved_weights_warns(rng):
    y, p = _pair(rng, 4)
    loss = D2SMLoss(feature_extractor=_keras_extractor(seed=1), patch_size=None)
    clone = D2SMLoss.from_config(loss.get_config())  # config only: fresh weights
    with pytest.warns(UserWarning, match=r"user_extractor.*freshly initialised weights"):
        clone(y, p)
    assert not np.allclose(clone(y, p), loss(y, p), rtol=1e-3, atol=0)


def test_mismatched_saved_extractor_is_a_clear_error(tmp_path, rng):
    y, p = _pair(rng, 4)
    model, loss = _compiled_with_keras_extractor(seed=1)
    model.save_weights(tmp_path / "w.weights.h5")
    inp = keras.Input((None, None, 3))
    small = keras.Model(inp, keras.layers.AveragePooling2D(4)(keras.layers.Conv2D(6, 1)(inp)))
    other = _restorer()
    other.compile(
        optimizer="sgd",
        loss=L1() + D2SMLoss(feature_extractor=small, patch_size=None, queue_size=8, image_size=16),
    )
    with pytest.raises(ValueError, match="same extractor architecture"):
        other.load_weights(tmp_path / "w.weights.h5")
