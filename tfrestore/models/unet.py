"""Multi-scale encoder-decoder restorer in the style of SRN (Tao et al.,
"Scale-recurrent Network for Deep Image Deblurring", CVPR 2018)."""

from __future__ import annotations

import keras

from tfrestore.models.base import RestorationModel
from tfrestore.models.layers import InputCheck, ResizeLike, check_channels, output_dtype

__all__ = ["UNet"]


def _resblock(x, filters, kernel_size, name):
    h = keras.layers.Conv2D(filters, kernel_size, padding="same", name=f"{name}_conv1")(x)
    h = keras.layers.ReLU(name=f"{name}_relu")(h)
    h = keras.layers.Conv2D(filters, kernel_size, padding="same", name=f"{name}_conv2")(h)
    return keras.layers.Add(name=f"{name}_add")([x, h])


def _scale_net(
    channels, filters, levels, blocks_per_level, kernel_size, residual, name, identity_init=False
):
    """One encoder-decoder applied at one scale: ``[image, previous estimate] -> estimate``."""
    image = keras.Input((None, None, channels), name="image")
    prev = keras.Input((None, None, channels), name="previous")
    x = keras.layers.Concatenate(name="concat_input")([image, prev])
    skips = []
    for lv in range(levels):
        f = filters * 2**lv
        x = keras.layers.Conv2D(
            f, kernel_size, strides=1 if lv == 0 else 2, padding="same", name=f"enc{lv}_conv"
        )(x)
        x = keras.layers.ReLU(name=f"enc{lv}_relu")(x)
        for b in range(blocks_per_level):
            x = _resblock(x, f, kernel_size, f"enc{lv}_res{b}")
        skips.append(x)
    for lv in reversed(range(levels)):
        f = filters * 2**lv
        if lv < levels - 1:
            x = keras.layers.Add(name=f"dec{lv}_skip")([x, skips[lv]])  # SRN fuses by summation
        for b in range(blocks_per_level):
            x = _resblock(x, f, kernel_size, f"dec{lv}_res{b}")
        if lv > 0:
            x = keras.layers.Conv2DTranspose(
                f // 2, 4, strides=2, padding="same", name=f"dec{lv}_up"
            )(x)
            x = keras.layers.ReLU(name=f"dec{lv}_up_relu")(x)
    out = keras.layers.Conv2D(
        channels,
        kernel_size,
        padding="same",
        kernel_initializer="zeros" if identity_init else "glorot_uniform",
        name="out_conv",
        dtype=None if residual else output_dtype(),
    )(x)
    if residual:
        out = keras.layers.Add(name="global_residual", dtype=output_dtype())([image, out])
    return keras.Model([image, prev], out, name=name)


def UNet(
    channels=3,
    filters=32,
    levels=3,
    blocks_per_level=2,
    kernel_size=3,
    scales=3,
    shared_weights=True,
    residual=True,
    return_all_scales=False,
    identity_init=False,
    name="unet",
):
    """Coarse-to-fine multi-scale U-Net (SRN-style) for dehazing, deraining, low-light, deblurring.

    At each of ``scales`` resolutions (input average-pooled by 2^s), one
    encoder-decoder (``levels`` levels, stride-2 convolutions down, 4x4
    transposed convolutions up, ``blocks_per_level`` residual blocks per level, skip
    connections fused by summation) maps ``[image_s, estimate_{s+1} upsampled]``
    to ``estimate_s``; the coarsest scale starts from the image itself. As in
    SRN the encoder-decoder's weights are shared across scales
    (``shared_weights=True``); SRN's ConvLSTM bottleneck is omitted. With
    ``residual=True`` each scale predicts a correction added to its input.

    Height and width must be divisible by ``2 ** (scales + levels - 2)`` (16
    for the defaults).

    Args:
        channels: int. Image channels.
        filters: int. Width of the first level (doubles per level).
        levels: int. Encoder/decoder levels per scale.
        blocks_per_level: int. Residual blocks per level (encoder and decoder).
        kernel_size: int. Convolution size (SRN uses 5).
        scales: int. Number of resolutions (1 = a plain U-Net).
        shared_weights: bool. Share the encoder-decoder across scales.
        residual: bool. Global residual at every scale.
        return_all_scales: bool. Also return the coarser estimates (list ordered
            coarsest -> finest) for a multi-scale loss.
        identity_init: bool. Start ``out_conv``'s kernel at zero, so that with
            ``residual=True`` the untrained network returns its input (Glorot
            init starts ~0.4 away on [0, 1] images). Gradients still reach every
            layer from the second step on.
        name: model name.

    >>> import numpy as np
    >>> from tfrestore.models import UNet
    >>> model = UNet(filters=4, levels=2, blocks_per_level=1, scales=2)
    >>> model(np.zeros((1, 8, 12, 3), "float32")).shape
    TensorShape([1, 8, 12, 3])
    >>> coarse_to_fine = UNet(filters=4, levels=2, blocks_per_level=1, scales=2,
    ...                       return_all_scales=True)
    >>> [o.shape[1] for o in coarse_to_fine(np.zeros((1, 8, 12, 3), "float32"))]
    [4, 8]
    """
    channels = check_channels(channels, "UNet")
    if levels < 1 or scales < 1 or blocks_per_level < 0:
        raise ValueError(
            f"`levels` and `scales` must be >= 1 and `blocks_per_level` >= 0, got levels={levels}, "
            f"scales={scales}, blocks_per_level={blocks_per_level}."
        )
    multiple = 2 ** (scales + levels - 2)
    inp = keras.Input((None, None, channels), name="degraded")
    x = InputCheck(
        "UNet", channels=channels, multiple=multiple, min_size=multiple, name="input_check"
    )(inp)

    def net(s):
        return _scale_net(
            channels,
            filters,
            levels,
            blocks_per_level,
            kernel_size,
            residual,
            name=f"{name}_scale_net" + ("" if shared_weights else f"{s}"),
            identity_init=identity_init,
        )

    shared = net(0) if shared_weights else None
    outputs, estimate = [], None
    for s in reversed(range(scales)):
        image_s = x if s == 0 else keras.layers.AveragePooling2D(2**s, name=f"downsample{s}")(x)
        if estimate is None:
            prev = image_s
        else:
            prev = ResizeLike("bilinear", name=f"upsample_to{s}")([estimate, image_s])
        estimate = (shared if shared is not None else net(s))([image_s, prev])
        outputs.append(estimate)
    return RestorationModel(inp, outputs if return_all_scales else outputs[-1], name=name)
