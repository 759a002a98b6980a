"""The list spelling ``compile(loss=[L1(), X()])`` and per-term loss logging."""

import csv
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfrestore
from tfrestore.callbacks import QueueControl
from tfrestore.losses import (
    L1,
    MSE,
    Charbonnier,
    D2SMLoss,
    ListOfLossesError,
    WeightedSum,
    enable_loss_terms,
)
from tfrestore.losses.terms import combine_loss_list, term_names
from tfrestore.models import RestorationModel


def _data(rng, n=8, size=8):
    clean = rng.uniform(size=(n, size, size, 3)).astype("float32")
    noisy = (clean + rng.normal(0, 0.1, clean.shape)).astype("float32")
    return noisy, clean


def _restorer(seed=0, size=None):
    keras.utils.set_random_seed(seed)
    return tfrestore.models.DnCNN(depth=3, filters=4, channels=3, batch_norm=False)


def _plain_model(seed=0, outputs=1):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((None, None, 3))
    outs = [
        keras.layers.Conv2D(3, 3, padding="same", name=f"out{i}")(inp) for i in range(outputs)
    ]
    return keras.Model(inp, outs if outputs > 1 else outs[0])


def _fit(model, x, y, epochs=2, **kw):
    return model.fit(x, y, batch_size=4, epochs=epochs, shuffle=False, verbose=0, **kw)


def test_list_spelling_equals_algebra_spelling(rng):
    x, y = _data(rng)
    a = _restorer()
    a.compile(optimizer="adam", loss=[L1(), MSE()], loss_weights=[1.0, 0.3])
    ha = _fit(a, x, y)
    b = _restorer()
    b.compile(optimizer="adam", loss=L1() + 0.3 * MSE())
    hb = _fit(b, x, y)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=1e-6, atol=1e-7)
    assert set(ha.history) == set(hb.history) == {"loss", "l1", "mse"}
    for key in ha.history:
        np.testing.assert_allclose(ha.history[key], hb.history[key], rtol=1e-6)


def test_weights_default_to_one(rng):
    x, y = _data(rng)
    model = _restorer()
    model.compile(optimizer="sgd", loss=[L1(), MSE()])
    assert model.loss.loss_weights == [1.0, 1.0]


def test_terms_are_weighted_contributions_that_add_up_to_loss(rng):
    x, y = _data(rng)
    model = _restorer()
    model.compile(optimizer="sgd", loss=[L1(), Charbonnier(eps=0.01)], loss_weights=[1.0, 0.25])
    logs = model.evaluate(x, y, batch_size=4, verbose=0, return_dict=True)
    pred = model.predict(x, verbose=0)
    l1 = np.abs(pred - y).mean()
    charb = np.sqrt((pred - y) ** 2 + 0.01**2).mean()
    np.testing.assert_allclose(logs["l1"], l1, rtol=1e-5)
    np.testing.assert_allclose(logs["charbonnier"], 0.25 * charb, rtol=1e-5)
    np.testing.assert_allclose(logs["loss"], logs["l1"] + logs["charbonnier"], rtol=1e-5)


def test_terms_follow_sample_weight_like_the_total(rng):
    x, y = _data(rng)
    sw = np.array([1, 0, 2, 1, 0.5, 0, 1, 3], "float32")
    model = _restorer()
    model.compile(optimizer="sgd", loss=[L1(), MSE()], loss_weights=[1.0, 2.0])
    logs = model.evaluate(x, y, sample_weight=sw, batch_size=4, verbose=0, return_dict=True)
    pred = model.predict(x, verbose=0)
    per_l1 = np.abs(pred - y).mean((1, 2, 3))
    per_mse = ((pred - y) ** 2).mean((1, 2, 3))
    # Keras' sum_over_batch_size: sum(w * v) / batch, batches averaged by size.
    expected_l1 = np.mean([(per_l1 * sw)[i : i + 4].sum() / 4 for i in (0, 4)])
    expected_mse = np.mean([(2 * per_mse * sw)[i : i + 4].sum() / 4 for i in (0, 4)])
    np.testing.assert_allclose(logs["l1"], expected_l1, rtol=1e-5)
    np.testing.assert_allclose(logs["mse"], expected_mse, rtol=1e-5)
    np.testing.assert_allclose(logs["loss"], expected_l1 + expected_mse, rtol=1e-5)


def test_history_csv_and_validation_terms(rng, tmp_path):
    x, y = _data(rng)
    model = _restorer()
    model.compile(optimizer="adam", loss=[L1(), MSE()], loss_weights=[1.0, 0.1])
    path = os.path.join(tmp_path, "history.csv")
    hist = _fit(
        model, x, y, validation_data=(x[:4], y[:4]), callbacks=[keras.callbacks.CSVLogger(path)]
    )
    assert {"l1", "mse", "val_l1", "val_mse", "val_loss"} <= set(hist.history)
    with open(path) as f:
        header = next(csv.reader(f))
    assert {"l1", "mse", "loss", "val_l1", "val_mse", "val_loss"} <= set(header)
    val = model.evaluate(x[:4], y[:4], verbose=0, return_dict=True)
    np.testing.assert_allclose(hist.history["val_l1"][-1], val["l1"], rtol=1e-5)


def test_algebra_spelling_logs_terms_too(rng):
    x, y = _data(rng)
    model = _restorer()
    model.compile(optimizer="sgd", loss=L1() + 0.5 * MSE() + 0.1 * L1())
    hist = _fit(model, x, y, epochs=1)
    assert set(hist.history) == {"loss", "l1", "mse", "l1_2"}


def test_plain_keras_model_keeps_the_clear_error(rng):
    """Keras gives a loss no documented way to see the list it is in; QueueControl
    (added by the training runner) reads the documented ``model.loss``."""
    x, y = _data(rng)
    model = _plain_model()
    model.compile(optimizer="sgd", loss=[L1(), MSE()])
    with pytest.raises(ListOfLossesError, match=r"tfrestore\.losses\.enable_loss_terms\(model\)"):
        _fit(model, x, y, epochs=1, callbacks=[QueueControl()])


def test_too_many_losses_for_the_outputs_is_an_error_at_compile():
    model = _restorer()
    with pytest.raises(ListOfLossesError, match="one entry per output"):
        enable_loss_terms(_plain_model(outputs=2)).compile(loss=[L1(), MSE(), L1()])
    model.compile(loss=[L1(), MSE(), L1()])  # one output: the sum of three
    assert len(model.loss.losses) == 3


def test_enable_loss_terms_returns_a_model_over_the_same_layers():
    plain = _plain_model()
    model = enable_loss_terms(plain)
    assert isinstance(model, RestorationModel) and model is not plain
    assert model.get_layer("out0") is plain.get_layer("out0")
    assert type(plain).compile is keras.Model.compile and "compile" not in vars(plain)
    assert enable_loss_terms(model) is model
    with pytest.raises(TypeError, match="keras.Model"):
        enable_loss_terms(L1())


def test_enable_loss_terms_on_a_plain_keras_model(rng):
    x, y = _data(rng)
    a = enable_loss_terms(_plain_model())
    a.compile(optimizer="adam", loss=[L1(), MSE()], loss_weights=[1.0, 0.5])
    ha = _fit(a, x, y)
    b = _plain_model()
    b.compile(optimizer="adam", loss=L1() + 0.5 * MSE())
    _fit(b, x, y)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=1e-6, atol=1e-7)
    assert {"l1", "mse"} <= set(ha.history)


def test_enable_after_compile_starts_logging_terms(rng):
    x, y = _data(rng)
    model = _plain_model()
    model.compile(optimizer="sgd", loss=[L1(), MSE()], loss_weights=[1.0, 0.5])
    model = enable_loss_terms(model)
    assert isinstance(model.loss, WeightedSum) and model.loss.loss_weights == [1.0, 0.5]
    assert {"l1", "mse"} <= set(_fit(model, x, y, epochs=1).history)


def test_recompile_replaces_the_trackers(rng):
    x, y = _data(rng)
    model = _restorer()
    model.compile(optimizer="sgd", loss=[L1(), MSE()])
    model.compile(optimizer="sgd", loss=[L1(), Charbonnier()])
    assert set(_fit(model, x, y, epochs=1).history) == {"loss", "l1", "charbonnier"}
    model.compile(optimizer="sgd", loss=L1())
    assert set(_fit(model, x, y, epochs=1).history) == {"loss"}


def test_multi_output_list_keeps_per_output_meaning(rng):
    x, y = _data(rng)
    model = enable_loss_terms(_plain_model(outputs=2))
    model.compile(optimizer="sgd", loss=[L1(), [MSE(), L1()]], loss_weights=[1.0, 0.5])
    assert isinstance(model.loss[1], WeightedSum)
    logs = model.evaluate(x, [y, y], batch_size=4, verbose=0, return_dict=True)
    p0, p1 = model.predict(x, verbose=0)
    l1_0 = np.abs(p0 - y).mean()
    mse_1, l1_1 = ((p1 - y) ** 2).mean(), np.abs(p1 - y).mean()
    np.testing.assert_allclose(logs["loss"], l1_0 + 0.5 * (mse_1 + l1_1), rtol=1e-5)
    np.testing.assert_allclose(logs["out1_mse"], mse_1, rtol=1e-5)
    np.testing.assert_allclose(logs["out1_l1"], l1_1, rtol=1e-5)


def test_two_losses_two_outputs_is_not_a_sum(rng):
    loss, weights = combine_loss_list([L1(), MSE()], [1.0, 0.5], num_outputs=2)
    assert isinstance(loss, list) and isinstance(loss[0], L1) and weights == [1.0, 0.5]


def test_bad_loss_weights_are_named():
    with pytest.raises(ValueError, match="loss_weights"):
        combine_loss_list([L1(), MSE()], [1.0], num_outputs=1)
    with pytest.raises(ValueError, match="loss_weights"):
        combine_loss_list([L1(), MSE()], {"a": 1.0}, num_outputs=1)
    with pytest.raises(TypeError, match=r"loss\[1\]"):
        combine_loss_list([L1(), 3], None, num_outputs=1)


def test_string_losses_are_resolved():
    loss, _ = combine_loss_list(["mae", MSE()], None, num_outputs=1)
    assert isinstance(loss, WeightedSum) and loss.losses[0].name == "mean_absolute_error"
    with pytest.raises(TypeError, match=r"loss\[0\]"):
        combine_loss_list([object(), MSE()], None, num_outputs=1)


def test_term_names_are_unique():
    assert term_names(L1() + L1() + L1()) == ["l1", "l1_2", "l1_3"]


def test_keras_round_trip_keeps_list_meaning_and_terms(rng, tmp_path):
    x, y = _data(rng)
    model = _restorer()
    model.compile(optimizer="adam", loss=[L1(), MSE()], loss_weights=[1.0, 0.2])
    _fit(model, x, y, epochs=1)
    path = os.path.join(tmp_path, "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, RestorationModel)
    assert isinstance(loaded.loss, WeightedSum) and loaded.loss.loss_weights == [1.0, 0.2]
    np.testing.assert_allclose(
        loaded.evaluate(x, y, verbose=0, return_dict=True)["mse"],
        model.evaluate(x, y, verbose=0, return_dict=True)["mse"],
        rtol=1e-6,
    )
    assert {"l1", "mse"} <= set(_fit(loaded, x, y, epochs=1).history)
    # A loaded model can be compiled again with the list spelling.
    loaded.compile(optimizer="adam", loss=[L1(), Charbonnier()])
    assert "charbonnier" in _fit(loaded, x, y, epochs=1).history


def test_mirrored_equals_single_device(rng, strategy):
    x, y = _data(rng)
    single = _restorer()
    single.compile(optimizer="sgd", loss=[L1(), MSE()], loss_weights=[1.0, 0.5])
    hs = _fit(single, x, y)
    with strategy.scope():
        mirrored = _restorer()
        mirrored.compile(optimizer="sgd", loss=[L1(), MSE()], loss_weights=[1.0, 0.5])
    hm = _fit(mirrored, x, y)
    for ws, wm in zip(single.get_weights(), mirrored.get_weights()):
        np.testing.assert_allclose(ws, wm, rtol=1e-4, atol=1e-6)
    for key in ("loss", "l1", "mse"):
        np.testing.assert_allclose(hs.history[key], hm.history[key], rtol=1e-4)


def test_stateful_term_in_list_trains_and_logs(rng, strategy):
    x, y = _data(rng, n=8, size=16)
    with strategy.scope():
        model = _restorer()
        d2sm = D2SMLoss(
            backbone="vgg16", layers="conv2_2", weights=None, patch_size=None, queue_size=16,
            image_size=(16, 16),
        )
        model.compile(optimizer="adam", loss=[L1(), d2sm], loss_weights=[1.0, 0.1])
    hist = _fit(model, x, y, epochs=1)
    assert {"l1", "d2sm"} <= set(hist.history)
    assert np.isfinite(hist.history["d2sm"][0])
    np.testing.assert_allclose(
        hist.history["loss"][0], hist.history["l1"][0] + hist.history["d2sm"][0], rtol=1e-4
    )


def test_term_values_match_hand_computation_inside_tf_function(rng):
    x, y = _data(rng)
    total = (L1() + 0.5 * MSE()) * 2.0
    values, terms = tf.function(total.term_values)(tf.constant(y), tf.constant(x))
    l1, mse = np.abs(x - y).mean((1, 2, 3)), ((x - y) ** 2).mean((1, 2, 3))
    np.testing.assert_allclose(terms[0], 2.0 * l1, rtol=1e-5)
    np.testing.assert_allclose(terms[1], 1.0 * mse, rtol=1e-5)
    np.testing.assert_allclose(values, terms[0] + terms[1], rtol=1e-6)
    np.testing.assert_allclose(float(total(y, x)), float(np.mean(values)), rtol=1e-6)


def test_weighted_sum_keeps_no_state_between_calls(rng):
    x, y = _data(rng)
    total = L1() + MSE()
    before = dict(vars(total))
    total(y, x)
    total.term_values(y, x)
    assert vars(total).keys() == before.keys()


class _TrainingProbe(tfrestore.losses.RestorationLoss):
    uses_training = True

    def __init__(self, seen=None, **kw):
        super().__init__(**kw)
        self.seen = seen if seen is not None else []

    def compute(self, y_true, y_pred, training=None):
        self.seen.append(training)
        return tf.reduce_mean(tf.abs(y_true - y_pred), axis=[1, 2, 3])


def test_compute_loss_passes_keras_training_flag_to_the_losses(rng):
    x, y = _data(rng, n=4)
    alone, in_sum = _TrainingProbe(), _TrainingProbe()
    for loss in (alone, L1() + in_sum):
        model = _restorer()
        model.compile(optimizer="sgd", loss=loss)
        _fit(model, x, y, epochs=1)
        model.evaluate(x, y, batch_size=4, verbose=0)
        model.train_on_batch(x, y)
        model.test_on_batch(x, y)
    for probe in (alone, in_sum):
        assert probe.seen == [True, False, True, False]
    # Direct calls and plain Keras models do not say.
    plain = _plain_model()
    plain.compile(optimizer="sgd", loss=_TrainingProbe(seen := []))
    plain.evaluate(x, y, batch_size=4, verbose=0)
    assert seen == [None]


def test_tensorboard_gets_each_term(rng, tmp_path):
    x, y = _data(rng)
    model = _restorer()
    model.compile(optimizer="sgd", loss=[L1(), MSE()], loss_weights=[1.0, 0.5])
    logdir = os.path.join(tmp_path, "tb")
    _fit(model, x, y, epochs=1, validation_data=(x[:4], y[:4]),
         callbacks=[keras.callbacks.TensorBoard(logdir)])
    tags = set()
    for root, _, files in os.walk(logdir):
        for name in files:
            for event in tf.compat.v1.train.summary_iterator(os.path.join(root, name)):
                tags.update(v.tag for v in event.summary.value)
    assert {"epoch_l1", "epoch_mse", "epoch_loss"} <= tags


def test_compile_without_loss_keeps_the_compiled_loss_and_terms(rng):
    x, y = _data(rng)
    model = _restorer()
    model.compile(optimizer="sgd", loss=[L1(), MSE()])
    before = model.evaluate(x, y, verbose=0, return_dict=True)
    model.compile(optimizer="sgd", metrics=["mae"])  # Keras keeps the loss
    after = model.evaluate(x, y, verbose=0, return_dict=True)
    assert {"l1", "mse", "mae"} <= set(after)
    np.testing.assert_allclose(after["loss"], before["loss"], rtol=1e-6)
