"""Run directories: --overwrite deletes only what a run wrote; a finished run commits its final
model before it drops the backup that lets it resume."""

import os

import pytest

from tfrestore.training import resume_epoch, rundir, train


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
        "output": {"tensorboard": True},
    }
    cfg.update(extra)
    return cfg


def _files(folder):
    return sorted(
        os.path.relpath(os.path.join(root, f), folder)
        for root, _, files in os.walk(folder)
        for f in files
    )


def test_overwrite_keeps_the_users_files_in_the_runs_folders(tmp_path, capsys):
    run = tmp_path / "run"
    train(tiny_config(), output_dir=str(run))
    written = _files(run)
    assert any(f.startswith("logs/train/events.out.tfevents") for f in written)
    assert "report/metrics.csv" in written
    mine = {"logs/my_notes.txt": "notes", "report/figure_for_paper.pdf": "pdf",
            "backup/keep.weights.h5": "weights", "logs/train/annotation.json": "{}"}
    for name, text in mine.items():
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_text(text)
    capsys.readouterr()
    train(tiny_config(), output_dir=str(run), overwrite=True, overrides=["seed=4"])
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


def test_a_failing_final_save_keeps_the_backup_so_the_run_can_resume(tmp_path, monkeypatch):
    run = tmp_path / "run"

    def disk_full(model, path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(rundir, "save_model_atomically", disk_full)
    with pytest.raises(OSError, match="No space left"):
        train(tiny_config(train={"epochs": 2, "steps_per_epoch": 1, "verbose": 0}),
              output_dir=str(run), report=False)
    assert not (run / "final.keras").exists()
    assert resume_epoch(str(run / "backup")) == 2  # the finished epochs are kept
    monkeypatch.undo()
    result = train(tiny_config(train={"epochs": 2, "steps_per_epoch": 1, "verbose": 0}),
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
