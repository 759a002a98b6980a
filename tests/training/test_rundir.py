"""Run directories: one training at a time (a lock), a finished run is never overwritten
unless asked, --overwrite deletes only what a run wrote, damaged backups are named, and a
finished run commits its final model before it drops the backup that lets it resume."""

import json
import os
import pathlib
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tfrestore.training import resume_epoch, rundir, train
from tfrestore.training.rundir import LOCK_NAME, RunDirError, RunDirLock

REPO = pathlib.Path(__file__).resolve().parents[2]


def _files(folder):
    return sorted(
        os.path.relpath(os.path.join(root, f), folder)
        for root, _, files in os.walk(folder)
        for f in files
    )


def test_overwrite_keeps_the_users_files_in_the_runs_folders(tiny_config, tmp_path, capsys):
    run = tmp_path / "run"
    train(tiny_config(output={"tensorboard": True}), output_dir=str(run))
    written = _files(run)
    assert any(f.startswith("logs/train/events.out.tfevents") for f in written)
    assert "report/metrics.csv" in written
    mine = {"logs/my_notes.txt": "notes", "report/figure_for_paper.pdf": "pdf",
            "backup/keep.weights.h5": "weights", "logs/train/annotation.json": "{}"}
    for name, text in mine.items():
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_text(text)
    capsys.readouterr()
    train(tiny_config(output={"tensorboard": True}), output_dir=str(run), overwrite=True,
          overrides=["seed=4"])
    out = capsys.readouterr().out
    assert "kept 4 other file(s) in its folders" in out and "my_notes.txt" in out
    for name, text in mine.items():
        assert (run / name).read_text() == text, name
    # The new run's files replaced the old ones: one event file per TensorBoard folder.
    assert sum(f.startswith("logs/train/events.out.tfevents") for f in _files(run)) == 1


def test_clear_results_removes_the_run_files_and_empty_folders(tmp_path):
    paths = {k: str(tmp_path / v) for k, v in {
        "history": "history.csv", "best": "best.keras", "final": "final.keras",
        "run_info": "run.yaml", "backup": "backup", "logs": "logs", "report": "report",
    }.items()}
    for rel in ("history.csv", "final.keras", "backup/training_metadata.json",
                "backup/step-000000010.weights.h5", "logs/validation/events.out.tfevents.1.x.v2",
                "report/grid.png", "config.yaml"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    assert rundir.clear_results(paths) == []
    assert _files(tmp_path) == ["config.yaml"]
    assert sorted(os.listdir(tmp_path)) == ["config.yaml"]


def test_a_failing_final_save_keeps_the_backup_so_the_run_can_resume(
    tiny_config, tmp_path, monkeypatch
):
    run = tmp_path / "run"

    def disk_full(model, path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(rundir, "save_model_atomically", disk_full)
    with pytest.raises(OSError, match="No space left"):
        train(tiny_config(train={"epochs": 2}),
              output_dir=str(run), report=False)
    assert not (run / "final.keras").exists()
    assert resume_epoch(str(run / "backup")) == 2  # the finished epochs are kept
    monkeypatch.undo()
    result = train(tiny_config(train={"epochs": 2}),
                   output_dir=str(run), report=False)
    assert result.initial_epoch == 2 and (run / "final.keras").is_file()
    assert not (run / "backup").exists()


def test_save_model_atomically_leaves_no_partial_file(tmp_path):
    class Broken:
        def save(self, path):
            with open(path, "wb") as f:
                f.write(b"half a model")
            raise OSError("killed")

    target = tmp_path / "final.keras"
    target.write_bytes(b"the old model")
    with pytest.raises(OSError, match="killed"):
        rundir.save_model_atomically(Broken(), str(target))
    assert target.read_bytes() == b"the old model" and os.listdir(tmp_path) == ["final.keras"]


# ------------------------------------------------------------------------------- the lock

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


def test_second_training_into_a_locked_run_dir_is_refused(tiny_config, tmp_path):
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
def test_two_trainings_started_together_do_not_mix_their_results(tiny_config, tmp_path):
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


def test_stale_lock_of_a_dead_process_is_taken_over(tiny_config, tmp_path, capsys):
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


def test_lock_is_released_when_training_fails(tiny_config, tmp_path):
    with pytest.raises(Exception, match="metrics.monitor"):
        train(tiny_config(), output_dir=str(tmp_path), report=False,
              overrides=["metrics.psnr=false"])
    assert not (tmp_path / LOCK_NAME).exists()


# -------------------------------------------------------------------- finished runs, --overwrite


@pytest.fixture(scope="module")
def finished_run(tiny_config, tmp_path_factory):
    run = tmp_path_factory.mktemp("finished") / "run"
    train(tiny_config(), output_dir=str(run), report=False)
    return run


def fake_finished_run(config, run):
    """The files a finished run of ``config`` leaves (no training needed: the checks only read
    them)."""
    from tfrestore.training import dump_config, load_config

    run.mkdir(parents=True)
    cfg = load_config(config)
    cfg["output"]["dir"] = str(run)
    dump_config(cfg, str(run / "config.yaml"))
    (run / "history.csv").write_text("epoch,loss\n0,0.5\n")
    (run / "final.keras").write_bytes(b"a model")
    return run


def _snapshot(run):
    return {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}


def test_finished_run_dir_with_another_config_is_refused(tiny_config, finished_run):
    before = _snapshot(finished_run)
    with pytest.raises(RunDirError) as exc:
        train(tiny_config(), output_dir=str(finished_run), report=False,
              overrides=["seed=2", "data.crop_size=24"])
    msg = str(exc.value)
    assert "already holds the results of a finished run" in msg
    assert "final.keras" in msg and "history.csv (1 epoch)" in msg
    assert "its config differs in: seed, data.crop_size" in msg
    assert "--overwrite" in msg
    assert _snapshot(finished_run) == before


def test_finished_run_dir_with_the_same_config_is_refused(tiny_config, finished_run):
    with pytest.raises(RunDirError, match="with the same config\\); pass --overwrite"):
        train(tiny_config(), output_dir=str(finished_run), report=False)


def test_overwrite_replaces_a_finished_run(tiny_config, tmp_path):
    run = fake_finished_run(tiny_config(), tmp_path / "run")
    (run / "notes.txt").write_text("mine")
    result = train(tiny_config(), output_dir=str(run), report=False, overwrite=True,
                   overrides=["seed=5"])
    assert result.config["seed"] == 5 and len(result.history["loss"]) == 1
    assert (run / "notes.txt").read_text() == "mine"  # only the run's own files are replaced
    assert (run / "final.keras").read_bytes() != b"a model"


def test_overwrite_from_the_config(tiny_config, tmp_path):
    run = fake_finished_run(tiny_config(), tmp_path / "run")
    train(tiny_config(), output_dir=str(run), report=False, overrides=["output.overwrite=true"])
    assert (run / "final.keras").read_bytes() != b"a model"


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


def test_cli_refuses_a_finished_run_dir_with_one_line(tiny_config, finished_run, tmp_path,
                                                      capsys):
    import yaml

    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config()))
    argv = ["train", "denoise", "--config", cfg, "--output-dir", finished_run, "--seed", 9]
    code, _, err = run_cli(argv, capsys)
    assert_one_line_error(code, err, "already holds the results", "its config differs in: seed")


def test_cli_overwrite_flag_retrains_a_finished_run_dir(tiny_config, tmp_path, capsys):
    import yaml

    run = fake_finished_run(tiny_config(), tmp_path / "run")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config()))
    argv = ["train", "denoise", "--config", cfg, "--output-dir", run, "--no-report", "--seed", 4]
    code, _, err = run_cli(argv, capsys)
    assert_one_line_error(code, err, "its config differs in: seed", "--overwrite")
    code, _, err = run_cli(argv + ["--overwrite"], capsys)
    assert code == 0, err
    assert yaml.safe_load((run / "config.yaml").read_text())["seed"] == 4


# ---------------------------------------------------------------------- damaged backups


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


def test_empty_backup_metadata_names_the_file_and_overwrite(tiny_config, tmp_path):
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


def test_overwrite_discards_a_damaged_backup(tiny_config, tmp_path):
    _interrupted(tmp_path / "run", "")
    result = train(tiny_config(), output_dir=str(tmp_path / "run"), report=False, overwrite=True)
    assert result.initial_epoch == 0
