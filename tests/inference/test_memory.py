"""Memory budget of inference: parsing, the budget's sources, the traced estimate against a
measured peak, and the automatic whole-image / tiled decision."""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from tfrestore.inference import memory
from tfrestore.inference.restore import plan_inference, predict_image
from tfrestore.models import DnCNN

REPO = Path(__file__).resolve().parents[2]


def test_parse_and_format():
    assert memory.parse_memory("4G") == 4 * 2**30
    assert memory.parse_memory("512m") == 512 * 2**20
    assert memory.parse_memory("1.5GiB") == int(1.5 * 2**30)
    assert memory.parse_memory("300MB") == 300 * 2**20
    assert memory.parse_memory(1000) == 1000
    for bad in ("lots", "4X", "-1G", "0", 0):
        with pytest.raises(ValueError):
            memory.parse_memory(bad)
    assert memory.format_bytes(1.5 * 2**30) == "1.5 GB"


def test_budget_sources(monkeypatch):
    monkeypatch.setenv(memory.ENV_VAR, "3G")
    assert memory.memory_budget("1G") == (2**30, "--max-memory")
    assert memory.memory_budget() == (3 * 2**30, memory.ENV_VAR)
    monkeypatch.setenv(memory.ENV_VAR, "three gigs")
    with pytest.raises(ValueError, match=memory.ENV_VAR):
        memory.memory_budget()
    monkeypatch.delenv(memory.ENV_VAR)
    budget, source = memory.memory_budget()
    avail = memory.available_memory()
    assert avail and 0 < budget <= avail // 2 + 1 and "RAM" in source or "GPU" in source


def test_profile_of_a_plain_network():
    """Width-16 convolutions: the live set is one input and one output of a conv (2 x 16 floats
    per pixel) plus the residual input; no downsampling."""
    model = DnCNN(channels=3, depth=4, filters=16, batch_norm=False)
    from tfrestore.inference.restore import _profile

    prof = _profile(model, 3)
    assert prof.downsample == 1 and prof.scale == 1 and prof.out_channels == 3
    assert 2 * 16 * 4 <= prof.bytes_per_pixel <= 4 * 16 * 4


_MEASURE = r"""
import json, resource, sys, psutil, numpy as np, keras
from tfrestore.models import DnCNN
from tfrestore.inference.restore import plan_inference, predict_image
keras.utils.set_random_seed(0)
model = DnCNN(channels=3, depth=5, filters=24, batch_norm=False)
img = np.random.default_rng(0).random((768, 768, 3), dtype=np.float32)
plan = plan_inference(model, img.shape, tile_size=None, max_memory="64G")
predict_image(model, img[:64, :64], tile_size=None)
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
before = psutil.Process().memory_info().rss
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak: only the inference below counts, not imports or tracing
predict_image(model, img, plan=plan)
peak = hwm()
print(json.dumps({"working": peak - before, "estimate": plan.estimate}))
"""


def test_estimate_bounds_the_measured_peak():
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2")
    res = subprocess.run([sys.executable, "-c", _MEASURE], env=env, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    r = json.loads(res.stdout.strip().splitlines()[-1])
    # 768^2 px x 24 floats = 54 MB per activation: far above the allocator's noise
    assert r["working"] <= r["estimate"] <= 2.5 * r["working"], r


def test_auto_is_whole_image_when_it_fits_and_exact_tiles_when_not(monkeypatch):
    monkeypatch.setattr(memory, "OVERHEAD", 0)  # a small image: no fixed allowance
    keras.utils.set_random_seed(0)
    model = DnCNN(channels=3, depth=4, filters=8, batch_norm=False)
    img = np.random.default_rng(0).random((150, 170, 3), dtype=np.float32)
    fits = plan_inference(model, img.shape, max_memory="1G")
    assert fits.tile_size is None and fits.notes == []
    est = fits.estimate
    notes = []
    out = predict_image(model, img, max_memory=est // 2, on_note=notes.append)
    whole = predict_image(model, img, tile_size=None)
    assert np.abs(out - whole).max() < 1e-5
    assert len(notes) == 1 and "tiles overlapping by 8 px (receptive field 9 px)" in notes[0]
    plan = plan_inference(model, img.shape, max_memory=est // 2)
    assert plan.estimate <= est // 2 and plan.tile_size[0] < 150
    with pytest.raises(ValueError, match="too small for this 170x150 image.*raise --max-memory"):
        plan_inference(model, img.shape, max_memory=est // 20)


def test_whole_image_over_budget_is_noted():
    model = DnCNN(channels=3, depth=3, filters=8, batch_norm=False)
    plan = plan_inference(model, (200, 200, 3), tile_size=None, max_memory="100K")
    assert plan.tile_size is None and "more than the" in plan.notes[0]
