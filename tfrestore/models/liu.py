"""The multi-scale denoiser of Liu et al., "Connecting Image Denoising and
High-Level Vision Tasks via Deep Learning" (TIP 2020; code: Ding-Liu/DeepDenoising,
``exper/config/train_denoise.prototxt``)."""

from __future__ import annotations

import keras

from tfrestore.models.base import RestorationModel
from tfrestore.models.layers import InputCheck, check_channels, output_dtype

__all__ = ["LiuDenoiser"]

_PADDINGS = ("valid", "same")


def _bn(name):
    # Caffe BatchNorm defaults: eps 1e-5, moving_average_fraction 0.999.
    return keras.layers.BatchNormalization(epsilon=1e-5, momentum=0.999, name=name)


def _conv(x, filters, kernel, name, stride=1, bias=True, padding="same"):
    if stride == 2:
        # Caffe/PyTorch pad 1 on every side; Keras 'same' pads only bottom/right on even inputs.
        x = keras.layers.ZeroPadding2D(1, name=f"{name}_pad")(x)
        padding = "valid"
    return keras.layers.Conv2D(
        filters,
        kernel,
        strides=stride,
        padding=padding,
        use_bias=bias,
        kernel_initializer="lecun_uniform",  # Caffe "xavier" (FAN_IN, uniform)
        bias_initializer=keras.initializers.Constant(0.2),
        name=name,
    )(x)


def _bottleneck(x, widths, name):
    """Residual block ``(c, m, m, c)``: 1x1 - 3x3 - 1x1, no biases; ReLU after the add."""
    _, mid, mid2, out = widths
    h = _conv(x, mid, 1, f"{name}_conv1", bias=False)
    h = keras.layers.ReLU(name=f"{name}_relu1")(_bn(f"{name}_bn1")(h))
    h = _conv(h, mid2, 3, f"{name}_conv2", bias=False)
    h = keras.layers.ReLU(name=f"{name}_relu2")(_bn(f"{name}_bn2")(h))
    h = _bn(f"{name}_bn3")(_conv(h, out, 1, f"{name}_conv3", bias=False))
    return keras.layers.ReLU(name=f"{name}_relu")(keras.layers.Add(name=f"{name}_add")([x, h]))


def _deconv(x, filters, name):
    # Caffe Deconvolution 4x4 / stride 2 / pad 1 == Keras 'same' (exact, no kernel flip).
    return keras.layers.Conv2DTranspose(
        filters, 4, strides=2, padding="same", kernel_initializer="lecun_uniform", name=name
    )(x)


def LiuDenoiser(channels=3, padding="valid", name="liu_denoiser"):
    """Three-scale encoder/decoder denoiser of Liu et al. (TIP 2020), exactly as released.

    Graph (``train_denoise.prototxt``; layer names follow it): ``conv0`` 5x5 64
    (no BN/ReLU) -> ``conv1`` 3x3/2 128 + BN + ReLU -> ``res1`` bottleneck
    (128, 32, 32, 128) -> ``conv2`` 3x3/2 128 + BN + ReLU -> ``res2`` -> deconv
    4x4/2 to 32 ch, concat with ``res1`` (160) -> ``conv3`` 3x3 256 + BN + ReLU
    -> ``res3`` bottleneck (256, 64, 64, 256) -> deconv 4x4/2 to 64 ch, concat
    with ``conv0`` (128) -> ``concat_reduction`` 3x3 to ``channels`` -> plus the
    (cropped) input. Bottleneck convolutions have no bias; the others have bias
    initialised to 0.2 (deconvolutions 0); weights use Caffe's xavier/FAN_IN
    (= ``lecun_uniform``); BN uses Caffe's eps 1e-5 and momentum 0.999.

    **1,033,443 trainable parameters** (BN scale/offset included, moving
    statistics not), the paper's "1,026k" row of Table I.

    Padding modes:

    * ``"valid"`` (faithful): ``conv0`` and ``concat_reduction`` are unpadded, so
      the output is **6 px smaller** than the input and the global residual
      uses the input cropped by 3 px per side; crop targets with
      ``keras.layers.Cropping2D(3)``. Input height and width minus 4 must be
      divisible by 4 (e.g. 40 -> 36 -> 18 -> 9), at least 8.
    * ``"same"``: all convolutions padded, output = input size; height and
      width must be divisible by 4.

    The stride-2 convolutions are ``ZeroPadding2D(1)`` + 'valid' in both modes,
    which equals Caffe/PyTorch pad-1 convolution (Keras 'same' would pad only
    bottom/right). Deviations from the Caffe training setup that a Keras model
    cannot express: Caffe's ``lr_mult`` 0.1/0.2 on ``concat_reduction`` (use an
    optimizer with per-variable learning rates if needed). The released code
    works in the Caffe domain (BGR, 0-255, mean subtracted); this model is
    domain-agnostic and :func:`tfrestore.models.cascade` feeds task networks
    their own domain.

    Args:
        channels: int. Image channels (3 in the paper).
        padding: str. "valid" or "same".
        name: model name.

    >>> import numpy as np
    >>> from tfrestore.models import LiuDenoiser, trainable_params
    >>> LiuDenoiser(padding="valid")(np.zeros((1, 12, 16, 3), "float32")).shape
    TensorShape([1, 6, 10, 3])
    >>> LiuDenoiser(padding="same")(np.zeros((1, 12, 16, 3), "float32")).shape
    TensorShape([1, 12, 16, 3])
    >>> trainable_params(LiuDenoiser())
    1033443
    """
    channels = check_channels(channels, "LiuDenoiser")
    if padding not in _PADDINGS:
        raise ValueError(f"`padding` must be one of {_PADDINGS}, got {padding!r}.")
    valid = padding == "valid"
    inp = keras.Input((None, None, channels), name="noisy")
    x = InputCheck(
        "LiuDenoiser",
        channels=channels,
        multiple=4,
        offset=4 if valid else 0,
        min_size=8 if valid else 4,
        name="input_check",
    )(inp)
    c0 = _conv(x, 64, 5, "conv0", padding=padding)
    h = _conv(c0, 128, 3, "conv1", stride=2)
    h = keras.layers.ReLU(name="conv1_relu")(_bn("conv1_bn")(h))
    r1 = _bottleneck(h, (128, 32, 32, 128), "res1")
    h = _conv(r1, 128, 3, "conv2", stride=2)
    h = keras.layers.ReLU(name="conv2_relu")(_bn("conv2_bn")(h))
    r2 = _bottleneck(h, (128, 32, 32, 128), "res2")
    up2 = _deconv(r2, 32, "upsample_r2")
    h = keras.layers.Concatenate(name="concat_r2")([r1, up2])
    h = _conv(h, 256, 3, "conv3")
    h = keras.layers.ReLU(name="conv3_relu")(_bn("conv3_bn")(h))
    r3 = _bottleneck(h, (256, 64, 64, 256), "res3")
    up3 = _deconv(r3, 64, "upsample_r3")
    h = keras.layers.Concatenate(name="concat_r3")([c0, up3])
    h = _conv(h, channels, 3, "concat_reduction", padding=padding)
    skip = keras.layers.Cropping2D(3, name="crop_input")(inp) if valid else inp
    out = keras.layers.Add(name="sum", dtype=output_dtype())([h, skip])
    return RestorationModel(inp, out, name=name)
