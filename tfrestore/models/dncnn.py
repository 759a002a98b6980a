"""DnCNN (Zhang et al., "Beyond a Gaussian Denoiser", TIP 2017)."""

from __future__ import annotations

import keras

from tfrestore.models.base import RestorationModel
from tfrestore.models.layers import InputCheck, check_channels, output_dtype

__all__ = ["DnCNN"]


def DnCNN(
    channels=1,
    depth=17,
    filters=64,
    residual=True,
    batch_norm=True,
    bn_momentum=0.0,
    output_bias=False,
    name="dncnn",
):
    """DnCNN denoiser: ``depth`` 3x3 convolutions, BN + ReLU, residual learning.

    Layout of the authors' own Keras training code (``cszn/DnCNN``,
    ``TrainingCodes/dncnn_keras/main_train.py``): conv + ReLU, then ``depth - 2``
    x (conv without bias + BN + ReLU), then a conv without bias predicting the
    noise; with ``residual=True`` the output is ``input - noise``. Orthogonal
    initialisation, BN ``epsilon=1e-4`` and ``momentum=0.0`` (the moving
    statistics are those of the last training batch).

    Parameters (trainable, BN scale/offset included): DnCNN-S (``depth=17``,
    grey) = 640 + 15 x (36,864 + 128) + 576 = **556,096** (+1,920 BN moving
    statistics = 558,016 in total). The frequently quoted 556,032 is the same
    graph with a bias-free first convolution (e.g. SaoYan/DnCNN-PyTorch). Colour
    / blind models (CDnCNN-B) use ``channels=3, depth=20``.

    Any input size is accepted (all convolutions are 'same', stride 1).

    Args:
        channels: int. Image channels (1 grey, 3 colour); input and output.
        depth: int. Total number of convolutions (17 for DnCNN-S, 20 for DnCNN-B).
        filters: feature width.
        residual: predict the noise and subtract it from the input.
        batch_norm: BN after the middle convolutions.
        bn_momentum: Keras ``BatchNormalization`` momentum of the moving
            statistics used at inference. 0.0 as in the authors' Keras code;
            KAIR's PyTorch ``momentum=0.9`` is 0.1 here. Keras' default 0.99
            keeps the initial statistics (mean 0, variance 1) for thousands
            of steps, so a short run restores worse than its input at
            inference (measured: -14 dB validation PSNR after 10 steps).
        output_bias: give the last convolution a bias. The authors' released
            models (MatConvNet, KAIR) have batch normalisation merged into
            the convolutions, so every convolution has a bias:
            ``batch_norm=False, output_bias=True``.
        name: model name.

    Returns:
        A functional ``keras.Model`` mapping ``(B, H, W, channels)`` to the same shape.

    >>> import numpy as np
    >>> from tfrestore.models import DnCNN
    >>> model = DnCNN(depth=5, filters=8)
    >>> model(np.zeros((1, 9, 7, 1), "float32")).shape
    TensorShape([1, 9, 7, 1])
    >>> from tfrestore.models import trainable_params
    >>> trainable_params(DnCNN())  # DnCNN-S, grey
    556096
    >>> trainable_params(DnCNN(batch_norm=False, output_bias=True))  # as released, BN merged
    555137
    """
    channels = check_channels(channels, "DnCNN")
    if depth < 2:
        raise ValueError(f"`depth` must be >= 2 (first and last convolution), got {depth}.")
    init = "orthogonal"
    inp = keras.Input((None, None, channels), name="noisy")
    x = InputCheck("DnCNN", channels=channels, name="input_check")(inp)
    x = keras.layers.Conv2D(filters, 3, padding="same", kernel_initializer=init, name="conv1")(x)
    x = keras.layers.ReLU(name="relu1")(x)
    for i in range(2, depth):
        x = keras.layers.Conv2D(
            filters,
            3,
            padding="same",
            use_bias=not batch_norm,
            kernel_initializer=init,
            name=f"conv{i}",
        )(x)
        if batch_norm:
            x = keras.layers.BatchNormalization(
                momentum=bn_momentum, epsilon=1e-4, name=f"bn{i}"
            )(x)
        x = keras.layers.ReLU(name=f"relu{i}")(x)
    x = keras.layers.Conv2D(
        channels,
        3,
        padding="same",
        use_bias=bool(output_bias),
        kernel_initializer=init,
        name=f"conv{depth}",
        dtype=None if residual else output_dtype(),
    )(x)
    if residual:
        x = keras.layers.Subtract(name="subtract_noise", dtype=output_dtype())([inp, x])
    return RestorationModel(inp, x, name=name)
