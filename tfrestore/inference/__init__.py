"""Inference with trained restoration models: whole-image and tiled prediction, evaluation.

* :func:`tiled_predict` / :func:`receptive_field` (:mod:`~tfrestore.inference.tiling`):
  overlapping tiles blended in host memory; exact when the overlap covers the
  receptive field.
* :func:`load_model`, :func:`predict_image`, :func:`save_image`
  (:mod:`~tfrestore.inference.restore`): size multiples, two-input models, tiling.
* :func:`evaluate_degraded`, :func:`evaluate_model`, :func:`format_table`, :func:`write_csv`
  (:mod:`~tfrestore.inference.evaluate`): per-image PSNR / SSIM / LPIPS tables; images
  degraded from a seed go through :func:`evaluate_degraded` (``tfrestore eval`` and the
  training report).

The command line front end is ``tfrestore restore`` / ``tfrestore eval``.
"""

from tfrestore.utils.lazy import lazy_attributes

# Imported on first access, so that the command line checks --max-memory
# (:mod:`~tfrestore.inference.memory`) without loading TensorFlow.
__getattr__, __dir__, __all__ = lazy_attributes(
    __name__,
    {
        "tiling": ("tiled_predict", "receptive_field", "tile_starts", "blend_window"),
        "restore": ("load_model", "find_model_file", "input_requirements", "predict_image",
                    "save_image"),
        "evaluate": ("evaluate_degraded", "evaluate_model", "add_mean_row", "format_table",
                     "write_csv"),
    },
)
