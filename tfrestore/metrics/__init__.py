"""tfrestore metrics: per-image functions (shape ``(B,)``) and streaming Keras metrics.

Full-reference image quality: :func:`psnr` / :class:`PSNR`, :func:`ssim` /
:class:`SSIM`, :func:`ms_ssim` / :class:`MSSSIM`. Learned perceptual distance: :func:`lpips` /
:class:`LPIPS` (LPIPS v0.1, RGB inputs in [0, 1]). Every function returns one value per
image; every class is a ``keras.metrics.Metric`` averaging over images, usable in
``model.compile(metrics=[PSNR(), SSIM()])`` and serializable.
Semantic fidelity (does the restoration keep what a recognition network sees):
:func:`semantic_similarity` and :func:`retrieval_accuracy` (:mod:`tfrestore.metrics.semantic`).

Conventions that decide published-number parity, shared by all of them:

* ``data_range``: peak pixel value (1.0 for images in [0, 1], 255.0 for [0, 255]).
* ``color``: ``"rgb"`` (all channels), ``"y"`` (ITU-R BT.601 YCbCr luma as MATLAB
  ``rgb2ycbcr`` / BasicSR ``test_y_channel``, the SR-paper convention) or ``"gray"``
  (MATLAB ``rgb2gray``, as Wang et al.'s ``ssim.m`` evaluations and pyiqa).
* ``crop_border``: border pixels removed first (SR convention: the scale factor).
* ``quantize``: clip and round to 8 bits first, as when evaluating saved images.

Recipes: SR tables (BasicSR) ``psnr(..., color="y", crop_border=scale)``,
``ssim(..., color="y", crop_border=scale)``; denoising tables (RGB) ``psnr(...)``,
``ssim(...)``; pyiqa/TID2013 calibration values ``psnr(...)``,
``ssim(..., color="gray", quantize=True)``,
``ms_ssim(..., color="gray", quantize=True, combine="sum")``.
"""

from tfrestore.metrics.lpips import LPIPS, lpips
from tfrestore.metrics.psnr import PSNR, psnr
from tfrestore.metrics.semantic import (
    retrieval_accuracy,
    semantic_features,
    semantic_similarity,
)
from tfrestore.metrics.ssim import (
    MS_SSIM_WEIGHTS,
    MSSSIM,
    SSIM,
    ms_ssim,
    ms_ssim_min_size,
    ssim,
)
from tfrestore.metrics.task import SegmentationMeanIoU, TopKAccuracy

__all__ = [
    "psnr",
    "PSNR",
    "ssim",
    "SSIM",
    "ms_ssim",
    "MSSSIM",
    "MS_SSIM_WEIGHTS",
    "ms_ssim_min_size",
    "lpips",
    "LPIPS",
    "TopKAccuracy",
    "SegmentationMeanIoU",
    "semantic_features",
    "semantic_similarity",
    "retrieval_accuracy",
]
