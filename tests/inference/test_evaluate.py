"""evaluate_degraded: image ``i`` degraded with the seed ``[seed, i]``, cut to the scale."""

import keras
import numpy as np
import pytest

from tfrestore.data import BicubicDownsample, GaussianNoise, default_images, degrade_image
from tfrestore.inference import evaluate_degraded
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
