"""Loss algebra, serialization and the single-output loss-list guard."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfrestore.callbacks import QueueControl
from tfrestore.losses import L1, MSE, Charbonnier, ListOfLossesError, RestorationLoss, WeightedSum
from tfrestore.testing import run_loss_test


def _pair(rng, shape=(4, 8, 8, 3)):
    y = rng.uniform(size=shape).astype("float32")
    return y, (y + rng.normal(0, 0.1, shape)).astype("float32")


def _model(shape=(8, 8, 3), outputs=1):
    inp = keras.Input(shape)
    outs = [keras.layers.Conv2D(3, 3, padding="same", name=f"o{i}")(inp) for i in range(outputs)]
    return keras.Model(inp, outs if outputs > 1 else outs[0])


def test_operators_build_weighted_sums(rng):
    y, p = _pair(rng)
    l1, mse = L1(), MSE()
    expr = l1 + 0.5 * mse
    assert isinstance(expr, WeightedSum) and expr.loss_weights == [1.0, 0.5]
    assert (mse * 2.0).loss_weights == [2.0]
    # flattening: (a + b) + c keeps one level
    nested = (L1() + MSE()) + 3 * Charbonnier()
    assert len(nested.losses) == 3 and nested.loss_weights == [1.0, 1.0, 3.0]
    assert (2 * (L1() + MSE())).loss_weights == [2.0, 2.0]
    assert isinstance(sum([L1(), MSE()]), WeightedSum)
    ref = np.abs(p - y).mean((1, 2, 3)) + 0.5 * ((p - y) ** 2).mean((1, 2, 3))
    np.testing.assert_allclose(expr.call(y, p), ref, rtol=1e-5)
    np.testing.assert_allclose((L1() - MSE()).call(y, p), np.abs(p - y).mean((1, 2, 3)) - ((p - y) ** 2).mean((1, 2, 3)), rtol=1e-5)


def test_operators_reject_non_numbers():
    with pytest.raises(TypeError):
        L1() * "2"
    with pytest.raises(TypeError):
        L1() + 3


def test_weighted_sum_passes_harness(rng):
    y, p = _pair(rng)
    args = {"losses": [L1(), Charbonnier(eps=0.01)], "loss_weights": [1.0, 0.3]}
    run_loss_test(WeightedSum, args, y, p)


def test_weighted_sum_accepts_keras_losses(rng):
    y, p = _pair(rng)
    total = L1() + keras.losses.MeanSquaredError()
    ref = np.abs(p - y).mean((1, 2, 3)) + ((p - y) ** 2).mean((1, 2, 3))
    np.testing.assert_allclose(total.call(y, p), ref, rtol=1e-5)


def test_weighted_sum_validates_arguments():
    with pytest.raises(ValueError, match="one entry per loss"):
        WeightedSum([L1(), MSE()], loss_weights=[1.0])
    with pytest.raises(TypeError, match=r"losses\[1\]"):
        WeightedSum([L1(), "mse"])
    with pytest.raises(ValueError, match="at least one"):
        WeightedSum([])


def test_weighted_sum_refuses_old_weights_keyword():
    """``weights`` only means pretrained weights; the term weights are ``loss_weights``."""
    with pytest.raises(TypeError, match="`weights` was renamed `loss_weights`"):
        WeightedSum([L1(), MSE()], weights=[1.0, 0.5])


def test_weighted_sum_config_round_trip_and_old_config(rng):
    y, p = _pair(rng)
    total = WeightedSum([L1(), MSE()], loss_weights=[1.0, 0.5], loss_weight=2.0)
    config = total.get_config()
    assert config["loss_weights"] == [1.0, 0.5] and "weights" not in config
    again = WeightedSum.from_config(config)
    assert again.loss_weights == [1.0, 0.5] and again.get_config() == config
    old = {k: v for k, v in config.items() if k != "loss_weights"}
    old["weights"] = [1.0, 0.5]  # a config saved before the rename
    loaded = WeightedSum.from_config(old)
    assert loaded.loss_weights == [1.0, 0.5] and loaded.get_config() == config
    np.testing.assert_allclose(float(loaded(y, p)), float(total(y, p)), rtol=1e-6)
    ser = keras.saving.serialize_keras_object(total)
    ser["config"]["weights"] = ser["config"].pop("loss_weights")
    de = keras.saving.deserialize_keras_object(ser)
    assert type(de) is WeightedSum and de.loss_weights == [1.0, 0.5]


def test_keras_save_load_of_sum(tmp_path, rng):
    y, p = _pair(rng)
    model = _model()
    model.compile(optimizer="adam", loss=L1() + 0.5 * Charbonnier(eps=0.01))
    before = model.evaluate(p, y, verbose=0)
    path = os.path.join(tmp_path, "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.loss, WeightedSum)
    assert [type(l) for l in loaded.loss.losses] == [L1, Charbonnier]
    assert loaded.loss.loss_weights == [1.0, 0.5]
    np.testing.assert_allclose(loaded.evaluate(p, y, verbose=0), before, rtol=1e-6)


def test_list_of_losses_on_single_output_raises(rng):
    """On a plain Keras model the check is QueueControl's (Keras' documented
    ``model.loss``); a loss cannot see the list it is in."""
    y, p = _pair(rng)
    model = _model()
    model.compile(optimizer="sgd", loss=[L1(), MSE()])
    with pytest.raises(ListOfLossesError, match=r"enable_loss_terms\(model\)"):
        model.fit(p, y, epochs=1, verbose=0, callbacks=[QueueControl()])


def test_list_guard_also_catches_keras_loss_first(rng):
    y, p = _pair(rng)
    model = _model()
    model.compile(optimizer="sgd", loss=["mae", MSE()])
    with pytest.raises(ListOfLossesError):
        model.fit(p, y, epochs=1, verbose=0, callbacks=[QueueControl()])


def test_list_on_multi_output_model_keeps_per_output_meaning(rng):
    y, p = _pair(rng)
    model = _model(outputs=2)
    model.compile(optimizer="sgd", loss=[L1(), MSE()])
    hist = model.fit(p, [y, y], epochs=1, verbose=0)
    assert np.isfinite(hist.history["loss"][0])
    out = model.predict(p, verbose=0)
    l1 = np.abs(out[0] - y).mean()
    mse = ((out[1] - y) ** 2).mean()
    np.testing.assert_allclose(model.evaluate(p, [y, y], verbose=0)[0], l1 + mse, rtol=1e-4)


def test_scalar_returning_subclass_is_rejected(rng):
    class Scalar(RestorationLoss):
        def compute(self, y_true, y_pred):
            return tf.reduce_mean(y_pred)

    y, p = _pair(rng)
    with pytest.raises(ValueError, match=r"per-sample values of shape \(B,\)"):
        Scalar()(y, p)


def test_loss_weight_must_be_number():
    with pytest.raises(TypeError, match="loss_weight"):
        L1(loss_weight="1")


def test_nan_output_is_caught_in_graph_mode(rng):
    y, p = _pair(rng)
    p[0, 0, 0, 0] = np.inf
    with pytest.raises(tf.errors.InvalidArgumentError, match="y_pred"):
        tf.function(lambda a, b: L1()(a, b))(y, p)


# ------------------------------------------------------------------ weights are finite


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_weights_are_refused_where_they_enter(bad):
    with pytest.raises(ValueError, match="l1: `loss_weight` must be a finite number"):
        L1(loss_weight=bad)
    with pytest.raises(ValueError, match=r"`loss_weights\[1\]` must be a finite number"):
        WeightedSum([L1(), MSE()], [1.0, bad])
    with pytest.raises(ValueError, match=r"`L1 \* factor` must be a finite number"):
        L1() * bad
    with pytest.raises(ValueError, match=r"`MSE \* factor` must be a finite number"):
        L1() + bad * MSE()
    with pytest.raises(ValueError, match=r"`WeightedSum \* factor` must be a finite number"):
        (L1() + MSE()) * bad
    from tfrestore.losses import enable_loss_terms

    model = enable_loss_terms(_model())
    with pytest.raises(ValueError, match=r"`loss_weights\[1\]` must be a finite number"):
        model.compile(optimizer="sgd", loss=[L1(), MSE()], loss_weights=[1.0, bad])
    with pytest.raises(ValueError, match=r"`loss_weights\[0\]` must be a finite number"):
        model.compile(optimizer="sgd", loss=[L1(), MSE()], loss_weights=bad)
    two = enable_loss_terms(_model(outputs=2))
    with pytest.raises(ValueError, match=r"`loss_weights\[1\]` must be a finite number"):
        two.compile(optimizer="sgd", loss=[L1(), MSE()], loss_weights=[1.0, bad])


def test_nan_sample_weight_is_refused_with_check_finite(rng):
    y, p = _pair(rng)
    sw = np.array([1.0, np.nan, 1.0, 1.0], "float32")
    with pytest.raises(ValueError, match="`sample_weight` contains NaN or Inf"):
        L1()(y, p, sample_weight=sw)
    with pytest.raises(tf.errors.InvalidArgumentError, match="`sample_weight` contains NaN"):
        tf.function(lambda a, b, w: L1()(a, b, sample_weight=w))(y, p, sw)
    assert np.isnan(float(L1(check_finite=False)(y, p, sample_weight=sw)))  # opted out


def test_sample_weight_of_the_wrong_length_names_both_lengths(rng):
    y, p = _pair(rng)
    with pytest.raises(ValueError, match=r"`sample_weight` has 3 entries but the batch has 4"):
        L1()(y, p, sample_weight=np.ones(3, "float32"))
    fn = tf.function(
        lambda a, b, w: L1()(a, b, sample_weight=w),
        input_signature=[tf.TensorSpec([None, 8, 8, 3])] * 2 + [tf.TensorSpec([None])],
    )
    with pytest.raises(tf.errors.InvalidArgumentError, match="`sample_weight` has a different"):
        fn(y, p, np.ones(3, "float32"))
    # accepted: one weight per sample, (B, 1), and a scalar
    w = np.array([1.0, 0.0, 2.0, 1.0], "float32")
    per = np.abs(y - p).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(float(L1()(y, p, sample_weight=w)), (per * w).mean(), rtol=1e-5)
    np.testing.assert_allclose(float(L1()(y, p, sample_weight=w[:, None])), (per * w).mean(),
                               rtol=1e-5)
    np.testing.assert_allclose(float(L1()(y, p, sample_weight=2.0)), 2 * per.mean(), rtol=1e-5)
