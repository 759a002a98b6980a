"""Sliding-window sampling for D2SM's "internal patches" (paper §3.3).

The window grid follows the released code (an ``unfold`` without padding): windows
of ``size x size`` pixels every ``stride`` pixels, starting at ``(0, 0)``; pixels
that do not fit a whole window at the right/bottom edge are dropped. Windows are
ordered batch-major, then row-major over the grid (window 1 is to the right of
window 0).

Two ways to get per-window features:

* :func:`extract_windows` cuts the windows from the image; the backbone then runs
  on every window (exact, as in the paper; ~7x the pixels of the whole image for
  224/56 windows on 512 crops).
* :func:`sample_feature_windows` runs the backbone once per image and samples each
  window's cells from the feature map at receptive-field-aligned positions:
  the cell ``k`` of a window starting at pixel ``y0`` is read at feature
  coordinate ``y0 / s + k`` (``s`` = the layer's stride), bilinearly when
  ``y0 / s`` is fractional. Border cells then see real image context instead of
  the zero padding at the window's border, and for offsets that are not
  multiples of ``s`` the pooling phase differs from a separate forward pass, so
  the features are an approximation (measured in ``bench/bench_d2sm.py``).

>>> window_grid(512, 512, 224, 56)[:3], len(window_grid(512, 512, 224, 56))
([(0, 0), (0, 56), (0, 112)], 36)
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

__all__ = ["window_grid", "extract_windows", "sample_feature_windows", "interpolation_matrix"]


def _positions(length, size, stride):
    return list(range(0, length - size + 1, stride))


def window_grid(height, width, size, stride):
    """Top-left corners ``(y, x)`` of all windows, row-major.

    Raises ``ValueError`` if the image is smaller than one window.
    """
    size, stride = int(size), int(stride)
    if height < size or width < size:
        raise ValueError(
            f"the image ({height}x{width} pixels) is smaller than the patch window "
            f"(patch_size={size}); use larger crops or a smaller `patch_size`."
        )
    return [
        (y, x) for y in _positions(height, size, stride) for x in _positions(width, size, stride)
    ]


def _static_hw(images, what):
    h, w = images.shape[1], images.shape[2]
    if h is None or w is None:
        raise ValueError(
            f"{what} needs a static image height and width (got shape "
            f"{tuple(images.shape)}); feed fixed-size crops (e.g. a dataset with a "
            f"known crop size) or set patch_size=None."
        )
    return int(h), int(w)


def extract_windows(images, size, stride):
    """``(B, H, W, C) -> (B * P, size, size, C)`` windows (batch-major, row-major).

    Implemented with two gathers (rows, then columns) so that the gradient is a
    cheap segment sum, and it compiles with XLA.
    """
    h, w = _static_hw(images, "patch extraction")
    window_grid(h, w, size, stride)  # size check
    ys, xs = _positions(h, size, stride), _positions(w, size, stride)
    row_idx = np.asarray([[y + i for i in range(size)] for y in ys], np.int32)  # (Py, size)
    col_idx = np.asarray([[x + i for i in range(size)] for x in xs], np.int32)  # (Px, size)
    c = images.shape[-1]
    x = tf.gather(images, row_idx, axis=1)  # (B, Py, size, W, C)
    x = tf.gather(x, col_idx, axis=3)  # (B, Py, size, Px, size, C)
    x = tf.transpose(x, [0, 1, 3, 2, 4, 5])  # (B, Py, Px, size, size, C)
    return tf.reshape(x, [-1, size, size, c if c is not None else tf.shape(images)[-1]])


def interpolation_matrix(starts, cells, length, stride):
    """``(len(starts), cells, length)`` bilinear weights sampling feature rows
    ``start / stride + k`` (``k < cells``), clamped to ``[0, length - 1]``."""
    a = np.zeros((len(starts), cells, length), np.float32)
    for i, start in enumerate(starts):
        for k in range(cells):
            t = min(max(start / stride + k, 0.0), length - 1.0)
            lo = int(np.floor(t))
            frac = t - lo
            a[i, k, lo] += 1.0 - frac
            if frac > 0:
                a[i, k, min(lo + 1, length - 1)] += frac
    return a


def sample_feature_windows(feature_map, image_hw, size, stride, feature_stride, cells):
    """Window features cut from a whole-image feature map.

    Args:
        feature_map: ``(B, h, w, C)`` features of the whole images.
        image_hw: ``(H, W)`` of the images (pixels).
        size, stride: the pixel window grid (as in :func:`extract_windows`).
        feature_stride: pixels per feature cell of the layer.
        cells: cells per window side (what the layer gives for a ``size`` input).
    Returns:
        ``(B * P, cells, cells, C)`` in the same order as :func:`extract_windows`.
    """
    h_img, w_img = image_hw
    window_grid(h_img, w_img, size, stride)
    fh, fw = feature_map.shape[1], feature_map.shape[2]
    if fh is None or fw is None:
        raise ValueError("patch_mode='feature' needs a feature map with static height and width.")
    ay = interpolation_matrix(_positions(h_img, size, stride), cells, fh, feature_stride)
    ax = interpolation_matrix(_positions(w_img, size, stride), cells, fw, feature_stride)
    f = tf.cast(feature_map, tf.float32)
    c = f.shape[-1] if f.shape[-1] is not None else tf.shape(f)[-1]
    out = tf.einsum("ykh,bhwc->bykwc", tf.constant(ay), f)  # (B, Py, n, w, C)
    out = tf.einsum("xlw,bykwc->byxklc", tf.constant(ax), out)  # (B, Py, Px, n, n, C)
    return tf.reshape(out, [-1, cells, cells, c])
