"""A user's Keras-model feature_extractor keeps its weights through `.keras` and
`.weights.h5` files for every feature-space loss (issue 12.3); a loss rebuilt
from a config alone warns that its extractor has fresh weights."""

import warnings

import keras
import numpy as np
import pytest

from tfrestore.losses import L1, ContextualLoss, PDLoss, PerceptualLoss


def _extractor(seed):
    inp = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="ew_conv")(inp)
    x = keras.layers.BatchNormalization(name="ew_bn")(x)
    out = keras.layers.AveragePooling2D(2, name="ew_pool")(x)
    fx = keras.Model(inp, out, name="user_fx")
    r = np.random.default_rng(seed)  # weights no seeded initialiser reproduces
    fx.set_weights([r.normal(size=w.shape).astype("float32") for w in fx.get_weights()])
    fx.get_layer("ew_bn").moving_variance.assign(np.abs(r.normal(size=8)).astype("float32") + 0.5)
    return fx


LOSSES = {
    "perceptual": lambda fx: PerceptualLoss(["f"], feature_extractor=fx),
    "pdl": lambda fx: PDLoss(feature_extractor=fx),
    "contextual": lambda fx: ContextualLoss(feature_extractor=fx),
}


def _model(kind, seed):
    inp = keras.Input((16, 16, 3))
    out = keras.layers.Conv2D(3, 3, padding="same")(inp)
    model = keras.Model(inp, out)
    loss = LOSSES[kind](_extractor(seed))
    model.compile(optimizer="sgd", loss=L1() + loss)
    return model, loss


def _data(rng):
    y = rng.uniform(size=(2, 16, 16, 3)).astype("float32")
    p = np.clip(y + 0.2 * rng.normal(size=y.shape), 0, 1).astype("float32")
    return y, p


@pytest.mark.parametrize("kind", sorted(LOSSES))
def test_keras_extractor_round_trips(kind, tmp_path, rng):
    y, p = _data(rng)
    model, loss = _model(kind, seed=1)
    before = float(loss(y, p))
    model.save(tmp_path / "m.keras")
    model.save_weights(tmp_path / "w.weights.h5")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        loaded = keras.models.load_model(tmp_path / "m.keras").loss.losses[1]
        np.testing.assert_allclose(float(loaded(y, p)), before, rtol=1e-5)
    other, other_loss = _model(kind, seed=2)
    assert not np.isclose(float(other_loss(y, p)), before, rtol=1e-3)
    other.load_weights(tmp_path / "w.weights.h5")
    np.testing.assert_allclose(float(other_loss(y, p)), before, rtol=1e-5)


@pytest.mark.parametrize("kind", sorted(LOSSES))
def test_rebuilt_from_config_alone_warns(kind, rng):
    y, p = _data(rng)
    loss = LOSSES[kind](_extractor(seed=1))
    clone = type(loss).from_config(loss.get_config())
    with pytest.warns(UserWarning, match="user_fx.*freshly initialised weights"):
        clone(y, p)
