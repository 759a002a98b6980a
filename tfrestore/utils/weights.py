"""Resolution of pretrained weight files, offline first.

Order: explicit path -> ``$TFRESTORE_WEIGHTS_DIR/<file>`` -> Keras cache
(``$KERAS_HOME/models/<file>``, default ``~/.keras/models``) -> download with a
hash check (``keras.utils.get_file``). When every step fails (no internet), the
error names the file and the places it may be put.
"""

from __future__ import annotations

import hashlib
import os

__all__ = [
    "WeightsNotFoundError",
    "CorruptWeightsError",
    "resolve_weights_file",
    "weights_dir",
    "keras_cache_dir",
    "file_hash",
    "load_npz",
]

ENV_VAR = "TFRESTORE_WEIGHTS_DIR"


class WeightsNotFoundError(FileNotFoundError):
    """No local copy of a weights file and the download failed."""


class CorruptWeightsError(WeightsNotFoundError):
    """A weights file exists but cannot be read (truncated, damaged, wrong format).

    A subclass of :class:`WeightsNotFoundError` because the remedy is the same (a good
    copy of the file) and so that every handler of unavailable weights, such as a
    training config's loss ``fallback``, handles it too.
    """

    @classmethod
    def for_file(cls, path, exc, what="weights file"):
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        return cls(
            f"{what} {os.fspath(path)!r} is damaged or truncated ({type(exc).__name__}: "
            f"{reason}); delete it and copy or download it again"
        )


def load_npz(path, what="weights file"):
    """``{name: array}`` of an ``.npz`` file; :class:`CorruptWeightsError` naming it when
    it cannot be read (``np.load`` reports a truncated file as a bare ``BadZipFile``)."""
    import zipfile

    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: np.asarray(data[k]) for k in data.files}
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, KeyError) as exc:
        raise CorruptWeightsError.for_file(path, exc, what) from exc


def weights_dir():
    """The directory named by ``$TFRESTORE_WEIGHTS_DIR`` or None."""
    d = os.environ.get(ENV_VAR)
    return os.path.expanduser(d) if d else None


def keras_cache_dir(cache_subdir="models"):
    base = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(base, cache_subdir)


def file_hash(path, algorithm="sha256", chunk_size=1 << 20):
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            h.update(chunk)
    return h.hexdigest()


def _hash_ok(path, expected, algorithm):
    if not expected:
        return True
    return file_hash(path, algorithm) == expected


def resolve_weights_file(
    filename,
    origin=None,
    file_hash=None,
    hash_algorithm="sha256",
    path=None,
    cache_subdir="models",
    alternatives=(),
    description=None,
):
    """Return a local path to ``filename``, downloading it only as a last resort.

    Args:
        filename: str. Canonical file name (looked up in the weights dir and cache).
        origin: str or None. Download URL, or None if the file cannot be downloaded.
        file_hash: str or None. Expected hex digest (checked for cached and downloaded files;
            files found through an explicit path or ``TFRESTORE_WEIGHTS_DIR`` are
            trusted as given by the user).
        hash_algorithm: str. ``"sha256"`` or ``"md5"``.
        path: str or None. Explicit user path (file), tried first; must exist if given.
        alternatives: sequence of str. Other acceptable file names (e.g. ``.npz`` instead
            of ``.pth``).
        description: str or None. Human name used in error messages.

    Raises:
        WeightsNotFoundError: with a message saying which file to put where.
    """
    what = description or filename
    if path is not None:
        path = os.path.expanduser(str(path))
        if not os.path.isfile(path):
            raise WeightsNotFoundError(
                f"Weights file for {what} not found at the explicit path {path!r}."
            )
        return path
    names = [filename, *alternatives]
    wdir = weights_dir()
    if wdir:
        for name in names:
            candidate = os.path.join(wdir, name)
            if os.path.isfile(candidate):
                return candidate
    cache = keras_cache_dir(cache_subdir)
    for name in names:
        candidate = os.path.join(cache, name)
        if os.path.isfile(candidate) and (name != filename or _hash_ok(candidate, file_hash, hash_algorithm)):
            return candidate
    where = (
        f"put `{filename}` into the directory named by ${ENV_VAR}"
        + (f" (currently {wdir!r})" if wdir else " (currently unset)")
        + f", or into the Keras cache {cache!r}, or pass its path explicitly"
    )
    if origin is None:
        raise WeightsNotFoundError(f"No local weights for {what}: {where}.")
    try:
        import keras

        return keras.utils.get_file(
            fname=filename,
            origin=origin,
            file_hash=file_hash,
            hash_algorithm=hash_algorithm,
            cache_subdir=cache_subdir,
        )
    except Exception as exc:  # network down, hash mismatch, ...
        raise WeightsNotFoundError(
            f"Could not download {what} from {origin} ({type(exc).__name__}: {exc}). "
            f"To work offline, {where}."
        ) from exc
