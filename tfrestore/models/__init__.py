"""tfrestore networks: functional, serializable Keras models working on channels-last floats.

Restorers: :func:`DnCNN`, :func:`FFDNet`, :func:`LiuDenoiser` (Liu et al., TIP 2020),
:func:`EDSR` (super-resolution) and :func:`UNet` (SRN-style multi-scale encoder-decoder).
Task-driven training (Liu et al.): :func:`cascade` builds ``[restored, task_logits]``
with a frozen task network; :func:`get_restorer` and :func:`task_feature_extractor`
support cross-task evaluation and the task network's perceptual features.
Pretrained restorers (the authors' released FFDNet and DnCNN weights): :func:`from_preset`,
:func:`list_presets`; :func:`released_model` reads a released ``.mat``/``.pth`` file.
Fine-tuning: :func:`copy_weights` initialises a model from another one's weights, layer by layer
by name; :func:`load_weights_file` loads a ``.weights.h5`` file after checking its layout.
Mixed precision: built under a mixed policy (``mixed_float16``), a network computes in float16
and its final layer (the residual addition, crop or mean shift) runs in float32, so it returns
float32 as Keras' mixed-precision guide recommends; built under ``float32`` it is unchanged.
"""

from tfrestore.models.base import RestorationModel
from tfrestore.models.cascade import (
    PREPROCESS_MODES,
    FrozenTask,
    TaskPreprocess,
    cascade,
    get_restorer,
    task_feature_extractor,
)
from tfrestore.models.dncnn import DnCNN
from tfrestore.models.edsr import EDSR
from tfrestore.models.ffdnet import FFDNet
from tfrestore.models.liu import LiuDenoiser
from tfrestore.models.params import trainable_params
from tfrestore.models.presets import from_preset, list_presets
from tfrestore.models.released import ReleasedWeightsError, load_released_weights, released_model
from tfrestore.models.transfer import WeightTransferError, copy_weights, load_weights_file
from tfrestore.models.unet import UNet

__all__ = [
    "RestorationModel",
    "DnCNN",
    "FFDNet",
    "LiuDenoiser",
    "EDSR",
    "UNet",
    "cascade",
    "get_restorer",
    "task_feature_extractor",
    "FrozenTask",
    "TaskPreprocess",
    "PREPROCESS_MODES",
    "trainable_params",
    "from_preset",
    "list_presets",
    "released_model",
    "load_released_weights",
    "ReleasedWeightsError",
    "copy_weights",
    "load_weights_file",
    "WeightTransferError",
]
