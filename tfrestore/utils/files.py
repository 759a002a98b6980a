"""Writing output files without losing anything: refuse what exists, write atomically.

:func:`check_output` refuses an existing file unless the user asked to replace it, and
always refuses an output that is one of the inputs; :func:`atomic_output` yields a temporary
path in the same folder and renames it onto the output only when the write succeeded, so an
interrupted write leaves either the old file or the complete new one.

>>> import os, tempfile
>>> out = os.path.join(tempfile.mkdtemp(), "table.csv")
>>> with atomic_output(out) as tmp:
...     _ = open(tmp, "w").write("a,b\\n")
>>> open(out).read()
'a,b\\n'
>>> check_output(out, "--csv", overwrite=False)
Traceback (most recent call last):
...
tfrestore.utils.files.OutputExistsError: --csv ...table.csv exists; pass --overwrite to replace it
"""

from __future__ import annotations

import contextlib
import os
import tempfile

__all__ = ["OutputExistsError", "check_output", "atomic_output"]


class OutputExistsError(ValueError):
    """The output exists (or is an input) and may not be replaced."""


def check_output(path, flag, overwrite=False, inputs=()):
    """Refuse ``path`` when it is one of ``inputs`` (always) or exists (unless ``overwrite``).

    Args:
        path: the output file.
        flag: the argument or option that named it, for the message (e.g. ``"--csv"``).
        overwrite: the user asked to replace an existing file.
        inputs: files the command reads; writing onto one of them is always refused.
    """
    path = os.fspath(path)
    if os.path.exists(path):
        for src in inputs:
            if src and os.path.exists(src) and os.path.samefile(src, path):
                raise OutputExistsError(
                    f"{flag} {path} is the input {src}: writing it would destroy the input; "
                    "choose another output path"
                )
        if not overwrite:
            raise OutputExistsError(f"{flag} {path} exists; pass --overwrite to replace it")
    parent = os.path.dirname(os.path.abspath(path))
    probe = parent
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        raise OutputExistsError(
            f"{flag} {path}: {probe} is a file, not a folder; choose another output path"
        )
    return path


@contextlib.contextmanager
def atomic_output(path, suffix=None):
    """A temporary path beside ``path`` (same suffix, so writers that check the extension
    accept it); renamed onto ``path`` when the block ends without an error, removed otherwise.
    Missing folders are created."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    if suffix is None:
        name = os.path.basename(path)
        suffix = ".weights.h5" if name.endswith(".weights.h5") else os.path.splitext(name)[1]
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=folder)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
