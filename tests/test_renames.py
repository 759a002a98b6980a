"""Issue 20 item 3: one meaning per argument name. Each renamed argument refuses its old
spelling with an error naming the new one; configs saved under the old name still load."""

import numpy as np
import pytest


# 1. FFDNet(noise_level=, noise_level_input=) -> sigma=, sigma_input=


@pytest.mark.parametrize(
    "old, new, value", [("noise_level", "sigma", 0.1), ("noise_level_input", "sigma_input", "map")]
)
def test_ffdnet_old_noise_keywords_name_sigma(old, new, value):
    from tfrestore.models import FFDNet

    with pytest.raises(TypeError, match=rf"FFDNet: `{old}` was renamed `{new}`"):
        FFDNet(channels=1, depth=2, filters=4, **{old: value})


def test_ffdnet_sigma_keywords_and_saved_model_load(tmp_path):
    import keras

    from tfrestore.models import FFDNet

    blind = FFDNet(channels=1, depth=2, filters=4, sigma=0.1)
    x = np.random.default_rng(0).uniform(size=(1, 6, 6, 1)).astype("float32")
    path = tmp_path / "blind.keras"
    blind.save(path)
    np.testing.assert_allclose(keras.models.load_model(path)(x), blind(x), atol=1e-6)
    mapped = FFDNet(channels=1, depth=2, filters=4, sigma_input="map")
    assert [t.name for t in mapped.inputs] == ["noisy", "noise_level"]


def test_shipped_ffdnet_configs_use_sigma_input():
    import glob
    import os

    import yaml

    here = os.path.join(os.path.dirname(__file__), "..", "train", "configs")
    for path in glob.glob(os.path.join(here, "*.yaml")):
        text = open(path).read()
        assert "noise_level_input" not in text, path
        assert "noise_level:" not in text, path
        yaml.safe_load(text)


# 2. loss_terms / gradient_ratios(weights=) -> loss_weights=


def test_gradient_ratio_weights_renamed_loss_weights():
    from tfrestore.losses import L1, MSE, gradient_ratios, loss_terms

    y = np.zeros((1, 4, 4, 1), "float32")
    with pytest.raises(TypeError, match=r"loss_terms: `weights` was renamed `loss_weights`"):
        loss_terms([L1(), MSE()], weights=[1.0, 0.5])
    with pytest.raises(TypeError, match=r"gradient_ratios: `weights` was renamed `loss_weights`"):
        gradient_ratios([L1(), MSE()], y, y + 0.25, weights=[1.0, 0.5])
    terms = loss_terms([L1(), MSE()], loss_weights=[1.0, 0.5])
    assert [w for _, _, w in terms] == [1.0, 0.5]


# 3. tfrestore viz --set/--noise/--size -> --images/--sigma/--crop-size


@pytest.mark.parametrize(
    "old, new, value",
    [
        ("--set", "--images", "clean=gt/"),
        ("--noise", "--sigma", "0.1"),
        ("--size", "--crop-size", "64"),
    ],
)
def test_viz_old_flags_are_one_error_line_naming_the_new(old, new, value, capsys):
    from tfrestore.cli import main

    argv = ["viz", old, value] + ([] if old == "--set" else ["--images", "clean=gt/"])
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert f"{old} was renamed {new}" in err


def test_viz_new_flags_parse():
    from tfrestore.cli import build_parser

    args = build_parser().parse_args(
        ["viz", "--images", "clean=gt/", "--sigma", "0.1", "--sigma", "0.2", "--crop-size", "64"]
    )
    assert (args.images, args.sigma, args.crop_size) == (["clean=gt/"], [0.1, 0.2], 64)


# 4. DiffLoss / DiffusionSchedule(schedule=) -> beta_schedule=

_NANO = dict(image_size=16, num_channels=32, num_res_blocks=1, channel_mult=[1],
             attention_resolutions=[16], num_head_channels=16)


def test_diffusion_schedule_renamed_beta_schedule():
    from tfrestore.diffusion import DiffusionSchedule

    with pytest.raises(TypeError, match=r"DiffusionSchedule: `schedule` was renamed `beta_sched"):
        DiffusionSchedule(1000, schedule="cosine")
    s = DiffusionSchedule(1000, beta_schedule="cosine")
    assert s.beta_schedule == "cosine" and "beta_schedule='cosine'" in repr(s)


def test_diffloss_beta_schedule_and_old_saved_config_loads():
    import keras

    from tfrestore.losses import DiffLoss

    with pytest.raises(TypeError, match=r"DiffLoss: `schedule` was renamed `beta_schedule`"):
        DiffLoss(unet=_NANO, weights=None, schedule="cosine")
    loss = DiffLoss(unet=_NANO, weights=None, beta_schedule="cosine")
    config = loss.get_config()
    assert config["beta_schedule"] == "cosine" and "schedule" not in config
    old = dict(config)
    old["schedule"] = old.pop("beta_schedule")  # a config saved before the rename
    restored = DiffLoss.from_config(old)
    assert restored.beta_schedule == "cosine"
    np.testing.assert_allclose(restored.schedule.betas, loss.schedule.betas)
    again = keras.losses.deserialize(keras.losses.serialize(loss))
    assert again.beta_schedule == "cosine"


# 5. the house order of feature arguments: layers, backbone, weights, preprocessing,
#    feature_extractor, then the object's own


def test_feature_argument_order():
    import inspect

    from tfrestore.losses import PerceptualLoss
    from tfrestore.metrics.semantic import semantic_features
    from tfrestore.viz.feature_space import sample_features

    names = list(inspect.signature(PerceptualLoss.__init__).parameters)[1:]
    assert names[:8] == ["layers", "backbone", "weights", "preprocessing", "feature_extractor",
                         "layer_weights", "criterion", "channel_reduction"]
    assert names[-2:] == ["name", "kwargs"]
    assert list(inspect.signature(semantic_features).parameters)[:4] == [
        "images", "layers", "backbone", "weights"]
    params = inspect.signature(sample_features).parameters
    assert list(params)[1:3] == ["layers", "backbone"]
    assert params["layers"].kind is inspect.Parameter.KEYWORD_ONLY


def test_perceptual_loss_config_round_trips_after_the_reorder():
    from tfrestore.losses import PerceptualLoss

    # house order: layers, backbone, weights, preprocessing, feature_extractor,
    # layer_weights, then the loss's own
    loss = PerceptualLoss(["relu1_2"], "vgg16", None, None, None, {"relu1_2": 0.5}, "mse", "sum")
    config = loss.get_config()
    assert (config["criterion"], config["channel_reduction"]) == ("mse", "sum")
    again = PerceptualLoss.from_config(config)
    assert (again.criterion, again.channel_reduction) == ("mse", "sum")
    assert again.layer_weights == {"relu1_2": 0.5}


# 6. get_lpips_network(dtype="float32"): the metric's network runs float32 under mixed
#    precision; None is the global policy


def test_lpips_metric_network_is_float32_under_mixed_precision():
    import keras

    from tfrestore.metrics.lpips import get_lpips_network

    lins = [[1.0] * c for c in (64, 192, 384, 256, 256)]
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        metric_net = get_lpips_network("alexnet", None, lins)
        global_net = get_lpips_network("alexnet", None, lins, None)
    finally:
        keras.config.set_dtype_policy(previous)
    assert metric_net.source.network().dtype_policy == "float32"
    assert global_net.source.network().dtype_policy == "mixed_float16"


# 7. one preprocessing vocabulary: cascade's identity is "none" (as in the features)


def test_task_preprocess_none_and_the_old_identity_spelling():
    import keras

    from tfrestore.models import PREPROCESS_MODES
    from tfrestore.models.cascade import TaskPreprocess, _preprocessing_layer

    assert {"caffe", "torch", "none"} <= set(PREPROCESS_MODES)
    assert "identity" not in PREPROCESS_MODES
    x = np.random.default_rng(0).uniform(size=(1, 2, 2, 3)).astype("float32")
    np.testing.assert_array_equal(TaskPreprocess("none")(x), x)
    assert _preprocessing_layer(None).mode == "none"
    with pytest.raises(ValueError, match=r"TaskPreprocess: `mode='identity'` was renamed 'none'"):
        TaskPreprocess("identity")
    with pytest.raises(ValueError, match=r"`preprocessing='identity'` was renamed 'none'"):
        _preprocessing_layer("identity")
    with pytest.raises(ValueError, match=r"TaskPreprocess: `mode` must be one of"):
        TaskPreprocess("bgr")
    with pytest.raises(ValueError, match=r"^`preprocessing` must be one of"):
        _preprocessing_layer("bgr")
    old = TaskPreprocess("none").get_config()
    old["mode"] = "identity"  # a layer saved before the rename
    assert TaskPreprocess.from_config(old).mode == "none"
    layer = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(TaskPreprocess("torch")))
    assert layer.mode == "torch"


def test_old_cascade_config_with_identity_loads():
    import keras

    from tfrestore.models import DnCNN, cascade

    clf = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.GlobalAveragePooling2D(),
                            keras.layers.Dense(2)])
    model = cascade(DnCNN(channels=3, depth=2, filters=4), clf, preprocessing=None)
    config = keras.saving.serialize_keras_object(model)
    text = __import__("json").dumps(config)
    assert '"mode": "none"' in text
    old = __import__("json").loads(text.replace('"mode": "none"', '"mode": "identity"'))
    again = keras.saving.deserialize_keras_object(old)
    x = np.random.default_rng(0).uniform(size=(1, 8, 8, 3)).astype("float32")
    assert [tuple(o.shape) for o in again(x)] == [tuple(o.shape) for o in model(x)]


def test_ffdnet_preset_builds_and_saves_after_the_rename(tmp_path):
    import keras

    from tfrestore.models import from_preset
    from tfrestore.utils.weights import WeightsNotFoundError

    try:
        model = from_preset("ffdnet_gray")
    except WeightsNotFoundError as exc:
        pytest.skip(f"ffdnet_gray weights not available: {exc}")
    assert [t.name for t in model.inputs] == ["noisy", "noise_level"]
    x = np.random.default_rng(0).uniform(size=(1, 8, 8, 1)).astype("float32")
    s = np.full((1, 1), 25 / 255, "float32")
    path = tmp_path / "preset.keras"
    model.save(path)
    np.testing.assert_allclose(keras.models.load_model(path)([x, s]), model([x, s]), atol=1e-5)
