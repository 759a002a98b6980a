"""Shared helpers for the manual-download builders."""

from __future__ import annotations

import os
import pathlib

from tfrestore.data.io import IMAGE_EXTENSIONS


def has_images(folder):
    folder = pathlib.Path(folder)
    return folder.is_dir() and any(p.suffix.lower() in IMAGE_EXTENSIONS for p in folder.iterdir())


def find_folder(dl_manager, candidates, archives=(), what="images"):
    """First of ``manual_dir/<candidate>`` holding images, else an extracted archive, else an error.

    ``candidates`` may contain ``""`` meaning ``manual_dir`` itself. ``archives`` are
    ``(archive file name, folder inside it)`` pairs looked up in ``manual_dir``.
    """
    root = pathlib.Path(os.fspath(dl_manager.manual_dir))
    for c in candidates:
        folder = root / c if c else root
        if has_images(folder):
            return folder
    for archive, inner in archives:
        path = root / archive
        if path.is_file():
            return pathlib.Path(os.fspath(dl_manager.extract(os.fspath(path)))) / inner
    looked = [str(root / c) for c in candidates] + [str(root / a) for a, _ in archives]
    raise FileNotFoundError(f"no {what} found in manual_dir; looked for: {', '.join(looked)}")
