"""Every feature loss speaks one vocabulary (backbone / layers / weights /
preprocessing / feature_extractor) and saves a user feature_extractor through the one
serialiser of tfrestore.features.feature_source (issue 11)."""

import inspect

import keras
import numpy as np
import pytest

from tfrestore.features import FeatureSource, Preprocessing
from tfrestore.features import feature_source
from tfrestore.losses import ContextualLoss, D2SMLoss, LPIPSLoss, PDLoss, PerceptualLoss

LOSSES = {
    "perceptual": (PerceptualLoss, {}),
    "pdl": (PDLoss, {}),
    "contextual": (ContextualLoss, {}),
    "d2sm": (D2SMLoss, {"patch_size": None}),
}


def _images(rng, n=3):
    y = rng.uniform(0.05, 0.95, size=(n, 16, 16, 3)).astype("float32")
    return y, np.clip(y + rng.normal(0, 0.1, y.shape), 0, 1).astype("float32")


def _user_extractor(seed=0):
    inp = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="fl_conv")(inp)
    out = keras.layers.BatchNormalization(name="fl_bn")(x)
    fx = keras.Model(inp, out, name="fl_fx")
    r = np.random.default_rng(seed)
    fx.set_weights([r.normal(size=w.shape).astype("float32") for w in fx.get_weights()])
    fx.get_layer("fl_bn").moving_variance.assign(np.full(4, 2.0, "float32"))
    return fx


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_accepts_backbone_layers_weights_preprocessing(name, rng):
    cls, extra = LOSSES[name]
    loss = cls(backbone="vgg16", layers=["relu2_2"], weights=None, preprocessing="torch", **extra)
    config = loss.get_config()
    shared = (config["backbone"], config["weights"], config["preprocessing"])
    assert shared == ("vgg16", None, "torch")
    assert "relu2_2" in config["layers"] and config["feature_extractor"] is None
    assert isinstance(loss._source, FeatureSource)
    net = loss._source.network()
    assert net.layers == ["relu2_2"] and net.preprocessing == Preprocessing("torch")
    clone = cls.from_config(config)
    assert clone.get_config() == config
    y, p = _images(rng)
    np.testing.assert_allclose(np.asarray(clone(y, p)), np.asarray(loss(y, p)), rtol=1e-6)
    with pytest.raises(ValueError, match="use 'relu2_2'"):
        cls(backbone="vgg16", layers="block2_conv2", weights=None, **extra)


def test_lpips_takes_backbone_and_weights_and_taps_through_a_feature_source():
    lins = [np.full(c, 0.1, "float32") for c in (64, 128, 256, 512, 512)]
    loss = LPIPSLoss(backbone="vgg16", weights=None, lin_weights=lins)
    config = loss.get_config()
    assert (config["backbone"], config["weights"]) == ("vgg16", None)
    source = loss._holder.value.source
    assert isinstance(source, FeatureSource) and source.preprocessing == "none"
    assert list(source.layers) == ["relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3"]


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_user_extractor_goes_through_the_one_serialiser(name, monkeypatch):
    cls, extra = LOSSES[name]
    calls = []
    original = feature_source.serialize_extractor

    def spy(extractor, owner):
        calls.append(owner)
        return original(extractor, owner)

    monkeypatch.setattr(feature_source, "serialize_extractor", spy)
    fx = _user_extractor(seed=1)
    loss = cls(feature_extractor=fx, **extra)
    config = loss.get_config()
    assert calls == [loss.name]
    assert config["feature_extractor"] == original(fx, "x")
    store = {}
    loss.save_own_variables(store)
    assert int(store["extractor_count"]) == len(fx.weights)  # BatchNorm statistics included
    clone = cls.from_config(config)
    assert clone._source.network() is not fx
    clone.load_own_variables(store)
    for a, b in zip(clone._source.network().weights, fx.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("cls", [PerceptualLoss, PDLoss, ContextualLoss, D2SMLoss, LPIPSLoss])
def test_no_feature_loss_has_a_serialiser_of_its_own(cls):
    source = inspect.getsource(inspect.getmodule(cls))
    assert "serialize_keras_object" not in source and "deserialize_keras_object" not in source
