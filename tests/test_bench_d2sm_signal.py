"""The D2SM gradient-strength benchmark (bench/bench_d2sm_signal.py): its chunked
window features and set arithmetic equal D2SMLoss, and its ratios are sane."""

import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from bench.bench_d2sm_signal import measure, parse_temperatures  # noqa: E402

# A small random backbone keeps these tests fast; the arithmetic is backbone-agnostic.
ALEX = dict(backbone="alexnet", layers="conv2", weights=None)


def test_parse_temperatures():
    assert parse_temperatures("none, 0.3,0.1") == [None, 0.3, 0.1]


def test_whole_image_queue_setting_matches_the_loss(rng):
    crops = rng.uniform(size=(8, 32, 32, 3)).astype("float32")
    setting = dict(name="tiny", data=None, crop=32, patch=None, stride=None, batch=4, queue=4)
    rows = measure(setting, [None, 0.05], **ALEX, check=True, crops=crops)
    assert [r["temperature"] for r in rows] == ["none", 0.05]
    assert rows[0]["rows"] == 8
    # L1's gradient of a mean over N values has norm 1/sqrt(N) where pixels differ.
    np.testing.assert_allclose(rows[0]["grad_l1"], 1 / np.sqrt(4 * 32 * 32 * 3), rtol=0.05)
    assert rows[1]["perplexity"] < rows[0]["perplexity"] <= 1.0
    assert rows[1]["ratio"] > rows[0]["ratio"] > 0


def test_window_setting_matches_the_loss(rng):
    crops = rng.uniform(size=(1, 48, 48, 3)).astype("float32")
    setting = dict(name="tiny", data=None, crop=48, patch=32, stride=16, batch=1, queue=0)
    rows = measure(setting, [None], **ALEX, check=True, crops=crops, chunk=3)
    assert rows[0]["rows"] == 4 and rows[0]["grad_d2sm"] > 0
