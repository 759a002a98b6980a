"""Where pretrained backbone weights come from, and how a ``weights=`` argument resolves.

A ``weights`` argument is one of

* ``"imagenet"`` -- the official Keras Applications file (Caffe-derived weights,
  ``"caffe"`` preprocessing). AlexNet has no Keras weights; for it ``"imagenet"``
  means the torchvision weights.
* ``"torchvision"`` -- the official torchvision checkpoint (``"torch"``
  preprocessing), found as ``<backbone>_torchvision_features.npz`` (a NumPy copy of
  the ``features.*`` state dict) or as the official ``.pth`` file.
* a path: ``.npz`` / ``.pth`` / ``.pt`` (torch state dict, torchvision layout) or a
  Keras weights file (``.h5``, ``.weights.h5``, ``.keras``) of the matching
  ``keras.applications`` model.
* ``None`` -- deterministic pseudo-random initialisation (seeded), for tests.

Files are looked up offline first (explicit path -> ``$TFRESTORE_WEIGHTS_DIR`` ->
Keras cache -> download, see :func:`tfrestore.utils.resolve_weights_file`).
"""

from __future__ import annotations

import dataclasses
import os
import re

import numpy as np

from tfrestore.utils import weights as weights_utils
from tfrestore.utils.weights import WeightsNotFoundError, resolve_weights_file

__all__ = [
    "KnownWeights",
    "WeightSource",
    "resolve_weight_source",
    "load_state_dict",
    "WeightsNotFoundError",
]

KERAS_FORMAT = "keras"
TORCH_FORMAT = "torch"
RANDOM_FORMAT = "random"

_KERAS_SUFFIXES = (".h5", ".hdf5", ".keras")
_TORCH_SUFFIXES = (".npz", ".pth", ".pt", ".bin")


@dataclasses.dataclass(frozen=True)
class KnownWeights:
    """An official weights file: name, download origin and hash."""

    format: str  # KERAS_FORMAT or TORCH_FORMAT
    filename: str
    origin: str
    file_hash: str | None = None
    hash_algorithm: str = "sha256"
    #: local-only equivalents tried before the official file (e.g. an .npz copy)
    local_alternatives: tuple = ()
    #: for torch hub style names ``name-<sha256 prefix>.pth``: checked on cached files
    hash_prefix: str | None = None
    description: str = ""


@dataclasses.dataclass(frozen=True)
class WeightSource:
    """A resolved ``weights`` argument."""

    spec: object  # what the user passed ("imagenet", "torchvision", a path or None)
    format: str  # KERAS_FORMAT, TORCH_FORMAT or RANDOM_FORMAT
    path: str | None
    preprocessing: str  # default preprocessing for these weights

    def cache_key(self):
        if self.path is None:
            return (self.format, None)
        st = os.stat(self.path)
        return (self.format, os.path.realpath(self.path), st.st_size, st.st_mtime_ns)


def _default_preprocessing(fmt):
    return "caffe" if fmt == KERAS_FORMAT else "torch"


def detect_format(path):
    """``"keras"`` or ``"torch"`` from a file name; ValueError otherwise."""
    name = str(path).lower()
    if name.endswith(_KERAS_SUFFIXES):
        return KERAS_FORMAT
    if name.endswith(_TORCH_SUFFIXES):
        return TORCH_FORMAT
    raise ValueError(
        f"Cannot tell the format of weights file {str(path)!r}: use a Keras weights file "
        f"({', '.join(_KERAS_SUFFIXES)}) or a torch state dict ({', '.join(_TORCH_SUFFIXES)})."
    )


def _check_hash_prefix(path, known):
    """torch hub files carry the first hex digits of their sha256 in the name."""
    if not known.hash_prefix:
        return
    digest = weights_utils.file_hash(path, "sha256")
    if not digest.startswith(known.hash_prefix):
        raise WeightsNotFoundError(
            f"{path!r} does not match the official {known.filename} (sha256 starts with "
            f"{digest[:8]}, expected {known.hash_prefix}); the file is corrupt or "
            f"incomplete. Delete it and try again."
        )


def _resolve_known(known, backbone):
    what = known.description or f"{backbone} weights ({known.filename})"
    for alt in known.local_alternatives:
        try:
            return resolve_weights_file(alt, origin=None, description=what)
        except WeightsNotFoundError:
            pass
    try:
        path = resolve_weights_file(
            known.filename,
            origin=known.origin,
            file_hash=known.file_hash,
            hash_algorithm=known.hash_algorithm,
            description=what,
        )
    except WeightsNotFoundError as exc:
        if not known.local_alternatives:
            raise
        alts = ", ".join(f"`{a}`" for a in known.local_alternatives)
        raise WeightsNotFoundError(
            f"{exc} The equivalent {alts} is accepted in the same places."
        ) from exc
    if os.path.dirname(os.path.abspath(path)) == os.path.abspath(weights_utils.keras_cache_dir()):
        _check_hash_prefix(path, known)
    return path


def resolve_weight_source(backbone, known_weights, weights, preprocessing_for_random="torch"):
    """Resolve a ``weights`` argument for ``backbone`` into a :class:`WeightSource`.

    Args:
        backbone: str. Backbone name (for messages).
        known_weights: dict ``{"imagenet": KnownWeights, "torchvision": ...}``.
        weights: str or None. The user's ``weights`` argument.
    """
    if weights is None:
        return WeightSource(None, RANDOM_FORMAT, None, preprocessing_for_random)
    if isinstance(weights, os.PathLike):
        weights = os.fspath(weights)
    if not isinstance(weights, str):
        raise TypeError(
            f"`weights` must be 'imagenet', 'torchvision', a file path or None, got "
            f"{type(weights).__name__}."
        )
    key = weights.lower()
    if key in known_weights:
        known = known_weights[key]
        path = _resolve_known(known, backbone)
        return WeightSource(key, known.format, path, _default_preprocessing(known.format))
    looks_like_path = (
        os.sep in weights or "." in os.path.basename(weights) or os.path.exists(weights)
    )
    if not looks_like_path:
        raise ValueError(
            f"`weights` for {backbone} must be one of {sorted(known_weights)}, a file path "
            f"or None, got {weights!r}."
        )
    fmt = detect_format(weights)
    path = resolve_weights_file(
        os.path.basename(weights), path=weights, description=f"{backbone} weights"
    )
    return WeightSource(weights, fmt, path, _default_preprocessing(fmt))


_MODULE_PREFIX = re.compile(r"^(module\.)+")


def load_state_dict(path):
    """A torch-layout state dict ``{key: np.ndarray}`` from ``.npz`` or ``.pth``/``.pt``.

    ``.pth`` files are read without torch by
    :func:`tfrestore.convert.torch_checkpoint.load_torch_state_dict`. A leading
    ``module.`` (``DataParallel``) is stripped from keys. A damaged file raises
    :class:`~tfrestore.utils.weights.CorruptWeightsError` naming it.
    """
    path = os.fspath(path)
    if path.lower().endswith(".npz"):
        state = weights_utils.load_npz(path)
    else:
        from tfrestore.convert.torch_checkpoint import (  # lazy: optional module
            TorchCheckpointError,
            UnsafeCheckpointError,
            load_torch_state_dict,
        )

        try:
            state = dict(load_torch_state_dict(path))
        except UnsafeCheckpointError:
            raise
        except TorchCheckpointError as exc:
            raise weights_utils.CorruptWeightsError.for_file(path, exc) from exc
    return {_MODULE_PREFIX.sub("", k): v for k, v in state.items()}


def lookup(state, key, shape, path, backbone):
    """``state[key]`` with a clear error when missing or mis-shaped (torch layout)."""
    for candidate in (
        key,
        key[len("features.") :] if key.startswith("features.") else "features." + key,
    ):
        if candidate in state:
            value = np.asarray(state[candidate], np.float32)
            if tuple(value.shape) != tuple(shape):
                raise ValueError(
                    f"{path}: `{candidate}` has shape {tuple(value.shape)}, but {backbone} "
                    f"expects {tuple(shape)}. Is this a {backbone} checkpoint in torchvision "
                    "layout?"
                )
            return value
    sample = ", ".join(sorted(state)[:6])
    raise ValueError(
        f"{path}: no `{key}` in the state dict (found {len(state)} keys, e.g. {sample}). "
        f"Expected a torchvision {backbone} state dict with `features.N.weight/bias` keys."
    )


def load_keras_weights(model, path, backbone, app_name):
    """``model.load_weights(path)`` for a ``keras.applications`` model, with errors
    naming the file (damaged: :class:`CorruptWeightsError`) and the expected one."""
    try:
        model.load_weights(path)
    except OSError as exc:  # h5py cannot open a truncated/damaged file
        raise weights_utils.CorruptWeightsError.for_file(path, exc) from exc
    except Exception as exc:
        raise ValueError(
            f"Could not load {path!r} into keras.applications.{app_name}"
            f"(include_top=False): {exc}. Expected the official "
            f"`{backbone}_weights_tf_dim_ordering_tf_kernels_notop.h5` or a weights file saved "
            f"from that model."
        ) from exc


def conv_kernel_from_torch(weight):
    """PyTorch OIHW -> Keras HWIO."""
    return np.transpose(weight, (2, 3, 1, 0))
