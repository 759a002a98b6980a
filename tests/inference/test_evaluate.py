"""Per-image evaluation: rows against NumPy PSNR, the SR baseline, tables and CSV;
evaluate_degraded degrades image ``i`` with the seed ``[seed, i]``, cut to the scale."""

import keras
import numpy as np
import pytest

from tfrestore.data import BicubicDownsample, GaussianNoise, default_images, degrade_image
from tfrestore.inference.evaluate import (
    add_mean_row,
    evaluate_degraded,
    evaluate_model,
    format_table,
    write_csv,
)
from tfrestore.metrics import psnr


def _images():
    return [("a", im) for im in default_images(["coffee"], max_size=35)] + [
        ("b", im) for im in default_images(["rocket"], max_size=33)
    ]


def _identity():
    inp = keras.Input((None, None, 3))
    return keras.Model(inp, keras.layers.Identity()(inp))


def test_each_image_is_degraded_with_its_own_seed_pair():
    images = _images()
    deg = GaussianNoise(sigma=0.1)
    rows, notes, shown = evaluate_degraded(
        _identity(), images, deg, 7, lpips=False, return_images=True
    )
    assert [r["image"] for r in rows] == ["a", "b"] and notes == []
    for i, ((name, clean), row, (_, degraded, restored, _)) in enumerate(zip(images, rows, shown)):
        expected = np.clip(degrade_image(deg, clean, [7, i])[0], 0, 1)
        np.testing.assert_array_equal(degraded, expected)
        np.testing.assert_allclose(restored, expected, atol=1e-6)  # the identity restores nothing
        want = float(np.asarray(psnr(clean[None], expected[None]))[0])
        assert row["psnr_in"] == pytest.approx(want, abs=1e-4)
        assert row["psnr_out"] == pytest.approx(row["psnr_in"], abs=1e-4)
    again, _ = evaluate_degraded(_identity(), iter(images), deg, 7, lpips=False)
    assert again == rows  # deterministic, also from a one-pass iterator
    other, _ = evaluate_degraded(_identity(), images, deg, 8, lpips=False)
    assert other[0]["psnr_in"] != rows[0]["psnr_in"]


def test_sr_cuts_each_clean_image_to_a_multiple_of_the_scale():
    images = _images()
    inp = keras.Input((None, None, 3))
    upsample = keras.Model(inp, keras.layers.UpSampling2D(2)(inp))
    rows, _, shown = evaluate_degraded(
        upsample, images, BicubicDownsample(2), 0, lpips=False, return_images=True
    )
    for (_, clean), (_, baseline, restored, cut) in zip(images, shown):
        h, w = clean.shape[:2]
        assert cut.shape[:2] == (h - h % 2, w - w % 2) == restored.shape[:2] == baseline.shape[:2]
        np.testing.assert_array_equal(cut, clean[: h - h % 2, : w - w % 2])
    assert all(np.isfinite(r["psnr_out"]) for r in rows)


def test_evaluate_model_rows_against_numpy_psnr():
    ident = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Identity()])
    rng = np.random.default_rng(3)
    clean = rng.random((24, 24, 3), dtype=np.float32)
    noisy = np.clip(clean + rng.normal(0, 0.1, clean.shape), 0, 1).astype(np.float32)
    rows, notes = evaluate_model(ident, [("x", noisy, clean)], lpips=False)
    mse = np.mean((noisy - clean) ** 2)
    assert rows[0]["psnr_in"] == pytest.approx(10 * np.log10(1 / mse), abs=1e-3)
    assert rows[0]["psnr_out"] == pytest.approx(rows[0]["psnr_in"], abs=1e-4)  # identity model
    assert notes == []


def test_super_resolution_baseline_is_bicubic():
    up = keras.Sequential([keras.Input((None, None, 3)), keras.layers.UpSampling2D(2)])
    clean = np.random.default_rng(4).random((16, 16, 3), dtype=np.float32)
    lr = clean[::2, ::2]
    rows, _, images = evaluate_model(up, [("x", lr, clean)], lpips=False, return_images=True)
    assert images[0][1].shape == clean.shape  # the upsampled baseline shown next to the output
    assert np.isfinite(rows[0]["psnr_in"]) and np.isfinite(rows[0]["psnr_out"])


def test_table_and_csv(tmp_path):
    rows = add_mean_row([{"image": "a", "psnr_in": 1.0}, {"image": "b", "psnr_in": 3.0}])
    assert rows[-1] == {"image": "mean", "psnr_in": 2.0}
    assert format_table(rows).splitlines()[-1].split() == ["mean", "2.0000"]
    text = open(write_csv(rows, tmp_path / "t.csv")).read().splitlines()
    assert text == ["image,psnr_in", "a,1.000000", "b,3.000000", "mean,2.000000"]
