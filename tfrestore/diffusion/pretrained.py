"""Pretrained ADM weights: resolution (offline first), conversion and a shared cache.

Resolution order for a preset's official weights (``weights="default"``):

1. ``$TFRESTORE_WEIGHTS_DIR/<preset>.weights.h5`` or the Keras cache
   (``~/.keras/models``): an already converted file (``tfrestore convert adm``);
2. the original PyTorch checkpoint (``256x256_diffusion_uncond.pt``) in the same
   places, converted on load;
3. download of the original checkpoint from the guided-diffusion release, then
   conversion; the converted file is written next to it in the Keras cache so the
   next run skips the conversion.

Without network and local files, :class:`tfrestore.utils.WeightsNotFoundError`
says which file to put where.
"""

from __future__ import annotations

import json
import os

import keras
import tensorflow as tf

from tfrestore.utils.freeze import freeze
from tfrestore.utils.weights import WeightsNotFoundError, keras_cache_dir, resolve_weights_file

__all__ = ["PRETRAINED_ADM", "resolve_adm_weights", "get_adm_unet", "clear_unet_cache"]

PRETRAINED_ADM = {
    "adm_256_uncond": dict(
        converted="adm_256_uncond.weights.h5",
        original="256x256_diffusion_uncond.pt",
        origin="https://openaipublic.blob.core.windows.net/diffusion/jul-2021/"
        "256x256_diffusion_uncond.pt",
        file_hash=None,  # not published upstream
        description="ADM 256x256 unconditional diffusion UNet (openai/guided-diffusion)",
    ),
}

_UNET_CACHE = {}


def resolve_adm_weights(preset="adm_256_uncond"):
    """Local path of the weights of ``preset`` (a ``.weights.h5`` or the original
    ``.pt``), downloading the official checkpoint only as a last resort."""
    if preset not in PRETRAINED_ADM:
        raise ValueError(
            f"No pretrained weights are known for {preset!r}; presets with official "
            f"weights: {sorted(PRETRAINED_ADM)}. Pass weights=<path> or weights=None."
        )
    info = PRETRAINED_ADM[preset]
    try:
        return resolve_weights_file(info["converted"], origin=None, description=info["description"])
    except WeightsNotFoundError:
        pass
    try:
        return resolve_weights_file(
            info["original"], origin=info["origin"], file_hash=info["file_hash"],
            description=info["description"],
        )
    except WeightsNotFoundError as exc:
        raise WeightsNotFoundError(
            f"{exc}\nEither file works: the original `{info['original']}` ({info['origin']}, "
            f"2.2 GB) or its conversion `{info['converted']}` made once with "
            f"`tfrestore convert adm {info['original']} {info['converted']}`; put it into "
            "$TFRESTORE_WEIGHTS_DIR or pass DiffLoss(weights=<path>)."
        ) from None


def _weights_key(path):
    if path is None:
        return None
    path = os.path.abspath(os.fspath(path))
    try:
        return (path, os.path.getmtime(path))
    except OSError:
        return (path, None)


def _strategy_key():
    return id(tf.distribute.get_strategy())


def get_adm_unet(config, weights=None, recompute=False, cache=True):
    """An :class:`~tfrestore.diffusion.ADMUNet` for ``config`` with ``weights``
    (``None``: random; ``"default"``: official weights of a preset; a path to a
    ``.weights.h5`` / ``.npz`` / ``.pt``), frozen (``trainable=False``).

    Instances are cached per (config, weights file, dtype policy, recompute,
    distribution strategy) and shared by losses: frozen networks are read-only.
    """
    from tfrestore.diffusion.adm_weights import load_adm_weights
    from tfrestore.diffusion.config import adm_config
    from tfrestore.diffusion.unet import ADMUNet

    preset = config if isinstance(config, str) else None
    cfg = adm_config(config)
    if weights == "default":
        if preset is None:
            raise ValueError(
                "weights='default' needs a preset name with official weights (e.g. "
                "'adm_256_uncond'); for a custom ADM config pass weights=<path> "
                "(.weights.h5/.npz/.pt) or weights=None (random initialisation)."
            )
        path = resolve_adm_weights(preset)
    elif weights is None:
        path = None
    else:
        path = os.fspath(weights)
        if not os.path.isfile(path):
            raise WeightsNotFoundError(f"ADM weights file not found: {path!r}.")
    policy = keras.config.dtype_policy().name
    key = (json.dumps(cfg, sort_keys=True), _weights_key(path), policy, bool(recompute),
           _strategy_key())
    if cache and key in _UNET_CACHE:
        return _UNET_CACHE[key]
    unet = ADMUNet(**cfg, recompute=recompute)
    if path is not None:
        load_adm_weights(unet, path)
        if weights == "default" and not path.endswith(".weights.h5"):
            _save_converted(unet, preset)
    freeze(unet)  # TF-level too: an eager tape must not record the UNet's weights
    if cache:
        _UNET_CACHE[key] = unet
    return unet


def _save_converted(unet, preset):
    """Best effort: keep the converted weights in the Keras cache."""
    target = os.path.join(keras_cache_dir(), PRETRAINED_ADM[preset]["converted"])
    try:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        unet.save_weights(target)
    except Exception:  # read-only home etc.: conversion simply repeats next time
        pass


def clear_unet_cache():
    """Drop cached UNets (frees their memory once no loss references them)."""
    _UNET_CACHE.clear()
