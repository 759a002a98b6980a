"""FFDNet (Zhang, Zuo & Zhang, "FFDNet: Toward a Fast and Flexible Solution for
CNN based Image Denoising", TIP 2018): the backbone of the D2SM experiments."""

from __future__ import annotations

import keras

from tfrestore.models.base import RestorationModel
from tfrestore.utils.validation import check_noise_level, refuses_renamed
from tfrestore.models.layers import (
    CropToMatch,
    DepthToSpace,
    InputCheck,
    check_channels,
    NoiseLevelMap,
    output_dtype,
    PadToMultiple,
    SpaceToDepth,
)

__all__ = ["FFDNet"]

#: Former keyword names of :func:`FFDNet` (``sigma`` is the noise level everywhere else).
_RENAMED = {"noise_level": "sigma", "noise_level_input": "sigma_input"}


@refuses_renamed(_RENAMED, "FFDNet")
def FFDNet(
    channels=3,
    depth=None,
    filters=None,
    sigma=None,
    sigma_input="scalar",
    batch_norm=False,
    name="ffdnet",
):
    """FFDNet: pixel-unshuffle x2, concat a noise-level map, plain CNN, pixel-shuffle x2.

    The image is padded (edge replication) to even height/width, unshuffled to
    ``4 * channels`` half-resolution planes, concatenated with a one-channel
    noise-level map (``4C + 1`` inputs, as in the paper and KAIR's
    ``network_ffdnet.py``), passed through ``depth`` 3x3 convolutions (ReLU
    between them) and shuffled back; the padding is cropped, so **any input size
    works**. The network predicts the clean image (no global residual).

    Parameters (KAIR layout, biases, no BN, i.e. the released BN-merged models):
    grey (15 layers, 64 filters) **485,316**; colour (12 layers, 96 filters)
    **852,108**.

    Input signature (noise levels are standard deviations in the image's own
    units, e.g. ``25 / 255`` for images in [0, 1]):

    * ``sigma=None`` (non-blind, default): ``model([image, sigma])`` with
      ``sigma`` of shape ``(B, 1)`` (``sigma_input="scalar"``) or a
      spatially varying ``(B, H, W, 1)`` map (``sigma_input="map"``). The second
      input keeps its Keras name ``"noise_level"``.
    * ``sigma=<float>`` (blind/fixed level): ``model(image)``; the map is
      the constant stored in the model config.

    Args:
        channels: int. Image channels (1 grey, 3 colour).
        depth: int or None. Number of convolutions (default 15 grey / 12 colour).
        filters: int or None. Feature width (default 64 grey / 96 colour).
        sigma: None for a two-input model, or a fixed noise standard deviation
            (image units, e.g. ``25 / 255``). Formerly ``noise_level``, which
            raises ``TypeError``.
        sigma_input: str. "scalar" or "map" (two-input model only). Formerly
            ``noise_level_input``.
        batch_norm: bool. BN between the middle convolutions (the paper trains
            with BN and merges it for testing; the default matches the released
            models).
        name: model name.

    >>> import numpy as np
    >>> from tfrestore.models import FFDNet, trainable_params
    >>> model = FFDNet(channels=3, depth=4, filters=16)
    >>> x = np.zeros((2, 11, 8, 3), "float32")
    >>> model([x, np.full((2, 1), 25 / 255, "float32")]).shape
    TensorShape([2, 11, 8, 3])
    >>> FFDNet(channels=3, depth=4, filters=16, sigma=25 / 255)(x).shape
    TensorShape([2, 11, 8, 3])
    >>> trainable_params(FFDNet(channels=1)), trainable_params(FFDNet(channels=3))
    (485316, 852108)
    """
    channels = check_channels(channels, "FFDNet")
    grey = channels == 1
    depth = (15 if grey else 12) if depth is None else int(depth)
    filters = (64 if grey else 96) if filters is None else int(filters)
    if depth < 2:
        raise ValueError(f"`depth` must be >= 2, got {depth}.")
    if sigma is not None:
        check_noise_level(sigma, "sigma", "FFDNet")
    if sigma_input not in ("scalar", "map"):
        raise ValueError(f"`sigma_input` must be 'scalar' or 'map', got {sigma_input!r}.")

    image = keras.Input((None, None, channels), name="noisy")
    x = InputCheck("FFDNet", channels=channels, arg="image", name="input_check")(image)
    padded = PadToMultiple(2, name="pad_to_even")(x)
    sub = SpaceToDepth(2, name="pixel_unshuffle")(padded)
    if sigma is None:
        if sigma_input == "scalar":
            level_in = keras.Input((1,), name="noise_level")
            level = NoiseLevelMap(name="noise_level_map")([sub, level_in])
        else:
            level_in = keras.Input((None, None, 1), name="noise_level")
            level = PadToMultiple(2, name="pad_map_to_even")(level_in)
            level = NoiseLevelMap(factor=2, name="noise_level_map")([sub, level])
        inputs = [image, level_in]
    else:
        level = NoiseLevelMap(value=sigma, name="noise_level_map")(sub)
        inputs = image
    h = keras.layers.Concatenate(name="concat_noise_map")([sub, level])
    for i in range(1, depth):
        h = keras.layers.Conv2D(
            filters, 3, padding="same", use_bias=not (batch_norm and i > 1), name=f"conv{i}"
        )(h)
        if batch_norm and i > 1:
            h = keras.layers.BatchNormalization(epsilon=1e-4, name=f"bn{i}")(h)
        h = keras.layers.ReLU(name=f"relu{i}")(h)
    h = keras.layers.Conv2D(4 * channels, 3, padding="same", name=f"conv{depth}")(h)
    out = DepthToSpace(2, name="pixel_shuffle")(h)
    out = CropToMatch(name="crop_padding", dtype=output_dtype())([out, image])
    return RestorationModel(inputs, out, name=name)
