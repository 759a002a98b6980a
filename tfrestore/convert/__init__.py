"""Checkpoint conversion: PyTorch zip checkpoints -> Keras weights (no torch needed).

* :func:`load_torch_state_dict` reads ``.pt``/``.pth`` files safely (tensors and
  plain containers only).
* :func:`convert_adm` maps a guided-diffusion (ADM) UNet state dict onto
  :class:`tfrestore.diffusion.ADMUNet` with strict key/shape checks.
* CLI: ``tfrestore convert adm in.pt out.weights.h5 [--preset adm_256_uncond]``
  (also ``python -m tfrestore.convert adm ...``).
"""

from tfrestore.convert.adm import (
    ADMConversionError,
    convert_adm,
    load_adm_checkpoint,
    load_adm_weights,
    to_keras_layout,
    verify_adm,
)
from tfrestore.convert.torch_checkpoint import (
    TorchCheckpointError,
    UnsafeCheckpointError,
    load_torch_checkpoint,
    load_torch_state_dict,
    save_torch_state_dict,
)

__all__ = [
    "ADMConversionError",
    "convert_adm",
    "load_adm_checkpoint",
    "load_adm_weights",
    "to_keras_layout",
    "verify_adm",
    "TorchCheckpointError",
    "UnsafeCheckpointError",
    "load_torch_checkpoint",
    "load_torch_state_dict",
    "save_torch_state_dict",
]
