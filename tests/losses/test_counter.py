"""Call counters of losses that draw random numbers (`tfrestore.losses._counter`, used by
DiffLoss and PDLoss): refused outside the strategy scope, saved with the training state."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfrestore.losses import MSE, DiffLoss, OutsideScopeError, PDLoss


def conv_features(x):
    """A fixed random 3 -> 8 channel map (deterministic; no weights to load)."""
    w = tf.constant(np.random.default_rng(3).normal(size=(3, 8)), tf.float32)
    return tf.nn.relu(tf.einsum("bhwc,cd->bhwd", x, w))


@pytest.fixture
def make_diffloss(generic_unet):
    return lambda: DiffLoss(unet=generic_unet(), mode="eps")


@pytest.fixture
def makers(make_diffloss):
    """The losses holding a call counter, by name."""
    return {
        "diffloss": make_diffloss,
        "pdl": lambda: PDLoss(feature_extractor=conv_features, projection="random_sphere", seed=5),
    }


@pytest.fixture
def compiled(toy_restorer):
    """``loss`` on a compiled toy restorer."""

    def compile_with(loss):
        model = toy_restorer()
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss=MSE() + 0.001 * loss)
        return model

    return compile_with


# ------------------------------------------------------------------ strategy scope
def test_diffloss_built_outside_strategy_scope_is_refused(
    strategy, noisy_clean, toy_restorer, make_diffloss
):
    noisy, clean = noisy_clean()
    loss = make_diffloss()  # outside the scope
    with strategy.scope():
        model = toy_restorer()
        model.compile(optimizer="sgd", loss=MSE() + 0.001 * loss)
    with pytest.raises(OutsideScopeError, match=r"diff_loss: .*strategy.scope\(\)"):
        model.fit(noisy, clean, batch_size=4, epochs=1, verbose=0)


def test_diffloss_built_inside_strategy_scope_counts_global_steps(
    strategy, noisy_clean, toy_restorer, make_diffloss
):
    noisy, clean = noisy_clean()
    with strategy.scope():
        loss = make_diffloss()
        model = toy_restorer()
        model.compile(optimizer="sgd", loss=MSE() + 0.001 * loss)
    model.fit(noisy, clean, batch_size=4, epochs=1, verbose=0)  # 2 steps
    assert loss.step == 2


# ------------------------------------------------------------------ saved with the training state
@pytest.mark.parametrize("kind", ["diffloss", "pdl"])
def test_weights_file_restores_the_call_counter(kind, tmp_path, compiled, makers):
    make = makers[kind]
    like = tf.zeros((2, 16, 16, 3))
    loss = make()
    model = compiled(loss)
    for _ in range(3):
        loss.call(like, like)
    model.save_weights(tmp_path / "w.weights.h5")
    fresh = make()
    compiled(fresh).load_weights(tmp_path / "w.weights.h5")
    counter = fresh._state_variables()
    assert [int(keras.ops.convert_to_numpy(v)) for v in counter.values()] == [3]


def test_diffloss_resumed_stream_continues_instead_of_replaying(tmp_path, make_diffloss, compiled):
    like = tf.zeros((2, 16, 16, 3))
    loss = make_diffloss()
    model = compiled(loss)
    loss.sample(like)
    model.save_weights(tmp_path / "w.weights.h5")
    t_next, noise_next = loss.sample(like)
    resumed = make_diffloss()
    compiled(resumed).load_weights(tmp_path / "w.weights.h5")
    t, noise = resumed.sample(like)
    np.testing.assert_array_equal(np.asarray(t), np.asarray(t_next))
    np.testing.assert_array_equal(np.asarray(noise), np.asarray(noise_next))


@pytest.mark.parametrize("kind", ["diffloss", "pdl"])
def test_tf_train_checkpoint_of_the_model_holds_the_counter(kind, tmp_path, compiled, makers):
    make = makers[kind]
    like = tf.zeros((2, 16, 16, 3))
    loss = make()
    model = compiled(loss)
    for _ in range(2):
        loss.call(like, like)
    path = tf.train.Checkpoint(model=model).save(str(tmp_path / "ck"))
    assert any("loss" in name for name, _ in tf.train.list_variables(path))
    fresh = make()
    fresh_model = compiled(fresh)
    tf.train.Checkpoint(model=fresh_model).restore(path).expect_partial()
    (var,) = fresh._state_variables().values()
    assert int(keras.ops.convert_to_numpy(var)) == 2


def test_backup_and_restore_resumes_the_diffloss_counter(
    tmp_path, noisy_clean, make_diffloss, compiled
):
    noisy, clean = noisy_clean()
    backup = str(tmp_path / "backup")
    cb = lambda: keras.callbacks.BackupAndRestore(backup, delete_checkpoint=False)  # noqa: E731
    first = make_diffloss()
    compiled(first).fit(noisy, clean, batch_size=4, epochs=1, verbose=0, callbacks=[cb()])
    assert first.step == 2
    second = make_diffloss()  # "restarted job": resumes at epoch 1
    compiled(second).fit(noisy, clean, batch_size=4, epochs=2, verbose=0, callbacks=[cb()])
    assert second.step == 4


def test_weights_saved_without_a_counter_still_load(tmp_path, monkeypatch, make_diffloss, compiled):
    like = tf.zeros((2, 16, 16, 3))
    loss = make_diffloss()
    model = compiled(loss)
    loss.call(like, like)
    # files written before the counter was saved hold no entry for it
    monkeypatch.setattr(DiffLoss, "save_own_variables", lambda self, store: None)
    model.save_weights(tmp_path / "old.weights.h5")
    monkeypatch.undo()
    fresh = make_diffloss()
    fresh_model = compiled(fresh)
    fresh_model.load_weights(tmp_path / "old.weights.h5")
    assert fresh.step == 0
    np.testing.assert_array_equal(fresh_model.get_weights()[0], model.get_weights()[0])


