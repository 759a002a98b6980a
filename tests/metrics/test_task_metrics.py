"""Task metrics against NumPy references."""

import keras
import numpy as np
import pytest

from tfrestore.metrics import SegmentationMeanIoU, TopKAccuracy


def np_topk(labels, scores, k):
    better = (scores > scores[np.arange(len(labels)), labels][:, None]).sum(-1)
    return np.mean(better < k)


def np_miou(labels, pred, num_classes, ignore=255):
    valid = labels != ignore
    cm = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(cm, (labels[valid], pred[valid]), 1)
    inter = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - inter
    return np.mean(inter[union > 0] / union[union > 0])


@pytest.mark.parametrize("k", [1, 5])
def test_topk_matches_numpy_across_batches(k, rng):
    labels = rng.integers(0, 10, size=(40,))
    scores = rng.normal(size=(40, 10)).astype("float32")
    metric = TopKAccuracy(k)
    assert metric.name == f"top{k}_accuracy"
    for sl in (slice(0, 16), slice(16, 40)):
        metric.update_state(labels[sl], scores[sl])
    assert float(metric.result()) == pytest.approx(np_topk(labels, scores, k))
    metric.reset_state()
    metric.update_state(labels[:, None], scores.astype("float64"))  # (B, 1) labels, float64 scores
    assert float(metric.result()) == pytest.approx(np_topk(labels, scores, k))


def test_topk_bad_k():
    for k in (0, 2.5, True):
        with pytest.raises(ValueError, match="`k`"):
            TopKAccuracy(k)


def test_miou_matches_numpy_with_ignore_label(rng):
    num_classes = 5
    labels = rng.integers(0, num_classes, size=(6, 12, 10))
    labels[rng.uniform(size=labels.shape) < 0.2] = 255
    labels[labels == 3] = 4  # class 3 absent from the labels ...
    scores = rng.normal(size=(6, 12, 10, num_classes)).astype("float32")
    metric = SegmentationMeanIoU(num_classes)
    metric.update_state(labels[:3], scores[:3])
    metric.update_state(labels[3:, ..., None], scores[3:])  # (B, H, W, 1) labels too
    assert float(metric.result()) == pytest.approx(
        np_miou(labels, scores.argmax(-1), num_classes), rel=1e-6
    )
    # ... and never predicted either: then it is left out of the mean.
    scores[..., 3] = -1e9
    metric.reset_state()
    metric.update_state(labels, scores)
    assert float(metric.result()) == pytest.approx(
        np_miou(labels, scores.argmax(-1), num_classes), rel=1e-6
    )


def test_miou_bad_inputs():
    metric = SegmentationMeanIoU(3)
    with pytest.raises(ValueError, match="same height and width"):
        metric.update_state(np.zeros((1, 8, 8)), np.zeros((1, 4, 4, 3), "float32"))
    with pytest.raises(ValueError, match="expected num_classes=3"):
        metric.update_state(np.zeros((1, 4, 4)), np.zeros((1, 4, 4, 5), "float32"))
    with pytest.raises(ValueError, match="per-pixel scores"):
        metric.update_state(np.zeros((1,)), np.zeros((1, 3), "float32"))
    with pytest.raises(ValueError, match="num_classes"):
        SegmentationMeanIoU(0)


@pytest.mark.parametrize(
    "metric", [TopKAccuracy(5), SegmentationMeanIoU(21, ignore_class=None, name="miou")]
)
def test_serialization_roundtrip(metric):
    restored = keras.metrics.deserialize(keras.metrics.serialize(metric))
    assert type(restored) is type(metric) and restored.get_config() == metric.get_config()
