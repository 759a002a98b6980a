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
tfrestore.utils.files.OutputExistsError: --csv ...table.csv already exists; pass --overwrite to replace it
"""

from __future__ import annotations

import contextlib
import os
import tempfile

__all__ = ["OutputExistsError", "check_output", "atomic_output"]


class OutputExistsError(ValueError):
    """The output exists (or is an input) and may not be replaced."""


def check_output(path, flag, overwrite=False, inputs=(), input_overwrite=False):
    """Refuse, before any work, an output that cannot be written (see
    :func:`tfrestore.utils.command.check_output_path`), an output that is one of ``inputs``
    and an existing file unless ``overwrite``.

    Args:
        path: str or path. The output file.
        flag: str. The argument or option that named it, for the message (e.g.
            ``"--csv"``).
        overwrite: bool. The user asked to replace an existing file.
        inputs: sequence of str or path. Files the command reads.
        input_overwrite: bool. With ``overwrite``, an input may be replaced too
            (``tfrestore restore x.png x.png --overwrite`` restores in place); otherwise
            never.
    """
    from tfrestore.utils.command import check_output_path

    path = os.fspath(path)
    check_output_path(path, flag)
    if not os.path.exists(path):
        return path
    if not (overwrite and input_overwrite):
        for src in inputs:
            if src and os.path.exists(src) and os.path.samefile(src, path):
                hint = " (or pass --overwrite)" if input_overwrite else ""
                raise OutputExistsError(
                    f"{flag} {path} is the input {src}: writing it would overwrite the "
                    f"original; choose another output path{hint}"
                )
    if not overwrite:
        raise OutputExistsError(f"{flag} {path} already exists; pass --overwrite to replace it")
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
