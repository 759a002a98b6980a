"""``python -m bench queue`` runs end to end at tiny sizes and its two formulations
agree (the old dense kernel and the queue cache, for eps=1e-6 and eps=0)."""

import os
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_bench_queue_tiny_run_prints_both_caches_and_agrees():
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "queue", "--queues", "8", "16", "--dim", "32",
         "--size", "8", "--steps", "2", "--warmup", "1", "--threads", "1"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr[-3000:]
    rows = [line.split() for line in out.splitlines() if line[:6].strip() in ("1e-06", "0")]
    assert [(r[0], r[1]) for r in rows] == [("1e-06", "8"), ("1e-06", "16"), ("0", "8"), ("0", "16")]
    for r in rows:
        assert float(r[7]) < 1e-4, r  # same loss values step for step
        assert " ".join(r[9:]) == ("q x q similarities" if r[0] == "1e-06" else "row sums (q x 4)")
    effect = out.splitlines()[-2:]
    assert [line.split()[0] for line in effect] == ["8", "16"]
    assert all(0.999 < float(line.split()[3]) <= 1.0 + 1e-6 for line in effect)
