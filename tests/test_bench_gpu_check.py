"""The GPU check script runs end to end on CPU (``--cpu-smoke``) and prints its table."""

import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_cpu_smoke_prints_every_row():
    from bench.bench_gpu_check import CASES, VARIANTS

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "gpu_check", "--cpu-smoke"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr[-3000:]
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("loss "))
    assert lines[header].split()[:5] == ["loss", "variant", "strategy", "batch", "size"]
    rows = [line for line in lines[header + 1:] if not line.startswith("total ")]
    seen = set()
    for row in rows:
        name = next(n for n in CASES if row.startswith(n))
        variant, strategy, batch, size, ms, peak = row[len(name):].split()[:6]
        assert variant in VARIANTS and strategy in ("single", "mirrored")
        assert float(ms) > 0 and peak == "-"  # no GPU memory statistics on CPU
        assert "ERROR" not in row and "NOT FINITE" not in row
        seen.add((name, variant, strategy))
    assert {(n, "fp32", "single") for n in CASES} <= seen
    assert {("L1", v, "single") for v in VARIANTS} <= seen
    assert ("D2SM whole image + queue", "fp32", "mirrored") in seen
    assert "2 replicas, global batch 4" in out
    assert lines[-1].startswith("total ") and lines[-1].endswith("0 failed row(s)")
