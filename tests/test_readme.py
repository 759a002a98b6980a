"""The README's code runs as written.

Every ```python block is executed in a fresh interpreter (in a temporary folder, with the
shared weights and data when present); a block that stops because pretrained weights cannot be
found (no shared folder, no download) is skipped with the reason, like every weight-dependent
test. Every file path a ```bash block names (scripts,
configs) must exist, and every ``tfrestore <command>`` it shows must be a real command.
"""

import os
import pathlib
import re
import shlex
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"```(\w+)\n(.*?)```", README, flags=re.S)
PYTHON_BLOCKS = [code for lang, code in BLOCKS if lang == "python"]
BASH_LINES = [
    line.split("#")[0].strip()
    for lang, code in BLOCKS
    if lang == "bash"
    for line in code.splitlines()
    if line.split("#")[0].strip()
]


def test_readme_has_code():
    assert PYTHON_BLOCKS and BASH_LINES


@pytest.mark.parametrize("index", range(len(PYTHON_BLOCKS)))
def test_python_block_runs(index, tmp_path):
    code = PYTHON_BLOCKS[index]
    # As a reader runs it: no TF_CPP_MIN_LOG_LEVEL of ours (tfrestore sets its own default).
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=600,
    )
    missing = _missing_weights(proc.stderr) if proc.returncode else None
    if missing:  # like the other weight-dependent tests: no weights here, skip and say why
        pytest.skip(f"README python block {index} needs pretrained weights: {missing}")
    assert proc.returncode == 0, f"README python block {index} failed:\n{code}\n{proc.stderr[-3000:]}"
    # What a reader sees: no TensorFlow start-up lines, no Keras shuffle warning.
    noise = re.findall(r".*(?:cuInit|oneDNN custom operations|cuda drivers|shuffle=True).*",
                       proc.stderr)
    assert not noise, f"README python block {index} prints:\n" + "\n".join(noise)


def _missing_weights(stderr):
    """The error line of a block that stopped because pretrained weights cannot be found
    (:class:`tfrestore.utils.weights.WeightsNotFoundError`, also a corrupt file), else None."""
    for line in reversed(stderr.strip().splitlines()):
        if re.match(r"^[\w.]*(WeightsNotFoundError|CorruptWeightsError): ", line):
            return line.split(": ", 1)[1]
    return None


def test_bash_blocks_name_existing_files_and_commands():
    from tfrestore.cli import build_parser

    commands = set(build_parser()._subparsers._group_actions[0].choices)
    for line in BASH_LINES:
        words = shlex.split(line)
        for word in words:
            if re.match(r"^(train|tfrestore|bench)/[\w/.-]+\.(py|yaml)$", word):
                assert (REPO / word).exists(), f"README names {word}, which does not exist"
        if words[0] == "tfrestore":
            assert words[1] in commands, f"README shows `tfrestore {words[1]}`, not a command"
