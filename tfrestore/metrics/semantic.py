"""Semantic fidelity of restored images: does the restoration keep *what* is in the image?

Pixel metrics (PSNR, SSIM) and LPIPS compare two images position by position. A
semantic loss (D2SM, PDL, contextual) instead aims to keep the content that a
recognition network sees. These functions score that with an ImageNet network and
a descriptor that no tfrestore loss trains with by default:

* **descriptor** ``d(x)``: the AlexNet (torchvision ImageNet weights) ``relu5``
  feature map averaged over all positions, L2-normalised (256 values per image).
  Global pooling discards *where* things are and keeps *what* the deepest layer
  responds to, the level at which recognition works.
* :func:`semantic_similarity`: ``cos(d(restored), d(clean))`` per image (1 = the
  network sees the same content).
* :func:`retrieval_accuracy`: every restored image queries the set of all clean
  images by cosine similarity of descriptors; top-k accuracy is the fraction whose
  own clean image is among the ``k`` nearest. It asks whether the restoration kept
  what distinguishes this image from the others.

How this differs from LPIPS-alex, which uses the same network: LPIPS compares
unit-normalised activations of ``relu1``–``relu5`` *at every position*, weighted by
linear layers fitted to human judgements of small distortions, so it is dominated
by local texture and structure. The score here uses only the last layer,
spatially pooled, with no learned weights: an image restored with shifted or
re-synthesised texture but the same content scores well here and badly in LPIPS.
The semantic losses in :mod:`tfrestore.losses` use VGG16/19 by default; when
``LPIPSLoss(backbone="alexnet")`` is among the training losses, AlexNet is no longer
independent of training.

Images of different sizes are given as a list of ``(H, W, 3)`` arrays and
processed one at a time.

>>> import numpy as np
>>> from tfrestore.metrics.semantic import semantic_features, retrieval_accuracy
>>> rng = np.random.default_rng(0)
>>> clean = [rng.uniform(size=(64, 64, 3)).astype("float32") for _ in range(4)]
>>> f = semantic_features(clean, weights=None)   # random AlexNet: offline example
>>> f.shape
(4, 256)
>>> retrieval_accuracy(f, f)  # every image retrieves itself
1.0
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

__all__ = [
    "semantic_features",
    "semantic_similarity",
    "retrieval_accuracy",
    "SEMANTIC_BACKBONE",
    "SEMANTIC_LAYER",
]

SEMANTIC_BACKBONE = "alexnet"
SEMANTIC_LAYER = "relu5"


def _as_list(images):
    if isinstance(images, (list, tuple)):
        return [np.asarray(x, np.float32) for x in images]
    arr = np.asarray(images, np.float32)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4:
        raise ValueError(
            f"`images` must be (B, H, W, 3), (H, W, 3) or a list of (H, W, 3) arrays, got "
            f"shape {arr.shape}."
        )
    return list(arr)


def semantic_features(
    images, layers=SEMANTIC_LAYER, backbone=SEMANTIC_BACKBONE, weights="torchvision"
):
    """L2-normalised, spatially averaged features of one layer for each image, ``(N, C)``.

    Args:
        images: float tensor (B, H, W, 3) or list of (H, W, 3) arrays. RGB images in
            [0, 1].
        layers: str or list of one str. The one layer described.
        backbone: str. See :func:`tfrestore.features.get_feature_extractor`.
        weights: str or None. Backbone weights (``"torchvision"`` ImageNet by default;
            ``None`` gives seeded random weights, for tests).
    """
    from tfrestore.features.feature_source import FeatureSource, one_layer

    layer = one_layer(layers, "semantic_features")
    source = FeatureSource(layer, backbone, weights, owner="semantic_features")
    min_size = source.min_size
    out = []
    for i, img in enumerate(_as_list(images)):
        if img.ndim != 3 or img.shape[-1] != 3:
            raise ValueError(f"`images[{i}]` must be (H, W, 3) RGB, got shape {img.shape}.")
        if min(img.shape[:2]) < min_size:
            raise ValueError(
                f"`images[{i}]` is {img.shape[0]}x{img.shape[1]} pixels, smaller than the "
                f"{min_size} px that {backbone} {layer} needs."
            )
        feat = source(tf.constant(img[None]))[layer]
        out.append(tf.reduce_mean(feat, axis=[1, 2])[0].numpy())
    feats = np.stack(out).astype(np.float64)
    norms = np.linalg.norm(feats, axis=1, keepdims=True)
    return (feats / np.maximum(norms, 1e-12)).astype(np.float32)


def semantic_similarity(clean, restored, **kwargs):
    """Per-image cosine similarity of the descriptors of ``restored`` and ``clean``,
    ``(N,)``; inputs as :func:`semantic_features` (or its outputs, ``(N, C)`` arrays of
    descriptors, when both are 2-D)."""
    fc, fr = _features_pair(clean, restored, kwargs)
    return np.sum(fc * fr, axis=1)


def retrieval_accuracy(clean, restored, k=1, **kwargs):
    """Top-``k`` accuracy of retrieving each image's clean version from its restored
    version among all clean images (cosine similarity of descriptors).

    ``clean`` and ``restored`` are aligned (item ``i`` of both is the same scene):
    images, or descriptor arrays ``(N, C)`` from :func:`semantic_features`. Ties are
    broken against the query (a restored image equally close to two clean ones
    counts as correct only for ``k >= 2``), so constant descriptors score ``1/N``
    at best, not 1.
    """
    fc, fr = _features_pair(clean, restored, kwargs)
    n = fc.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"`k` must be between 1 and the number of images ({n}), got {k}.")
    sims = fr.astype(np.float64) @ fc.astype(np.float64).T  # (query, gallery)
    own = np.diag(sims)
    # Rank of the correct item = number of other gallery items at least as similar.
    others = (sims >= own[:, None]).sum(axis=1) - 1
    return float(np.mean(others < k))


def _features_pair(clean, restored, kwargs):
    def is_desc(x):
        return isinstance(x, np.ndarray) and x.ndim == 2

    if is_desc(clean) and is_desc(restored):
        fc, fr = clean.astype(np.float32), restored.astype(np.float32)
    else:
        fc, fr = semantic_features(clean, **kwargs), semantic_features(restored, **kwargs)
    if fc.shape != fr.shape:
        raise ValueError(
            f"`clean` and `restored` must describe the same number of images, got {fc.shape[0]} "
            f"and {fr.shape[0]}."
        )
    return fc, fr
