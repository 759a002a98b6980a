"""D2SM queue: ring semantics, evaluation freezing, saving, MirroredStrategy, XLA."""

import inspect

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfrestore.callbacks import QueueControl
from tfrestore.losses import D2SMLoss, L1, RestorationLoss, enable_loss_terms
from tfrestore.losses._queue import QueueOutsideScopeError
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
