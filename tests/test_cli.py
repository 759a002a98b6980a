"""The ``tfrestore`` command line: fast plain --help everywhere, one-line errors, restore (tiled),
eval, configs."""

import argparse
import csv
import os
import pathlib
import subprocess
import sys
import time

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
    for command in ("train", "eval", "restore", "configs", "convert", "viz"):
        assert f"    {command} " in out
    assert "bench" not in out  # the benchmarks are run from a source checkout: python -m bench


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
                "--overwrite",
                "--epochs",
                "--steps-per-epoch",
                "--batch-size",
                "--crop-size",
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


def all_parsers(parser=None):
    """(prog, parser) of the top-level parser and of every (nested) subcommand."""
    parser = parser or cli.build_parser()
    yield parser.prog, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from all_parsers(sub)


def test_every_command_has_plain_help_for_every_option():
    progs = []
    for prog, parser in all_parsers():
        progs.append(prog)
        text = parser.format_help()
        # Written for a terminal: no reST markup from docstrings.
        for markup in ("``", "::", ":func:", ":class:", ":mod:"):
            assert markup not in text, f"{prog} --help shows {markup!r}"
        for action in parser._actions:
            assert action.help, f"{prog}: {action.option_strings or action.dest} has no help"
    assert {"tfrestore viz", "tfrestore convert adm", "tfrestore configs show"} <= set(progs)


HELP_COMMANDS = ["", "train", "eval", "restore", "configs", "convert", "convert adm", "viz"]


@pytest.mark.parametrize("command", HELP_COMMANDS)
def test_help_is_fast_and_imports_no_tensorflow(command):
    """`tfrestore [command] --help` builds the whole parser without TensorFlow or Keras (the
    import log lists every module imported) and answers within 1.5 s of wall time."""
    argv = [sys.executable, "-X", "importtime", "-m", "tfrestore", *command.split(), "--help"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    best = float("inf")
    for _ in range(2):  # the better of two, against a momentarily loaded machine
        start = time.perf_counter()
        res = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
        best = min(best, time.perf_counter() - start)
        assert res.returncode == 0, res.stderr[-2000:]
        if best < 1.5:
            break
    assert res.stdout.startswith(f"usage: tfrestore {command}".rstrip())
    imported = {
        line.split("|")[-1].strip().split(".")[0]
        for line in res.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "tfrestore" in imported
    assert not imported & {"tensorflow", "keras", "tensorflow_datasets"}, sorted(imported)
    assert best < 1.5, f"tfrestore {command} --help took {best:.2f} s"


# A mistake costs what --help costs: checked before TensorFlow is imported (issue 21, item 4).
EARLY_ERRORS = [
    ("train denoise --config no_such.yaml", "config file not found"),
    ("train denoise --config denoise_demo --set data.crop_sise=3", "'data.crop_sise'"),
    ("train denoise --config denoise_demo --set foo", "override 'foo'"),
    ("train denoise --config denoise_demo --set train.epochs=abc", "must be an integer"),
    ("restore missing.png o.png --model m.keras", "'missing.png' does not exist"),
    ("restore in.png o.png --model nope.keras", "not found: nope.keras"),
    ("restore in.png o.png --model ffdnet_colour", "preset 'ffdnet_color'"),
    ("restore in.png o.png --model m.keras --tile 0", "--tile"),
    ("restore in.png o.png --model m.keras --tile x", "--tile"),
    ("restore in.png o.png --model m.keras --sigma 25", "--sigma 25/255"),
    ("restore in.png o.png --model m.keras --max-memory lots", "--max-memory"),
    ("restore in.png out.png --model m.keras", "already exists"),
    ("eval --model nope.keras --data default", "not found: nope.keras"),
    ("eval --model m.keras --data /no/such/images", "/no/such/images"),
    ("eval --model m.keras --data default --sigma x", "--sigma"),
    ("convert torch missing.pth o.keras", "'missing.pth' does not exist"),
    ("convert torch ck.pth o.pt", ".keras or .weights.h5"),
    ("convert adm missing.pt o.npz", "'missing.pt' does not exist"),
]


@pytest.fixture(scope="module")
def early_dir(tmp_path_factory):
    from PIL import Image

    folder = tmp_path_factory.mktemp("early")
    for name in ("in.png", "out.png"):
        Image.new("RGB", (8, 8)).save(folder / name)
    for name in ("m.keras", "ck.pth"):
        (folder / name).write_bytes(b"")  # only their existence is checked before TensorFlow
    return folder


@pytest.mark.parametrize("command,needle", EARLY_ERRORS)
def test_mistakes_fail_fast_without_tensorflow(command, needle, early_dir):
    """Each mistake in a fresh process: exit code 2, one `error:` line, no TensorFlow or Keras
    imported (the import log lists every module) and an answer within 1.5 s of wall time."""
    argv = [sys.executable, "-X", "importtime", "-m", "tfrestore", *command.split()]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    best = float("inf")
    for _ in range(2):  # the better of two, against a momentarily loaded machine
        start = time.perf_counter()
        res = subprocess.run(
            argv, cwd=early_dir, env=env, capture_output=True, text=True, timeout=120
        )
        best = min(best, time.perf_counter() - start)
        if best < 1.5:
            break
    lines = res.stderr.splitlines()
    imported = {
        line.split("|")[-1].strip().split(".")[0]
        for line in lines
        if line.startswith("import time:")
    }
    other = [line for line in lines if not line.startswith("import time:")]
    assert_one_line_error(res.returncode, "\n".join(other), needle)
    assert not imported & {"tensorflow", "keras"}, sorted(imported)
    assert best < 1.5, f"tfrestore {command} took {best:.2f} s"


def test_model_preset_names_match_the_presets():
    from tfrestore.models.presets import PRESETS

    assert set(cli.MODEL_PRESET_NAMES) == set(PRESETS)


def test_viz_help_names_the_command(capsys):
    assert run_help(["viz", "--help"], capsys).startswith("usage: tfrestore viz ")


def test_user_error_in_a_fresh_process_is_one_line_without_tensorflow_log(tmp_path):
    """A real process with TF_CPP_MIN_LOG_LEVEL unset: TensorFlow is imported (the command
    runs), yet stderr holds only the error line: no start-up log, no traceback."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = str(REPO)
    code = (
        "import sys; from tfrestore.cli import main; rc = main(sys.argv[1:]); "
        "assert 'tensorflow' in sys.modules; sys.exit(rc)"
    )
    res = subprocess.run(
        [sys.executable, "-c", code, "restore", "a.png", "b.png", "--model", "none.keras"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert res.returncode == 2, res.stderr[-3000:]
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr[-3000:]
    assert lines[0].startswith("error: model file or run directory not found: none.keras"), lines


def assert_one_line_error(code, err, *needles):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], lines[0]


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


def test_restore_tiles_within_the_memory_budget_and_says_so(
    saved_model, image_dir, tmp_path, capsys
):
    """Issue 21: --max-memory (or TFRESTORE_MAX_MEMORY) below what the whole image needs
    tiles it automatically, with an overlap covering the receptive field (same output), and
    one line says so; a too-small --overlap is raised, with a note."""
    from tfrestore.data import read_image
    from tfrestore.inference import memory

    path, _ = saved_model
    src = image_dir / "chelsea.png"
    whole, auto, manual = tmp_path / "whole.png", tmp_path / "auto.png", tmp_path / "manual.png"
    assert cli.main(["restore", str(src), str(whole), "--model", str(path), "--tile", "off"]) == 0
    # the budget is fixed memory + a few kB: tiles of a few pixels fit
    budget = str(memory.OVERHEAD + 60_000)
    assert cli.main(["restore", str(src), str(auto), "--model", str(path),
                     "--max-memory", budget]) == 0
    out = capsys.readouterr().out
    notes = [ln for ln in out.splitlines() if ln.startswith("note:")]
    assert len(notes) == 1 and "memory budget (--max-memory)" in notes[0], out
    assert "overlapping by 6 px (receptive field 7 px)" in notes[0]
    assert cli.main(["restore", str(src), str(manual), "--model", str(path), "--tile", "16",
                     "--overlap", "2"]) == 0
    assert "note: overlap raised from 2 to 6 px" in capsys.readouterr().out
    ref = read_image(whole, dtype="uint8")
    np.testing.assert_array_equal(read_image(auto, dtype="uint8"), ref)
    np.testing.assert_array_equal(read_image(manual, dtype="uint8"), ref)
    # a budget too small for any exact tile is refused in one line
    code = cli.main(["restore", str(src), str(tmp_path / "x.png"), "--model", str(path),
                     "--max-memory", "1K"])
    assert_one_line_error(code, capsys.readouterr().err, "raise --max-memory")


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--sigma", "25"], "did you mean --sigma 25/255?"),
        (["--max-memory", "lots"], "--max-memory: cannot read the memory size 'lots'"),
        (["--tile", "4"], "tile size 4 px is too small"),
    ],
)
def test_restore_refuses_unit_and_size_mistakes(saved_model, image_dir, tmp_path, capsys,
                                                extra, needle):
    path, _ = saved_model
    code = cli.main(["restore", str(image_dir / "chelsea.png"), str(tmp_path / "o.png"),
                     "--model", str(path), *extra])
    assert_one_line_error(code, capsys.readouterr().err, needle)


def test_eval_refuses_a_noise_level_in_255_units(saved_model, image_dir, capsys):
    path, _ = saved_model
    code = cli.main(["eval", "--model", str(path), "--data", str(image_dir), "--degradation",
                     "{type: gaussian_noise, sigma: 25}", "--lpips", "off"])
    assert_one_line_error(code, capsys.readouterr().err, "did you mean 25/255?")


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


def test_eval_keeps_images_with_the_same_stem_apart(saved_model, image_dir, tmp_path, capsys):
    from PIL import Image

    folder = tmp_path / "data"
    folder.mkdir()
    img = Image.open(image_dir / "chelsea.png")
    img.save(folder / "x.png")
    img.save(folder / "x.jpg", quality=70)
    img.save(folder / "y.png")
    csv_path, out_dir = tmp_path / "m.csv", tmp_path / "restored"
    rc = cli.main(["eval", "--model", str(saved_model[0]), "--data", str(folder),
                   "--degradation", "{type: gaussian_noise, sigma: 25/255}", "--lpips", "off",
                   "--csv", str(csv_path), "--save-dir", str(out_dir), "--quiet"])
    assert rc == 0
    with open(csv_path) as f:
        assert [r["image"] for r in csv.DictReader(f)] == ["x.jpg", "x.png", "y", "mean"]
    assert sorted(os.listdir(out_dir)) == ["x.jpg.png", "x.png.png", "y.png"]
    capsys.readouterr()
    assert cli.main(["eval", "--model", str(saved_model[0]), "--data", str(folder),
                     "--degradation", "{type: gaussian_noise, sigma: 25/255}", "--lpips", "off",
                     "--csv", str(csv_path), "--quiet"]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err


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
    argv = ["train", "dehaze", "--config", config, "--print-config", "--crop-size", "96"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "task: dehaze" in out and "crop_size: 96" in out
    assert cli.main(["train", "--config", config, "--print-config"]) == 0  # the task is optional
    assert "task: dehaze" in capsys.readouterr().out
    assert cli.main(["train", "dehaze"]) == 2
    assert "--config is required" in capsys.readouterr().err
    assert cli.main(["train", "dehaze", "--help-config"]) == 0
    assert "steps_per_epoch" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv,needles",
    [
        (["restore", "a.png", "b.png", "--model", "m.keras", "--tile", "0"], ["--tile"]),
        (["restore", "a.png", "b.png", "--model", "m.keras", "--tile", "x"],
         ["tfrestore restore", "--tile", "'auto' or 'off'"]),
        (["eval", "--model", "/no/such/run", "--data", "default"], ["/no/such/run", "not found"]),
        (["train", "denoise", "--config", "no_such.yaml"],
         ["config file not found: no_such.yaml", "denoise_demo"]),
        (["configs", "show", "no_such"], ["no shipped config named", "denoise_demo"]),
        (["convert", "adm", "/no/such.pt", "out.npz"], ["/no/such.pt"]),
        (["convert", "adm", "in.pt", "out.pt"], [".weights.h5 or .npz"]),
        (["convert", "adm", "in.pt", "out.npz", "--preset", "adm_512"],
         ["tfrestore convert adm", "adm_512"]),
        (["viz", "--images", "clean=/no/such/folder"], ["/no/such/folder", "does not exist"]),
        (["viz", "--images", "clean"], ["NAME=DIR"]),
        (["viz"], ["tfrestore viz", "--images"]),
        (["bench", "list"], ["invalid choice: 'bench'"]),
    ],
)
def test_user_errors_are_one_line_with_exit_code_2(argv, needles, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    try:
        code = cli.main(argv)
    except SystemExit as e:  # argparse's usage errors exit directly (also with code 2)
        code = e.code
    out, err = capsys.readouterr()
    assert_one_line_error(code, err, *needles)


def test_missing_image_folder_is_a_one_line_error(saved_model, capsys):
    path, _ = saved_model
    code = cli.main(["eval", "--model", str(path), "--data", "/no/such/images",
                     "--degradation", "gaussian_noise"])
    assert_one_line_error(code, capsys.readouterr().err, "/no/such/images")


def test_debug_shows_the_traceback(capsys):
    for argv in (["--debug", "restore", "a.png", "b.png", "--model", "none.keras"],
                 ["restore", "a.png", "b.png", "--model", "none.keras", "--debug"]):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert "Traceback" in err and "FileNotFoundError" in err
        assert err.strip().splitlines()[-1].startswith("error: model file or run directory")


def test_configs_lists_and_shows_the_shipped_configs(capsys):
    assert cli.main(["configs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    files = sorted(p.stem for p in (REPO / "train" / "configs").glob("*.yaml"))
    assert [line.split()[0] for line in lines] == files
    demo = next(line for line in lines if line.startswith("denoise_demo "))
    assert "README demo" in demo
    assert cli.main(["configs", "list"]) == 0
    assert capsys.readouterr().out.splitlines() == lines
    assert cli.main(["configs", "show", "dehaze"]) == 0
    assert capsys.readouterr().out == (REPO / "train" / "configs" / "dehaze.yaml").read_text()


def test_train_takes_a_shipped_config_name_and_a_file_of_that_name_wins(
    capsys, tmp_path, monkeypatch
):
    assert cli.main(["train", "dehaze", "--config", "dehaze", "--print-config"]) == 0
    assert "task: dehaze" in capsys.readouterr().out
    monkeypatch.chdir(tmp_path)
    text = (REPO / "train" / "configs" / "dehaze.yaml").read_text()
    (tmp_path / "dehaze").write_text(text.replace("seed: 0", "seed: 123"))
    assert cli.main(["train", "dehaze", "--config", "dehaze", "--print-config"]) == 0
    assert "seed: 123" in capsys.readouterr().out


def test_tensorflow_start_up_lines_are_filtered_by_level():
    from tfrestore.utils.tf_logging import _kept

    preamble = "WARNING: All log messages before absl::InitializeLog() is called are written to " \
        "STDERR"
    info = "I0000 00:00:1795958466.158830   27761 port.cc:153] oneDNN custom operations are on."
    warning = "W0000 00:00:1795958466.158830   27761 x.cc:1] a warning"
    error = "E0000 00:00:1795958466.158830   27761 x.cc:1] an error"
    other = "Traceback (most recent call last):"
    cpu_only = ("E0000 00:00:1796537571.620468   13680 cuda_platform.cc:52] failed call to "
                "cuInit: INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)")
    for level, kept in [(1, [warning, error, cpu_only, other]), (2, [error, other]),
                        (3, [other])]:
        lines = [preamble, info, warning, error, cpu_only, other]
        assert [ln for ln in lines if _kept(ln, level)] == kept, level


# ------------------------------------------------------------------ alpha, outputs, seeds


def _rgba(path, size=(24, 20)):
    """An RGBA PNG whose transparent half hides a loud colour."""
    from PIL import Image

    rng = np.random.default_rng(3)
    rgba = rng.integers(0, 256, (*size, 4), dtype=np.uint8)
    rgba[:, : size[1] // 2, 3] = 0
    rgba[:, : size[1] // 2, :3] = (255, 0, 255)
    rgba[:, size[1] // 2 :, 3] = rng.integers(1, 256, (size[0], size[1] - size[1] // 2))
    Image.fromarray(rgba, "RGBA").save(path)
    return rgba


def test_restore_carries_alpha_through(saved_model, tmp_path, capsys):
    from PIL import Image

    from tfrestore.data import read_image

    path, model = saved_model
    src, out = tmp_path / "logo.png", tmp_path / "out.png"
    rgba = _rgba(src)
    assert cli.main(["restore", str(src), str(out), "--model", str(path)]) == 0
    assert "alpha channel is carried over unchanged" in capsys.readouterr().out
    with Image.open(out) as im:
        assert im.mode == "RGBA"
        got = np.asarray(im)
    np.testing.assert_array_equal(got[..., 3], rgba[..., 3])  # alpha untouched
    expected = np.clip(np.asarray(model(read_image(src)[None]))[0], 0, 1)
    assert np.abs(got[..., :3] / 255.0 - expected).max() <= 0.5 / 255 + 1e-6  # colour restored


def test_restore_refuses_alpha_into_a_format_without_it_before_loading_the_model(
    tmp_path, capsys
):
    src = tmp_path / "logo.png"
    _rgba(src)
    model = tmp_path / "no.keras"
    model.write_bytes(b"")  # exists (checked before TensorFlow), but could not be loaded
    code = cli.main(["restore", str(src), str(tmp_path / "out.jpg"), "--model", str(model)])
    assert_one_line_error(code, capsys.readouterr().err, "alpha channel", ".jpg", ".png")


def test_grey_alpha_input_stays_grey_alpha(saved_model, tmp_path, capsys):
    from PIL import Image

    path, _ = saved_model
    src, out = tmp_path / "la.png", tmp_path / "out.png"
    la = np.random.default_rng(0).integers(0, 256, (16, 16, 2), dtype=np.uint8)
    Image.fromarray(la, "LA").save(src)
    assert cli.main(["restore", str(src), str(out), "--model", str(path)]) == 0
    with Image.open(out) as im:
        assert im.mode == "LA"
        np.testing.assert_array_equal(np.asarray(im)[..., 1], la[..., 1])


@pytest.mark.parametrize(
    "argv,needles",
    [
        (["restore", "{img}", "{file}/out.png", "--model", "no.keras"],
         ["output {file}/out.png", "is a file, not a folder"]),
        (["restore", "{img}", "{dir}", "--model", "no.keras"], ["output {dir} is a folder"]),
        (["eval", "--model", "no.keras", "--data", "default", "--csv", "{file}/t.csv"],
         ["--csv {file}/t.csv", "is a file, not a folder"]),
        (["eval", "--model", "no.keras", "--data", "default", "--save-dir", "{file}/out"],
         ["--save-dir {file}/out", "is a file, not a folder"]),
        (["eval", "--model", "no.keras", "--data", "default", "--save-dir", "{file}"],
         ["--save-dir {file} is a file, not a folder"]),
        (["viz", "--images", "a={dir}", "--out", "{file}/map.png"],
         ["--out {file}/map.png", "is a file, not a folder"]),
        (["eval", "--model", "no.keras", "--data", "default", "--seed", "-1"],
         ["--seed must be an integer from 0 to 4294967295, got -1"]),
        (["viz", "--images", "a={dir}", "--seed", "-1"], ["--seed must be an integer from 0"]),
    ],
)
def test_unwritable_outputs_and_bad_seeds_fail_before_any_work(argv, needles, tmp_path, capsys):
    from PIL import Image

    img = tmp_path / "in.png"
    Image.new("RGB", (8, 8)).save(img)
    names = {"img": str(img), "file": str(img), "dir": str(tmp_path)}
    argv = [a.format(**names) for a in argv]
    code = cli.main(argv)  # "no.keras" does not exist: the check comes before the model loads
    assert_one_line_error(code, capsys.readouterr().err, *[n.format(**names) for n in needles])


@pytest.mark.parametrize("seed,shown", [("-1", "-1"), (str(2**64), str(2**64))])
def test_train_seed_out_of_range_names_the_key(seed, shown, capsys):
    code = cli.main(["train", "denoise", "--config", "denoise_demo", "--seed", seed,
                     "--print-config"])
    assert_one_line_error(code, capsys.readouterr().err, "config key 'seed'",
                          "from 0 to 4294967295", shown)


# ------------------------------------------------------------ messages a person can act on


def _tfrestore(argv, cwd, env=None, timeout=300):
    """``tfrestore ARGV`` in a fresh process started in ``cwd``."""
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run([sys.executable, "-m", "tfrestore", *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_train_task_is_optional_and_a_mismatch_names_both_and_the_cli(capsys):
    assert cli.main(["train", "--config", "denoise_ffdnet_l1", "--print-config"]) == 0
    assert "task: denoise" in capsys.readouterr().out
    assert cli.main(["train", "denoise", "--config", "denoise_ffdnet_l1", "--print-config"]) == 0
    capsys.readouterr()
    code = cli.main(["train", "dehaze", "--config", "denoise", "--print-config"])
    err = capsys.readouterr().err
    assert_one_line_error(code, err, "the config denoise trains 'denoise' (its key 'task'), "
                          "not 'dehaze'", "'tfrestore train --config denoise'")
    assert "train/denoise.py" not in err  # the command line, not a script, is named


def test_config_path_is_relative_to_the_callers_directory(tmp_path):
    """From any directory: a config file relative to the cwd, or a shipped name."""
    (tmp_path / "cfgs").mkdir()
    text = (REPO / "train" / "configs" / "dehaze.yaml").read_text()
    (tmp_path / "cfgs" / "mine.yaml").write_text(text.replace("seed: 0", "seed: 77"))
    res = _tfrestore(["train", "--config", "cfgs/mine.yaml", "--print-config"], tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "seed: 77" in res.stdout and "task: dehaze" in res.stdout
    res = _tfrestore(["train", "--config", "denoise_demo", "--print-config"], tmp_path)
    assert res.returncode == 0 and "name: denoise_demo" in res.stdout, res.stderr[-2000:]


def test_unset_data_dir_is_named_not_shown_as_a_literal_path(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TFRESTORE_DATA_DIR"}
    res = subprocess.run(
        [sys.executable, "-m", "tfrestore", "train", "--config", "denoise"], cwd=tmp_path,
        env={**env, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=300,
    )
    assert_one_line_error(res.returncode, res.stderr, "TFRESTORE_DATA_DIR is not set",
                          "set it to the folder holding cbsd432/", "data.train.source")
    assert not os.listdir(tmp_path)  # refused before any run directory was made


def test_keras_call_wrapper_and_ansi_codes_do_not_reach_the_error_line(tmp_path, capsys):
    code = cli.main(["train", "--config", "dehaze", "--set", "data.crop_size=63",
                     "--set", "data.train.source=default", "--set", "data.val.source=default",
                     "--set", "data.test.source=default",
                     "--set", "model.args={channels: 3, filters: 4, levels: 2}",
                     "-o", str(tmp_path / "run"), "--verbose", "0"])
    err = capsys.readouterr().err
    assert_one_line_error(code, err, "error: UNet: `inputs` must have height and width "
                          "divisible by", "got 63x63")
    assert "\x1b" not in err and "Exception encountered" not in err
    assert "Arguments received" not in err


def test_images_only_in_sub_folders_hint_a_glob_on_the_command_line(saved_model, image_dir,
                                                                     tmp_path, capsys):
    import shutil

    shutil.copytree(image_dir, tmp_path / "data" / "sub")
    code = cli.main(["eval", "--model", str(saved_model[0]), "--data", str(tmp_path / "data"),
                     "--degradation", "gaussian_noise", "--lpips", "off", "--quiet"])
    err = capsys.readouterr().err
    assert_one_line_error(code, err, "sub-folders hold images", "**")
    assert "recursive=True" not in err


@pytest.mark.parametrize(
    "spelling",
    ["{type: gaussian_noise, sigma: 25/255}", "{type: gaussian_noise, args: {sigma: 25/255}}"],
)
def test_eval_takes_both_degradation_spellings(spelling, saved_model, image_dir, capsys):
    assert cli.main(["eval", "--model", str(saved_model[0]), "--data", str(image_dir),
                     "--degradation", spelling, "--lpips", "off", "--quiet"]) == 0
    assert "GaussianNoise(sigma=0.098" in capsys.readouterr().out


@pytest.mark.parametrize(
    "spelling,needles",
    [
        ("{type: gaussian_noise, sigmaa: 0.1}", ["no parameter 'sigmaa'", "sigma, clip"]),
        ("{type: gaussian_noise, args: 3}", ["'args' must be a mapping"]),
        ("{type: gaussian_noise, sigma: 0.1, args: {sigma: 0.2}}", ["sigma given both"]),
        ("[1, 2]", ["--degradation must be a degradation name or a YAML mapping"]),
        ("{type: nope}", ["Unknown degradation type 'nope'", "gaussian_noise"]),
    ],
)
def test_eval_degradation_mistakes_are_user_errors(spelling, needles, saved_model, image_dir,
                                                   capsys):
    code = cli.main(["eval", "--model", str(saved_model[0]), "--data", str(image_dir),
                     "--degradation", spelling, "--lpips", "off", "--quiet"])
    err = capsys.readouterr().err
    assert_one_line_error(code, err, *needles)
    assert "internal error" not in err


def test_eval_progress_bar_shows_the_running_mean(saved_model, image_dir, tmp_path, capsys):
    csv_path = tmp_path / "t.csv"
    assert cli.main(["eval", "--model", str(saved_model[0]), "--data", str(image_dir),
                     "--degradation", "{type: gaussian_noise, sigma: 25/255}", "--lpips", "off",
                     "--csv", str(csv_path)]) == 0
    out = capsys.readouterr().out
    shown = float(out.split("mean_psnr_out: ")[-1].split()[0])
    with open(csv_path) as f:
        mean = [r for r in csv.DictReader(f) if r["image"] == "mean"][0]
    assert shown == pytest.approx(float(mean["psnr_out"]), abs=1e-3)


def test_mixed_precision_on_a_cpu_warns_once(tmp_path):
    res = _tfrestore(["train", "--config", "denoise_demo", "--mixed-precision",
                      "--set", f"data.train.source={tmp_path / 'none'}", "-o",
                      str(tmp_path / "run")], tmp_path, env={"CUDA_VISIBLE_DEVICES": ""})
    lines = res.stderr.strip().splitlines()
    warnings = [ln for ln in lines if "mixed_float16" in ln]
    assert len(warnings) == 1 and "no GPU" in warnings[0], res.stderr[-2000:]
    assert lines[-1].startswith("error: ") and res.returncode == 2


# ------------------------------------------------- restore: inputs kept, odd files, clear errors


@pytest.fixture
def model_file(saved_model):
    return saved_model[0]


@pytest.fixture
def photo(tmp_path):
    from tfrestore.data import write_image

    rng = np.random.default_rng(0)
    return pathlib.Path(write_image(tmp_path / "x.png", rng.uniform(size=(20, 24, 3))))


def run_cli(argv, capsys):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_restore_refuses_to_overwrite_its_input(model_file, photo, capsys):
    before = photo.read_bytes()
    code, _, err = run_cli(["restore", photo, photo, "--model", model_file], capsys)
    assert_one_line_error(code, err, "is the input", "would overwrite the original")
    assert photo.read_bytes() == before


def test_restore_refuses_an_existing_output_unless_overwrite(model_file, photo, tmp_path, capsys):
    out = tmp_path / "out.png"
    out.write_bytes(b"keep me")
    code, _, err = run_cli(["restore", photo, out, "--model", model_file], capsys)
    assert_one_line_error(code, err, f"output {out} already exists; pass --overwrite")
    assert out.read_bytes() == b"keep me"
    code, _, err = run_cli(["restore", photo, out, "--model", model_file, "--overwrite"], capsys)
    assert code == 0 and out.read_bytes()[:4] == b"\x89PNG"


def test_restore_writes_16bit_output_for_a_16bit_input(model_file, tmp_path, capsys):
    from tfrestore.data import write_image
    from tfrestore.data.io import image_details

    u16 = np.random.default_rng(0).integers(0, 65536, (16, 16, 3), dtype=np.uint16)
    src = write_image(tmp_path / "deep.png", u16)
    code, _, err = run_cli(["restore", src, tmp_path / "out.png", "--model", model_file], capsys)
    assert code == 0, err
    assert image_details(tmp_path / "out.png").bit_depth == 16


def test_restore_keeps_a_grey_input_grey(model_file, tmp_path, capsys):
    from tfrestore.data import read_image, write_image

    src = write_image(tmp_path / "g.png", np.random.default_rng(0).uniform(size=(16, 16, 1)))
    code, _, err = run_cli(["restore", src, tmp_path / "out.png", "--model", model_file], capsys)
    assert code == 0, err
    assert read_image(tmp_path / "out.png", channels=None).shape == (16, 16, 1)


def test_tile_zero_is_a_one_line_error(model_file, photo, tmp_path, capsys):
    code, _, err = run_cli(
        ["restore", photo, tmp_path / "o.png", "--model", model_file, "--tile", "0"], capsys
    )
    assert_one_line_error(code, err, "--tile must be a positive tile side")


def test_overlap_not_smaller_than_tile_is_a_one_line_error(model_file, photo, tmp_path, capsys):
    code, _, err = run_cli(
        ["restore", photo, tmp_path / "o.png", "--model", model_file, "--tile", "16",
         "--overlap", "16"], capsys
    )
    assert_one_line_error(code, err, "--overlap (16) must be smaller than --tile (16)")


def test_ffdnet_without_sigma_is_a_one_line_error(photo, tmp_path, capsys):
    from tfrestore.models import FFDNet

    model = tmp_path / "ffdnet.keras"
    FFDNet(channels=3, depth=3, filters=8).save(model)
    code, _, err = run_cli(["restore", photo, tmp_path / "o.png", "--model", model], capsys)
    assert_one_line_error(code, err, "noise-level input", "pass --sigma")


def test_decompression_bomb_png_is_a_one_line_error(model_file, tmp_path, capsys, monkeypatch):
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data)
        )

    bomb = tmp_path / "bomb.png"  # a 20000x20000 header; Pillow refuses it before decoding
    bomb.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0))
        + chunk(b"IEND", b"")
    )
    monkeypatch.delenv("TFRESTORE_MAX_IMAGE_PIXELS", raising=False)
    code, _, err = run_cli(["restore", bomb, tmp_path / "o.png", "--model", model_file], capsys)
    assert_one_line_error(code, err, "bomb.png", "too large", "TFRESTORE_MAX_IMAGE_PIXELS")


def test_truncated_keras_file_is_not_reported_as_missing(model_file, photo, tmp_path, capsys):
    broken = tmp_path / "model.keras"
    broken.write_bytes(model_file.read_bytes()[:2000])
    code, _, err = run_cli(["restore", photo, tmp_path / "o.png", "--model", broken], capsys)
    assert_one_line_error(code, err, "model.keras", "truncated or corrupt")
    assert "File not found" not in err
