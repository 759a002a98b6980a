"""RestorationLoss: algebra, serialization, the single-output loss-list guard, input
checks (finite values, value range of y_true) and frozen networks."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfrestore.callbacks import QueueControl
from tfrestore.losses import (
    L1,
    MSE,
    Charbonnier,
    DiffLoss,
    ListOfLossesError,
    PDLoss,
    RestorationLoss,
    WeightedSum,
)
from tfrestore.testing import TestCase


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


class WeightedSumTest(TestCase):
    def test_conformance(self):
        y, p = _pair(self.rng)
        args = {"losses": [L1(), Charbonnier(eps=0.01)], "loss_weights": [1.0, 0.3]}
        self.run_loss_test(WeightedSum, args, y, p)


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


# ------------------------------------------------------------------ value range of y_true
def _images(shape=(3, 32, 32, 3), seed=0):  # D2SM needs a set of >= 3
    rng = np.random.default_rng(seed)
    y = rng.uniform(0.05, 0.95, size=shape).astype("float32")
    return y, np.clip(y + rng.normal(0, 0.05, shape), 0, 1).astype("float32")


_LINS = [np.full(c, 0.1, "float32") for c in (64, 192, 384, 256, 256)]
_RANGE_LOSSES = {
    "lpips": lambda: __import__("tfrestore.losses", fromlist=["x"]).LPIPSLoss(
        weights=None, lin_weights=_LINS),
    "contextual": lambda: __import__("tfrestore.losses", fromlist=["x"]).ContextualLoss(
        layers="relu2_2", weights=None),
    "d2sm": lambda: __import__("tfrestore.losses", fromlist=["x"]).D2SMLoss(
        weights=None, layers="relu2_2", image_size=(32, 32), patch_size=None),
    "perceptual": lambda: __import__("tfrestore.losses", fromlist=["x"]).PerceptualLoss(
        "relu2_2", weights=None),
    "pdl": lambda: PDLoss(layers="relu2_2", weights=None),
    "ssim": lambda: __import__("tfrestore.losses", fromlist=["x"]).SSIMLoss(),
}


@pytest.mark.parametrize("name", sorted(_RANGE_LOSSES))
def test_float_images_in_0_255_are_refused(name):
    loss = _RANGE_LOSSES[name]()
    y, p = _images()
    with pytest.raises(ValueError, match=r"`y_true` has values in \[.*\]: far outside "
                                         r"the range \[0, 1\].*Divide them by 255"):
        loss(255.0 * y, 255.0 * p)


@pytest.mark.parametrize("name", sorted(_RANGE_LOSSES))
def test_overshoot_of_unclipped_outputs_is_accepted(name):
    loss = _RANGE_LOSSES[name]()
    y, p = _images()
    y = y * 1.2 - 0.1  # e.g. bicubic overshoot in the targets: [-0.05, 1.05]
    p = p * 1.8 - 0.4  # an unclipped restorer output: [-0.4, 1.4]
    assert np.all(np.isfinite(np.asarray(loss.call(y, p))))


def test_range_error_in_compiled_fit_names_y_true_and_the_fix(toy_restorer, noisy_clean):
    from tfrestore.losses import PerceptualLoss

    noisy, clean = noisy_clean()
    model = toy_restorer()
    model.compile(optimizer="sgd", loss=MSE() + 0.1 * PerceptualLoss("relu1_2",
                                                                     weights=None))
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"`y_true` has values far outside the range \[0, 1\].*"
                             r"Divide them by 255"):
        model.fit(255.0 * noisy, 255.0 * clean, batch_size=4, epochs=1, verbose=0)


def test_check_range_false_opts_out_and_round_trips():
    from tfrestore.losses import PerceptualLoss

    loss = PerceptualLoss("relu1_2", weights=None, check_range=False)
    y, p = _images()
    assert np.isfinite(float(loss(255.0 * y, 255.0 * p)))
    assert PerceptualLoss.from_config(loss.get_config()).check_range is False


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_are_still_caught_in_a_graph(bad):
    from tfrestore.losses import L1

    y, p = _images()
    p[1, 3, 4, 2] = bad
    fn = tf.function(lambda a, b: L1()(a, b))
    with pytest.raises(tf.errors.InvalidArgumentError, match="`y_pred` contains NaN or Inf"):
        fn(y, p)


def test_an_empty_replica_batch_passes_the_checks():
    from tfrestore.utils import validation

    fn = tf.function(
        lambda a, b: validation.check_image_pair(a, b, data_range=(0.0, 1.0))[1],
        input_signature=[tf.TensorSpec((None, 32, 32, 3))] * 2)
    empty = np.zeros((0, 32, 32, 3), "float32")  # min = +inf, max = -inf
    assert fn(empty, empty).shape == (0, 32, 32, 3)


# ------------------------------------------------------------------ frozen networks
def _frozen_network_variables(loss):
    from tfrestore.losses import LPIPSLoss

    if isinstance(loss, DiffLoss):
        net = loss._holder.value
    elif isinstance(loss, LPIPSLoss):
        net = loss._holder.value.source.network().model
    else:
        net = loss._source.network().model
    return net.variables


_FROZEN = {
    "perceptual": lambda: __import__("tfrestore.losses", fromlist=["x"]).PerceptualLoss(
        "relu2_2", weights=None),
    "lpips": _RANGE_LOSSES["lpips"],
    "pdl": lambda: PDLoss(layers="relu2_2", weights=None),
    "diffloss": lambda: DiffLoss(unet="adm_tiny", weights=None),
}


@pytest.mark.parametrize("name", sorted(_FROZEN))
def test_eager_tape_does_not_watch_frozen_network_variables(name):
    loss = _FROZEN[name]()
    variables = _frozen_network_variables(loss)
    assert variables and not any(v.value.trainable for v in variables)
    y, p = _images((2, 32, 32, 3) if name != "lpips" else (2, 64, 64, 3))
    yp = tf.Variable(p)
    with tf.GradientTape() as tape:
        value = tf.reduce_sum(loss.call(y, yp))
    watched = {id(v) for v in tape.watched_variables()}
    assert watched == {id(yp)}  # the restorer's side only, nothing of the frozen network
    grad = np.asarray(tape.gradient(value, yp))
    assert np.all(np.isfinite(grad)) and np.any(grad != 0)
