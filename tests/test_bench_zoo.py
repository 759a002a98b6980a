"""`python -m bench zoo`: the released restorers reproduce their papers' PSNR.

The fast tests restore one image per preset; the slow test evaluates whole test sets at
one published noise level per preset and holds each cell within 0.05 dB of the paper
(the whole table, every σ, is the benchmark itself: about 35 minutes here).
"""

import numpy as np
import pytest

from bench import bench_zoo
from tfrestore.models import from_preset
from tfrestore.models.presets import PRESETS


@pytest.fixture(autouse=True)
def _shared(weights_dir, data_dir, monkeypatch):
    monkeypatch.setenv("TFRESTORE_DATA_DIR", str(data_dir))
    monkeypatch.setenv("TFRESTORE_WEIGHTS_DIR", str(weights_dir))


def _first_row(name):
    return next(row for row in bench_zoo.TABLE if row[0] == name)


@pytest.mark.parametrize("name", sorted({row[0] for row in bench_zoo.TABLE}))
def test_one_image_one_sigma_per_preset(name):
    preset = PRESETS[name]
    _, _, folder, sigmas = _first_row(name)
    sigma = 50 if 50 in sigmas else sigmas[0]
    images = bench_zoo.test_images(folder, preset.args["channels"], max_images=1)
    clean = images[0][1]
    noisy = bench_zoo.noisy_input(clean, sigma, seed=0, index=0, clip=preset.clip)
    noisy_u8 = np.clip(np.round(noisy * 255), 0, 255).astype(np.uint8)
    value, values = bench_zoo.evaluate(from_preset(name), images, sigma, clip=preset.clip)
    assert values == [value]
    # The released models remove most of the noise: > 8 dB over the noisy input at 25-50.
    assert value > bench_zoo.psnr_u8(clean, noisy_u8) + 8.0


def test_noise_is_the_same_for_every_run_and_clipped_only_for_clip_models():
    clean = np.full((8, 8, 3), 250, np.uint8)
    a = bench_zoo.noisy_input(clean, 25, seed=0, index=3)
    np.testing.assert_array_equal(a, bench_zoo.noisy_input(clean, 25, seed=0, index=3))
    assert not np.array_equal(a, bench_zoo.noisy_input(clean, 25, seed=0, index=4))
    assert a.max() > 1.0  # not clipped: the demos feed the raw noisy values
    c = bench_zoo.noisy_input(clean, 25, seed=0, index=3, clip=True)
    assert c.max() <= 1.0 and np.allclose(c * 255, np.round(c * 255), atol=1e-4)


@pytest.mark.slow
def test_whole_test_sets_within_0_05_db_of_the_papers(capsys):
    cells = [
        ("ffdnet_color", "Kodak24", 50), ("ffdnet_color", "CBSD68", 50),
        ("cdncnn_b_color", "Kodak24", 50), ("ffdnet_gray", "BSD68", 50),
        ("dncnn_s25_gray", "Set12", 25), ("dncnn_s25_gray", "BSD68", 25),
        ("dncnn_s25_gray_kair", "Set12", 25),
    ]
    folders = {label: folder for _, label, folder, _ in bench_zoo.TABLE}
    lines = []
    for name, label, sigma in cells:
        preset = PRESETS[name]
        images = bench_zoo.test_images(folders[label], preset.args["channels"])
        value, _ = bench_zoo.evaluate(from_preset(name), images, sigma, clip=preset.clip)
        paper = preset.published[label][sigma]
        lines.append(f"{name} {label} sigma={sigma}: paper {paper:.2f}, tfrestore {value:.3f}")
        assert abs(value - paper) <= bench_zoo.TOLERANCE_DB, lines[-1]
    with capsys.disabled():
        print("\n" + "\n".join(lines))


def test_bad_flags_are_one_line_errors(tmp_path):
    import argparse

    parser = argparse.ArgumentParser()
    bench_zoo.add_arguments(parser)
    for argv, message in (
        (["--presets", "ffdnet_colour"], "unknown ['ffdnet_colour']"),
        (["--sigmas", "0.1,x"], "--sigmas must be numbers"),
        (["--sigmas", "300"], "noise levels in 0..255"),
        (["--presets", "dncnn_s25_gray", "--sigmas", "50"], "select no row"),
        (["--max-images", "0"], "--max-images must be >= 1"),
    ):
        with pytest.raises(SystemExit, match=message.replace("[", r"\[").replace("]", r"\]")):
            bench_zoo.run(parser.parse_args(argv))
    existing = tmp_path / "zoo.csv"
    existing.write_text("mine")
    with pytest.raises(SystemExit, match="exists; pass --overwrite"):
        bench_zoo.run(parser.parse_args(["--csv", str(existing)]))
    assert existing.read_text() == "mine"
