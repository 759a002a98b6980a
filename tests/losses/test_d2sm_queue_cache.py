"""D2SM queue cache: same loss and gradient as recomputing the queue kernel every
step (wrap-around, frozen queue, saving, stale rows, replicas), for both kernels
(the paper's ``(s + 1) / 2`` and ``exp(s / temperature)``) and both caches (the
``q x q`` similarities; with ``eps=0`` four sums per queue row and no ``q x q``
tensor in a training step)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfrestore.losses import D2SMLoss, L1
from tfrestore.losses._similarity import (
    MIN_ROW_SUM_TEMPERATURE,
    QueueRowStatistics,
    conditional_probabilities,
    l2_normalize,
    row_divergence,
    set_divergence,
    softmax_probabilities,
)
import tfrestore.losses.d2sm as d2sm_module

_KERNEL = np.random.default_rng(7).normal(size=(3, 3, 3, 5)).astype("float32") / 3.0


@keras.saving.register_keras_serializable(package="tests_d2sm_queue_cache")
def cache_features(x):
    y = tf.nn.conv2d(tf.cast(x, tf.float32) - 0.5, tf.constant(_KERNEL), 1, "SAME")
    return tf.nn.avg_pool2d(y, 4, 4, "VALID")


def _loss(**kw):
    kw = {
        "feature_extractor": cache_features,
        "patch_size": None,
        "queue_size": 7,
        "image_size": 16,
        "reduction": None,
        **kw,
    }
    return D2SMLoss(**kw)


def _batch(rng, b=2, s=16):
    clean = rng.uniform(size=(b, s, s, 3)).astype("float32")
    noisy = np.clip(clean + rng.normal(0, 0.2, clean.shape), 0, 1).astype("float32")
    return clean, noisy


def _value_and_grad(loss, clean, noisy, fn=None):
    yp = tf.Variable(noisy)
    with tf.GradientTape() as tape:
        v = (fn or loss)(tf.constant(clean), yp)
        total = tf.reduce_sum(v * tf.constant([1.0, 2.0, 3.0][: len(noisy)]))
    return v.numpy(), tape.gradient(total, yp).numpy()


def _invalidate(loss):
    """Force the reference loss to recompute its queue similarities this step."""
    q = loss._queue
    q.cache_keys_pred.assign(tf.fill([q.size], tf.constant(-1, tf.int64)))


def _old_set_divergence(
    fs, ft, qs, qt, qmask, divergence, include_diagonal, eps=1e-6, temperature=None
):
    """The dense formulation: one (P + q) x (P + q) kernel per group, gradients by
    automatic differentiation."""

    def cosines(f, q):
        g = tf.shape(f)[0]
        cc = tf.matmul(f, f, transpose_b=True)
        cq = tf.einsum("gpd,qd->gpq", f, q)
        qq = tf.broadcast_to(tf.matmul(q, q, transpose_b=True)[None], [g, q.shape[0], q.shape[0]])
        top = tf.concat([cc, cq], axis=2)
        return tf.concat([top, tf.concat([tf.transpose(cq, [0, 2, 1]), qq], axis=2)], axis=1)

    def probabilities(cos, mask):
        if temperature is None:
            return conditional_probabilities((cos + 1.0) * 0.5, mask, include_diagonal)
        return softmax_probabilities(cos, mask, include_diagonal, temperature)

    mask = tf.concat([tf.ones([fs.shape[1]]), qmask], axis=0)
    ps = probabilities(cosines(fs, qs), mask)
    pt = probabilities(cosines(ft, qt), mask)
    return row_divergence(ps, pt, divergence, eps) * mask


@pytest.mark.parametrize("temperature", [None, 0.1, 1.0])
@pytest.mark.parametrize("divergence", ["kl", "ikl", "js", "symmetric_kl"])
@pytest.mark.parametrize("include_diagonal", [False, True])
@pytest.mark.parametrize("eps", [1e-6, 0.0])
def test_blockwise_queue_rows_equal_the_full_kernel(
    divergence, include_diagonal, temperature, eps, rng
):
    g, p, q, d = 2, 3, 6, 8
    fs = l2_normalize(rng.normal(size=(g, p, d)).astype("float32"))
    ft = l2_normalize(rng.normal(size=(g, p, d)).astype("float32"))
    qs = l2_normalize(rng.normal(size=(q, d)).astype("float32"))
    qt = l2_normalize(rng.normal(size=(q, d)).astype("float32"))
    qmask = tf.constant([1, 1, 1, 1, 0, 0], tf.float32)
    old = _old_set_divergence(
        fs, ft, qs, qt, qmask, divergence, include_diagonal, eps, temperature
    )
    sims = (tf.matmul(qs, qs, transpose_b=True), tf.matmul(qt, qt, transpose_b=True))
    for given in (None, sims):
        new, mask, n = set_divergence(
            fs, ft, qs, qt, qmask, queue_similarities=given, divergence=divergence,
            include_diagonal=include_diagonal, eps=eps, temperature=temperature,
        )
        np.testing.assert_allclose(new.numpy(), old.numpy(), rtol=2e-5, atol=1e-9)
        assert float(n) == p + 4
    # Gradients w.r.t. the current rows of both domains (the clean side is a
    # constant in D2SM, but the function is general).
    fsv, ftv = tf.Variable(fs), tf.Variable(ft)
    with tf.GradientTape(persistent=True) as tape:
        a = tf.reduce_sum(
            _old_set_divergence(
                fsv, ftv, qs, qt, qmask, divergence, include_diagonal, eps, temperature
            )
        )
        b = tf.reduce_sum(
            set_divergence(
                fsv, ftv, qs, qt, qmask, queue_similarities=sims, divergence=divergence,
                include_diagonal=include_diagonal, eps=eps, temperature=temperature,
            )[0]
        )
    for v in (fsv, ftv):
        ga, gb = tape.gradient(a, v).numpy(), tape.gradient(b, v).numpy()
        np.testing.assert_allclose(gb, ga, rtol=1e-4, atol=1e-6 * np.abs(ga).max())


def _float64_softmax_rows(fs, ft, qs, qt, qmask, divergence, temperature, eps=1e-6):
    """Dense rows in float64 (include_diagonal=False): the reference for small
    temperatures, where float32 gradients carry visible rounding."""
    m = fs.shape[1] + qs.shape[0]
    mask = tf.concat([tf.ones([fs.shape[1]], tf.float64), qmask], 0)
    valid = (mask[None, :] * (1.0 - tf.eye(m, dtype=tf.float64))) > 0

    def probabilities(f, q):
        x = tf.concat([f, tf.broadcast_to(q[None], [f.shape[0], *q.shape])], 1)
        logits = tf.where(valid, tf.matmul(x, x, transpose_b=True) / temperature, -1e300)
        e = tf.where(valid, tf.exp(logits - tf.reduce_max(logits, -1, keepdims=True)), 0.0)
        return e / tf.reduce_sum(e, -1, keepdims=True)

    return row_divergence(probabilities(fs, qs), probabilities(ft, qt), divergence, eps) * mask


@pytest.mark.parametrize("temperature", [0.01, 0.003])
@pytest.mark.parametrize("divergence", ["kl", "ikl", "js", "symmetric_kl"])
def test_blockwise_small_temperature_as_accurate_as_the_full_kernel(
    divergence, temperature, rng
):
    """Small temperatures amplify float32 rounding (cosine errors / t): the blockwise
    path stays within the full float32 kernel's own distance to float64."""
    g, p, q, d = 2, 3, 6, 8
    rows = [
        l2_normalize(rng.normal(size=s).astype("float32")).numpy()
        for s in [(g, p, d), (g, p, d), (q, d), (q, d)]
    ]
    qmask = np.array([1, 1, 1, 1, 0, 0], np.float32)
    results = {}
    for path in ("float64", "full", "blockwise"):
        dtype = tf.float64 if path == "float64" else tf.float32
        fs, ft = (tf.Variable(r.astype(dtype.as_numpy_dtype)) for r in rows[:2])
        qs, qt = (tf.constant(r, dtype) for r in rows[2:])
        with tf.GradientTape() as tape:
            if path == "float64":
                r = _float64_softmax_rows(
                    fs, ft, qs, qt, tf.constant(qmask, dtype), divergence, temperature
                )
            elif path == "full":
                r = _old_set_divergence(
                    fs, ft, qs, qt, tf.constant(qmask), divergence, False, temperature=temperature
                )
            else:
                r = set_divergence(
                    fs, ft, qs, qt, qmask, divergence=divergence, include_diagonal=False,
                    temperature=temperature,
                )[0]
            weights = tf.reshape(tf.range(1, 1 + g * (p + q), dtype=r.dtype), [g, p + q])
            total = tf.reduce_sum(r * weights)  # every row's gradient counts differently
        results[path] = (r.numpy().astype(np.float64), tape.gradient(total, fs).numpy())
    (r64, g64), (r_full, g_full), (r_blk, g_blk) = (results[k] for k in results)
    assert np.all(np.isfinite(r_blk)) and np.all(np.isfinite(g_blk))
    np.testing.assert_allclose(r_blk, r64, rtol=1e-4, atol=1e-6 * np.abs(r64).max())
    scale = np.abs(g64).max()
    assert scale > 0
    full_error = np.abs(g_full - g64).max()
    blk_error = np.abs(g_blk - g64).max()
    assert blk_error <= 2.0 * full_error + 1e-5 * scale, (blk_error, full_error, scale)


@pytest.mark.slow
@pytest.mark.parametrize(
    "kw",
    [
        dict(eps=1e-6),
        dict(eps=1e-6, group_by_image=True, patch_size=8, patch_stride=8, queue_size=11),
        dict(divergence="js", include_diagonal=True),  # eps=0: the similarity cache too
    ],
    ids=["whole-batch", "per-image-patches", "js-diag"],
)
def test_cached_steps_equal_recomputed_steps_through_wraparound(kw, rng):
    cached, ref = _loss(**kw), _loss(**kw)
    graph = tf.function(cached.call)  # the cache is also read and written in graph mode
    for step in range(6):  # 2 rows (or 8 patch rows) per step: the ring wraps several times
        clean, noisy = _batch(rng, b=2 if step % 3 else 1)
        _invalidate(ref)
        v_ref, g_ref = _value_and_grad(ref, clean, noisy)
        v, g = _value_and_grad(cached, clean, noisy, fn=graph if step % 2 else None)
        np.testing.assert_allclose(v, v_ref, rtol=1e-5, atol=1e-10)
        np.testing.assert_allclose(g, g_ref, rtol=1e-5, atol=1e-5 * np.abs(g_ref).max())
        qp, qt_, count = cached.queue_state()
        assert count == ref.queue_count
        # The cache equals the similarities of the rows now in the queue.
        np.testing.assert_allclose(cached._queue.sim_pred.numpy(), qp @ qp.T, atol=2e-6)
        np.testing.assert_allclose(cached._queue.sim_true.numpy(), qt_ @ qt_.T, atol=2e-6)


def _dense_set_divergence(fs, ft, qs=None, qt=None, qmask=None, *, queue_similarities=None,
                          queue_row_sums=None,
                          divergence, include_diagonal, eps, temperature):
    """``set_divergence`` through the dense kernel (ignores the cached similarities
    and row sums)."""
    if qs is None:
        return set_divergence(fs, ft, divergence=divergence, include_diagonal=include_diagonal,
                              eps=eps, temperature=temperature)
    rows = _old_set_divergence(
        tf.cast(fs, tf.float32), tf.cast(ft, tf.float32), tf.cast(qs, tf.float32),
        tf.cast(qt, tf.float32), tf.cast(qmask, tf.float32), divergence, include_diagonal,
        eps, temperature,
    )
    mask = tf.concat([tf.ones([tf.shape(fs)[1]]), tf.cast(qmask, tf.float32)], axis=0)
    return rows, mask, tf.reduce_sum(mask)


@pytest.mark.parametrize(
    "kw",
    [
        dict(eps=1e-6, temperature=0.1),
        dict(temperature=0.1, divergence="js", include_diagonal=True),  # eps=0, similarities
        dict(eps=1e-6, temperature=0.1, group_by_image=True, patch_size=8, patch_stride=8,
             queue_size=11),
        dict(),
        dict(temperature=0.1, divergence="ikl", include_diagonal=True),
        dict(divergence="symmetric_kl", group_by_image=True, patch_size=8,
             patch_stride=8, queue_size=11),
    ],
    ids=["t0.1", "t0.1-js-diag-eps0", "t0.1-per-image-patches", "sums-kl",
         "sums-t0.1-ikl-diag", "sums-symmetric-per-image-patches"],
)
def test_cache_equals_dense_kernel_through_wraparound(kw, rng, monkeypatch):
    """The cached path (q x q similarities; with eps=0, the default, the row sums
    except for "js") gives the dense path's loss and gradient at every step while
    the ring wraps (queue of 7 / 11, 1-2 images = 2-8 rows per step), in eager and
    graph mode."""
    cached, dense = _loss(**kw), _loss(**kw)
    row_sums = "eps" not in kw and kw.get("divergence") != "js"
    assert (cached._queue.row_sums is not None) == row_sums
    graph = tf.function(cached.call)
    for step in range(7):
        clean, noisy = _batch(rng, b=2 if step % 3 else 1)
        with monkeypatch.context() as m:
            m.setattr(d2sm_module, "set_divergence", _dense_set_divergence)
            v_ref, g_ref = _value_and_grad(dense, clean, noisy)
        v, g = _value_and_grad(cached, clean, noisy, fn=graph if step % 2 else None)
        assert np.all(np.isfinite(v)) and np.all(np.isfinite(g))
        if step:  # step 0: one image and an empty queue form a one-row set
            assert np.abs(g).max() > 0
        np.testing.assert_allclose(v, v_ref, rtol=2e-5, atol=1e-9, err_msg=f"step {step}")
        np.testing.assert_allclose(
            g, g_ref, rtol=1e-4, atol=1e-5 * np.abs(g_ref).max(), err_msg=f"step {step}"
        )
        assert cached.queue_count == dense.queue_count
        np.testing.assert_array_equal(cached.queue_state()[0], dense.queue_state()[0])
        _assert_cache_matches_rows(cached)
    assert cached.queue_count > cached.queue_size  # the ring wrapped


def _cache_value(loss):
    queue = loss._queue
    return (queue.sim_pred if queue.row_sums is None else queue.row_sums).numpy().copy()


def _assert_cache_matches_rows(loss):
    if loss._queue.row_sums is not None:
        _assert_sums_match_rows(loss)
        return
    qp, qt, _ = loss.queue_state()
    np.testing.assert_allclose(loss._queue.sim_pred.numpy(), qp @ qp.T, atol=2e-6)
    np.testing.assert_allclose(loss._queue.sim_true.numpy(), qt @ qt.T, atol=2e-6)


@pytest.mark.parametrize("eps", [1e-6, 0.0], ids=["similarities", "row-sums"])
def test_frozen_queue_keeps_the_cache_bit_for_bit(eps, rng):
    loss = _loss(eps=eps)
    for _ in range(3):
        loss(*_batch(rng))
    before = _cache_value(loss)
    with loss.frozen_queue():
        loss(*_batch(rng))
    np.testing.assert_array_equal(_cache_value(loss), before)


@pytest.mark.parametrize(
    "eps, v_rtol, g_atol", [(1e-6, 1e-5, 1e-5), (0.0, 1e-6, 1e-6)], ids=["similarities", "row-sums"]
)
def test_rows_written_behind_the_cache_are_detected(eps, v_rtol, g_atol, rng):
    """A restore that bypasses ``load`` (e.g. ``tf.train.Checkpoint``) or a manual
    assign: the next step recomputes and rewrites the cache."""
    loss, ref = _loss(eps=eps), _loss(eps=eps)
    for _ in range(3):
        batch = _batch(rng)
        loss(*batch)
        ref(*batch)
    other = rng.normal(size=loss._queue.pred.shape).astype("float32")
    other /= np.linalg.norm(other, axis=1, keepdims=True)
    for q in (loss._queue, ref._queue):
        q.pred.assign(other)
    ref._queue.refresh_cache()
    clean, noisy = _batch(rng)
    v_ref, g_ref = _value_and_grad(ref, clean, noisy)
    v, g = _value_and_grad(loss, clean, noisy)
    np.testing.assert_allclose(v, v_ref, rtol=v_rtol)
    np.testing.assert_allclose(g, g_ref, rtol=1e-5, atol=g_atol * np.abs(g_ref).max())
    _assert_cache_matches_rows(loss)


def _model():
    inp = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(
        3, 3, padding="same", kernel_initializer=keras.initializers.RandomNormal(0.0, 0.1, seed=3)
    )(inp)
    return keras.Model(inp, keras.layers.Add()([inp, x]))


def _data(n, seed):
    rng = np.random.default_rng(seed)
    clean = rng.uniform(size=(n, 16, 16, 3)).astype("float32")
    return np.clip(clean + rng.normal(0, 0.2, clean.shape), 0, 1).astype("float32"), clean


@pytest.mark.slow
def test_checkpoint_restore_rebuilds_the_cache_and_resumes_identically(tmp_path):
    noisy, clean = _data(16, 0)

    def fresh():
        model, loss = _model(), _loss(reduction="sum_over_batch_size", eps=1e-6)
        model.compile(optimizer=keras.optimizers.SGD(0.2), loss=L1() + loss)
        return model, loss

    full, full_loss = fresh()
    full.fit(noisy, clean, batch_size=4, epochs=2, shuffle=False, verbose=0)

    first, _ = fresh()
    first.fit(noisy, clean, batch_size=4, epochs=1, shuffle=False, verbose=0)
    first.save_weights(tmp_path / "w.weights.h5")
    resumed, resumed_loss = fresh()
    resumed.load_weights(tmp_path / "w.weights.h5")
    qp = resumed_loss.queue_state()[0]
    np.testing.assert_allclose(resumed_loss._queue.sim_pred.numpy(), qp @ qp.T, atol=2e-6)
    resumed.fit(noisy, clean, batch_size=4, epochs=1, shuffle=False, verbose=0)
    assert resumed_loss.queue_count == full_loss.queue_count == 32
    for a, b in zip(resumed.get_weights(), full.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(
        resumed_loss._queue.sim_true.numpy(), full_loss._queue.sim_true.numpy(), atol=2e-6
    )


@pytest.mark.slow
@pytest.mark.parametrize("eps", [1e-6, 0.0], ids=["similarities", "row-sums"])
def test_mirrored_cache_equals_single_device(eps, strategy):
    noisy, clean = _data(12, 1)
    ref_model = _model()
    init = ref_model.get_weights()
    ref_loss = _loss(reduction="sum_over_batch_size", queue_size=6, eps=eps)
    ref_model.compile(optimizer=keras.optimizers.SGD(0.5), loss=L1() + ref_loss)
    ref_model.fit(noisy, clean, batch_size=4, shuffle=False, verbose=0)
    with strategy.scope():
        model = _model()
        model.set_weights(init)
        loss = _loss(reduction="sum_over_batch_size", queue_size=6, eps=eps)
        model.compile(optimizer=keras.optimizers.SGD(0.5), loss=L1() + loss)
    model.fit(noisy, clean, batch_size=4, shuffle=False, verbose=0)
    for a, b in zip(model.get_weights(), ref_model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    # Every replica holds the global cache.
    if eps:
        qp = ref_loss.queue_state()[0]
        for copy in loss._queue.sim_pred.values:
            np.testing.assert_allclose(copy.numpy(), qp @ qp.T, atol=1e-5)
    else:
        want = ref_loss._queue.row_sums.numpy()
        for copy in loss._queue.row_sums.values:
            np.testing.assert_allclose(copy.numpy(), want, rtol=1e-5)


# ----------------------------------------------------------------- row sums (eps=0)
def _np_rows(fs, ft, valid, divergence, include_diagonal, temperature):
    """Per-row divergence of one set without eps (float64; 0 log 0 = 0)."""
    m = len(fs)
    w = np.outer(np.ones(m), valid.astype(np.float64))
    if not include_diagonal:
        w[np.arange(m), np.arange(m)] = 0.0

    def probs(f):
        cos = f @ f.T
        k = (cos + 1.0) / 2.0 if temperature is None else np.exp(cos / temperature)
        k = k * w
        return k / k.sum(1, keepdims=True)

    ps, pt = probs(fs), probs(ft)

    def kl(p, q):
        safe = np.where(p > 0, p, 1.0)
        return np.where(p > 0, p * (np.log(safe) - np.log(np.where(p > 0, q, 1.0))), 0.0).sum(1)

    r = {"kl": kl(ps, pt), "ikl": kl(pt, ps), "symmetric_kl": 0.5 * (kl(ps, pt) + kl(pt, ps))}
    return r[divergence] * valid


def _unit_rows(rng, *shape):
    return l2_normalize(rng.normal(size=shape).astype("float32"))


@pytest.mark.parametrize("temperature", [None, 0.1])
@pytest.mark.parametrize("divergence", ["kl", "ikl", "symmetric_kl"])
@pytest.mark.parametrize("include_diagonal", [False, True])
def test_row_sums_equal_the_dense_kernel_and_numpy(divergence, include_diagonal, temperature, rng):
    g, p, q, d = 2, 3, 6, 8
    fs, ft = _unit_rows(rng, g, p, d), _unit_rows(rng, g, p, d)
    qs, qt = _unit_rows(rng, q, d), _unit_rows(rng, q, d)
    qmask = tf.constant([1, 1, 1, 1, 0, 0], tf.float32)
    stats = QueueRowStatistics(temperature, include_diagonal)
    sums = stats.full_row_sums(qs, qt, qmask)
    assert sums.dtype == tf.float64 and sums.shape == (q, 4)
    kw = dict(divergence=divergence, include_diagonal=include_diagonal, eps=0.0,
              temperature=temperature)
    fsv, ftv = tf.Variable(fs), tf.Variable(ft)
    with tf.GradientTape(persistent=True) as tape:
        dense = _old_set_divergence(
            fsv, ftv, qs, qt, qmask, divergence, include_diagonal, 0.0, temperature
        )
        fast, _, n = set_divergence(fsv, ftv, qs, qt, qmask, queue_row_sums=sums, **kw)
        weights = tf.reshape(tf.range(1.0, 1.0 + g * (p + q)), [g, p + q])
        a, b = tf.reduce_sum(dense * weights), tf.reduce_sum(fast * weights)
    assert float(n) == p + 4
    np.testing.assert_allclose(fast.numpy(), dense.numpy(), rtol=2e-5, atol=1e-9)
    valid = np.array([1] * p + [1, 1, 1, 1, 0, 0], bool)
    for k in range(g):
        sets = [np.concatenate([x[k].numpy(), y.numpy()]) for x, y in ((fs, qs), (ft, qt))]
        ref = _np_rows(*sets, valid, divergence, include_diagonal, temperature)
        np.testing.assert_allclose(fast.numpy()[k], ref, rtol=5e-5, atol=1e-8)
    for v in (fsv, ftv):
        ga, gb = tape.gradient(a, v).numpy(), tape.gradient(b, v).numpy()
        assert np.abs(ga).max() > 0
        np.testing.assert_allclose(gb, ga, rtol=1e-4, atol=1e-5 * np.abs(ga).max())


def test_row_sums_only_for_configurations_they_compute_exactly():
    assert QueueRowStatistics.applies("kl", 0.0, None)
    assert QueueRowStatistics.applies("symmetric_kl", 0.0, MIN_ROW_SUM_TEMPERATURE)
    assert not QueueRowStatistics.applies("kl", 1e-6, None)  # log(k / Z + eps)
    assert not QueueRowStatistics.applies("js", 0.0, None)  # the mixture mixes normalisers
    assert not QueueRowStatistics.applies("kl", 0.0, 0.001)  # exp(-2 / t) underflows
    for kw, row_sums in [
        (dict(), True),  # the default eps=0
        (dict(eps=0, temperature=0.1, divergence="ikl"), True),
        (dict(eps=1e-6), False),
        (dict(divergence="js"), False),
        (dict(temperature=0.001), False),
    ]:
        queue = _loss(**kw)._queue
        assert (queue.row_sums is not None) is row_sums, kw
        assert (queue.sim_pred is None) is row_sums, kw
    # No q x q memory with row sums.
    big_sims, big_sums = _loss(queue_size=512, eps=1e-6)._queue, _loss(queue_size=512)._queue
    assert big_sims.nbytes() - big_sums.nbytes() == 2 * 512 * 512 * 4 - 512 * 4 * 8
    with pytest.raises(ValueError, match="eps=0"):
        set_divergence(
            *(_unit_rows(np.random.default_rng(0), 1, 2, 4) for _ in range(2)),
            *(_unit_rows(np.random.default_rng(1), 3, 4) for _ in range(2)),
            tf.ones([3]), queue_row_sums=tf.zeros([3, 4], tf.float64), eps=1e-6,
        )


def _assert_sums_match_rows(loss, tol=1e-6):
    """The cached row sums equal a fresh O(q^2) sum over the rows now queued, up to
    the float32 rounding of the cosines (the fresh sum takes them from a (q, q)
    product, the updates from (q, n) ones): ``tol`` per entry (kernel values are
    at most 1), times 1 / t for ``exp(cos / t)``. A missed update is O(1)."""
    queue = loss._queue
    fresh = queue.row_statistics.full_row_sums(
        queue.pred.read_value(), queue.true.read_value(), queue.valid_mask()
    ).numpy()
    bound = tol * queue.size / (queue.row_statistics.temperature or 1.0)
    error = np.abs(queue.row_sums.numpy() - fresh).max()
    assert error <= bound, (error, bound)


def test_row_sums_do_not_drift_over_many_wraps(rng):
    """Incremental float64 updates: every row is summed afresh when it is written,
    so after 40 wraps of the ring the sums still equal a fresh sum."""
    loss = _loss(eps=0, queue_size=6)
    step = tf.function(loss.call)
    for _ in range(120):
        step(*(tf.constant(x) for x in _batch(rng, b=2)))
    assert loss.queue_count == 240
    _assert_sums_match_rows(loss)


def test_no_q_by_q_tensor_in_a_row_sum_step(rng):
    """The step's graph holds no (q, q) tensor with row sums (only the stale-cache
    branch of a tf.cond, a separate function, is quadratic); with the cached
    similarities it does (the check can fail)."""
    q = 37  # no batch, feature (80, 40 pairs) or image size

    def square_tensors(loss):
        clean, noisy = (tf.constant(x) for x in _batch(rng, b=2))
        fn = tf.function(lambda a, b: loss(a, b)).get_concrete_function(clean, noisy)
        return [
            (op.type, t.shape) for op in fn.graph.get_operations() for t in op.outputs
            if t.shape.rank is not None and list(t.shape).count(q) >= 2
        ]

    assert square_tensors(_loss(queue_size=q)) == []  # the default eps=0
    assert square_tensors(_loss(queue_size=q, eps=1e-6))  # the q x q similarity cache


def test_saved_queue_restores_the_row_sums(rng):
    loss, restored = _loss(eps=0), _loss(eps=0)
    for _ in range(5):
        loss(*_batch(rng))
    store = {}
    loss.save_own_variables(store)
    restored.load_own_variables(store)
    _assert_sums_match_rows(restored)
    clean, noisy = _batch(rng)
    np.testing.assert_allclose(
        _value_and_grad(restored, clean, noisy)[0], _value_and_grad(loss, clean, noisy)[0],
        rtol=1e-6,
    )
