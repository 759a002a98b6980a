"""Diffusion core: noise schedule and the ADM (guided-diffusion) UNet in Keras.

* :mod:`~tfrestore.diffusion.config`: ADM presets, config parsing, the PyTorch
  key → shape table;
* :mod:`~tfrestore.diffusion.layers` / :mod:`~tfrestore.diffusion.unet`: the
  layers and the :class:`ADMUNet` model;
* :mod:`~tfrestore.diffusion.adm_weights`: strict conversion of guided-diffusion
  checkpoints (read with :mod:`tfrestore.convert`) and loading into an ``ADMUNet``;
* :mod:`~tfrestore.diffusion.schedule`: noise schedules.
"""

from tfrestore.diffusion.adm_weights import (
    ADMConversionError,
    convert_adm,
    load_adm_checkpoint,
    load_adm_weights,
    verify_adm,
)
from tfrestore.diffusion.config import ADM_PRESETS, adm_config, adm_state_dict_shapes
from tfrestore.diffusion.layers import timestep_embedding
from tfrestore.diffusion.schedule import DiffusionSchedule, cosine_betas, linear_betas
from tfrestore.diffusion.unet import ADMUNet

__all__ = [
    "DiffusionSchedule",
    "linear_betas",
    "cosine_betas",
    "ADMUNet",
    "ADM_PRESETS",
    "adm_config",
    "adm_state_dict_shapes",
    "timestep_embedding",
    "ADMConversionError",
    "convert_adm",
    "load_adm_checkpoint",
    "load_adm_weights",
    "verify_adm",
]
