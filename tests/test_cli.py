"""The ``tfrestore`` command line: --help everywhere, restore (tiled), eval, delegation."""

import csv
import importlib.util
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest

from tfrestore import cli

REPO = pathlib.Path(__file__).resolve().parents[1]


def run_help(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 0
    return capsys.readouterr().out


def test_top_level_help_lists_every_command(capsys):
    out = run_help(["--help"], capsys)
    for command in ("train", "eval", "restore", "convert", "bench", "viz"):
        assert command in out


@pytest.mark.parametrize(
    "command,options",
    [
        (
            "train",
            [
                "task",
                "--config",
                "--set",
                "--output-dir",
                "--fresh",
                "--overwrite",
                "--epochs",
                "--steps-per-epoch",
                "--batch-size",
                "--crop",
                "--seed",
                "--mixed-precision",
                "--no-report",
                "--verbose",
                "--print-config",
                "--help-config",
                "super_resolution",
                "lowlight",
            ],
        ),
        (
            "eval",
            [
                "--model",
                "--data",
                "--lq",
                "--degradation",
                "--scale",
                "--seed",
                "--max-images",
                "--color",
                "--crop-border",
                "--lpips",
                "--csv",
                "--save-dir",
                "--quiet",
                "--tile",
                "--overlap",
                "--receptive-field",
                "--tile-batch",
                "--sigma",
            ],
        ),
        (
            "restore",
            [
                "input",
                "output",
                "--model",
                "--tile",
                "--overlap",
                "--receptive-field",
                "--tile-batch",
                "--sigma",
            ],
        ),
    ],
)
def test_command_help_explains_every_option(command, options, capsys):
    out = run_help([command, "--help"], capsys)
    for option in options:
        assert option in out, option
    # Every option has a help text (argparse prints the option alone on a line otherwise).
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    for action in sub._actions:
        assert action.help, f"{command}: {action.option_strings or action.dest} has no help"


def test_convert_help_is_delegated(capsys):
    out = run_help(["convert", "--help"], capsys)
    assert "adm" in out


def test_bench_help_is_delegated(capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    monkeypatch.syspath_prepend(str(REPO))
    assert cli.main(["bench", "--help"]) == 0
    assert "python -m bench" in capsys.readouterr().out


@pytest.mark.skipif(
    importlib.util.find_spec("tfrestore.viz") is None,
    reason="tfrestore.viz is not in this checkout yet",
)
def test_viz_help_is_delegated(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["viz", "--help"])
    assert exc.value.code == 0
    assert "usage" in capsys.readouterr().out.lower()


def test_missing_delegate_gives_a_clear_error(capsys, monkeypatch):
    monkeypatch.setitem(cli._DELEGATED, "viz", ("x", [("tfrestore._no_such_module", "main")]))
    assert cli.main(["viz", "--help"]) == 2
    assert "'tfrestore viz' is not available" in capsys.readouterr().err


def test_python_dash_m_entry_point():
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    res = subprocess.run(
        [sys.executable, "-m", "tfrestore", "restore", "--help"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert "--overlap" in res.stdout


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    from tfrestore.models import DnCNN

    keras.utils.set_random_seed(0)
    model = DnCNN(depth=3, filters=4, channels=3, batch_norm=False)
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    model.save(path)
    return path, model


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    from tfrestore.data import write_default_images

    return write_default_images(
        tmp_path_factory.mktemp("images"), ["chelsea", "coffee"], max_size=40
    )


def test_restore_tiled_equals_whole_image(saved_model, image_dir, tmp_path, capsys):
    from tfrestore.data import read_image

    path, model = saved_model
    src = image_dir / "chelsea.png"
    out_whole, out_tiled = tmp_path / "whole.png", tmp_path / "tiled.png"
    assert cli.main(["restore", str(src), str(out_whole), "--model", str(path)]) == 0
    assert (
        cli.main(
            [
                "restore",
                str(src),
                str(out_tiled),
                "--model",
                str(path),
                "--tile",
                "16",
                "--overlap",
                "8",
                "--receptive-field",
                "auto",
            ]
        )
        == 0
    )
    assert "receptive field: 7 px" in capsys.readouterr().out
    whole, tiled = read_image(out_whole, dtype="uint8"), read_image(out_tiled, dtype="uint8")
    assert whole.shape == read_image(src).shape
    np.testing.assert_array_equal(whole, tiled)
    expected = np.asarray(model(read_image(src)[None]))[0]
    assert np.abs(whole / 255.0 - np.clip(expected, 0, 1)).max() <= 0.5 / 255 + 1e-6


def test_eval_table_and_csv(saved_model, image_dir, tmp_path, capsys):
    path, _ = saved_model
    csv_path = tmp_path / "metrics.csv"
    rc = cli.main(
        [
            "eval",
            "--model",
            str(path),
            "--data",
            str(image_dir),
            "--degradation",
            "{type: gaussian_noise, sigma: 25/255}",
            "--csv",
            str(csv_path),
            "--lpips",
            "off",
            "--save-dir",
            str(tmp_path / "restored"),
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "psnr_in" in out and "ssim_out" in out and "mean" in out
    assert "2/2" in out and "image" in out  # progress bar over the images
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    assert [r["image"] for r in rows] == ["chelsea", "coffee", "mean"]
    noisy_psnr = float(rows[0]["psnr_in"])
    assert 19.0 < noisy_psnr < 21.5  # sigma 25/255 on [0, 1] images: about 20.2 dB before clipping
    mean = np.mean([float(r["psnr_out"]) for r in rows[:2]])
    assert float(rows[2]["psnr_out"]) == pytest.approx(mean, abs=1e-5)
    assert sorted(os.listdir(tmp_path / "restored")) == ["chelsea.png", "coffee.png"]


def test_eval_needs_a_degradation_source(saved_model, image_dir, capsys):
    path, _ = saved_model
    assert cli.main(["eval", "--model", str(path), "--data", str(image_dir)]) == 2
    assert "say how to degrade" in capsys.readouterr().err


def test_eval_with_real_pairs(saved_model, image_dir, tmp_path, capsys):
    path, _ = saved_model
    rc = cli.main(
        [
            "eval",
            "--model",
            str(path),
            "--data",
            str(image_dir),
            "--lq",
            str(image_dir),
            "--lpips",
            "off",
            "--quiet",
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "real pairs" in out
    assert "2/2" not in out  # --quiet: no progress bar
    mean_line = [line for line in out.splitlines() if line.startswith("mean")][0]
    assert "inf" in mean_line  # LQ == GT: the input PSNR is infinite


def test_restore_reports_missing_model(tmp_path, capsys):
    assert cli.main(["restore", "a.png", "b.png", "--model", str(tmp_path / "none.keras")]) == 2
    assert "not found" in capsys.readouterr().err


def test_train_command_dispatches_to_the_runner(capsys):
    config = str(REPO / "train" / "configs" / "dehaze.yaml")
    assert cli.main(["train", "dehaze", "--config", config, "--print-config", "--crop", "96"]) == 0
    out = capsys.readouterr().out
    assert "task: dehaze" in out and "crop: 96" in out
    assert cli.main(["train", "derain", "--config", config, "--print-config"]) == 2
    assert "this entry point trains 'derain'" in capsys.readouterr().err
    assert cli.main(["train", "dehaze"]) == 2
    assert "--config is required" in capsys.readouterr().err
    assert cli.main(["train", "dehaze", "--help-config"]) == 0
    assert "steps_per_epoch" in capsys.readouterr().out
