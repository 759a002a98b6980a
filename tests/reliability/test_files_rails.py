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
from tfrestore.training.rundir import LOCK_NAME, RunDirError, RunDirLock, backup_epoch

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
    run = tmp_path / "run"
    train(tiny_config(), output_dir=str(run), report=False)
    (run / "notes.txt").write_text("mine")
    result = train(tiny_config(), output_dir=str(run), report=False, overwrite=True,
                   overrides=["seed=5"])
    assert result.config["seed"] == 5 and len(result.history["loss"]) == 1
    assert (run / "notes.txt").read_text() == "mine"  # only the run's own files are replaced


def test_overwrite_from_the_config(tmp_path):
    run = tmp_path / "run"
    train(tiny_config(), output_dir=str(run), report=False)
    train(tiny_config(), output_dir=str(run), report=False, overrides=["output.overwrite=true"])


def test_cli_refuses_a_finished_run_dir_with_one_line(finished_run, tmp_path):
    import yaml

    from tfrestore import cli

    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config()))
    res = subprocess.run(
        [sys.executable, "-m", "tfrestore", "train", "denoise", "--config", str(cfg),
         "--output-dir", str(finished_run), "--no-report", "--seed", "9"],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert res.returncode == 2
    err = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "its config differs in: seed" in err[0], res.stderr
    assert "Traceback" not in res.stderr
    assert cli  # the module imported (the subprocess runs the same entry point)


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


def test_empty_backup_metadata_names_the_file_and_fresh(tmp_path):
    backup = _interrupted(tmp_path / "run", "")
    with pytest.raises(RunDirError) as exc:
        train(tiny_config(train={"epochs": 3}), output_dir=str(tmp_path / "run"), report=False)
    msg = str(exc.value)
    assert str(backup / "training_metadata.json") in msg and "the file is empty" in msg
    assert "--fresh" in msg


def test_truncated_backup_weights_name_the_file_and_fresh(tmp_path):
    import h5py

    good = tmp_path / "good.h5"
    with h5py.File(good, "w") as f:
        f.create_dataset("w", data=np.arange(4096, dtype="float32"))
    data = good.read_bytes()
    backup = _interrupted(tmp_path / "run", '{"epoch": 1}', data[: len(data) // 2])
    with pytest.raises(RunDirError) as exc:
        backup_epoch(str(backup))
    msg = str(exc.value)
    assert str(backup / "latest.weights.h5") in msg and "damaged or truncated" in msg
    assert "--fresh" in msg and "\n" not in msg


def test_fresh_discards_a_damaged_backup(tmp_path):
    _interrupted(tmp_path / "run", "")
    result = train(tiny_config(), output_dir=str(tmp_path / "run"), report=False, fresh=True)
    assert result.initial_epoch == 0
