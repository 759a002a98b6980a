"""Smoke runs of every train/<task>.py script with its shipped config, shrunk to 2 steps."""

import csv
import importlib.util
import pathlib

import pytest
import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]

# Everything that makes a run tiny; the rest of each shipped config (losses, degradation, data
# source, optimizer, schedule) is exercised as written.
COMMON = [
    "train.epochs=1",
    "train.steps_per_epoch=2",
    "train.verbose=0",
    "data.batch_size=2",
    "data.crop_size=32",
    "data.val.crop_size=32",
    "data.val.batch_size=2",
    "data.test.max_images=1",
    "data.test.crop_size=48",
    "output.image_summaries=1",
    "schedule.warmup_steps=0",
]
TINY_UNET = ["model.args={channels: 3, filters: 4, levels: 2, blocks_per_level: 1, scales: 1}"]
# Eager steps skip tf.function tracing (most of a 2-step run's time); the denoise demo and the
# resume test (tests/training/test_runner.py) run in graph mode.
EAGER = ["train.run_eagerly=true"]
CASES = {
    "denoise": ["model.args={depth: 3, filters: 8, channels: 3, batch_norm: false}"],
    "super_resolution": ["model.args={scale: 4, depth: 1, filters: 8}"] + EAGER,
    "dehaze": TINY_UNET + EAGER,
    "derain": TINY_UNET + EAGER,
    "lowlight": TINY_UNET + EAGER,
}


def load_script(task):
    path = REPO / "train" / f"{task}.py"
    spec = importlib.util.spec_from_file_location(f"train_script_{task}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("task", list(CASES))
def test_task_script_smoke_run(task, tmp_path, capsys):
    script = load_script(task)
    argv = ["--output-dir", str(tmp_path)]
    for item in COMMON + CASES[task]:
        argv += ["--set", item]
    assert script.main(argv) == 0
    out = capsys.readouterr().out
    assert "held-out images" in out and "psnr_out" in out
    files = {p.name for p in tmp_path.iterdir()}
    assert {
        "config.yaml",
        "run.yaml",
        "history.csv",
        "best.keras",
        "final.keras",
        "report",
    } <= files
    assert "backup" not in files  # the backup is removed when the run completes
    resolved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert resolved["task"] == task and resolved["train"]["steps_per_epoch"] == 2
    with open(tmp_path / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and {"loss", "val_loss", "val_psnr", "val_ssim", "learning_rate"} <= set(
        rows[0]
    )
    report = {p.name for p in (tmp_path / "report").iterdir()}
    assert report == {"metrics.csv", "grid.png", "loss_curve.png"}
    with open(tmp_path / "report" / "metrics.csv") as f:
        table = list(csv.DictReader(f))
    assert [r["image"] for r in table] == ["chelsea", "mean"]
    assert float(table[0]["psnr_in"]) > 0 and float(table[0]["ssim_out"]) <= 1


def test_script_help_and_config_errors(capsys):
    script = load_script("derain")
    with pytest.raises(SystemExit) as exc:
        script.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for option in (
        "--config",
        "--set",
        "--output-dir",
        "--overwrite",
        "--epochs",
        "--print-config",
        "--help-config",
    ):
        assert option in out
    assert script.main(["--set", "data.crop_sz=3", "--print-config"]) == 2
    hint = "unknown config key 'data.crop_sz' (did you mean 'data.crop_size'?)"
    assert hint in capsys.readouterr().err
    # A config written for another task is refused by the script.
    assert (
        script.main(["--config", str(REPO / "train" / "configs" / "dehaze.yaml"), "--print-config"])
        == 2
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "trains 'dehaze' (its key 'task'), not 'derain'" in err
    assert "'tfrestore train --config " in err and "'python train/dehaze.py --config " in err


def test_print_config_shows_the_resolved_demo(capsys):
    script = load_script("denoise")
    assert script.main(["--print-config", "--epochs", "2"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["name"] == "denoise_demo" and cfg["train"]["epochs"] == 2
    assert cfg["data"]["degradation"]["args"]["sigma"] == pytest.approx(25 / 255)


def test_removed_flags_name_their_new_spelling(capsys):
    from tfrestore.training import train

    script = load_script("derain")
    with pytest.raises(SystemExit) as exc:
        script.main(["--fresh"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "--fresh was renamed --overwrite" in err and "\n" not in err
    with pytest.raises(TypeError, match=r"`fresh=` \(renamed `overwrite=`\)"):
        train({"task": "denoise"}, fresh=True)
