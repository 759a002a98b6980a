"""``python -m bench semantic``: outputs, λ calibration, seeds and pairing, the bootstrap,
resume and refusal, on a tiny setup (random-weight backbones, a 3-layer restorer, 2 steps;
the numbers themselves mean nothing)."""

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
        "--filters", "4", "--queue", "4", "--losses", "d2sm_queue", "--ratios", "0.5,2",
        *(() if any(a in extra for a in ("--seed", "--seeds")) else ("--seeds", "0,1")), *extra,
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
    assert {r["test_set"] for r in rows} == {"test"}
    for r in rows:
        for col in ("psnr", "ssim", "lpips_alex", "sem_cos", "sem_top1"):
            assert np.isfinite(float(r[col])), (r["run"], col)
    control = rows[2]
    assert float(control["d_psnr"]) == 0.0 and control["d_lpips_real"] == ""
    a, b = rows[3], rows[4]
    assert a["n_seeds"] == b["n_seeds"] == control["n_seeds"] == "2"
    assert float(a["psnr_std"]) >= 0 and float(a["lpips_alex_std"]) >= 0
    # λ is proportional to the target gradient ratio (one calibration per loss)
    assert float(b["lambda"]) / float(a["lambda"]) == pytest.approx(4.0, rel=1e-4)
    assert float(a["ratio_start"]) == 0.5 and float(a["ratio_end"]) > 0
    # same seeds: the mean of per-image differences is the difference of the means
    assert float(a["d_psnr"]) == pytest.approx(float(a["psnr"]) - float(control["psnr"]), abs=2e-4)
    for r in (a, b):
        for col in ("d_psnr", "d_lpips"):
            assert float(r[col + "_lo"]) <= float(r[col]) <= float(r[col + "_hi"])
            lo_s, hi_s = float(r[col + "_seed_min"]), float(r[col + "_seed_max"])
            assert lo_s <= hi_s
            if not (float(r[col + "_lo"]) > 0 or float(r[col + "_hi"]) < 0):
                assert r[col + "_real"] == "no"
            else:
                agree = lo_s > 0 if float(r[col + "_lo"]) > 0 else hi_s < 0
                assert r[col + "_real"] == ("yes" if agree else "no (seeds disagree)")
    md = (first_run / "results.md").read_text()
    assert "| row | ratio | λ |" in md and "L1 (control)" in md and "whole image + queue" in md
    assert "### test (3 images, whole)" in md and "95 % CI" in md
    assert "at λ = 1 to the L1 term" in md
    assert (first_run / "psnr_vs_lpips.png").stat().st_size > 1000
    assert (first_run / "pretrain.weights.h5").is_file()
    run = json.loads((first_run / "runs" / "d2sm_queue_r2_s1.json").read_text())
    assert run["seed"] == 1 and run["row"] == "d2sm_queue_r2"
    per_image = run["metrics"]["test"]
    assert per_image["names"] == ["im0", "im1", "im2"]
    assert all(len(per_image[m]) == 3 for m in ("psnr", "ssim", "lpips_alex", "sem_cos",
                                                "sem_top1"))


@pytest.mark.slow  # a few CPU-seconds of tracing per run
def test_second_run_resumes_and_skips_finished_rows(bench_main, folders, first_run, capsys):
    before = {p: p.stat().st_mtime_ns for p in (first_run / "runs").glob("*.json")}
    rows_before = _rows(first_run)
    capsys.readouterr()
    assert bench_main(_args(folders, first_run)) == 0
    out = capsys.readouterr().out
    assert out.count("done before, skipped") == 6
    assert "pretrained restorer: loaded" in out
    after = {p: p.stat().st_mtime_ns for p in (first_run / "runs").glob("*.json")}
    assert after == before
    assert _rows(first_run) == rows_before
    (first_run / "results.csv").unlink()
    assert bench_main(_args(folders, first_run, "--report-only")) == 0
    assert "6 of 6 runs finished" in capsys.readouterr().out
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

    def row(test_set, run, loss, d_psnr, d_lp, hi, lam=0.01):
        return {"test_set": test_set, "run": run, "loss": loss, "d_psnr": d_psnr,
                "d_lpips": d_lp, "d_lpips_lo": d_lp - 0.01, "d_lpips_hi": hi, "lambda": lam,
                "d_lpips_real": "yes" if hi < 0 else "no", "n_seeds": 3,
                "ratio_target": 1.0, "status": "ok"}

    rows = []
    for ts in ("kodak", "cbsd"):
        rows += [
            row(ts, "l1", "l1", 0.0, 0.0, 0.0),
            # real LPIPS gain on both sets within 0.1 dB: recommended
            row(ts, "a1", "perceptual", -0.05, -0.01, -0.002),
            # a larger gain but costs 0.5 dB
            row(ts, "a2", "perceptual", -0.5, -0.05, -0.04),
            # the interval holds 0 on one set only: not real on both
            row(ts, "b1", "pdl_identity", 0.0, -0.02, -0.001 if ts == "kodak" else 0.003),
        ]
    rows = [{c: r.get(c) for c in bs.CSV_COLUMNS} for r in rows]
    rec = bs.recommendations(rows)
    assert rec["perceptual"]["run"] == "a1"
    assert set(rec["perceptual"]["per_set"]) == {"kodak", "cbsd"}
    assert rec["pdl_identity"] is None
    assert "l1" not in rec
    assert bs.recommendations(rows, min_seeds=4)["perceptual"] is None  # seeds unfinished
    seeds_disagree = [dict(r, d_lpips_real="no (seeds disagree)") if r["run"] == "a1" else r
                      for r in rows]
    assert bs.recommendations(seeds_disagree)["perceptual"] is None
    s = {"seeds": [0, 1, 2], "preset": "ffdnet", "base": "ffdnet_color", "steps": 1,
         "batch": 2, "crop": 64, "lr": 1e-4, "sigma": 50 / 255, "tile": 64, "test_crop": 0,
         "test_names": ["kodak", "cbsd"], "weights": "none"}
    md = bs.markdown(rows, s)
    assert "- + PerceptualLoss (VGG16 relu2_2,3_3,4_3): λ = 0.01" in md
    assert "No λ helped measurably" not in md
    md = bs.markdown([r for r in rows if r["run"] != "a1"], s)
    assert "No λ helped measurably" in md


@pytest.mark.slow  # a few CPU-seconds of tracing per run
def test_overwrite_discards_the_old_run(bench_main, folders, tmp_path, capsys):
    out = tmp_path / "o"
    args = _args(folders, out, "--seed", "0")
    args[args.index("--losses") + 1] = "l1"  # the control only: fast
    assert bench_main(args) == 0
    args[args.index("--seed") + 1] = "1"
    assert bench_main(args + ["--overwrite"]) == 0
    assert "discarded the previous run" in capsys.readouterr().out
    assert json.loads((out / "config.json").read_text())["seed"] == 1  # the first seed
    assert [r["run"] for r in _rows(out)] == ["noisy", "pretrained", "l1"]
    assert (out / "runs" / "l1_s1.json").is_file() and not (out / "runs" / "l1_s0.json").exists()


def _fake_run(names, values, seed):
    return {"seed": seed, "metrics": {"t": {"names": names, **{
        m: list(values) for m in ("psnr", "ssim", "lpips_alex", "sem_cos", "sem_top1")}}}}


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
    control = {0: dict(_fake_run(["a", "b"], [1.0, 2.0], 0), run="l1_s0", loss="l1",
                       seconds=1.0, status="ok")}
    ref = _fake_run(["a", "b"], [0.5, 0.5], 0)
    rows = bs.summarize(
        [("l1", None), ("diffloss", 1.0)], {"l1": control}, {"diffloss": why},
        {"noisy": ref, "pretrained": ref}, {"test_names": ["t"], "bootstrap": 200},
    )
    assert [r["run"] for r in rows] == ["noisy", "pretrained", "l1", "diffloss"]
    assert rows[-1]["status"] == "skipped: " + why


def test_paired_bootstrap_matches_a_numpy_recomputation():
    from bench import bench_semantic as bs

    d = np.random.default_rng(3).normal(0.1, 1.0, size=17)
    mean, lo, hi = bs.paired_bootstrap(d, resamples=500, seed=7)
    rng = np.random.default_rng(7)
    idx = rng.integers(0, d.size, size=(500, d.size))
    means = np.array([d[i].mean() for i in idx])
    assert mean == pytest.approx(d.mean())
    assert lo == pytest.approx(np.percentile(means, 2.5))
    assert hi == pytest.approx(np.percentile(means, 97.5))
    assert lo < mean < hi
    # a shift much larger than the spread: the interval excludes 0
    _, lo, hi = bs.paired_bootstrap(np.full(10, 0.3) + np.linspace(-0.01, 0.01, 10))
    assert lo > 0 and hi < 0.32
    with pytest.raises(ValueError, match="non-empty 1-D"):
        bs.paired_bootstrap([])


def test_paired_delta_averages_seeds_then_pairs_images():
    from bench import bench_semantic as bs

    names = ["x", "y", "z"]
    control = {0: _fake_run(names, [10.0, 20.0, 30.0], 0),
               1: _fake_run(names, [12.0, 22.0, 32.0], 1)}
    row = {0: _fake_run(names, [11.0, 20.0, 31.0], 0),
           1: _fake_run(names, [13.0, 22.0, 33.0], 1),
           2: _fake_run(names, [99.0, 99.0, 99.0], 2)}  # no control for seed 2: unpaired
    mean, lo, hi, per_seed = bs.paired_delta(row, control, "t", "psnr", resamples=300, seed=0)
    assert per_seed == pytest.approx([2 / 3, 2 / 3])
    # per image: seed means (12, 21, 32) - (11, 21, 31) = (1, 0, 1)
    assert mean == pytest.approx(2 / 3)
    assert 0.0 <= lo <= mean <= hi <= 1.0
    assert bs.seed_stats(control, "t", "psnr") == pytest.approx((21.0, np.std([20, 22], ddof=1)))
    assert bs.paired_delta(row, {}, "t", "psnr") is None
    # real: the interval excludes 0 and, with 2+ seeds, every seed agrees in sign
    assert bs._real(0.1, 0.3) == "yes" and bs._real(-0.1, 0.3) == "no"
    assert bs._real(0.1, 0.3, [0.2, 0.1]) == "yes"
    assert bs._real(0.1, 0.3, [0.2]) == "no (1 seed)"
    assert bs._real(-0.3, -0.1, [-0.2, 0.05]) == "no (seeds disagree)"
    other = {0: _fake_run(["x", "y", "w"], [1.0, 1.0, 1.0], 0)}
    with pytest.raises(ValueError, match="other images"):
        bs.paired_delta(row, other, "t", "psnr")


def test_seeds_give_paired_batches_and_fixed_test_noise(folders, tmp_path):
    from bench import bench_semantic as bs

    parser = argparse.ArgumentParser()
    bs.add_arguments(parser)
    s = bs.resolve_settings(parser.parse_args(_args(folders, tmp_path / "x", "--seeds", "3,5")[1:]))
    assert s["seeds"] == [3, 5] and s["seed"] == 3
    data = bs.Data(s)
    x3, y3 = data.batch(bs.Data.FINETUNE, 4, seed=3)
    again, _ = data.batch(bs.Data.FINETUNE, 4, seed=3)
    x5, _ = data.batch(bs.Data.FINETUNE, 4, seed=5)
    np.testing.assert_array_equal(x3, again)  # same seed, same batch: rows are paired
    assert not np.array_equal(x3, x5)  # another seed, other crops and noise
    assert x3.shape == (2, 64, 64, 3) and y3.min() >= 0 and y3.max() <= 1
    # the test noise depends on the image only, not on the training seeds
    s1 = bs.resolve_settings(parser.parse_args(_args(folders, tmp_path / "x", "--seeds", "9")[1:]))
    np.testing.assert_array_equal(bs.Data(s1).test[0].noisy[1], data.test[0].noisy[1])
    assert bs.schedule(s)[:3] == [(3, "l1", None), (3, "d2sm_queue", 0.5), (3, "d2sm_queue", 2.0)]
    assert len(bs.schedule(s)) == 6 and bs.schedule(s)[3][0] == 5
    # more seeds extend a run (its identity holds the first seed only)
    assert bs.signature(dict(s, seeds=[3, 5, 7])) == bs.signature(s)
    assert bs.signature(dict(s, seeds=[4, 5], seed=4)) != bs.signature(s)
    with pytest.raises(SystemExit, match="--seeds or --seed"):
        bs.resolve_settings(parser.parse_args(
            _args(folders, tmp_path / "x", "--seeds", "1", "--seed", "2")[1:]))
    with pytest.raises(SystemExit, match="distinct"):
        bs.resolve_settings(parser.parse_args(_args(folders, tmp_path / "x", "--seeds", "1,1")[1:]))


@pytest.mark.slow  # traces a full-size FFDNet (852k parameters) on 64-px images
def test_base_preset_is_fine_tuned_with_its_sigma_input(bench_main, folders, tmp_path):
    """``--base ffdnet_color`` with random weights (``--weights none``): no pretraining,
    the preset itself is the reference row, and its σ input is fed."""
    out = tmp_path / "ff"
    args = _args(folders, out, "--seeds", "0", "--base", "ffdnet_color", "--test-images", "2")
    args[args.index("--ratios") + 1] = "1"
    assert bench_main(args) == 0
    rows = _rows(out)
    assert [r["run"] for r in rows] == ["noisy", "pretrained", "l1", "d2sm_queue_r1"]
    assert rows[1]["n_images"] == "2"
    assert not (out / "pretrain.weights.h5").exists()
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["base"] == "ffdnet_color" and cfg["preset"] == "quick"  # --quick given
    assert "ffdnet_color (released), not fine-tuned" in (out / "results.md").read_text()
    with pytest.raises(SystemExit, match="--base: 'nope'"):
        bench_main(_args(folders, tmp_path / "y", "--base", "nope"))
    with pytest.raises(SystemExit, match="grey model"):
        bench_main(_args(folders, tmp_path / "y", "--base", "ffdnet_gray"))


def test_real_ffdnet_preset_restores_two_tiny_images(folders):
    """The released weights through the bench's own model call (σ input) and metrics."""
    from bench import bench_semantic as bs
    from tfrestore.utils.weights import WeightsNotFoundError

    s = {"base": "ffdnet_color", "weights": "torchvision", "seed": 0, "sigma": 50 / 255,
         "takes_sigma": True}
    try:
        from tfrestore.models.presets import get_preset
        from tfrestore.utils.weights import resolve_weights_file

        resolve_weights_file(get_preset("ffdnet_color").filename, origin=None)
    except WeightsNotFoundError as e:
        pytest.skip(f"FFDNet_color.mat is not installed: {e}")
    model = bs.build_model(s)
    from PIL import Image

    clean = np.stack([np.asarray(Image.open(folders / "test" / f"im{i}.png"), np.float32) / 255
                      for i in range(2)])
    noisy = clean + np.random.default_rng(0).normal(0, 50 / 255, clean.shape).astype(np.float32)
    out = bs.quantize(np.asarray(bs.forward(model, noisy, s)))
    assert out.shape == clean.shape
    err_in = np.mean((np.clip(noisy, 0, 1) - clean) ** 2)
    assert np.mean((out - clean) ** 2) < 0.5 * err_in  # it denoises
    assert np.array_equal(out, np.round(out * 255) / 255)


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
