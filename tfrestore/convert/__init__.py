"""Generic PyTorch checkpoint reading (no torch needed) and layout mapping.

* :func:`load_torch_state_dict` reads ``.pt``/``.pth`` files safely (tensors and
  plain containers only).
* :func:`to_keras_layout` / :func:`layer_kind` map a PyTorch tensor to the Keras
  layout of its layer kind.

Model-specific conversions live with their models and build on these:
:func:`tfrestore.diffusion.convert_adm` (guided-diffusion UNet). The command line
``tfrestore convert adm in.pt out.weights.h5`` is :mod:`tfrestore.cli_convert`.
"""

from tfrestore.convert.layout import layer_kind, to_keras_layout
from tfrestore.convert.torch_checkpoint import (
    TorchCheckpointError,
    UnsafeCheckpointError,
    load_torch_checkpoint,
    load_torch_state_dict,
)

__all__ = [
    "layer_kind",
    "to_keras_layout",
    "TorchCheckpointError",
    "UnsafeCheckpointError",
    "load_torch_checkpoint",
    "load_torch_state_dict",
]
