"""``python -m bench semantic``: outputs, λ calibration, resume and refusal, on a tiny setup
(random-weight backbones, a 3-layer restorer, 2 steps; the numbers themselves mean nothing)."""

import argparse
import csv
import json
import os
import pathlib
import sys

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench_main():
    sys.path.insert(0, str(REPO))
    try:
        from bench.__main__ import main

        yield main
    finally:
        sys.path.remove(str(REPO))


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    from PIL import Image

    root = tmp_path_factory.mktemp("semantic_data")
    rng = np.random.default_rng(0)
    for sub, n, size in (("train", 3, (72, 80)), ("test", 3, (64, 128))):
        (root / sub).mkdir()
        for i in range(n):
            # smooth random images: a blurred noise field, so tiles differ
            base = rng.uniform(size=(size[0] // 8, size[1] // 8, 3))
            img = np.kron(base, np.ones((8, 8, 1)))
            Image.fromarray((img * 255).astype("uint8")).save(root / sub / f"im{i}.png")
    return root


def _args(folders, out, *extra):
    return [
        "semantic", "--quick", "--out", str(out), "--weights", "none",
        "--train-dir", str(folders / "train"), "--test-set", str(folders / "test"),
        "--steps", "2", "--pretrain-steps", "2", "--pretrain-crop", "32", "--pretrain-batch", "2",
        "--crop", "64", "--batch", "2", "--test-crop", "0", "--tile", "64", "--depth", "3",
        "--filters", "4", "--queue", "4", "--losses", "d2sm_queue", "--ratios", "0.5,2", *extra,
    ]


@pytest.fixture(scope="module")
def first_run(bench_main, folders, tmp_path_factory):
    out = tmp_path_factory.mktemp("semantic_out") / "run"
    assert bench_main(_args(folders, out)) == 0
    return out


def _rows(out):
    with open(out / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow  # a few CPU-seconds of tracing per run
def test_outputs_have_the_documented_columns(first_run):
    from bench.bench_semantic import CSV_COLUMNS

    rows = _rows(first_run)
    assert tuple(rows[0].keys()) == CSV_COLUMNS
    assert [r["run"] for r in rows] == [
        "noisy", "pretrained", "l1", "d2sm_queue_r0.5", "d2sm_queue_r2",
    ]
    for r in rows:
        for col in ("psnr", "ssim", "lpips_alex", "sem_cos", "sem_top1"):
            assert np.isfinite(float(r[col])), (r["run"], col)
    control = rows[2]
    assert float(control["d_psnr"]) == 0.0
    a, b = rows[3], rows[4]
    # λ is proportional to the target gradient ratio (one calibration per loss)
    assert float(b["lambda"]) / float(a["lambda"]) == pytest.approx(4.0, rel=1e-4)
    assert float(a["ratio_start"]) == 0.5 and float(a["ratio_end"]) > 0
    assert float(a["d_psnr"]) == pytest.approx(float(a["psnr"]) - float(control["psnr"]), abs=2e-4)
    md = (first_run / "results.md").read_text()
    assert "| loss | ratio | λ |" in md and "L1 (control)" in md and "whole image + queue" in md
    assert "at λ = 1 to the L1 term" in md
    assert (first_run / "psnr_vs_lpips.png").stat().st_size > 1000
    assert (first_run / "pretrain.weights.h5").is_file()
    assert (first_run / "runs" / "d2sm_queue_r2.weights.h5").is_file()


@pytest.mark.slow  # a few CPU-seconds of tracing per run
def test_second_run_resumes_and_skips_finished_rows(bench_main, folders, first_run, capsys):
    before = {p: p.stat().st_mtime_ns for p in (first_run / "runs").glob("*.json")}
    rows_before = _rows(first_run)
    capsys.readouterr()
    assert bench_main(_args(folders, first_run)) == 0
    out = capsys.readouterr().out
    assert out.count("done before, skipped") == 3
    assert "pretrained restorer: loaded" in out
    after = {p: p.stat().st_mtime_ns for p in (first_run / "runs").glob("*.json")}
    assert after == before
    assert _rows(first_run) == rows_before
    (first_run / "results.csv").unlink()
    assert bench_main(_args(folders, first_run, "--report-only")) == 0
    assert "3 of 3 runs finished" in capsys.readouterr().out
    assert _rows(first_run) == rows_before


def test_other_settings_are_refused_without_overwrite(bench_main, folders, tmp_path):
    from bench import bench_semantic as bs

    out = tmp_path / "run"
    parser = argparse.ArgumentParser()
    bs.add_arguments(parser)
    settings = bs.resolve_settings(parser.parse_args(_args(folders, out)[1:]))
    bs.prepare_out_dir(str(out), settings, overwrite=False)
    (out / "runs" / "l1.json").write_text("{}")
    bs.prepare_out_dir(str(out), settings, overwrite=False)  # same settings: resume
    assert (out / "runs" / "l1.json").is_file()
    with pytest.raises(SystemExit, match=r"other settings \(steps: 2 -> 3\).*--overwrite"):
        bench_main(_args(folders, out, "--steps", "3"))
    assert json.loads((out / "config.json").read_text())["steps"] == 2  # untouched
    assert (out / "runs" / "l1.json").is_file()
    changed = dict(settings, steps=3)
    bs.prepare_out_dir(str(out), changed, overwrite=True)
    assert not (out / "runs" / "l1.json").exists()
    assert json.loads((out / "config.json").read_text())["steps"] == 3


def test_recommendation_rule():
    from bench import bench_semantic as bs

    def row(run, loss, psnr, lp, lam=None):
        return {"run": run, "loss": loss, "psnr": psnr, "lpips_alex": lp, "lambda": lam,
                "status": "ok"}

    rows = [
        row("l1", "l1", 25.0, 0.40),
        row("a1", "perceptual", 24.95, 0.39, 0.01),  # within 0.1 dB, better LPIPS
        row("a2", "perceptual", 24.5, 0.30, 0.1),  # best LPIPS but loses 0.5 dB
        row("b1", "pdl_identity", 25.0, 0.41, 0.01),  # worse LPIPS
    ]
    rec = bs.recommendations(rows)
    assert rec["perceptual"]["run"] == "a1"
    assert rec["pdl_identity"] is None


@pytest.mark.slow  # a few CPU-seconds of tracing per run
def test_overwrite_discards_the_old_run(bench_main, folders, tmp_path, capsys):
    out = tmp_path / "o"
    args = _args(folders, out)
    args[args.index("--losses") + 1] = "l1"  # the control only: fast
    assert bench_main(args) == 0
    assert bench_main(args + ["--seed", "1", "--overwrite"]) == 0
    assert "discarded the previous run" in capsys.readouterr().out
    assert json.loads((out / "config.json").read_text())["seed"] == 1
    assert [r["run"] for r in _rows(out)] == ["noisy", "pretrained", "l1"]


def test_diffloss_without_checkpoint_is_skipped_with_the_reason(monkeypatch, tmp_path,
                                                               bench_main):
    from bench import bench_semantic as bs

    monkeypatch.setenv("TFRESTORE_WEIGHTS_DIR", str(tmp_path))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    path, why = bs.diffloss_weights()
    if path is not None:  # a real checkpoint in the Keras cache of this machine
        pytest.skip(f"an ADM checkpoint is installed at {path}")
    assert "adm_256_uncond.weights.h5" in why and "TFRESTORE_WEIGHTS_DIR" in why
    with pytest.raises(bs._Skip, match="no ADM checkpoint"):
        bs.build_term("diffloss", {"weights": "torchvision", "crop": 64, "seed": 0})
    rows = bs.table_rows(
        [("l1", None), ("diffloss", 1.0)], {"l1": {"run": "l1", "loss": "l1", "psnr": 1.0,
                                                    "lpips_alex": 0.5, "status": "ok"}},
        {"diffloss": why},
        {"noisy": {"psnr": 0.0}, "pretrained": {"psnr": 0.5}},
    )
    assert rows[-1]["status"] == "skipped: " + why


def test_bad_flags_are_one_line_errors(bench_main, folders, tmp_path):
    with pytest.raises(SystemExit, match="--losses: unknown"):
        bench_main(_args(folders, tmp_path / "x", "--losses", "vgg"))
    with pytest.raises(SystemExit, match="--crop must be a multiple of 32"):
        bench_main(_args(folders, tmp_path / "x", "--crop", "50"))
    with pytest.raises(SystemExit, match="--test-set"):
        bench_main(_args(folders, tmp_path / "x", "--test-set", "no_such_set_here"))
    assert not os.path.exists(tmp_path / "x")


def test_bench_semantic_help(bench_main, capsys):
    with pytest.raises(SystemExit) as exc:
        bench_main(["semantic", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--quick" in out and "--overwrite" in out and "Calibrate λ" in out


def test_report_only_needs_results(bench_main, folders, tmp_path):
    with pytest.raises(SystemExit, match="holds no benchmark results"):
        bench_main(_args(folders, tmp_path / "empty", "--report-only"))
