"""Quiet TensorFlow start-up for the command line (``tfrestore`` and ``train/<task>.py``) and
``import tfrestore``.

TensorFlow 2.21 logs through absl before absl is initialised, and those lines ignore
``TF_CPP_MIN_LOG_LEVEL`` (``I0000 ... port.cc:153] oneDNN custom operations are on ...``, printed
twice on every import). :func:`import_tensorflow` therefore captures file descriptor 2 while
TensorFlow is imported and its devices are discovered, and passes on only the lines that
``TF_CPP_MIN_LOG_LEVEL`` lets through (default here: 2, warnings and info hidden; also the
``failed call to cuInit`` error every CPU-only machine logs). ``TF_CPP_MIN_LOG_LEVEL=0`` or ``tfrestore --debug``
shows everything.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile

__all__ = ["import_tensorflow", "DEFAULT_TF_LOG_LEVEL"]

DEFAULT_TF_LOG_LEVEL = "2"

# absl's line prefix: severity letter, MMDD, time (e.g. "I0000 00:00:1795958466.158830 27761 ...").
_ABSL_LINE = re.compile(r"^([IWEF])\d{4} \d\d:\d\d:")
_ABSL_PREAMBLE = "WARNING: All log messages before absl::InitializeLog() is called"
_LEVELS = {"I": 0, "W": 1, "E": 2, "F": 3}
# Logged at error level on every machine without an NVIDIA driver, where it is no error: a
# CPU-only TensorFlow start. Shown again with TF_CPP_MIN_LOG_LEVEL <= 1 or --debug.
_CPU_ONLY_NOTICES = ("failed call to cuInit",)


def _kept(line, min_level):
    if line.startswith(_ABSL_PREAMBLE):
        return min_level == 0
    m = _ABSL_LINE.match(line)
    if m is None:
        return True
    if min_level >= 2 and any(notice in line for notice in _CPU_ONLY_NOTICES):
        return False
    return m.group(1) == "F" or _LEVELS[m.group(1)] >= min_level


def import_tensorflow(verbose=False):
    """Import TensorFlow, hiding its start-up log lines below ``TF_CPP_MIN_LOG_LEVEL``.

    ``TF_CPP_MIN_LOG_LEVEL`` defaults to 2 unless set; ``verbose=True`` (``--debug``) leaves the
    environment and the output untouched. TensorFlow's Python logger follows the same level
    (2: errors only). Does nothing when TensorFlow is already imported.
    """
    if verbose or "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", DEFAULT_TF_LOG_LEVEL)
    try:
        min_level = int(os.environ["TF_CPP_MIN_LOG_LEVEL"])
    except ValueError:
        min_level = 0
    if min_level >= 2:
        logging.getLogger("tensorflow").setLevel(logging.ERROR)
    elif min_level == 1:
        logging.getLogger("tensorflow").setLevel(logging.WARNING)
    if min_level <= 0:
        import tensorflow  # noqa: F401

        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow

            # Device discovery logs too (cuInit on a CPU-only machine): do it while captured.
            tensorflow.config.list_physical_devices()
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode("utf-8", errors="replace")
            sys.stderr.write("".join(ln for ln in text.splitlines(True) if _kept(ln, min_level)))
            sys.stderr.flush()
