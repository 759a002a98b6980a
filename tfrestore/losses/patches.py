"""Sliding-window sampling for D2SM's "internal patches" (section 3.3 of the D2SM paper).

The window grid follows the released code (an ``unfold`` without padding): windows
of ``size x size`` pixels every ``stride`` pixels, starting at ``(0, 0)``; pixels
that do not fit a whole window at the right/bottom edge are dropped. Windows are
ordered batch-major, then row-major over the grid (window 1 is to the right of
window 0).

:func:`extract_windows` cuts the windows from the image; the backbone then runs
on every window (exact, as in the paper; ~7x the pixels of the whole image for
224/56 windows on 512 crops). Cutting windows from one whole-image feature map
instead is not offered: border cells then see image context instead of the
window's zero padding and the pooling phase differs, and on torchvision VGG16
conv5_3 the resulting D2SM gradients had a cosine of only 0.3-0.4 to the exact ones.

>>> window_grid(512, 512, 224, 56)[:3], len(window_grid(512, 512, 224, 56))
([(0, 0), (0, 56), (0, 112)], 36)
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfrestore.utils import validation

__all__ = ["window_grid", "extract_windows"]


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


def extract_windows(images, size, stride):
    """``(B, H, W, C) -> (B * P, size, size, C)`` windows (batch-major, row-major).

    Implemented with two gathers (rows, then columns) so that the gradient is a
    cheap segment sum, and it compiles with XLA.
    """
    h, w = validation.static_hw(
        images,
        "patch extraction",
        "feed fixed-size crops (e.g. a dataset with a known crop size) or set patch_size=None.",
    )
    window_grid(h, w, size, stride)  # size check
    ys, xs = _positions(h, size, stride), _positions(w, size, stride)
    row_idx = np.asarray([[y + i for i in range(size)] for y in ys], np.int32)  # (Py, size)
    col_idx = np.asarray([[x + i for i in range(size)] for x in xs], np.int32)  # (Px, size)
    c = images.shape[-1]
    x = tf.gather(images, row_idx, axis=1)  # (B, Py, size, W, C)
    x = tf.gather(x, col_idx, axis=3)  # (B, Py, size, Px, size, C)
    x = tf.transpose(x, [0, 1, 3, 2, 4, 5])  # (B, Py, Px, size, size, C)
    return tf.reshape(x, [-1, size, size, c if c is not None else tf.shape(images)[-1]])
