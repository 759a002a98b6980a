"""The D2SM feature queue (`tfrestore.losses._queue`): ring semantics, evaluation
freezing, saving, MirroredStrategy, XLA, and its similarity / row-sum cache."""

import inspect

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfrestore.losses.d2sm as d2sm_module
from tfrestore.callbacks import QueueControl
from tfrestore.losses import D2SMLoss, L1, RestorationLoss, enable_loss_terms
from tfrestore.losses._queue import QueueOutsideScopeError
from tfrestore.losses._similarity import (
    MIN_ROW_SUM_TEMPERATURE,
    QueueRowStatistics,
    l2_normalize,
    set_divergence,
)
from tfrestore.models import RestorationModel

_KERNEL = np.random.default_rng(11).normal(size=(3, 3, 3, 6)).astype("float32") / 3.0


@keras.saving.register_keras_serializable(package="tests_d2sm_queue")
def queue_features(x):
    y = tf.nn.conv2d(tf.cast(x, tf.float32) - 0.5, tf.constant(_KERNEL), 1, "SAME")
    return tf.nn.avg_pool2d(y, 4, 4, "VALID")


@keras.saving.register_keras_serializable(package="tests_d2sm_queue")
def flat_identity(x):
    return x


def _loss(**kw):
    kw = {
        "feature_extractor": queue_features,
        "patch_size": None,
        "queue_size": 8,
        "image_size": 16,
        **kw,
    }
    return D2SMLoss(**kw)


def _data(n=12, s=16, seed=0):
    rng = np.random.default_rng(seed)
    clean = rng.uniform(size=(n, s, s, 3)).astype("float32")
    noisy = np.clip(clean + rng.normal(0, 0.2, clean.shape), 0, 1).astype("float32")
    return noisy, clean


def _model(seed=0):
    inp = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(
        3,
        3,
        padding="same",
        kernel_initializer=keras.initializers.RandomNormal(stddev=0.1, seed=seed),
    )(inp)
    return keras.Model(inp, keras.layers.Add()([inp, x]))


def _norm(a):
    a = a.reshape(len(a), -1).astype(np.float64)
    return a / (np.linalg.norm(a, axis=1, keepdims=True) + 1e-6)


# ----------------------------------------------------------------- ring
def test_ring_holds_the_last_rows_and_wraps(rng):
    loss = D2SMLoss(feature_extractor=flat_identity, patch_size=None, queue_size=5, image_size=2)
    seen_p, seen_t = [], []
    for step in range(4):
        t = rng.normal(size=(2, 2, 2, 3)).astype("float32")
        p = rng.normal(size=(2, 2, 2, 3)).astype("float32")
        loss(t, p)
        seen_p.extend(_norm(p))
        seen_t.extend(_norm(t))
    qp, qt, count = loss.queue_state()
    assert count == 8
    for row in range(8 - 5, 8):  # the last 5 rows, each in slot row % 5
        np.testing.assert_allclose(qp[row % 5], seen_p[row], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(qt[row % 5], seen_t[row], rtol=1e-5, atol=1e-7)


def test_unfilled_slots_are_ignored_and_enqueue_happens_after_the_loss(rng):
    noisy, clean = _data(4)
    with_queue = _loss(reduction=None)
    without = _loss(queue_size=0, reduction=None)
    # Empty queue: identical to no queue (zero rows would otherwise enter the sums),
    # and the current batch is not yet in the queue when its loss is computed.
    np.testing.assert_allclose(with_queue(clean, noisy), without(clean, noisy), rtol=1e-6)
    assert with_queue.queue_count == 4
    # Second call on the same batch: now 4 queued rows take part.
    assert not np.allclose(with_queue(clean, noisy), without(clean, noisy), rtol=1e-3)


def test_graph_and_xla_enqueue_like_eager(rng):
    noisy, clean = _data(4)
    ref = _loss(reduction=None)
    vals = [ref(clean, noisy).numpy() for _ in range(3)]
    for jit in (False, True):
        loss = _loss(reduction=None)
        fn = tf.function(loss.call, jit_compile=jit)
        got = [fn(tf.constant(clean), tf.constant(noisy)).numpy() for _ in range(3)]
        np.testing.assert_allclose(got, vals, rtol=1e-3, atol=1e-9)
        np.testing.assert_allclose(loss.queue_state()[0], ref.queue_state()[0], atol=1e-5)
        assert loss.queue_count == 12


# ----------------------------------------------------------------- evaluation
def test_evaluate_and_validation_do_not_enqueue_without_callback():
    """A RestorationModel passes Keras' ``training`` flag to its losses."""
    noisy, clean = _data(12)
    model = enable_loss_terms(_model())
    loss = _loss()
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=L1() + loss)
    model.fit(noisy[:8], clean[:8], batch_size=4, epochs=1, verbose=0)
    assert loss.queue_count == 8
    before = loss.queue_state()
    model.evaluate(noisy, clean, batch_size=4, verbose=0)
    after = loss.queue_state()
    assert (
        after[2] == 8
        and np.array_equal(before[0], after[0])
        and np.array_equal(before[1], after[1])
    )
    model.fit(
        noisy[:8],
        clean[:8],
        batch_size=4,
        epochs=1,
        verbose=0,
        validation_data=(noisy[8:], clean[8:]),
    )
    assert loss.queue_count == 16  # 8 training rows; the 4 validation rows were not enqueued


def test_queue_control_freezes_during_evaluation_and_custom_step_names():
    """A custom Model whose evaluation step is not called ``test_step`` is covered
    by the callback's run-time switch."""
    noisy, clean = _data(8)
    loss = _loss()
    model = _model()
    model.compile(optimizer="sgd", loss=loss)
    control = QueueControl()
    control.set_model(model)
    control.on_test_begin()
    loss(clean[:4], noisy[:4])  # what any evaluation code path would do
    assert loss.queue_count == 0
    control.on_test_end()
    loss(clean[:4], noisy[:4])
    assert loss.queue_count == 4
    model.fit(
        noisy,
        clean,
        batch_size=4,
        epochs=1,
        verbose=0,
        validation_data=(noisy[:4], clean[:4]),
        callbacks=[QueueControl()],
    )
    assert loss.queue_count == 12


def test_frozen_queue_in_a_custom_tf_function_loop():
    noisy, clean = _data(4)
    loss = _loss()
    step = tf.function(lambda t, p: loss(t, p))
    step(clean, noisy)
    with loss.frozen_queue():
        step(clean, noisy)
        step(clean, noisy)
    assert loss.queue_count == 4
    step(clean, noisy)
    assert loss.queue_count == 8


def test_plain_keras_model_evaluation_needs_queue_control():
    """A plain keras.Model gives its loss no train/eval flag: QueueControl is the
    documented switch (the runner adds it)."""
    noisy, clean = _data(8)
    loss = _loss()
    model = _model()
    model.compile(optimizer="sgd", loss=L1() + loss)
    model.fit(noisy[:4], clean[:4], batch_size=4, verbose=0)
    assert loss.queue_count == 4
    model.evaluate(noisy, clean, batch_size=4, verbose=0, callbacks=[QueueControl()])
    assert loss.queue_count == 4
    model.fit(noisy[:4], clean[:4], batch_size=4, verbose=0, callbacks=[QueueControl()],
              validation_data=(noisy[4:], clean[4:]))
    assert loss.queue_count == 8


def test_training_flag_reaches_the_loss():
    seen = []

    class Probe(RestorationLoss):
        uses_training = True

        def compute(self, y_true, y_pred, training=None):
            seen.append(training)
            return tf.reduce_mean(tf.square(y_true - y_pred), axis=[1, 2, 3])

    noisy, clean = _data(4)
    inp = keras.Input((16, 16, 3))
    model = RestorationModel(inp, keras.layers.Conv2D(3, 3, padding="same")(inp))
    model.compile(optimizer="sgd", loss=Probe(name="probe"))
    model.fit(noisy, clean, batch_size=4, verbose=0)
    model.evaluate(noisy, clean, batch_size=4, verbose=0)
    model.train_on_batch(noisy, clean)
    model.test_on_batch(noisy, clean)
    assert seen == [True, False, True, False]


# ----------------------------------------------------------------- saving
def _trained(steps_data=8):
    noisy, clean = _data(steps_data)
    model = _model()
    loss = _loss()
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=L1() + loss)
    model.fit(noisy, clean, batch_size=4, epochs=1, verbose=0)
    return model, loss


def _fresh():
    model = _model(seed=5)
    loss = _loss()
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=L1() + loss)
    return model, loss


def _assert_same_queue(a, b):
    qa, qb = a.queue_state(), b.queue_state()
    assert qa[2] == qb[2]
    np.testing.assert_array_equal(qa[0], qb[0])
    np.testing.assert_array_equal(qa[1], qb[1])


def test_keras_and_weights_files_restore_the_queue(tmp_path):
    model, loss = _trained()
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    restored = loaded.loss.losses[1]
    assert isinstance(restored, D2SMLoss)
    _assert_same_queue(restored, loss)
    model.save_weights(tmp_path / "w.weights.h5")
    other, other_loss = _fresh()
    other.load_weights(tmp_path / "w.weights.h5")
    _assert_same_queue(other_loss, loss)
    np.testing.assert_array_equal(other.get_weights()[0], model.get_weights()[0])


def test_eps_defaults_to_the_paper_with_row_sums():
    """eps=0 (the paper's formula) is the default: a queue keeps four float64 sums
    per row and no q x q similarity cache."""
    assert inspect.signature(D2SMLoss).parameters["eps"].default == 0
    loss = _loss()
    assert loss.eps == 0.0 and loss.get_config()["eps"] == 0.0
    assert loss._queue.row_sums is not None and loss._queue.sim_pred is None


@pytest.mark.parametrize("eps", [0.0, 1e-6], ids=["default", "released-code"])
def test_keras_file_and_config_keep_eps(eps, tmp_path):
    model, loss = _model(), _loss(**({"eps": eps} if eps else {}))
    clone = D2SMLoss.from_config(loss.get_config())
    assert clone.eps == eps and (clone._queue.row_sums is None) == bool(eps)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=L1() + loss)
    model.fit(*_data(8), batch_size=4, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    restored = keras.saving.load_model(tmp_path / "m.keras").loss.losses[1]
    assert restored.eps == eps and (restored._queue.row_sums is None) == bool(eps)
    _assert_same_queue(restored, loss)


def test_configs_with_the_released_eps_still_load():
    """A run config (YAML ``eps: 1.0e-6``) or a saved loss config with eps=1e-6
    keeps it: the released code's values and the q x q similarity cache."""
    from tfrestore.training.config import load_config

    args = load_config("denoise_d2sm", ["losses[1].args.eps=1.0e-6"])["losses"][1]["args"]
    assert args["eps"] == 1e-6
    assert "eps" not in load_config("denoise_d2sm")["losses"][1]["args"]
    loss = D2SMLoss.from_config({**_loss().get_config(), "eps": args["eps"]})
    assert loss.eps == 1e-6 and loss._queue.sim_pred is not None


def test_weights_without_queue_state_still_load(tmp_path):
    plain = _model()
    plain.save_weights(tmp_path / "plain.weights.h5")  # uncompiled: no loss entry
    model, loss = _trained()
    model.load_weights(tmp_path / "plain.weights.h5")
    assert loss.queue_count == 8  # untouched
    np.testing.assert_array_equal(model.get_weights()[0], plain.get_weights()[0])


def test_model_checkpoint_and_backup_and_restore(tmp_path):
    noisy, clean = _data(8)
    model, loss = _fresh()
    ckpt = keras.callbacks.ModelCheckpoint(str(tmp_path / "ck.weights.h5"), save_weights_only=True)
    model.fit(noisy, clean, batch_size=4, epochs=1, verbose=0, callbacks=[ckpt])
    other, other_loss = _fresh()
    other.load_weights(tmp_path / "ck.weights.h5")
    _assert_same_queue(other_loss, loss)

    backup = str(tmp_path / "backup")
    m1, l1 = _fresh()
    m1.fit(
        noisy,
        clean,
        batch_size=4,
        epochs=1,
        verbose=0,
        callbacks=[keras.callbacks.BackupAndRestore(backup, delete_checkpoint=False)],
    )
    assert l1.queue_count == 8
    m2, l2 = _fresh()  # "restarted job": resumes at epoch 1 with the restored queue
    m2.fit(
        noisy,
        clean,
        batch_size=4,
        epochs=2,
        verbose=0,
        callbacks=[keras.callbacks.BackupAndRestore(backup, delete_checkpoint=False)],
    )
    assert l2.queue_count == 16


def test_mismatched_saved_queue_is_a_clear_error(tmp_path):
    model, _ = _trained()
    model.save_weights(tmp_path / "w.weights.h5")
    other = _model()
    other.compile(optimizer="sgd", loss=L1() + _loss(queue_size=12))
    with pytest.raises(ValueError, match="saved queue has shape"):
        other.load_weights(tmp_path / "w.weights.h5")


# ----------------------------------------------------------------- distribution
def _fit(model, noisy, clean, epochs=1):
    return model.fit(noisy, clean, batch_size=4, epochs=epochs, shuffle=False, verbose=0)


def test_mirrored_equals_single_device(strategy):
    """Per-image sets of 4 patches each plus a 24-row queue (the whole-image,
    whole-batch configuration is covered by the conformance harness)."""
    noisy, clean = _data(12)
    kw = dict(patch_size=8, patch_stride=8, group_by_image=True, queue_size=24)
    ref_model = _model()
    init = ref_model.get_weights()
    ref_loss = _loss(**kw)
    ref_model.compile(optimizer=keras.optimizers.SGD(0.5), loss=L1() + ref_loss)
    h_ref = _fit(ref_model, noisy, clean)
    with strategy.scope():
        model = enable_loss_terms(_model())  # a RestorationModel: evaluation is frozen
        model.set_weights(init)
        loss = _loss(**kw)
        model.compile(optimizer=keras.optimizers.SGD(0.5), loss=L1() + loss)
    assert isinstance(loss._queue.pred, tf.distribute.DistributedValues)
    h = _fit(model, noisy, clean)
    np.testing.assert_allclose(h.history["loss"], h_ref.history["loss"], rtol=1e-4)
    for a, b in zip(model.get_weights(), ref_model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    # 3 steps x 4 images (2 per replica) x 4 patches: the queue holds all replicas'
    # rows, in global-batch order, on every replica copy.
    assert loss.queue_count == ref_loss.queue_count == 48
    for copy in loss._queue.pred.values:
        np.testing.assert_allclose(copy.numpy(), ref_loss.queue_state()[0], atol=1e-5)
    model.evaluate(noisy, clean, batch_size=4, verbose=0)
    assert loss.queue_count == 48


def test_loss_built_outside_the_scope_raises(strategy):
    noisy, clean = _data(4)
    loss = _loss()  # outside
    with strategy.scope():
        model = _model()
        model.compile(optimizer="sgd", loss=loss)
    with pytest.raises(QueueOutsideScopeError, match="strategy.scope"):
        model.fit(noisy, clean, batch_size=4, verbose=0)
    assert loss.queue_count == 0


@pytest.mark.slow
def test_single_device_xla_fit_matches_graph():
    noisy, clean = _data(8)
    results = []
    for jit in (False, True):
        model = _model()
        loss = _loss()
        model.compile(optimizer=keras.optimizers.SGD(0.5), loss=L1() + loss, jit_compile=jit)
        _fit(model, noisy, clean, epochs=2)
        results.append((model.get_weights(), loss.queue_state()))
    for a, b in zip(results[0][0], results[1][0]):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(results[0][1][0], results[1][1][0], atol=1e-4)
    assert results[0][1][2] == results[1][1][2] == 16


def test_queue_memory_is_reported():
    # Rows (8 x 96 floats) and 8 int64 row keys per domain, plus the cache: four
    # float64 sums per row (eps=0, the default) or 8 x 8 similarities per domain.
    rows_and_keys = 2 * (8 * 4 * 4 * 6 * 4 + 8 * 8)
    assert _loss().queue_nbytes == rows_and_keys + 8 * 4 * 8
    assert _loss(eps=1e-6).queue_nbytes == rows_and_keys + 2 * 8 * 8 * 4
    assert _loss(queue_size=0).queue_nbytes == 0


def test_no_gradient_in_the_released_design_is_fixed(rng):
    """Regression for the released DeST: the restorer must receive a gradient from
    the D2SM term alone, also when the queue is full."""
    noisy, clean = _data(4)
    model = _model()
    loss = _loss()
    for _ in range(3):
        loss(clean, model(noisy))
    with tf.GradientTape() as tape:
        value = loss(clean, model(noisy))
    grads = tape.gradient(value, model.trainable_variables)
    assert all(g is not None for g in grads)
    assert all(np.any(g.numpy() != 0) for g in grads)


# ----------------------------------------------------------------- queue cache
# The queue cache: same loss and gradient as recomputing the queue kernel every
# step (wrap-around, frozen queue, saving, stale rows, replicas), for both kernels
# (the paper's ``(s + 1) / 2`` and ``exp(s / temperature)``) and both caches (the
# ``q x q`` similarities; with ``eps=0`` four sums per queue row and no ``q x q``
# tensor in a training step).


_CACHE_KERNEL = np.random.default_rng(7).normal(size=(3, 3, 3, 5)).astype("float32") / 3.0


@keras.saving.register_keras_serializable(package="tests_d2sm_queue_cache")
def cache_features(x):
    y = tf.nn.conv2d(tf.cast(x, tf.float32) - 0.5, tf.constant(_CACHE_KERNEL), 1, "SAME")
    return tf.nn.avg_pool2d(y, 4, 4, "VALID")


def _cache_loss(**kw):
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
    cached, ref = _cache_loss(**kw), _cache_loss(**kw)
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


def _dense_path(reference):
    """``set_divergence`` through the dense kernel ``reference`` (ignores the cached
    similarities and row sums)."""

    def dense(fs, ft, qs=None, qt=None, qmask=None, *, queue_similarities=None,
              queue_row_sums=None, divergence, include_diagonal, eps, temperature):
        if qs is None:
            return set_divergence(fs, ft, divergence=divergence,
                                  include_diagonal=include_diagonal, eps=eps,
                                  temperature=temperature)
        rows = reference(
            tf.cast(fs, tf.float32), tf.cast(ft, tf.float32), tf.cast(qs, tf.float32),
            tf.cast(qt, tf.float32), tf.cast(qmask, tf.float32), divergence, include_diagonal,
            eps, temperature,
        )
        mask = tf.concat([tf.ones([tf.shape(fs)[1]]), tf.cast(qmask, tf.float32)], axis=0)
        return rows, mask, tf.reduce_sum(mask)

    return dense


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
def test_cache_equals_dense_kernel_through_wraparound(
    kw, rng, monkeypatch, dense_set_divergence
):
    """The cached path (q x q similarities; with eps=0, the default, the row sums
    except for "js") gives the dense path's loss and gradient at every step while
    the ring wraps (queue of 7 / 11, 1-2 images = 2-8 rows per step), in eager and
    graph mode."""
    cached, dense = _cache_loss(**kw), _cache_loss(**kw)
    row_sums = "eps" not in kw and kw.get("divergence") != "js"
    assert (cached._queue.row_sums is not None) == row_sums
    graph = tf.function(cached.call)
    dense_path = _dense_path(dense_set_divergence)
    for step in range(7):
        clean, noisy = _batch(rng, b=2 if step % 3 else 1)
        with monkeypatch.context() as m:
            m.setattr(d2sm_module, "set_divergence", dense_path)
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
    loss = _cache_loss(eps=eps)
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
    loss, ref = _cache_loss(eps=eps), _cache_loss(eps=eps)
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


def _cache_model():
    inp = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(
        3, 3, padding="same", kernel_initializer=keras.initializers.RandomNormal(0.0, 0.1, seed=3)
    )(inp)
    return keras.Model(inp, keras.layers.Add()([inp, x]))


def _cache_data(n, seed):
    rng = np.random.default_rng(seed)
    clean = rng.uniform(size=(n, 16, 16, 3)).astype("float32")
    return np.clip(clean + rng.normal(0, 0.2, clean.shape), 0, 1).astype("float32"), clean


@pytest.mark.slow
def test_checkpoint_restore_rebuilds_the_cache_and_resumes_identically(tmp_path):
    noisy, clean = _cache_data(16, 0)

    def fresh():
        model, loss = _cache_model(), _cache_loss(reduction="sum_over_batch_size", eps=1e-6)
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
    noisy, clean = _cache_data(12, 1)
    ref_model = _cache_model()
    init = ref_model.get_weights()
    ref_loss = _cache_loss(reduction="sum_over_batch_size", queue_size=6, eps=eps)
    ref_model.compile(optimizer=keras.optimizers.SGD(0.5), loss=L1() + ref_loss)
    ref_model.fit(noisy, clean, batch_size=4, shuffle=False, verbose=0)
    with strategy.scope():
        model = _cache_model()
        model.set_weights(init)
        loss = _cache_loss(reduction="sum_over_batch_size", queue_size=6, eps=eps)
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
def _unit_rows(rng, *shape):
    return l2_normalize(rng.normal(size=shape).astype("float32"))


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
        queue = _cache_loss(**kw)._queue
        assert (queue.row_sums is not None) is row_sums, kw
        assert (queue.sim_pred is None) is row_sums, kw
    # No q x q memory with row sums.
    big_sims = _cache_loss(queue_size=512, eps=1e-6)._queue
    big_sums = _cache_loss(queue_size=512)._queue
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
    loss = _cache_loss(eps=0, queue_size=6)
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

    assert square_tensors(_cache_loss(queue_size=q)) == []  # the default eps=0
    assert square_tensors(_cache_loss(queue_size=q, eps=1e-6))  # the q x q similarity cache


def test_saved_queue_restores_the_row_sums(rng):
    loss, restored = _cache_loss(eps=0), _cache_loss(eps=0)
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
