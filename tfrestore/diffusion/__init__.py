"""Diffusion core: noise schedule and the ADM (guided-diffusion) UNet in Keras."""

from tfrestore.diffusion.schedule import DiffusionSchedule, cosine_betas, linear_betas
from tfrestore.diffusion.unet import (
    ADM_PRESETS,
    ADMUNet,
    adm_config,
    adm_state_dict_shapes,
    timestep_embedding,
)

__all__ = [
    "DiffusionSchedule",
    "linear_betas",
    "cosine_betas",
    "ADMUNet",
    "ADM_PRESETS",
    "adm_config",
    "adm_state_dict_shapes",
    "timestep_embedding",
]
