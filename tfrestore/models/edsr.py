"""EDSR (Lim et al., "Enhanced Deep Residual Networks for Single Image
Super-Resolution", CVPRW 2017; reference code sanghyun-son/EDSR-PyTorch)."""

from __future__ import annotations

import keras

from tfrestore.models.base import RestorationModel
from tfrestore.models.layers import DepthToSpace, InputCheck, check_channels, output_dtype

__all__ = ["EDSR"]

_VARIANTS = {"baseline": (16, 64, 1.0), "large": (32, 256, 0.1)}
#: DIV2K RGB mean used by the reference code (``MeanShift``), in [0, 1] units.
DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)


def _torch_default_init():
    """PyTorch's default ``Conv2d`` kernel init, ``kaiming_uniform_(a=sqrt(5))``:
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)), i.e. variance 1/(3 fan_in).

    The reference EDSR trains from this init. It matters because the residual
    blocks have no normalisation: with He init (variance 2/fan_in) each
    conv-ReLU-conv branch adds about twice the variance of its input, so the
    signal grows ~1.7x per block (16 blocks: ~6000x; an untrained x4 baseline
    output reached 4e4 for [0, 1] inputs, the L1 loss ~6e3 and Adam at 1e-4
    could not recover). With variance 1/(3 fan_in) a branch adds ~1/18 of its
    input variance, and the output starts near the mean colour.

    A new instance per layer: an unseeded Keras initializer draws a fixed seed
    when created, so one shared instance would give every same-shaped kernel
    identical values (then each residual branch is aligned with its input and
    the signal still grows ~1.25x per block).
    """
    return keras.initializers.VarianceScaling(
        scale=1.0 / 3.0, mode="fan_in", distribution="uniform"
    )


def _upsampler(x, scale, filters, init):
    if scale & (scale - 1) == 0:  # power of two: repeated x2 stages
        stages = [2] * (scale.bit_length() - 1)
    elif scale == 3:
        stages = [3]
    else:
        raise ValueError(f"`scale` must be a power of 2 or 3, got {scale}.")
    for i, r in enumerate(stages):
        x = keras.layers.Conv2D(
            filters * r * r, 3, padding="same", kernel_initializer=init(), name=f"upsample{i}_conv"
        )(x)
        x = DepthToSpace(r, name=f"upsample{i}_shuffle")(x)
    return x


def EDSR(
    channels=3,
    scale=2,
    depth=None,
    filters=None,
    variant="baseline",
    res_scale=None,
    rgb_mean=DIV2K_RGB_MEAN,
    input_skip=False,
    name=None,
):
    """EDSR super-resolution network (input in [0, 1], any size; output ``scale`` x larger).

    ``head`` conv -> ``depth`` residual blocks (conv-ReLU-conv, scaled by
    ``res_scale``, no BN) -> conv + long skip -> sub-pixel upsampler (conv +
    depth-to-space, x2 stages for powers of two, one x3 stage) -> ``tail`` conv.
    The DIV2K mean is subtracted at the input and added back at the output
    (``MeanShift`` of the reference code, here for [0, 1] images). Kernels
    start from PyTorch's default conv init, as the reference code's do (He
    init makes the un-normalised residual body blow up, see
    ``_torch_default_init``).

    Variants: ``"baseline"`` (16 blocks, 64 filters, res_scale 1) and
    ``"large"`` (32 blocks, 256 filters, res_scale 0.1). Parameters: baseline
    x2 **1,369,859** (the paper's 1.37M), x3 1,554,499, x4 1,517,571; large x4
    43,089,923 (the paper's 43M), x2 40,729,603.

    The depth-to-space channel order is TensorFlow's, not PyTorch's
    ``PixelShuffle``: permute the upsampler's output channels when importing
    PyTorch weights.

    Args:
        channels: image channels.
        scale: int. Upscaling factor: 2, 3, 4 (or 8, ...).
        depth: int or None. Number of residual blocks (default: the variant's).
        filters: int or None. Feature width (default: the variant's).
        variant: str. "baseline" or "large": the defaults of ``depth``, ``filters`` and
            ``res_scale``.
        res_scale: float or None. Residual scaling (default: the variant's).
        rgb_mean: sequence of float or None. Per-channel mean subtracted/added
            (None: no mean shift).
        input_skip: bool. Add the bicubically upsampled input to the output, so
            the network learns the residual over bicubic (as VDSR; not in the
            EDSR paper); the mean is then not added back. An untrained network
            starts at the bicubic image, so short runs already beat bicubic;
            the paper's EDSR (``False``) needs some hundred steps to get there.
        name: str or None. Model name (default ``edsr_<variant>_x<scale>``).

    >>> import numpy as np
    >>> from tfrestore.models import EDSR, trainable_params
    >>> EDSR(scale=3, depth=1, filters=8)(np.zeros((1, 5, 7, 3), "float32")).shape
    TensorShape([1, 15, 21, 3])
    >>> trainable_params(EDSR(scale=2))
    1369859
    """
    channels = check_channels(channels, "EDSR")
    if variant not in _VARIANTS:
        raise ValueError(f"`variant` must be one of {sorted(_VARIANTS)}, got {variant!r}.")
    scale = int(scale)
    if scale < 2:
        raise ValueError(f"`scale` must be >= 2, got {scale}.")
    d_depth, d_filters, d_res = _VARIANTS[variant]
    depth = d_depth if depth is None else int(depth)
    filters = d_filters if filters is None else int(filters)
    res_scale = d_res if res_scale is None else float(res_scale)
    if rgb_mean is not None:
        rgb_mean = [float(m) for m in rgb_mean]
        if len(rgb_mean) != channels:
            raise ValueError(
                f"`rgb_mean` must have {channels} values (one per channel), got {len(rgb_mean)}."
            )
    init = _torch_default_init  # called once per layer

    inp = keras.Input((None, None, channels), name="low_resolution")
    x = checked = InputCheck("EDSR", channels=channels, name="input_check")(inp)
    if rgb_mean is not None:
        x = keras.layers.Rescaling(1.0, offset=[-m for m in rgb_mean], name="sub_mean")(x)
    head = keras.layers.Conv2D(
        filters, 3, padding="same", kernel_initializer=init(), name="head"
    )(x)
    h = head
    for i in range(depth):
        r = keras.layers.Conv2D(
            filters, 3, padding="same", kernel_initializer=init(), name=f"block{i}_conv1"
        )(h)
        r = keras.layers.ReLU(name=f"block{i}_relu")(r)
        r = keras.layers.Conv2D(
            filters, 3, padding="same", kernel_initializer=init(), name=f"block{i}_conv2"
        )(r)
        if res_scale != 1.0:
            r = keras.layers.Rescaling(res_scale, name=f"block{i}_scale")(r)
        h = keras.layers.Add(name=f"block{i}_add")([h, r])
    h = keras.layers.Conv2D(
        filters, 3, padding="same", kernel_initializer=init(), name="body_conv"
    )(h)
    h = keras.layers.Add(name="long_skip")([head, h])
    h = _upsampler(h, scale, filters, init)
    # With the input skip a zero tail makes the untrained network output exactly the bicubic
    # image (the tail still gets gradients, its input is not zero).
    out = keras.layers.Conv2D(
        channels,
        3,
        padding="same",
        kernel_initializer="zeros" if input_skip else init(),
        name="tail",
        dtype=None if input_skip or rgb_mean is not None else output_dtype(),
    )(h)
    if input_skip:
        up = keras.layers.UpSampling2D(scale, interpolation="bicubic", name="input_upsample")(
            checked
        )
        out = keras.layers.Add(name="input_skip", dtype=output_dtype())([up, out])
    elif rgb_mean is not None:
        out = keras.layers.Rescaling(
            1.0, offset=rgb_mean, name="add_mean", dtype=output_dtype()
        )(out)
    return RestorationModel(inp, out, name=name or f"edsr_{variant}_x{scale}")
