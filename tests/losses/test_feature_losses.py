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


# ----------------------------------------------- layers (names) / layer_weights (issue 20)
WEIGHTED = {
    "perceptual": PerceptualLoss,
    "pdl": PDLoss,
    "contextual": ContextualLoss,
}


def _weighted_images(rng):
    y = rng.uniform(0.05, 0.95, size=(2, 16, 16, 3)).astype("float32")
    return y, np.clip(y + rng.normal(0, 0.1, y.shape), 0, 1).astype("float32")


@pytest.mark.parametrize("name", sorted(WEIGHTED))
def test_layer_weights_is_the_first_own_keyword_after_feature_extractor(name):
    params = list(inspect.signature(WEIGHTED[name].__init__).parameters)
    i = params.index("feature_extractor")
    assert params[1:i + 2] == [
        "layers", "backbone", "weights", "preprocessing", "feature_extractor", "layer_weights"
    ]
    assert "layer_weights" not in inspect.signature(D2SMLoss.__init__).parameters


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_a_dict_in_layers_is_refused_naming_layer_weights(name):
    cls, extra = LOSSES[name]
    with pytest.raises(TypeError, match="layer_weights"):
        cls(layers={"relu2_2": 1.0, "relu3_3": 0.5}, weights=None, **extra)


@pytest.mark.parametrize("name", sorted(WEIGHTED))
def test_layer_weights_sum_the_list_terms_with_their_weights(name, rng):
    cls = WEIGHTED[name]
    y, p = _weighted_images(rng)
    weighted = cls(layer_weights={"relu1_2": 0.25, "relu2_2": 2.0}, weights=None, reduction=None)
    assert weighted.layers == ["relu1_2", "relu2_2"]
    assert weighted.layer_weights == {"relu1_2": 0.25, "relu2_2": 2.0}
    one = {n: np.asarray(cls(layers=n, weights=None, reduction=None)(y, p), np.float64)
           for n in ("relu1_2", "relu2_2")}
    expected = 0.25 * one["relu1_2"] + 2.0 * one["relu2_2"]
    np.testing.assert_allclose(np.asarray(weighted(y, p)), expected, rtol=1e-5)
    # `layers` may repeat exactly the keys (and sets the order); the value is the same
    both = cls(layers=["relu2_2", "relu1_2"], layer_weights={"relu1_2": 0.25, "relu2_2": 2.0},
               weights=None, reduction=None)
    assert both.layers == ["relu2_2", "relu1_2"]
    np.testing.assert_allclose(np.asarray(both(y, p)), expected, rtol=1e-5)


@pytest.mark.parametrize("name", sorted(WEIGHTED))
def test_layers_naming_other_layers_than_layer_weights_is_refused(name):
    cls = WEIGHTED[name]
    for layers in ("relu1_2", ["relu1_2", "relu3_3"], ["relu1_2", "relu2_2", "relu3_3"]):
        with pytest.raises(ValueError, match=r"`layers`.*`layer_weights`"):
            cls(layers=layers, layer_weights={"relu1_2": 1.0, "relu2_2": 0.5}, weights=None)
    with pytest.raises(TypeError, match="layer_weights"):
        cls(layer_weights=["relu1_2"], weights=None)


@pytest.mark.parametrize("name", sorted(WEIGHTED))
def test_config_writes_names_and_weights_only_when_not_all_one(name, rng):
    cls = WEIGHTED[name]
    plain = cls(layers=["relu1_2", "relu2_2"], weights=None).get_config()
    assert plain["layers"] == ["relu1_2", "relu2_2"] and plain["layer_weights"] is None
    ones = cls(layer_weights={"relu1_2": 1.0}, weights=None).get_config()
    assert ones["layers"] == ["relu1_2"] and ones["layer_weights"] is None
    loss = cls(layer_weights={"relu1_2": 0.5, "relu2_2": 1.0}, weights=None)
    config = loss.get_config()
    assert config["layers"] == ["relu1_2", "relu2_2"]
    assert config["layer_weights"] == {"relu1_2": 0.5, "relu2_2": 1.0}
    clone = cls.from_config(config)
    assert clone.get_config() == config
    y, p = _weighted_images(rng)
    np.testing.assert_allclose(np.asarray(clone(y, p)), np.asarray(loss(y, p)), rtol=1e-6)


@pytest.mark.parametrize("name", sorted(WEIGHTED))
def test_a_config_saved_with_a_layers_dict_still_loads(name, rng):
    cls = WEIGHTED[name]
    loss = cls(layer_weights={"relu1_2": 0.5, "relu2_2": 1.0}, weights=None)
    serialized = keras.saving.serialize_keras_object(loss)
    old = dict(serialized["config"])
    del old["layer_weights"]  # what get_config wrote before the split
    old["layers"] = {"relu1_2": 0.5, "relu2_2": 1.0}
    loaded = keras.saving.deserialize_keras_object({**serialized, "config": old})
    assert isinstance(loaded, cls)
    assert loaded.layers == ["relu1_2", "relu2_2"]
    assert loaded.layer_weights == {"relu1_2": 0.5, "relu2_2": 1.0}
    assert loaded.get_config() == loss.get_config()
    y, p = _weighted_images(rng)
    np.testing.assert_allclose(np.asarray(loaded(y, p)), np.asarray(loss(y, p)), rtol=1e-6)
    # an old all-ones dict becomes a plain list of names
    old["layers"] = {"relu1_2": 1.0}
    assert cls.from_config(old).get_config()["layers"] == ["relu1_2"]
    assert cls.from_config(old).get_config()["layer_weights"] is None


def test_an_old_d2sm_config_with_a_one_layer_dict_loads():
    config = D2SMLoss(layers="relu1_2", weights=None, patch_size=None).get_config()
    assert "layer_weights" not in config and config["layers"] == "relu1_2"
    old = {**config, "layers": {"relu1_2": 1.0}}
    assert D2SMLoss.from_config(old).layers == "relu1_2"


def test_a_recipe_with_a_layers_dict_is_a_config_error_naming_layer_weights():
    from tfrestore.training import builders
    from tfrestore.training.schema import ConfigError

    term = {"type": "PerceptualLoss", "loss_weight": 1.0,
            "args": {"layers": {"relu2_2": 1.0}, "weights": None}}
    with pytest.raises(ConfigError, match=r"losses\[0\].*layer_weights=\{'relu2_2': 1\.0\}"):
        builders.build_loss([term])
    term["args"] = {"layer_weights": {"relu2_2": 0.5}, "weights": None}
    loss, _ = builders.build_loss([term])
    assert loss.losses[0].layer_weights == {"relu2_2": 0.5}


def test_an_old_keras_file_with_a_layers_dict_loads(tmp_path, rng):
    import json
    import zipfile

    inp = keras.Input((16, 16, 3))
    model = keras.Model(inp, keras.layers.Conv2D(3, 3, padding="same")(inp))
    loss = PerceptualLoss(layer_weights={"relu1_2": 0.5, "relu2_2": 1.0}, weights=None)
    model.compile(optimizer="sgd", loss=loss)
    new, old = tmp_path / "new.keras", tmp_path / "old.keras"
    model.save(new)
    # rewrite the file as get_config wrote it before the split: {name: weight} in `layers`
    with zipfile.ZipFile(new) as src, zipfile.ZipFile(old, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "config.json":
                config = json.loads(data)
                saved = config["compile_config"]["loss"]["config"]
                assert saved.pop("layer_weights") == {"relu1_2": 0.5, "relu2_2": 1.0}
                saved["layers"] = {"relu1_2": 0.5, "relu2_2": 1.0}
                data = json.dumps(config).encode()
            dst.writestr(item, data)
    loaded = keras.saving.load_model(old).loss
    assert isinstance(loaded, PerceptualLoss)
    assert loaded.layer_weights == {"relu1_2": 0.5, "relu2_2": 1.0}
    y, p = _weighted_images(rng)
    np.testing.assert_allclose(np.asarray(loaded(y, p)), np.asarray(loss(y, p)), rtol=1e-6)
