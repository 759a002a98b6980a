"""Set and queue-row divergences of D2SM (`tfrestore.losses._similarity`): the blockwise
queue rows and the eps=0 row sums equal the dense (P + q) x (P + q) kernel, NumPy, and
float64 at small temperatures."""

import numpy as np
import pytest
import tensorflow as tf

from tfrestore.losses._similarity import (
    QueueRowStatistics,
    l2_normalize,
    row_divergence,
    set_divergence,
)


@pytest.mark.parametrize("temperature", [None, 0.1, 1.0])
@pytest.mark.parametrize("divergence", ["kl", "ikl", "js", "symmetric_kl"])
@pytest.mark.parametrize("include_diagonal", [False, True])
@pytest.mark.parametrize("eps", [1e-6, 0.0])
def test_blockwise_queue_rows_equal_the_full_kernel(
    divergence, include_diagonal, temperature, eps, rng, dense_set_divergence
):
    g, p, q, d = 2, 3, 6, 8
    fs = l2_normalize(rng.normal(size=(g, p, d)).astype("float32"))
    ft = l2_normalize(rng.normal(size=(g, p, d)).astype("float32"))
    qs = l2_normalize(rng.normal(size=(q, d)).astype("float32"))
    qt = l2_normalize(rng.normal(size=(q, d)).astype("float32"))
    qmask = tf.constant([1, 1, 1, 1, 0, 0], tf.float32)
    old = dense_set_divergence(
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
            dense_set_divergence(
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
    divergence, temperature, rng, dense_set_divergence
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
                r = dense_set_divergence(
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
def test_row_sums_equal_the_dense_kernel_and_numpy(
    divergence, include_diagonal, temperature, rng, dense_set_divergence
):
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
        dense = dense_set_divergence(
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
