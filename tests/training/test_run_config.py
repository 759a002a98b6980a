"""The typed config of a run: its sections follow the schema; a command loads it once."""

import argparse
import dataclasses

import pytest
import yaml

from tfrestore.training import config as tconfig
from tfrestore.training import run_config as rcfg
from tfrestore.training.run_config import RunConfig, load_run_config


def _keys(cls):
    return [f.name for f in dataclasses.fields(cls)]


def test_sections_follow_the_schema():
    schema = tconfig.SCHEMA.fields
    assert _keys(RunConfig) == [*schema, "raw"]
    for name, cls in [
        ("model", rcfg.ModelConfig),
        ("optimizer", rcfg.OptimizerConfig),
        ("schedule", rcfg.ScheduleConfig),
        ("train", rcfg.TrainConfig),
        ("metrics", rcfg.MetricsConfig),
        ("output", rcfg.OutputConfig),
    ]:
        assert _keys(cls) == list(schema[name].fields), name
    data = schema["data"].fields
    assert set(_keys(rcfg.DataConfig)) == set(data)
    assert _keys(rcfg.Degradation) == list(data["degradation"].fields)
    images = {k for part in ("train", "val", "test") for k in data[part].fields}
    assert set(_keys(rcfg.Images)) == images
    assert _keys(rcfg.LossTerm) == list(schema["losses"].item.fields)


def _tiny(**train):
    return {
        "task": "denoise",
        "model": {"type": "DnCNN",
                  "args": {"depth": 2, "filters": 4, "channels": 3, "batch_norm": False}},
        "losses": [{"type": "L1", "fallback": [{"type": "MSE", "loss_weight": 2}]}],
        "data": {"crop_size": 16, "batch_size": 2, "val": {"crop_size": 16, "batch_size": 2}},
        "train": {"epochs": 1, "steps_per_epoch": 1, "verbose": 0, **train},
        "metrics": {"lpips": False},
        "output": {"tensorboard": False, "report": False},
    }


def test_fields_are_typed_and_frozen():
    rc = load_run_config(_tiny(), overrides=["data.degradation.args={sigma: 50/255}"])
    assert rc.name == "denoise" and rc.data.degradation.type == "gaussian_noise"
    assert rc.data.degradation.args == {"sigma": 50 / 255}
    assert rc.losses[0].fallback == (rcfg.LossTerm("MSE", 2.0, {}),)
    assert rc.data.val.crop_size == 16 and rc.data.test.crop_size == 256
    with pytest.raises(dataclasses.FrozenInstanceError):
        rc.train.epochs = 3
    assert load_run_config(rc) is rc  # already resolved: used as it is
    assert load_run_config(rc, overrides=["train.epochs=2"]).train.epochs == 2
    moved = rc.in_run_dir("/tmp/run")
    assert moved.output.dir == moved.raw["output"]["dir"] == "/tmp/run"
    assert rc.output.dir is None and rc.raw["output"]["dir"] is None
    assert tconfig.dump_config(moved.raw) == tconfig.dump_config(
        tconfig.load_config(_tiny(), overrides=["data.degradation.args={sigma: 50/255}",
                                                "output.dir=/tmp/run"])
    )


def test_a_command_loads_its_config_once(tmp_path, monkeypatch):
    from tfrestore.training import script

    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(_tiny()))
    parser = script.add_train_arguments(argparse.ArgumentParser())
    args = parser.parse_args(["-c", str(path), "-o", str(tmp_path / "run"), "--seed", "4"])
    assert script.check_training("denoise", args) is None
    assert isinstance(args.resolved_config, RunConfig)

    def load_again(*a, **k):
        raise AssertionError("the config was loaded a second time")

    monkeypatch.setattr(rcfg, "load_config", load_again)
    assert script.run_training("denoise", args) == 0
    saved = tconfig.load_config(str(tmp_path / "run" / "config.yaml"))
    assert saved["seed"] == 4 and saved["output"]["dir"] == str(tmp_path / "run")


def test_a_model_that_does_not_fit_the_data_is_named_before_any_step(tmp_path):
    from tfrestore.training import ConfigError, train

    cfg = _tiny()
    cfg["model"]["args"]["channels"] = 1
    with pytest.raises(ConfigError, match=r"DnCNN cannot take the data's inputs \(2, 16, 16, 3\)"):
        train(cfg, output_dir=str(tmp_path / "run"))
