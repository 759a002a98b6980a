"""Inference with trained restoration models: whole-image and tiled prediction, evaluation.

* :func:`tiled_predict` / :func:`receptive_field` (:mod:`~tfrestore.inference.tiling`):
  overlapping tiles blended in host memory; exact when the overlap covers the
  receptive field.
* :func:`load_model`, :func:`predict_image`, :func:`save_image`
  (:mod:`~tfrestore.inference.restore`): size multiples, two-input models, tiling.
* :func:`evaluate_model`, :func:`format_table`, :func:`write_csv`
  (:mod:`~tfrestore.inference.evaluate`): per-image PSNR / SSIM / LPIPS tables.

The command line front end is ``tfrestore restore`` / ``tfrestore eval``.
"""

from tfrestore.inference.evaluate import add_mean_row, evaluate_model, format_table, write_csv
from tfrestore.inference.restore import (
    find_model_file,
    input_requirements,
    load_model,
    predict_image,
    save_image,
)
from tfrestore.inference.tiling import blend_window, receptive_field, tile_starts, tiled_predict

__all__ = [
    "tiled_predict",
    "receptive_field",
    "tile_starts",
    "blend_window",
    "load_model",
    "find_model_file",
    "input_requirements",
    "predict_image",
    "save_image",
    "evaluate_model",
    "add_mean_row",
    "format_table",
    "write_csv",
]
