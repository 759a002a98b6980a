"""Call counters of losses that draw random numbers (`tfrestore.losses._counter`, used by
DiffLoss and PDLoss): refused outside the strategy scope, saved with the training state."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfrestore.losses import MSE, DiffLoss, OutsideScopeError, PDLoss


def _generic_unet(seed=0):
    """A small two-input eps-UNet (any Keras model returning (out, h))."""
    keras.utils.set_random_seed(seed)
    xi = keras.Input((None, None, 3))
    ti = keras.Input((), dtype="int32")
    temb = keras.layers.Reshape((1, 1, 8))(keras.layers.Embedding(1000, 8)(ti))
    h = keras.layers.Conv2D(8, 3, padding="same", activation="silu")(xi) + temb
    mid = keras.layers.AveragePooling2D(2)(h)
    out = keras.layers.Conv2D(6, 3, padding="same")(h)
    return keras.Model([xi, ti], [out, mid])


def conv_features(x):
    """A fixed random 3 -> 8 channel map (deterministic; no weights to load)."""
    w = tf.constant(np.random.default_rng(3).normal(size=(3, 8)), tf.float32)
    return tf.nn.relu(tf.einsum("bhwc,cd->bhwd", x, w))


def _restorer(seed=0):
    inp = keras.Input((16, 16, 3))
    out = keras.layers.Conv2D(
        3, 3, padding="same",
        kernel_initializer=keras.initializers.RandomNormal(0.0, 0.05, seed=seed))(inp)
    return keras.Model(inp, keras.layers.Add()([inp, out]))


def _data(n=8, seed=0):
    rng = np.random.default_rng(seed)
    clean = rng.uniform(size=(n, 16, 16, 3)).astype("float32")
    noisy = np.clip(clean + rng.normal(0, 0.1, clean.shape), 0, 1).astype("float32")
    return noisy, clean


def _diffloss(**kw):
    return DiffLoss(unet=_generic_unet(), mode="eps", **kw)


def _pdl():
    return PDLoss(feature_extractor=conv_features, projection="random_sphere", seed=5)


# ------------------------------------------------------------------ strategy scope
def test_diffloss_built_outside_strategy_scope_is_refused(strategy):
    noisy, clean = _data()
    loss = _diffloss()  # outside the scope
    with strategy.scope():
        model = _restorer()
        model.compile(optimizer="sgd", loss=MSE() + 0.001 * loss)
    with pytest.raises(OutsideScopeError, match=r"diff_loss: .*strategy.scope\(\)"):
        model.fit(noisy, clean, batch_size=4, epochs=1, verbose=0)


def test_diffloss_built_inside_strategy_scope_counts_global_steps(strategy):
    noisy, clean = _data()
    with strategy.scope():
        loss = _diffloss()
        model = _restorer()
        model.compile(optimizer="sgd", loss=MSE() + 0.001 * loss)
    model.fit(noisy, clean, batch_size=4, epochs=1, verbose=0)  # 2 steps
    assert loss.step == 2


# ------------------------------------------------------------------ saved with the training state
def _compiled(loss):
    model = _restorer()
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=MSE() + 0.001 * loss)
    return model


@pytest.mark.parametrize("make", [_diffloss, _pdl], ids=["diffloss", "pdl"])
def test_weights_file_restores_the_call_counter(make, tmp_path):
    like = tf.zeros((2, 16, 16, 3))
    loss = make()
    model = _compiled(loss)
    for _ in range(3):
        loss.call(like, like)
    model.save_weights(tmp_path / "w.weights.h5")
    fresh = make()
    _compiled(fresh).load_weights(tmp_path / "w.weights.h5")
    counter = fresh._state_variables()
    assert [int(keras.ops.convert_to_numpy(v)) for v in counter.values()] == [3]


def test_diffloss_resumed_stream_continues_instead_of_replaying(tmp_path):
    like = tf.zeros((2, 16, 16, 3))
    loss = _diffloss()
    model = _compiled(loss)
    loss.sample(like)
    model.save_weights(tmp_path / "w.weights.h5")
    t_next, noise_next = loss.sample(like)
    resumed = _diffloss()
    _compiled(resumed).load_weights(tmp_path / "w.weights.h5")
    t, noise = resumed.sample(like)
    np.testing.assert_array_equal(np.asarray(t), np.asarray(t_next))
    np.testing.assert_array_equal(np.asarray(noise), np.asarray(noise_next))


@pytest.mark.parametrize("make", [_diffloss, _pdl], ids=["diffloss", "pdl"])
def test_tf_train_checkpoint_of_the_model_holds_the_counter(make, tmp_path):
    like = tf.zeros((2, 16, 16, 3))
    loss = make()
    model = _compiled(loss)
    for _ in range(2):
        loss.call(like, like)
    path = tf.train.Checkpoint(model=model).save(str(tmp_path / "ck"))
    assert any("loss" in name for name, _ in tf.train.list_variables(path))
    fresh = make()
    fresh_model = _compiled(fresh)
    tf.train.Checkpoint(model=fresh_model).restore(path).expect_partial()
    (var,) = fresh._state_variables().values()
    assert int(keras.ops.convert_to_numpy(var)) == 2


def test_backup_and_restore_resumes_the_diffloss_counter(tmp_path):
    noisy, clean = _data()
    backup = str(tmp_path / "backup")
    cb = lambda: keras.callbacks.BackupAndRestore(backup, delete_checkpoint=False)  # noqa: E731
    first = _diffloss()
    _compiled(first).fit(noisy, clean, batch_size=4, epochs=1, verbose=0, callbacks=[cb()])
    assert first.step == 2
    second = _diffloss()  # "restarted job": resumes at epoch 1
    _compiled(second).fit(noisy, clean, batch_size=4, epochs=2, verbose=0, callbacks=[cb()])
    assert second.step == 4


def test_weights_saved_without_a_counter_still_load(tmp_path, monkeypatch):
    like = tf.zeros((2, 16, 16, 3))
    loss = _diffloss()
    model = _compiled(loss)
    loss.call(like, like)
    # files written before the counter was saved hold no entry for it
    monkeypatch.setattr(DiffLoss, "save_own_variables", lambda self, store: None)
    model.save_weights(tmp_path / "old.weights.h5")
    monkeypatch.undo()
    fresh = _diffloss()
    fresh_model = _compiled(fresh)
    fresh_model.load_weights(tmp_path / "old.weights.h5")
    assert fresh.step == 0
    np.testing.assert_array_equal(fresh_model.get_weights()[0], model.get_weights()[0])


