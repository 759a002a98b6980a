"""Config schema: defaults, overrides, strict key checking (the key is named), shipped configs."""

import copy
import pathlib
import re

import keras
import pytest

from tfrestore.training import builders
from tfrestore.training.config import (
    SCHEMA,
    ConfigError,
    apply_overrides,
    config_diff,
    describe_config,
    dump_config,
    load_config,
)

REPO = pathlib.Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / "train" / "configs").glob("*.yaml"))


def minimal(**extra):
    cfg = {"task": "denoise", "model": {"type": "DnCNN"}, "losses": [{"type": "L1"}]}
    cfg.update(extra)
    return cfg


def test_defaults_are_filled_in():
    cfg = load_config(minimal())
    assert cfg["data"]["crop_size"] == 64 and cfg["data"]["batch_size"] == 8
    assert cfg["losses"] == [{"type": "L1", "loss_weight": 1.0, "args": {}, "fallback": []}]
    assert cfg["train"]["strategy"] == "auto" and cfg["metrics"]["monitor"] == "val_psnr"
    # Task default degradation, with fractions already evaluated.
    assert cfg["data"]["degradation"] == {
        "type": "gaussian_noise",
        "args": {"sigma": pytest.approx(25 / 255)},
    }
    assert cfg["name"] == "denoise"


@pytest.mark.parametrize(
    "raw,key",
    [
        (minimal(epochs=3), "'epochs'"),
        (minimal(data={"crop_sise": 32}), "'data.crop_sise'"),
        (minimal(data={"val": {"crops": 3}}), "'data.val.crops'"),
        (
            minimal(data={"degradation": {"type": "gaussian_noise", "sigma": 0.1}}),
            "'data.degradation.sigma'",
        ),
        (minimal(losses=[{"type": "L1"}, {"type": "MSE", "wieght": 2}]), "'losses[1].wieght'"),
        (
            minimal(losses=[{"type": "L1", "fallback": [{"type": "MSE", "fallback": []}]}]),
            "'losses[0].fallback[0].fallback'",
        ),
        (minimal(model={"type": "DnCNN", "depth": 3}), "'model.depth'"),
        (minimal(train={"epoch": 2}), "'train.epoch'"),
        (minimal(optimizer={"lr": 0.1}), "'optimizer.lr'"),
        (minimal(output={"tensorbord": False}), "'output.tensorbord'"),
    ],
)
def test_unknown_keys_are_rejected_with_the_key_named(raw, key):
    with pytest.raises(ConfigError, match=re.escape(f"unknown config key {key}")):
        load_config(raw)


def test_unknown_key_suggests_the_closest_one():
    with pytest.raises(ConfigError, match=r"did you mean 'data\.batch_size'"):
        load_config(minimal(data={"batchsize": 4}))


@pytest.mark.parametrize(
    "raw,match",
    [
        (
            {"model": {"type": "DnCNN"}, "losses": [{"type": "L1"}]},
            "missing required config key 'task'",
        ),
        (minimal(task="deblur"), "'task' must be one of"),
        (minimal(losses=[]), "'losses' needs at least 1"),
        (minimal(data={"crop_size": "big"}), "'data.crop_size' must be an integer"),
        (minimal(data={"crop_size": 0}), "'data.crop_size' must be > 0"),
        (minimal(train={"jit_compile": "yes"}), "'train.jit_compile' must be auto, true or false"),
        (minimal(data=[1, 2]), "'data' must be a mapping"),
        (minimal(model={"type": "DnCNN", "args": [1]}), "'model.args' must be a mapping"),
    ],
)
def test_invalid_values_name_the_key(raw, match):
    with pytest.raises(ConfigError, match=match):
        load_config(raw)


def test_yaml_float_strings_and_fractions():
    cfg = load_config(
        minimal(
            optimizer={"learning_rate": "1e-3"},
            data={"degradation": {"type": "gaussian_noise", "args": {"sigma": [0, "75/255"]}}},
        )
    )
    assert cfg["optimizer"]["learning_rate"] == pytest.approx(1e-3)
    assert cfg["data"]["degradation"]["args"]["sigma"] == [0, pytest.approx(75 / 255)]


def test_overrides_and_task_check(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(dump_config(minimal()))
    cfg = load_config(
        path,
        overrides=[
            "train.epochs=2",
            "losses[0].loss_weight=0.5",
            "losses[1].type=MSE",
            "model.args={depth: 3}",
        ],
    )
    assert cfg["train"]["epochs"] == 2 and cfg["name"] == "c"
    assert [(t["type"], t["loss_weight"]) for t in cfg["losses"]] == [("L1", 0.5), ("MSE", 1.0)]
    assert cfg["model"]["args"] == {"depth": 3}
    with pytest.raises(ConfigError, match="unknown config key 'train.epocs'"):
        load_config(path, overrides=["train.epocs=2"])
    with pytest.raises(ConfigError, match="must look like"):
        apply_overrides({}, ["train.epochs"])
    with pytest.raises(ConfigError, match="'task' is 'denoise' but task='dehaze' was asked for"):
        load_config(path, task="dehaze")


def test_round_trip_and_diff(tmp_path):
    cfg = load_config(minimal())
    path = tmp_path / "resolved.yaml"
    dump_config(cfg, path)
    again = load_config(path)
    again["name"] = cfg["name"]
    assert config_diff(cfg, again) == []
    again["data"]["crop_size"] = 32
    assert config_diff(cfg, again) == ["data.crop_size"]


def test_describe_lists_every_section():
    text = describe_config()
    for key in SCHEMA.fields:
        assert f"{key}:" in text
    assert "steps_per_epoch: 100" in text


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_configs_validate_against_their_targets(path):
    import tfrestore.models as models
    from tfrestore.data import build_degradation

    cfg = load_config(path)
    builders.check_arguments(
        getattr(models, cfg["model"]["type"]),
        cfg["model"]["args"],
        "model.args",
        cfg["model"]["type"],
    )
    losses = builders.registered_losses()
    for i, term in enumerate(cfg["losses"]):
        for t in [term] + term["fallback"]:
            builders.check_arguments(losses[t["type"]], t["args"], f"losses[{i}].args", t["type"])
    build_degradation(cfg["data"]["degradation"])
    builders.build_schedule(
        cfg["schedule"], cfg["optimizer"]["learning_rate"],
        cfg["train"]["epochs"] * cfg["train"]["steps_per_epoch"],
    )
    init = builders.resolve_init(cfg["model"]["init"])
    if init is not None and init.kind == "preset":
        models.presets.get_preset(init.location)  # a known preset (no weights needed)
    assert path.stem in {
        "denoise_demo",
        "denoise",
        "denoise_d2sm",
        "denoise_ffdnet_l1",
        "denoise_ffdnet_pdl",
        "denoise_ffdnet_d2sm",
        "super_resolution",
        "dehaze",
        "derain",
        "lowlight",
    }


def test_demo_config_matches_the_readme_promises():
    cfg = load_config(REPO / "train" / "configs" / "denoise_demo.yaml")
    assert cfg["task"] == "denoise"
    assert cfg["data"]["degradation"]["args"]["sigma"] == pytest.approx(25 / 255)
    assert 64 <= cfg["data"]["crop_size"] <= 96
    types = [(t["type"], t["loss_weight"]) for t in cfg["losses"]]
    assert types == [("L1", 1.0), ("PerceptualLoss", 0.01)]
    assert [f["type"] for f in cfg["losses"][1]["fallback"]] == ["SSIMLoss"]
    assert cfg["data"]["train"]["source"] == "default"


# ----------------------------------------------------------------------------- builders


def test_model_args_are_checked_against_the_builder():
    with pytest.raises(
        ConfigError,
        match=r"'model\.args\.filter' is not an argument of DnCNN \(did you mean 'filters'",
    ):
        builders.build_model({"type": "DnCNN", "args": {"filter": 8}})
    with pytest.raises(ConfigError, match="unknown model 'DnCnn'.*did you mean 'DnCNN'"):
        builders.build_model({"type": "DnCnn", "args": {}})
    model = builders.build_model(
        {"type": "DnCNN", "args": {"depth": 3, "filters": 4, "channels": 3}}
    )
    assert isinstance(model, keras.Model)


def test_loss_terms_build_a_weighted_sum_and_check_args():
    loss, used = builders.build_loss(
        load_config(
            minimal(
                losses=[
                    {"type": "L1"},
                    {"type": "Charbonnier", "loss_weight": 0.5, "args": {"eps": 0.01}},
                ]
            )
        )["losses"]
    )
    assert repr(loss) == "WeightedSum(1 * L1 + 0.5 * Charbonnier)"
    assert loss.losses[1].eps == pytest.approx(0.01)
    assert used[1] == {"type": "Charbonnier", "loss_weight": 0.5, "args": {"eps": 0.01}}
    cfg = load_config(minimal(losses=[{"type": "Charbonnier", "args": {"epsilon": 1}}]))
    with pytest.raises(
        ConfigError, match=r"'losses\[0\]\.args\.epsilon' is not an argument of Charbonnier"
    ):
        builders.build_loss(cfg["losses"])
    cfg = load_config(minimal(losses=[{"type": "L2"}]))
    with pytest.raises(ConfigError, match=r"'losses\[0\]\.type': unknown loss 'L2'"):
        builders.build_loss(cfg["losses"])


@keras.saving.register_keras_serializable(package="tfrestore")
class _NeedsWeightsLoss(keras.losses.Loss):
    """Stand-in for a loss whose pretrained weights are missing (no network access needed)."""

    def __init__(self, **kwargs):
        from tfrestore.utils.weights import WeightsNotFoundError

        raise WeightsNotFoundError("put vgg.npz into $TFRESTORE_WEIGHTS_DIR. More text.")


def test_missing_weights_use_the_fallback_or_fail_without_one(capsys):
    cfg = load_config(
        minimal(
            losses=[
                {"type": "L1"},
                {
                    "type": "_NeedsWeightsLoss",
                    "loss_weight": 0.05,
                    "fallback": [{"type": "SSIMLoss", "loss_weight": 0.1}],
                },
            ]
        )
    )
    loss, used = builders.build_loss(cfg["losses"])
    assert repr(loss) == "WeightedSum(1 * L1 + 0.1 * SSIMLoss)"
    assert used[1]["fallback_for"] == "_NeedsWeightsLoss"
    assert "put vgg.npz into $TFRESTORE_WEIGHTS_DIR." in capsys.readouterr().out
    from tfrestore.utils.weights import WeightsNotFoundError

    cfg = load_config(minimal(losses=[{"type": "_NeedsWeightsLoss"}]))
    with pytest.raises(WeightsNotFoundError):
        builders.build_loss(cfg["losses"])


def test_optimizer_and_schedules():
    opt = builders.build_optimizer(
        {
            "type": "AdamW",
            "learning_rate": 1e-3,
            "clipnorm": 1.0,
            "global_clipnorm": None,
            "args": {"weight_decay": 0.01},
        },
        1e-3,
    )
    assert isinstance(opt, keras.optimizers.AdamW) and opt.clipnorm == 1.0
    with pytest.raises(ConfigError, match="unknown optimizer 'Adma'.*choose from .*Adam, AdamW"):
        builders.build_optimizer({"type": "Adma", "args": {}}, 1e-3)
    with pytest.raises(ConfigError, match=r"'optimizer\.args\.lr'"):
        builders.build_optimizer({"type": "Adam", "args": {"lr": 1}}, 1e-3)
    cos = builders.build_schedule({"type": "cosine", "warmup_steps": 10, "args": {}}, 1e-2, 110)
    assert float(cos(5)) == pytest.approx(5e-3, rel=1e-3)  # linear warm-up from 0 to the peak
    assert float(cos(10)) == pytest.approx(1e-2, rel=1e-4)
    assert float(cos(110)) == pytest.approx(1e-4, rel=1e-3)  # ends at 1 % of the peak, not 0
    const = builders.build_schedule({"type": "constant", "warmup_steps": 4, "args": {}}, 1.0, 100)
    assert [round(float(const(s)), 3) for s in (0, 3, 4, 50)] == [0.25, 1.0, 1.0, 1.0]
    with pytest.raises(
        ConfigError, match=r"'schedule\.args\.decay' is not an argument of the 'cosine'"
    ):
        builders.build_schedule(
            {"type": "cosine", "warmup_steps": 0, "args": {"decay": 1}}, 1.0, 10
        )


@pytest.mark.parametrize(
    "override,match",
    [
        ("losses[0].loss_weight=.nan", r"'losses\[0\].loss_weight' must be a finite number.*nan"),
        ("losses[0].loss_weight=.inf", r"'losses\[0\].loss_weight' must be a finite number.*inf"),
        ("optimizer.learning_rate=.inf", r"'optimizer.learning_rate' must be a finite number"),
        ("seed=-1", r"'seed' must be from 0 to 4294967295; got -1"),
        (f"seed={2**64}", rf"'seed' must be from 0 to 4294967295; got {2**64}"),
    ],
)
def test_non_finite_weights_and_out_of_range_seeds_name_the_key(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config(minimal(), overrides=[override])


def test_a_nan_loss_weight_in_args_names_the_term():
    cfg = load_config(minimal(losses=[{"type": "L1", "args": {"loss_weight": float("nan")}}]))
    with pytest.raises(ConfigError, match=r"losses\[0\].*`loss_weight` must be a finite number"):
        builders.build_loss(cfg["losses"])


def test_batch_size_zero_on_the_train_command_is_a_one_line_error(tiny_config, tmp_path, capsys):
    import yaml

    from tfrestore.cli import main

    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config()))
    code = main(["train", "denoise", "--config", str(cfg), "--batch-size", "0",
                 "--output-dir", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "data.batch_size" in err, err


@pytest.mark.parametrize(
    "old, new",
    [
        ("data.crop=32", "data.crop_size"),
        ("data.val.crop=32", "data.val.crop_size"),
        ("data.test.max_size=32", "data.test.crop_size"),
        ("losses[0].weight=0.5", "losses[0].loss_weight"),
    ],
)
def test_a_renamed_config_key_names_its_new_spelling(old, new):
    key = old.split("=")[0]
    with pytest.raises(ConfigError, match=rf"'{re.escape(key)}' was renamed '{re.escape(new)}'"):
        load_config(minimal(), overrides=[old])


def test_a_run_directory_written_with_the_old_keys_still_loads(tmp_path):
    from tfrestore.training.config import load_saved_config

    cfg = load_config(minimal())
    old = copy.deepcopy(cfg)
    old["data"]["crop"] = old["data"].pop("crop_size")
    old["data"]["val"]["crop"] = old["data"]["val"].pop("crop_size")
    old["data"]["test"]["max_size"] = old["data"]["test"].pop("crop_size")
    for term in old["losses"]:
        term["weight"] = term.pop("loss_weight")
    old["data"]["shuffle_buffer"] = 256
    path = tmp_path / "config.yaml"
    dump_config(old, str(path))
    assert load_saved_config(str(path)) == cfg


def test_a_key_that_never_had_an_effect_is_refused_not_ignored():
    with pytest.raises(ConfigError, match=r"'data.shuffle_buffer' was removed: .*delete it"):
        load_config(minimal(data={"shuffle_buffer": 64}))
