"""Safety rails of issue 12, items 9-16: nothing a user made is lost, every failure is clear.

One case per test. Training tests use a 1-epoch, 1-step DnCNN on the embedded images.
"""

import json
import os
import pathlib
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tfrestore.training import train
from tfrestore.training.backup import resume_epoch
from tfrestore.training.rundir import LOCK_NAME, RunDirError, RunDirLock

REPO = pathlib.Path(__file__).resolve().parents[2]


def tiny_config(**extra):
    cfg = {
        "task": "denoise",
        "seed": 1,
        "model": {
            "type": "DnCNN",
            "args": {"depth": 2, "filters": 4, "channels": 3, "batch_norm": False},
        },
        "losses": [{"type": "L1"}],
        "data": {
            "crop": 16,
            "batch_size": 2,
            "val": {"crop": 16, "batch_size": 2},
            "test": {"max_images": 1, "max_size": 32},
        },
        "train": {"epochs": 1, "steps_per_epoch": 1, "verbose": 0},
        "metrics": {"lpips": False},
        "output": {"tensorboard": False},
    }
    cfg.update(extra)
    return cfg


# ----------------------------------------------------------------------------- item 9: lock

# Loads rundir.py without importing tfrestore/__init__ (TensorFlow): the holder starts in < 1 s.
_HOLDER = textwrap.dedent(
    """
    import sys, types
    root = sys.argv[1]
    for name, path in (("tfrestore", root + "/tfrestore"),
                       ("tfrestore.training", root + "/tfrestore/training")):
        mod = types.ModuleType(name)
        mod.__path__ = [path]
        sys.modules[name] = mod
    from tfrestore.training.rundir import RunDirLock
    with RunDirLock(sys.argv[2]):
        print("locked", flush=True)
        sys.stdin.readline()
    """
)


def test_second_training_into_a_locked_run_dir_is_refused(tmp_path):
    run = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(REPO), str(run)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunDirError) as exc:
            train(tiny_config(), output_dir=str(run), report=False)
        msg = str(exc.value)
        assert f"run directory {run} is in use by another training" in msg
        assert f"pid {holder.pid} on {socket.gethostname()}" in msg
        assert "\n" not in msg
        assert not (run / "config.yaml").exists()  # nothing of the holder's run was touched
    finally:
        holder.communicate("\n", timeout=30)
    assert holder.returncode == 0
    assert not (run / LOCK_NAME).exists()  # released by the holder


@pytest.mark.slow
def test_two_trainings_started_together_do_not_mix_their_results(tmp_path):
    """Two real `tfrestore train` processes into one directory: one trains, the other stops
    with exit code 2 (locked, or finding the first one's results), and every file of the
    directory belongs to the run that trained."""
    import yaml

    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config(train={"epochs": 1, "steps_per_epoch": 2})))
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tfrestore", "train", "denoise", "--config", str(cfg),
             "--output-dir", str(run), "--no-report", "--seed", str(seed)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        for seed in (11, 22)
    ]
    results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    codes = sorted(r[0] for r in results)
    assert codes == [0, 2], [r[2][-2000:] for r in results]
    winner = 11 if results[0][0] == 0 else 22
    loser_err = [r[2] for r in results if r[0] == 2][0]
    assert "error: run directory" in loser_err or "already holds the results" in loser_err
    assert "Traceback" not in loser_err
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["seed"] == winner
    assert (run / "final.keras").is_file() and not (run / LOCK_NAME).exists()
    with open(run / "history.csv") as f:
        assert len(f.read().strip().splitlines()) == 2  # header + the one epoch of one run


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path, capsys):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK_NAME).write_text(
        json.dumps({"pid": int(dead.stdout), "host": socket.gethostname(), "started": 0})
    )
    result = train(tiny_config(), output_dir=str(run), report=False)
    assert len(result.history["loss"]) == 1
    assert f"took over the lock of a training that is gone (pid {int(dead.stdout)}" in (
        capsys.readouterr().out
    )
    assert not (run / LOCK_NAME).exists()


def test_lock_held_on_another_host_is_not_taken_over(tmp_path):
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": 1, "host": "elsewhere", "started": 0}))
    with pytest.raises(RunDirError, match="pid 1 on elsewhere.*delete the lock file"):
        RunDirLock(tmp_path).acquire()


def test_lock_is_released_when_training_fails(tmp_path):
    with pytest.raises(Exception, match="metrics.monitor"):
        train(tiny_config(), output_dir=str(tmp_path), report=False,
              overrides=["metrics.psnr=false"])
    assert not (tmp_path / LOCK_NAME).exists()


# ------------------------------------------------------------------------ item 10: overwrite


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("finished") / "run"
    train(tiny_config(), output_dir=str(run), report=False)
    return run


def fake_finished_run(run, **cfg_extra):
    """The files a finished run leaves (no training needed: the checks only read them)."""
    from tfrestore.training import dump_config, load_config

    run.mkdir(parents=True)
    cfg = load_config(tiny_config(**cfg_extra))
    cfg["output"]["dir"] = str(run)
    dump_config(cfg, str(run / "config.yaml"))
    (run / "history.csv").write_text("epoch,loss\n0,0.5\n")
    (run / "final.keras").write_bytes(b"a model")
    return run


def _snapshot(run):
    return {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}


def test_finished_run_dir_with_another_config_is_refused(finished_run):
    before = _snapshot(finished_run)
    with pytest.raises(RunDirError) as exc:
        train(tiny_config(), output_dir=str(finished_run), report=False,
              overrides=["seed=2", "data.crop=24"])
    msg = str(exc.value)
    assert "already holds the results of a finished run" in msg
    assert "final.keras" in msg and "history.csv (1 epoch)" in msg
    assert "its config differs in: seed, data.crop" in msg
    assert "--overwrite" in msg
    assert _snapshot(finished_run) == before


def test_finished_run_dir_with_the_same_config_is_refused(finished_run):
    with pytest.raises(RunDirError, match="with the same config\\); pass --overwrite"):
        train(tiny_config(), output_dir=str(finished_run), report=False)


def test_overwrite_replaces_a_finished_run(tmp_path):
    run = fake_finished_run(tmp_path / "run")
    (run / "notes.txt").write_text("mine")
    result = train(tiny_config(), output_dir=str(run), report=False, overwrite=True,
                   overrides=["seed=5"])
    assert result.config["seed"] == 5 and len(result.history["loss"]) == 1
    assert (run / "notes.txt").read_text() == "mine"  # only the run's own files are replaced
    assert (run / "final.keras").read_bytes() != b"a model"


def test_overwrite_from_the_config(tmp_path):
    run = fake_finished_run(tmp_path / "run")
    train(tiny_config(), output_dir=str(run), report=False, overrides=["output.overwrite=true"])
    assert (run / "final.keras").read_bytes() != b"a model"


def test_cli_refuses_a_finished_run_dir_with_one_line(finished_run, tmp_path, capsys):
    import yaml

    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config()))
    argv = ["train", "denoise", "--config", cfg, "--output-dir", finished_run, "--seed", 9]
    code, _, err = run_cli(argv, capsys)
    assert_one_line_error(code, err, "already holds the results", "its config differs in: seed")


def test_cli_overwrite_flag_retrains_a_finished_run_dir(tmp_path, capsys):
    import yaml

    run = fake_finished_run(tmp_path / "run")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config()))
    argv = ["train", "denoise", "--config", cfg, "--output-dir", run, "--no-report", "--seed", 4]
    code, _, err = run_cli(argv, capsys)
    assert_one_line_error(code, err, "its config differs in: seed", "--overwrite")
    code, _, err = run_cli(argv + ["--overwrite"], capsys)
    assert code == 0, err
    assert yaml.safe_load((run / "config.yaml").read_text())["seed"] == 4


# ----------------------------------------------------------------------- item 13: resume errors


def _interrupted(run, meta_text, weights_bytes=None):
    backup = run / "backup"
    backup.mkdir(parents=True)
    (backup / "training_metadata.json").write_text(meta_text)
    if weights_bytes is None:
        import h5py

        with h5py.File(backup / "latest.weights.h5", "w") as f:
            f.create_dataset("w", data=np.arange(4096, dtype="float32"))
    else:
        (backup / "latest.weights.h5").write_bytes(weights_bytes)
    return backup


def test_empty_backup_metadata_names_the_file_and_overwrite(tmp_path):
    backup = _interrupted(tmp_path / "run", "")
    with pytest.raises(RunDirError) as exc:
        train(tiny_config(train={"epochs": 3}), output_dir=str(tmp_path / "run"), report=False)
    msg = str(exc.value)
    assert str(backup / "training_metadata.json") in msg and "the file is empty" in msg
    assert "--overwrite" in msg


def test_truncated_backup_weights_name_the_file_and_overwrite(tmp_path):
    import h5py

    good = tmp_path / "good.h5"
    with h5py.File(good, "w") as f:
        f.create_dataset("w", data=np.arange(4096, dtype="float32"))
    data = good.read_bytes()
    backup = _interrupted(tmp_path / "run", '{"epoch": 1}', data[: len(data) // 2])
    with pytest.raises(RunDirError) as exc:
        resume_epoch(str(backup))
    msg = str(exc.value)
    assert str(backup / "latest.weights.h5") in msg and "damaged or truncated" in msg
    assert "--overwrite" in msg and "\n" not in msg


def test_overwrite_discards_a_damaged_backup(tmp_path):
    _interrupted(tmp_path / "run", "")
    result = train(tiny_config(), output_dir=str(tmp_path / "run"), report=False, overwrite=True)
    assert result.initial_epoch == 0


# ------------------------------------------------------------- CLI helpers (items 11, 15, 16)


@pytest.fixture(scope="module")
def dncnn_file(tmp_path_factory):
    import keras

    from tfrestore.models import DnCNN

    keras.utils.set_random_seed(0)
    path = tmp_path_factory.mktemp("model") / "dncnn.keras"
    DnCNN(depth=2, filters=4, channels=3, batch_norm=False).save(path)
    return path


@pytest.fixture
def photo(tmp_path):
    from tfrestore.data import write_image

    rng = np.random.default_rng(0)
    return pathlib.Path(write_image(tmp_path / "x.png", rng.uniform(size=(20, 24, 3))))


def run_cli(argv, capsys):
    from tfrestore import cli

    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *needles):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for n in needles:
        assert n in lines[0], lines[0]


# ------------------------------------------------------------------ item 11: restore in place


def test_restore_refuses_to_overwrite_its_input(dncnn_file, photo, capsys):
    before = photo.read_bytes()
    code, _, err = run_cli(["restore", photo, photo, "--model", dncnn_file], capsys)
    assert_one_line_error(code, err, "is the input", "would overwrite the original")
    assert photo.read_bytes() == before


def test_restore_refuses_an_existing_output_unless_overwrite(dncnn_file, photo, tmp_path, capsys):
    out = tmp_path / "out.png"
    out.write_bytes(b"keep me")
    code, _, err = run_cli(["restore", photo, out, "--model", dncnn_file], capsys)
    assert_one_line_error(code, err, f"output {out} already exists; pass --overwrite")
    assert out.read_bytes() == b"keep me"
    code, _, err = run_cli(["restore", photo, out, "--model", dncnn_file, "--overwrite"], capsys)
    assert code == 0 and out.read_bytes()[:4] == b"\x89PNG"


# ------------------------------------------------------------- item 12: truncated image files


def _truncate(path, keep=0.6):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_truncated_png_in_a_training_folder_is_named_before_training(tmp_path):
    from tfrestore.data import ImageFileError, image_dataset, write_image

    rng = np.random.default_rng(0)
    for i in range(3):
        write_image(tmp_path / f"{i}.png", rng.uniform(size=(40, 40, 3)))
    _truncate(tmp_path / "1.png")
    with pytest.raises(ImageFileError, match=r"cannot decode image file '.*1\.png'.*truncated"):
        image_dataset(str(tmp_path), crop_size=16, batch_size=2)


def test_truncated_jpeg_in_a_training_folder_is_named_before_training(tmp_path):
    from PIL import Image

    from tfrestore.data import ImageFileError, image_dataset

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "a.jpg")
    _truncate(tmp_path / "a.jpg", 0.5)
    with pytest.raises(ImageFileError, match=r"a\.jpg"):
        image_dataset(str(tmp_path), crop_size=16, batch_size=1)


def test_truncated_training_image_in_a_config_names_the_key_and_file(tmp_path):
    from tfrestore.data import write_image
    from tfrestore.training import ConfigError

    rng = np.random.default_rng(0)
    for i in range(2):
        write_image(tmp_path / f"{i}.png", rng.uniform(size=(32, 32, 3)))
    _truncate(tmp_path / "0.png")
    cfg = tiny_config()
    cfg["data"]["train"] = {"source": str(tmp_path)}
    with pytest.raises(ConfigError, match=r"training images.*0\.png"):
        train(cfg, output_dir=str(tmp_path / "run"), report=False)


def test_damage_inside_a_file_is_found_by_full_validation(tmp_path):
    from tfrestore.data import ImageFileError, image_dataset, write_image

    path = pathlib.Path(
        write_image(tmp_path / "a.png", np.random.default_rng(0).uniform(size=(32, 32, 3)))
    )
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 64] = b"\x00" * 64  # IDAT damaged, IEND intact: passes the cheap check
    path.write_bytes(bytes(data))
    image_dataset(str(tmp_path), crop_size=16, batch_size=1)  # cheap check: not detected
    with pytest.raises(ImageFileError, match=r"a\.png"):
        image_dataset(str(tmp_path), crop_size=16, batch_size=1, validate="full")


def test_damage_inside_a_training_file_is_named_when_training_stops(tmp_path):
    from tfrestore.data import ImageFileError, write_image

    rng = np.random.default_rng(0)
    for i in range(2):
        write_image(tmp_path / f"{i}.png", rng.uniform(size=(32, 32, 3)))
    data = bytearray((tmp_path / "1.png").read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = b"\x00" * 64
    (tmp_path / "1.png").write_bytes(bytes(data))
    cfg = tiny_config()
    cfg["data"]["train"] = {"source": str(tmp_path)}
    with pytest.raises(ImageFileError, match=r"data\.train\.source.*1\.png.*remove or replace"):
        train(cfg, output_dir=str(tmp_path / "run"), report=False)


# ---------------------------------------------------------------- item 13: corrupt weights


def test_truncated_npz_weights_name_the_file(tmp_path):
    from tfrestore.features.sources import load_state_dict
    from tfrestore.utils import CorruptWeightsError

    path = tmp_path / "vgg16.npz"
    np.savez(path, **{"features.0.weight": np.ones((64, 3, 3, 3), "float32")})
    _truncate(path, 0.5)
    with pytest.raises(CorruptWeightsError, match=r"'.*vgg16\.npz' is damaged or truncated"):
        load_state_dict(path)


def test_corrupt_loss_weights_use_the_configured_fallback(tmp_path, capsys):
    from tfrestore.training.builders import build_loss

    path = tmp_path / "vgg16.npz"
    np.savez(path, **{"features.0.weight": np.ones((64, 3, 3, 3), "float32")})
    _truncate(path, 0.5)
    terms = [
        {
            "type": "PerceptualLoss",
            "weight": 1.0,
            "args": {"weights": str(path), "layers": ["relu1_2"]},
            "fallback": [{"type": "L1", "weight": 0.5, "args": {}, "fallback": []}],
        }
    ]
    loss, used = build_loss(terms)
    assert used == [{"type": "L1", "weight": 0.5, "args": {}, "fallback_for": "PerceptualLoss"}]
    out = capsys.readouterr().out
    assert "cannot be built" in out and "vgg16.npz" in out and "damaged or truncated" in out


# ------------------------------------------------------------ item 14: bounded .pt reading


def _pt(path, obj, storages, compression=0):  # 0: zipfile.ZIP_STORED
    import zipfile

    from tfrestore.testing.torch_writer import _PickleWriter

    with zipfile.ZipFile(path, "w", compression=compression) as z:
        z.writestr("archive/data.pkl", _PickleWriter().dump(obj))
        z.writestr("archive/byteorder", "little")
        for key, raw in storages.items():
            z.writestr(f"archive/data/{key}", raw)
    return path


def test_stride_zero_view_cannot_expand_a_tiny_file(tmp_path):
    from tfrestore.convert.torch_checkpoint import TorchCheckpointError, load_torch_state_dict
    from tfrestore.testing.torch_writer import _TensorRecord

    rec = _TensorRecord("0", "FloatStorage", 1, 0, (16384, 16384), (0, 0))  # 1 GiB of one float
    path = _pt(tmp_path / "w.pt", {"big.weight": rec}, {"0": b"\x00" * 4})
    assert path.stat().st_size < 1024
    with pytest.raises(TorchCheckpointError, match=r"tensor 'big\.weight'.*expands a storage"):
        load_torch_state_dict(path)


def test_huge_view_raises_checkpoint_error_not_memory_error(tmp_path):
    from tfrestore.convert.torch_checkpoint import TorchCheckpointError, load_torch_state_dict
    from tfrestore.testing.torch_writer import _TensorRecord

    rec = _TensorRecord("0", "FloatStorage", 4, 0, (200000, 200000), (0, 1))
    path = _pt(tmp_path / "w.pt", {"w": rec}, {"0": b"\x00" * 16})
    with pytest.raises(TorchCheckpointError, match=r"tensor 'w'"):
        load_torch_state_dict(path)


def test_deflate_bomb_storage_is_refused(tmp_path, monkeypatch):
    import zipfile

    from tfrestore.convert import torch_checkpoint as tc
    from tfrestore.testing.torch_writer import _TensorRecord

    monkeypatch.setattr(tc, "MAX_EXPANSION_BYTES", 1 << 20)  # the real limit is 64 MiB
    n = (4 << 20) // 4  # 4 MiB of zeros deflate to about 4 KiB
    rec = _TensorRecord("0", "FloatStorage", n, 0, (n,), (1,))
    path = _pt(tmp_path / "w.pt", {"w": rec}, {"0": b"\x00" * (4 * n)}, zipfile.ZIP_DEFLATED)
    with pytest.raises(tc.TorchCheckpointError, match=r"archive/data/0.*inflates.*zip bomb"):
        tc.load_torch_state_dict(path)


# ------------------------------------------------------ item 15: TIFF, 16-bit, greyscale


def test_tiff_files_are_listed_and_read(tmp_path):
    from PIL import Image

    from tfrestore.data import list_images, read_image

    rgb = np.random.default_rng(0).integers(0, 256, (12, 10, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "kodim.tif")
    assert [os.path.basename(p) for p in list_images(tmp_path)] == ["kodim.tif"]
    np.testing.assert_array_equal(read_image(tmp_path / "kodim.tif", dtype="uint8"), rgb)


def test_tiff_training_data_decodes_in_the_pipeline(tmp_path):
    from PIL import Image

    from tfrestore.data import image_dataset

    rgb = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.tiff")
    _, clean = next(iter(image_dataset(str(tmp_path), training=False, batch_size=1)))
    np.testing.assert_allclose(clean[0].numpy(), rgb / 255.0, atol=1e-7)


def test_16bit_png_keeps_its_precision(tmp_path):
    from tfrestore.data import image_dataset, read_image, write_image

    u16 = np.random.default_rng(0).integers(0, 65536, (16, 16, 3), dtype=np.uint16)
    write_image(tmp_path / "deep.png", u16)
    np.testing.assert_array_equal(read_image(tmp_path / "deep.png", dtype="native"), u16)
    np.testing.assert_allclose(read_image(tmp_path / "deep.png"), u16 / 65535.0, atol=1e-7)
    _, clean = next(iter(image_dataset(str(tmp_path), training=False, batch_size=1)))
    np.testing.assert_allclose(clean[0].numpy(), u16 / 65535.0, atol=1e-7)


def test_16bit_grey_tiff_is_read_as_16bit(tmp_path):
    from PIL import Image

    from tfrestore.data import read_image

    u16 = np.random.default_rng(0).integers(0, 65536, (8, 9), dtype=np.uint16)
    Image.fromarray(u16).save(tmp_path / "g.tif")
    got = read_image(tmp_path / "g.tif", channels=None, dtype="native")
    assert got.dtype == np.uint16 and got.shape == (8, 9, 1)
    np.testing.assert_array_equal(got[..., 0], u16)


def test_restore_writes_16bit_output_for_a_16bit_input(dncnn_file, tmp_path, capsys):
    from tfrestore.data import write_image
    from tfrestore.data.io import image_details

    u16 = np.random.default_rng(0).integers(0, 65536, (16, 16, 3), dtype=np.uint16)
    src = write_image(tmp_path / "deep.png", u16)
    code, _, err = run_cli(["restore", src, tmp_path / "out.png", "--model", dncnn_file], capsys)
    assert code == 0, err
    assert image_details(tmp_path / "out.png").bit_depth == 16


def test_restore_keeps_a_grey_input_grey(dncnn_file, tmp_path, capsys):
    from tfrestore.data import read_image, write_image

    src = write_image(tmp_path / "g.png", np.random.default_rng(0).uniform(size=(16, 16, 1)))
    code, _, err = run_cli(["restore", src, tmp_path / "out.png", "--model", dncnn_file], capsys)
    assert code == 0, err
    assert read_image(tmp_path / "out.png", channels=None).shape == (16, 16, 1)


# ---------------------------------------------------------- item 16: one-line errors


def test_tile_zero_is_a_one_line_error(dncnn_file, photo, tmp_path, capsys):
    code, _, err = run_cli(
        ["restore", photo, tmp_path / "o.png", "--model", dncnn_file, "--tile", "0"], capsys
    )
    assert_one_line_error(code, err, "--tile must be a positive tile side")


def test_overlap_not_smaller_than_tile_is_a_one_line_error(dncnn_file, photo, tmp_path, capsys):
    code, _, err = run_cli(
        ["restore", photo, tmp_path / "o.png", "--model", dncnn_file, "--tile", "16",
         "--overlap", "16"], capsys
    )
    assert_one_line_error(code, err, "--overlap (16) must be smaller than --tile (16)")


def test_ffdnet_without_sigma_is_a_one_line_error(photo, tmp_path, capsys):
    from tfrestore.models import FFDNet

    model = tmp_path / "ffdnet.keras"
    FFDNet(channels=3, depth=3, filters=8).save(model)
    code, _, err = run_cli(["restore", photo, tmp_path / "o.png", "--model", model], capsys)
    assert_one_line_error(code, err, "noise-level input", "pass --sigma")


def test_decompression_bomb_png_is_a_one_line_error(dncnn_file, tmp_path, capsys, monkeypatch):
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
    code, _, err = run_cli(["restore", bomb, tmp_path / "o.png", "--model", dncnn_file], capsys)
    assert_one_line_error(code, err, "bomb.png", "too large", "TFRESTORE_MAX_IMAGE_PIXELS")


def test_batch_size_zero_names_the_argument():
    from tfrestore.data import image_dataset

    with pytest.raises(ValueError, match="`batch_size` must be an integer >= 1, got 0"):
        image_dataset("default", batch_size=0, crop_size=16)


def test_batch_size_zero_on_the_train_command_is_a_one_line_error(tmp_path, capsys):
    import yaml

    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config()))
    code, _, err = run_cli(
        ["train", "denoise", "--config", cfg, "--batch-size", "0", "--output-dir", tmp_path / "r"],
        capsys,
    )
    assert code == 2 and len(err.strip().splitlines()) == 1 and "data.batch_size" in err, err


def test_truncated_keras_file_is_not_reported_as_missing(dncnn_file, photo, tmp_path, capsys):
    broken = tmp_path / "model.keras"
    broken.write_bytes(dncnn_file.read_bytes()[:2000])
    code, _, err = run_cli(["restore", photo, tmp_path / "o.png", "--model", broken], capsys)
    assert_one_line_error(code, err, "model.keras", "truncated or corrupt")
    assert "File not found" not in err
