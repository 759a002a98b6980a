"""Checkpoint conversion: PyTorch zip checkpoints -> Keras weights (no torch needed).

* :func:`load_torch_state_dict` reads ``.pt``/``.pth`` files safely (tensors and
  plain containers only).
* :func:`convert_adm` maps a guided-diffusion (ADM) UNet state dict onto
  :class:`tfrestore.diffusion.ADMUNet` with strict key/shape checks.
* CLI: ``tfrestore convert adm in.pt out.weights.h5 [--preset adm_256_uncond]``
  (also ``python -m tfrestore convert adm ...``).
"""

from tfrestore._lazy import lazy_attributes

# Imported on first access: the command line builds its parser from tfrestore.convert.cli
# without loading TensorFlow (adm.py needs it).
__getattr__, __dir__, __all__ = lazy_attributes(
    __name__,
    {
        "adm": (
            "ADMConversionError",
            "convert_adm",
            "load_adm_checkpoint",
            "load_adm_weights",
            "to_keras_layout",
            "verify_adm",
        ),
        "torch_checkpoint": (
            "TorchCheckpointError",
            "UnsafeCheckpointError",
            "load_torch_checkpoint",
            "load_torch_state_dict",
            "save_torch_state_dict",
        ),
    },
)
