"""Keras callbacks used by the training runner.

* :class:`LearningRateLogger` adds the current learning rate to the epoch logs
  (so CSV and TensorBoard record it).
* :class:`ImageSummaries` writes degraded / restored / clean validation images
  to TensorBoard after every epoch.
* :class:`ValidationLPIPS` adds ``val_lpips`` to the epoch logs (validation
  only: as a compiled metric LPIPS would also run on every training batch).
"""

from __future__ import annotations

import numpy as np
import keras
import tensorflow as tf

__all__ = ["LearningRateLogger", "ImageSummaries", "ValidationLPIPS", "first_input", "to_display"]


class LearningRateLogger(keras.callbacks.Callback):
    """Put ``learning_rate`` (the value the optimizer uses now) into the epoch logs."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or self.model.optimizer is None:
            return
        opt = self.model.optimizer
        inner = getattr(opt, "inner_optimizer", opt)  # LossScaleOptimizer (mixed_float16)
        lr = inner.learning_rate
        if callable(lr) and not isinstance(lr, (tf.Variable, keras.Variable)):
            lr = lr(inner.iterations)
        logs["learning_rate"] = float(keras.ops.convert_to_numpy(lr))


def first_input(x):
    """The image input of a (possibly multi-input, e.g. FFDNet) model input."""
    if isinstance(x, dict):
        return next(iter(x.values()))
    if isinstance(x, (tuple, list)):
        return x[0]
    return x


def to_display(images, size):
    """Float images clipped to [0, 1], resized (nearest) to ``size`` = (H, W)
    when they differ (a low-resolution SR input next to its output), 3 channels."""
    x = tf.clip_by_value(tf.cast(images, tf.float32), 0.0, 1.0)
    if tuple(x.shape[1:3]) != tuple(size):
        x = tf.image.resize(x, size, method="nearest")
    if x.shape[-1] == 1:
        x = tf.image.grayscale_to_rgb(x)
    return x


class ImageSummaries(keras.callbacks.Callback):
    """Log ``degraded``, ``restored`` and ``clean`` validation images to TensorBoard.

    Args:
        log_dir: str. TensorBoard directory (a sub-folder ``images`` is written).
        inputs: array or tuple of arrays. Fixed model input batch (a tuple for
            multi-input models).
        targets: float array (B, H, W, C). The matching clean images.
        max_images: int. Number of images logged.
    """

    def __init__(self, log_dir, inputs, targets, max_images=3):
        super().__init__()
        self.log_dir = log_dir
        self.inputs = inputs
        self.targets = np.asarray(targets)
        self.max_images = int(max_images)
        self._writer = None

    def _write(self, step):
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(f"{self.log_dir}/images")
        restored = self.model.predict_on_batch(self.inputs)
        restored = first_input(restored)
        size = self.targets.shape[1:3]
        with self._writer.as_default():
            for tag, imgs in (
                ("degraded", first_input(self.inputs)),
                ("restored", restored),
                ("clean", self.targets),
            ):
                tf.summary.image(
                    tag, to_display(imgs, size), step=step, max_outputs=self.max_images
                )
        self._writer.flush()

    def on_epoch_end(self, epoch, logs=None):
        self._write(epoch + 1)

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class ValidationLPIPS(keras.callbacks.Callback):
    """Mean LPIPS of the model's outputs on ``val_data`` as ``logs["val_lpips"]``.

    Put it before the callbacks that read the logs (CSVLogger, TensorBoard,
    ModelCheckpoint): Keras runs callbacks in list order with one logs dict.

    Args:
        val_data: tf.data.Dataset. Finite dataset of ``(inputs, clean)`` batches.
        lpips_fn: callable. ``fn(y_true, y_pred) -> (B,)`` (e.g.
            ``tfrestore.metrics.lpips``).
        steps: int or None. At most this many batches (None: all).
    """

    def __init__(self, val_data, lpips_fn, steps=None):
        super().__init__()
        self.val_data = val_data
        self.lpips_fn = lpips_fn
        self.steps = steps

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        ds = self.val_data if self.steps is None else self.val_data.take(self.steps)
        values = []
        for x, y in ds:
            pred = first_input(self.model(x, training=False))
            pred = tf.clip_by_value(tf.cast(pred, tf.float32), 0.0, 1.0)
            values.append(np.asarray(self.lpips_fn(tf.cast(y, tf.float32), pred)))
        if values:
            logs["val_lpips"] = float(np.mean(np.concatenate(values)))
