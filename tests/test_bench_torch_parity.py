"""``bench torch_parity`` without a PyTorch interpreter: one line on stderr, exit code 2."""

import os
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_torch_parity_without_torch_python_names_the_flag():
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO)}
    env.pop("TFRESTORE_TORCH_PYTHON", None)
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "torch_parity"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if "torch_parity" in line]
    assert len(lines) == 1 and "--torch-python" in lines[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


def test_torch_reference_script_imports_no_tensorflow():
    """It runs in a torch-only environment: no tfrestore / TensorFlow / bench imports."""
    source = (REPO / "bench" / "torch_reference.py").read_text()
    imports = [line.split()[1] for line in source.splitlines()
               if line.startswith(("import ", "from "))]
    assert {name.split(".")[0] for name in imports} <= {
        "__future__", "argparse", "json", "os", "sys", "time", "numpy", "torch"}
