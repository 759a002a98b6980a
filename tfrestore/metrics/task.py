"""High-level task metrics on restored images (Liu et al., TIP 2020, Tables IV-V).

Use them on the task output of :func:`tfrestore.models.cascade`, whose task
network is frozen, so ``evaluate`` reports the accuracy of that network on the
restored images::

    model.compile(..., metrics=[[], [TopKAccuracy(1), TopKAccuracy(5)]])   # classification
    model.compile(..., metrics=[[], [SegmentationMeanIoU(21)]])            # VOC segmentation

Both are thin, documented configurations of Keras metrics
(``SparseTopKCategoricalAccuracy``, ``MeanIoU``), checked against NumPy in the
tests.
"""

from __future__ import annotations

import keras

__all__ = ["TopKAccuracy", "SegmentationMeanIoU"]


@keras.saving.register_keras_serializable(package="tfrestore")
class TopKAccuracy(keras.metrics.SparseTopKCategoricalAccuracy):
    """Top-k accuracy of integer labels ``(B,)`` / ``(B, 1)`` against scores ``(B, classes)``.

    Scores may be logits or probabilities (ranking is the same). A label
    counts as correct when its score is among the ``k`` largest; with ties at
    the k-th score the result follows ``tf.math.in_top_k`` (ties count as hits).

    Args:
        k: int. 1 for top-1, 5 for top-5.
        name: str or None. Metric name; None gives ``"top{k}_accuracy"``.

    >>> import numpy as np
    >>> m = TopKAccuracy(k=2)
    >>> m.update_state(np.array([2, 2]), np.array([[0.1, 0.5, 0.4], [0.6, 0.3, 0.1]]))  # hit, miss
    >>> float(m.result())
    0.5
    """

    def __init__(self, k=1, name=None, dtype=None):
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ValueError(f"`k` must be a positive integer, got {k!r}.")
        super().__init__(k=k, name=name or f"top{k}_accuracy", dtype=dtype)

    def update_state(self, y_true, y_pred, sample_weight=None):
        # tf.math.in_top_k accepts only float32 scores (float64/float16 would fail).
        super().update_state(y_true, keras.ops.cast(y_pred, "float32"), sample_weight)

    def get_config(self):
        return {"k": self.k, "name": self.name, "dtype": self.dtype}


@keras.saving.register_keras_serializable(package="tfrestore")
class SegmentationMeanIoU(keras.metrics.MeanIoU):
    """Mean intersection-over-union of a dense segmenter, ignoring a void label.

    ``y_true``: integer labels ``(B, H, W)`` or ``(B, H, W, 1)``; ``y_pred``:
    per-pixel scores ``(B, H, W, num_classes)`` (arg-maxed). Pixels labelled
    ``ignore_class`` (255 in Pascal VOC / Cityscapes) are excluded. The
    confusion matrix accumulates over all images seen (dataset-level mIoU, as
    in VOC evaluation); classes absent from both labels and predictions are
    left out of the mean.

    Args:
        num_classes: int. Number of classes (21 for VOC 2012, 19 for Cityscapes).
        ignore_class: int or None. Label to skip, or None.
        name: str. Metric name.

    >>> import numpy as np
    >>> y = np.array([[[0, 1], [1, 255]]])
    >>> scores = np.eye(2)[np.array([[[0, 1], [0, 0]]])]  # predicts [[0, 1], [0, 0]]
    >>> m = SegmentationMeanIoU(num_classes=2)
    >>> m.update_state(y, scores)
    >>> round(float(m.result()), 4)  # IoU_0 = 1/2, IoU_1 = 1/2
    0.5
    """

    def __init__(self, num_classes, ignore_class=255, name="mean_iou", dtype=None):
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"`num_classes` must be a positive integer, got {num_classes!r}.")
        super().__init__(
            num_classes=num_classes,
            ignore_class=ignore_class,
            sparse_y_true=True,
            sparse_y_pred=False,
            name=name,
            dtype=dtype,
        )

    def update_state(self, y_true, y_pred, sample_weight=None):
        st, sp = getattr(y_true, "shape", None), getattr(y_pred, "shape", None)
        if sp is not None and len(sp) != 4:
            raise ValueError(
                f"{self.name}: `y_pred` must be per-pixel scores (batch, height, width, "
                f"num_classes), got shape {tuple(sp)}."
            )
        if sp is not None and sp[-1] is not None and sp[-1] != self.num_classes:
            raise ValueError(
                f"{self.name}: `y_pred` has {sp[-1]} classes, expected "
                f"num_classes={self.num_classes}."
            )
        if st is not None and sp is not None and len(st) in (3, 4):
            if any(a is not None and b is not None and a != b for a, b in zip(st[1:3], sp[1:3])):
                raise ValueError(
                    f"{self.name}: `y_true` {tuple(st)} and `y_pred` {tuple(sp)} must have "
                    "the same "
                    "height and width (upsample the logits or downsample the labels first)."
                )
        super().update_state(y_true, y_pred, sample_weight)

    def get_config(self):
        return {
            "num_classes": self.num_classes,
            "ignore_class": self.ignore_class,
            "name": self.name,
            "dtype": self.dtype,
        }
