"""Convert guided-diffusion (ADM) UNet checkpoints to :class:`tfrestore.diffusion.ADMUNet`.

The conversion is strict: every checkpoint tensor must be consumed exactly once
and have the shape the hyper-parameters imply; otherwise
:class:`ADMConversionError` lists the missing, unexpected and mis-shaped keys and
hints at the flag that usually causes them (``learn_sigma``, ``image_size`` /
``channel_mult``, ``num_res_blocks``, ``class_cond`` ...).

**What shapes cannot check.** The attention settings ``num_heads``,
``num_head_channels``, ``num_heads_upsample`` and ``use_new_attention_order``
change how the QKV projection is split into heads, not any tensor shape: a wrong
value converts without error and gives a silently different network. Set them
to the flags the checkpoint was trained with, and pass a short reference of the
original model's outputs (``verify=`` of :func:`load_adm_weights`, ``--verify``
of ``tfrestore convert adm``; an ``.npz`` with ``x``, ``t``, ``out`` and
optionally ``h``) to have the converted network checked against it.

Layout rules (PyTorch → Keras, :mod:`tfrestore.convert.layout`): Conv2d
``(O, I, kh, kw)`` → ``(kh, kw, I, O)``; Conv1d 1×1 ``(O, I, 1)`` and Linear ``(O, I)``
→ Dense ``(I, O)``; GroupNorm weight/bias → gamma/beta. All values are cast to float32.

>>> import numpy as np
>>> from tfrestore.diffusion import ADMUNet, adm_state_dict_shapes, convert_adm, load_adm_weights
>>> rng = np.random.default_rng(0)
>>> shapes = adm_state_dict_shapes("adm_tiny")  # PyTorch key -> shape
>>> sd = {k: rng.normal(size=s).astype("float32") for k, s in shapes.items()}
>>> weights = convert_adm(sd, "adm_tiny")
>>> weights["out.2.weight"].shape  # (kh, kw, in, out)
(3, 3, 32, 6)
>>> unet = load_adm_weights(ADMUNet.from_preset("adm_tiny"), weights)
"""

from __future__ import annotations

import collections
import os
import re

import numpy as np

from tfrestore.convert.layout import layer_kind, to_keras_layout
from tfrestore.convert.torch_checkpoint import load_torch_state_dict
from tfrestore.diffusion.config import adm_config, adm_state_dict_shapes

__all__ = ["ADMConversionError", "convert_adm", "load_adm_weights", "load_adm_checkpoint",
           "verify_adm"]

#: the flags a checkpoint's tensor shapes do not determine
UNCHECKABLE_FLAGS = ("num_heads", "num_head_channels", "num_heads_upsample",
                     "use_new_attention_order")


class ADMConversionError(ValueError):
    """Checkpoint keys/shapes do not match the requested ADM hyper-parameters."""


def _block_counts(keys):
    counts = {}
    for group in ("input_blocks", "output_blocks"):
        idx = {int(m.group(1)) for k in keys for m in [re.match(rf"{group}\.(\d+)\.", k)] if m}
        counts[group] = (max(idx) + 1) if idx else 0
    return counts


def _check_finite(key, value):
    if value.size and not np.all(np.isfinite(value)):
        bad = int(np.size(value) - np.count_nonzero(np.isfinite(value)))
        raise ADMConversionError(
            f"tensor {key!r} contains {bad} NaN/Inf value(s) of {value.size}: the checkpoint "
            f"is corrupt or was saved from a diverged run. Re-download or re-export it; "
            f"a network with these weights would make every loss value NaN."
        )


def _hints(expected, state, mismatched):
    hints = []
    got, exp = mismatched.get("out.2.weight", ((0,), (0,)))
    if got[0] != exp[0] and got[0] in (exp[0] // 2, 2 * exp[0]):
        hints.append(
            f"`out.2.weight` has {got[0]} output channels but the config expects {exp[0]}: "
            f"set learn_sigma={'True' if got[0] == 2 * exp[0] else 'False'}."
        )
    if any(k.startswith("label_emb") for k in state):
        hints.append("the checkpoint is class-conditional (label_emb.*); only unconditional "
                     "models are supported.")
    ce, cs = _block_counts(expected), _block_counts(state)
    if ce != cs:
        hints.append(
            f"the checkpoint has {cs['input_blocks']} input / {cs['output_blocks']} output "
            f"blocks, the config {ce['input_blocks']} / {ce['output_blocks']}: check "
            "image_size / channel_mult (number of levels) and num_res_blocks."
        )
    if any(".emb_layers.1.weight" in k and g[1:] == e[1:] and g[0] in (2 * e[0], e[0] // 2)
           for k, (g, e) in mismatched.items()):
        hints.append("emb_layers shapes differ: check use_scale_shift_norm.")
    if any(".skip_connection." in k or ".in_layers.2." in k or "time_embed" in k
           for k in mismatched):
        hints.append("channel widths differ: check num_channels / channel_mult.")
    if any(".op." in k or ".conv." in k for k in set(state) ^ set(expected)):
        hints.append("resampling layers differ: check resblock_updown / conv_resample.")
    if any(".qkv." in k or ".norm." in k for k in set(state) ^ set(expected)):
        hints.append("attention blocks differ: check attention_resolutions / image_size.")
    return hints


def _format_keys(keys, limit=12):
    keys = list(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def load_adm_checkpoint(checkpoint):
    """A state dict from a path (``.pt``/``.pth`` zip, ``.npz``) or a mapping;
    strips a DataParallel ``module.`` prefix."""
    if isinstance(checkpoint, (str, os.PathLike)):
        path = os.fspath(checkpoint)
        if path.endswith(".npz"):
            from tfrestore.utils.weights import load_npz

            state = load_npz(path, "ADM checkpoint")
        else:
            state = load_torch_state_dict(path)
    elif isinstance(checkpoint, dict):
        state = dict(checkpoint)
    else:
        raise TypeError(
            f"`checkpoint` must be a path or a dict of arrays, got {type(checkpoint).__name__}."
        )
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def convert_adm(checkpoint, config="adm_256_uncond"):
    """PyTorch ADM UNet state dict → ``OrderedDict[torch key, Keras-layout float32 array]``.

    Args:
        checkpoint: path to a ``.pt``/``.pth`` (zip) checkpoint, or a dict of
            arrays in the PyTorch layout.
        config: str or dict. ADM preset name or hyper-parameter dict (see
            :func:`tfrestore.diffusion.adm_config`).

    Raises:
        ADMConversionError: keys missing/unexpected or shapes differ; the message
            lists them and suggests the flag to fix.
    """
    cfg = adm_config(config)
    expected = adm_state_dict_shapes(cfg)
    state = load_adm_checkpoint(checkpoint)
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = collections.OrderedDict(
        (k, (tuple(np.shape(state[k])), expected[k]))
        for k in expected if k in state and tuple(np.shape(state[k])) != expected[k]
    )
    if missing or unexpected or mismatched:
        lines = [
            f"checkpoint does not match the ADM config ({len(state)} tensors in the "
            f"checkpoint, {len(expected)} expected)."
        ]
        if missing:
            lines.append(f"missing keys ({len(missing)}): {_format_keys(missing)}")
        if unexpected:
            lines.append(f"unexpected keys ({len(unexpected)}): {_format_keys(unexpected)}")
        if mismatched:
            lines.append(
                f"shape mismatches ({len(mismatched)}): "
                + _format_keys(f"{k}: checkpoint {g} vs expected {e}"
                               for k, (g, e) in mismatched.items())
            )
        hints = _hints(expected, state, mismatched)
        if hints:
            lines.append("hint: " + " ".join(hints))
        raise ADMConversionError("\n".join(lines))
    out = collections.OrderedDict()
    for key, shape in expected.items():
        value = np.asarray(state[key])
        if not np.issubdtype(value.dtype, np.floating):
            raise ADMConversionError(f"tensor {key!r} has dtype {value.dtype}, expected float")
        _check_finite(key, value)
        out[key] = to_keras_layout(value, layer_kind(key, len(shape)))
    return out


def load_adm_weights(unet, weights, verify=None):
    """Assign converted weights (output of :func:`convert_adm`, or a path to a
    checkpoint / ``.npz`` of converted weights / ``.weights.h5``) to ``unet``.

    Every variable of ``unet.torch_variables()`` is assigned exactly once;
    tensors with NaN/Inf are refused. ``verify``: a reference of the original
    model's outputs (see :func:`verify_adm`) the loaded network must reproduce;
    it is the only check of the attention settings. Returns ``unet``.
    """
    if isinstance(weights, (str, os.PathLike)):
        path = os.fspath(weights)
        if path.endswith(".weights.h5"):
            unet.load_weights(path)
            if verify is not None:
                verify_adm(unet, verify)
            return unet
        if path.endswith(".npz"):
            from tfrestore.utils.weights import load_npz

            weights = load_npz(path, "ADM weights file")
            # an .npz may hold either converted (Keras-layout) or raw PyTorch arrays
            if _looks_like_torch_layout(unet, weights):
                weights = convert_adm(weights, unet.hparams)
        else:
            weights = convert_adm(path, unet.hparams)
    table = unet.torch_variables()
    missing = [k for k in table if k not in weights]
    unexpected = [k for k in weights if k not in table]
    if missing or unexpected:
        raise ADMConversionError(
            f"converted weights do not match the UNet: missing {_format_keys(missing)}; "
            f"unexpected {_format_keys(unexpected)}"
        )
    for key, (var, _kind_) in table.items():
        value = np.asarray(weights[key])
        if tuple(value.shape) != tuple(var.shape):
            raise ADMConversionError(
                f"{key}: converted shape {value.shape} != variable shape {tuple(var.shape)}"
            )
        _check_finite(key, value)
        var.assign(value.astype(var.dtype))
    if verify is not None:
        verify_adm(unet, verify)
    return unet


def verify_adm(unet, reference, atol=1e-4, rtol=1e-3):
    """Check ``unet`` against outputs of the original PyTorch model.

    ``reference``: a path to an ``.npz`` (or a dict) with ``x`` (B, H, W, C) images
    in [−1, 1] (NHWC), ``t`` (B,) steps and the original model's ``out``
    (B, H, W, C_out) and, optionally, middle-block ``h``; a batch of one or two
    small images is enough (e.g. ``shared/vectors/adm_tiny/io.npz``). Raises
    :class:`ADMConversionError` naming the reference file, the largest error and
    the flags that shapes cannot check. Returns the largest absolute errors.
    """
    name = os.fspath(reference) if isinstance(reference, (str, os.PathLike)) else "reference"
    if isinstance(reference, (str, os.PathLike)):
        if not os.path.isfile(name):
            raise FileNotFoundError(f"verification reference not found: {name!r}")
        with np.load(name) as data:
            reference = {k: data[k] for k in data.files}
    missing = [k for k in ("x", "t", "out") if k not in reference]
    if missing:
        raise ADMConversionError(
            f"{name}: the verification reference needs arrays x, t and out (optionally h); "
            f"missing {missing}."
        )
    out, h = unet(np.asarray(reference["x"], np.float32), np.asarray(reference["t"]))
    errors = {}
    for key, got in (("out", out), ("h", h)):
        if key not in reference:
            continue
        want = np.asarray(reference[key], np.float32)
        got = np.asarray(got, np.float32)
        if got.shape != want.shape:
            raise ADMConversionError(
                f"{name}: the converted UNet gives {key} of shape {got.shape}, the reference "
                f"{want.shape}; the reference is NHWC (transpose PyTorch NCHW outputs)."
            )
        errors[key] = float(np.max(np.abs(got - want))) if got.size else 0.0
        if not np.allclose(got, want, atol=atol, rtol=rtol):
            flags = ", ".join(f"{k}={unet.hparams.get(k)!r}" for k in UNCHECKABLE_FLAGS)
            raise ADMConversionError(
                f"{name}: the converted UNet does not reproduce the reference `{key}` "
                f"(max abs error {errors[key]:.3g}, tolerance atol={atol:g}, rtol={rtol:g}). "
                f"The tensor shapes matched, so a flag that shapes cannot check is probably "
                f"wrong: {flags}. Set them to the values the checkpoint was trained with."
            )
    return errors


def _looks_like_torch_layout(unet, weights):
    table = unet.torch_variables()
    for key, (var, kind) in table.items():
        if kind != "vector" and key in weights:
            return tuple(np.shape(weights[key])) != tuple(var.shape)
    return False
