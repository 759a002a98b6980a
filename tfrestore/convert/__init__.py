"""Checkpoint conversion: PyTorch zip checkpoints -> Keras weights (no torch needed).

* :func:`load_torch_state_dict` reads ``.pt``/``.pth`` files safely (tensors and
  plain containers only).
* :func:`convert_adm` maps a guided-diffusion (ADM) UNet state dict onto
  :class:`tfrestore.diffusion.ADMUNet` with strict key/shape checks.
* CLI: ``tfrestore convert adm in.pt out.weights.h5 [--preset adm_256_uncond]``
  (also ``python -m tfrestore convert adm ...``).
"""

from tfrestore._lazy import lazy_attributes

# Exported names -> defining module, imported on first access: the command line builds its
# parser from tfrestore.convert.cli without loading TensorFlow (adm.py needs it).
_EXPORTS = {
    "ADMConversionError": "adm",
    "convert_adm": "adm",
    "load_adm_checkpoint": "adm",
    "load_adm_weights": "adm",
    "to_keras_layout": "adm",
    "verify_adm": "adm",
    "TorchCheckpointError": "torch_checkpoint",
    "UnsafeCheckpointError": "torch_checkpoint",
    "load_torch_checkpoint": "torch_checkpoint",
    "load_torch_state_dict": "torch_checkpoint",
    "save_torch_state_dict": "torch_checkpoint",
}

__all__ = list(_EXPORTS)

__getattr__, __dir__ = lazy_attributes(__name__, _EXPORTS)
