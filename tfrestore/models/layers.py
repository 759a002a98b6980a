"""Small serializable layers shared by the tfrestore networks.

Every layer here is registered with ``package="tfrestore"`` so that models built
from them survive a ``.keras`` round trip without ``Lambda`` layers (which
Keras refuses to deserialize in safe mode).
"""

from __future__ import annotations

import numbers

import keras
import tensorflow as tf

__all__ = [
    "InputCheck",
    "SpaceToDepth",
    "DepthToSpace",
    "PadToMultiple",
    "CropToMatch",
    "NoiseLevelMap",
    "ResizeLike",
]


def _static_hw(x):
    return x.shape[1], x.shape[2]


def check_channels(channels, network):
    """``channels`` as a positive int; the error names the network's first argument."""
    if isinstance(channels, bool) or not isinstance(channels, numbers.Integral) or channels < 1:
        raise TypeError(
            f"{network}: `channels` (the first argument: image channels, 1 grey or 3 colour) "
            f"must be a positive int, got {channels!r}; pass the other arguments by keyword."
        )
    return int(channels)


def output_dtype():
    """The ``dtype`` of a network's final layer: ``"float32"`` under a mixed global policy
    (``mixed_float16``, ``mixed_bfloat16``), else None (the global policy).

    Keras' mixed-precision practice: the last layer runs in float32, so the model returns
    float32 and losses and metrics see float32; the restorers' final residual addition (or
    crop, mean shift) then also adds in float32, where the image keeps its precision. A
    float32 model is built exactly as before (``dtype=None``), and a model saved with a
    float16 final layer loads as saved.

    >>> import keras
    >>> output_dtype() is None
    True
    >>> keras.config.set_dtype_policy("mixed_float16")
    >>> output_dtype()
    'float32'
    >>> keras.config.set_dtype_policy("float32")
    """
    policy = keras.config.dtype_policy()
    return "float32" if policy.compute_dtype != policy.variable_dtype else None


@keras.saving.register_keras_serializable(package="tfrestore")
class InputCheck(keras.layers.Layer):
    """Identity that validates an NHWC image batch against an architecture's needs.

    Raises a ``ValueError`` naming the network and the expected form when the
    shape is known (eager calls, ``predict`` with fixed sizes); otherwise attaches
    ``tf.debugging`` assertions with the same message.

    Args:
        network: str. Name used in error messages (e.g. ``"LiuDenoiser"``).
        channels: int or None. Required number of channels.
        multiple: int. Height and width minus ``offset`` must be divisible by this.
        offset: int. See ``multiple`` (e.g. 4 for the valid-padded Liu et al. network).
        min_size: int. Smallest accepted height/width.
        arg: str. Argument name used in messages.

    >>> import numpy as np
    >>> check = InputCheck("Net", channels=3, multiple=4)
    >>> check(np.zeros((1, 8, 8, 3), "float32")).shape
    TensorShape([1, 8, 8, 3])
    >>> check(np.zeros((1, 8, 6, 3), "float32"))
    Traceback (most recent call last):
    ...
    ValueError: ...Net: `inputs` must have height and width divisible by 4, got 8x6...
    """

    def __init__(
        self, network, channels=None, multiple=1, offset=0, min_size=1, arg="inputs", **kwargs
    ):
        super().__init__(**kwargs)
        self.network = str(network)
        self.channels = None if channels is None else int(channels)
        self.multiple = int(multiple)
        self.offset = int(offset)
        self.min_size = int(min_size)
        self.arg = str(arg)

    def _size_rule(self):
        if self.offset:
            return f"height and width minus {self.offset} divisible by {self.multiple}"
        return f"height and width divisible by {self.multiple}"

    def call(self, x):
        shape = x.shape
        if shape.rank is not None and shape.rank != 4:
            raise ValueError(
                f"{self.network}: `{self.arg}` must be a rank-4 channels-last batch "
                f"(batch, height, width, channels), got shape {tuple(shape)}."
            )
        if self.channels is not None and shape[-1] is not None and shape[-1] != self.channels:
            hint = (
                " It looks channels-first (NCHW); transpose to NHWC."
                if shape[1] == self.channels
                else ""
            )
            raise ValueError(
                f"{self.network}: `{self.arg}` must have {self.channels} channel(s) "
                f"(channels last), got shape {tuple(shape)}.{hint}"
            )
        h, w = _static_hw(x)
        msg_size = (
            f"{self.network}: `{self.arg}` must be at least {self.min_size}x{self.min_size} pixels"
        )
        msg_mult = f"{self.network}: `{self.arg}` must have {self._size_rule()}"
        if h is not None and w is not None:
            if h < self.min_size or w < self.min_size:
                raise ValueError(f"{msg_size}, got {h}x{w} (shape {tuple(shape)}).")
            if (h - self.offset) % self.multiple or (w - self.offset) % self.multiple:
                raise ValueError(f"{msg_mult}, got {h}x{w} (shape {tuple(shape)}).")
            return x
        dyn = tf.shape(x)[1:3]
        checks = [
            tf.debugging.assert_greater_equal(dyn, self.min_size, message=msg_size),
            tf.debugging.assert_equal(
                tf.math.floormod(dyn - self.offset, self.multiple), 0, message=msg_mult
            ),
        ]
        with tf.control_dependencies(checks):
            return tf.identity(x)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "network": self.network,
            "channels": self.channels,
            "multiple": self.multiple,
            "offset": self.offset,
            "min_size": self.min_size,
            "arg": self.arg,
        }


class _BlockRearrange(keras.layers.Layer):
    """``tf.nn.space_to_depth`` / ``depth_to_space`` with a ``block_size`` config."""

    _op = None
    _upscale = False  # DepthToSpace: height and width grow by r, channels shrink by r*r

    def __init__(self, block_size, **kwargs):
        super().__init__(**kwargs)
        self.block_size = int(block_size)

    def call(self, x):
        return self._op(x, self.block_size)

    def compute_output_shape(self, s):
        r = self.block_size
        if self._upscale:
            spatial, depth = (lambda d: d * r), (lambda d: d // (r * r))
        else:
            spatial, depth = (lambda d: d // r), (lambda d: d * r * r)
        dims = ((s[1], spatial), (s[2], spatial), (s[3], depth))
        return (s[0],) + tuple(None if d is None else f(d) for d, f in dims)

    def get_config(self):
        return {**super().get_config(), "block_size": self.block_size}


@keras.saving.register_keras_serializable(package="tfrestore")
class SpaceToDepth(_BlockRearrange):
    """Pixel unshuffle: ``(B, H, W, C) -> (B, H/r, W/r, C*r*r)`` (``tf.nn.space_to_depth``).

    Channel order is TensorFlow's (``(i*r + j)*C + c``), not PyTorch's
    ``pixel_unshuffle`` (``c*r*r + i*r + j``); permute channels when importing
    PyTorch weights.

    >>> import numpy as np
    >>> SpaceToDepth(2)(np.zeros((1, 4, 6, 3), "float32")).shape
    TensorShape([1, 2, 3, 12])
    """

    _op = staticmethod(tf.nn.space_to_depth)


@keras.saving.register_keras_serializable(package="tfrestore")
class DepthToSpace(_BlockRearrange):
    """Pixel shuffle: ``(B, H, W, C*r*r) -> (B, H*r, W*r, C)`` (``tf.nn.depth_to_space``).

    Same channel-order caveat as :class:`SpaceToDepth`.

    >>> import numpy as np
    >>> DepthToSpace(2)(np.zeros((1, 2, 3, 12), "float32")).shape
    TensorShape([1, 4, 6, 3])
    """

    _op = staticmethod(tf.nn.depth_to_space)
    _upscale = True


@keras.saving.register_keras_serializable(package="tfrestore")
class PadToMultiple(keras.layers.Layer):
    """Pad bottom/right so that height and width become multiples of ``multiple``.

    ``mode="SYMMETRIC"`` with a pad of at most one pixel repeats the edge pixel,
    i.e. replicate padding as in FFDNet's reference code.

    >>> import numpy as np
    >>> PadToMultiple(2)(np.zeros((1, 5, 6, 1), "float32")).shape
    TensorShape([1, 6, 6, 1])
    """

    def __init__(self, multiple, mode="SYMMETRIC", **kwargs):
        super().__init__(**kwargs)
        self.multiple = int(multiple)
        self.mode = str(mode).upper()
        if self.mode not in ("SYMMETRIC", "REFLECT", "CONSTANT"):
            raise ValueError(f"`mode` must be 'SYMMETRIC', 'REFLECT' or 'CONSTANT', got {mode!r}.")

    def call(self, x):
        m = self.multiple
        hw = tf.shape(x)[1:3]
        pad = (m - hw % m) % m
        paddings = [[0, 0], [0, pad[0]], [0, pad[1]], [0, 0]]
        return tf.pad(x, paddings, mode=self.mode)

    def compute_output_shape(self, s):
        m = self.multiple
        up = lambda n: None if n is None else -(-n // m) * m  # noqa: E731
        return (s[0], up(s[1]), up(s[2]), s[3])

    def get_config(self):
        return {**super().get_config(), "multiple": self.multiple, "mode": self.mode}


@keras.saving.register_keras_serializable(package="tfrestore")
class CropToMatch(keras.layers.Layer):
    """``[x, reference] -> x[:, :H_ref, :W_ref]`` (undoes :class:`PadToMultiple`).

    >>> import numpy as np
    >>> CropToMatch()([np.zeros((1, 6, 6, 2), "float32"), np.zeros((1, 5, 6, 1), "float32")]).shape
    TensorShape([1, 5, 6, 2])
    """

    def call(self, inputs):
        x, ref = inputs
        hw = tf.shape(ref)[1:3]
        return x[:, : hw[0], : hw[1], :]

    def compute_output_shape(self, shapes):
        x, ref = shapes
        return (x[0], ref[1], ref[2], x[3])


@keras.saving.register_keras_serializable(package="tfrestore")
class NoiseLevelMap(keras.layers.Layer):
    """Broadcast a per-image noise level to a map shaped like ``reference``.

    ``[reference (B, h, w, .), sigma] -> (B, h, w, 1)`` where ``sigma`` is
    ``(B,)`` or ``(B, 1)`` (one level per image) or a ``(B, H, W, 1)`` map, which
    is average-pooled by ``factor`` when it is larger than the reference. With a
    fixed ``value`` the layer takes only ``reference`` (blind use).

    >>> import numpy as np
    >>> ref = np.zeros((2, 3, 4, 8), "float32")
    >>> NoiseLevelMap()([ref, np.array([[0.1], [0.2]], "float32")]).shape
    TensorShape([2, 3, 4, 1])
    >>> float(NoiseLevelMap(value=0.1)(ref)[1, 2, 3, 0])
    0.1
    """

    def __init__(self, factor=1, value=None, **kwargs):
        super().__init__(**kwargs)
        self.factor = int(factor)
        self.value = None if value is None else float(value)

    def call(self, inputs):
        if self.value is not None:
            ref = inputs
            sigma = tf.fill([tf.shape(ref)[0], 1], tf.constant(self.value, ref.dtype))
        else:
            ref, sigma = inputs
            sigma = tf.cast(sigma, ref.dtype)
        if sigma.shape.rank == 4:
            if self.factor == 1:
                return sigma
            f = self.factor
            if sigma.shape[1] is not None and ref.shape[1] is not None:
                if sigma.shape[1] == ref.shape[1]:
                    return sigma
                return tf.nn.avg_pool2d(sigma, f, f, "VALID")
            # Unknown sizes (e.g. a traced training step): decide at run time. A static
            # `None != None` test would skip the pooling and break the concatenation.
            return tf.cond(
                tf.not_equal(tf.shape(sigma)[1], tf.shape(ref)[1]),
                lambda: tf.nn.avg_pool2d(sigma, f, f, "VALID"),
                lambda: sigma,
            )
        if sigma.shape.rank == 1:
            sigma = sigma[:, None]
        if sigma.shape.rank != 2 or (sigma.shape[-1] is not None and sigma.shape[-1] != 1):
            raise ValueError(
                "`noise_level` must have shape (batch,), (batch, 1) or (batch, height, width, 1), "
                f"got {tuple(sigma.shape)}."
            )
        hw = tf.shape(ref)[1:3]
        return tf.broadcast_to(sigma[:, None, None, :], [tf.shape(ref)[0], hw[0], hw[1], 1])

    def compute_output_shape(self, shapes):
        ref = shapes if self.value is not None else shapes[0]
        return (ref[0], ref[1], ref[2], 1)

    def get_config(self):
        return {**super().get_config(), "factor": self.factor, "value": self.value}


@keras.saving.register_keras_serializable(package="tfrestore")
class ResizeLike(keras.layers.Layer):
    """``[x, reference] -> x`` resized to the reference's height and width.

    Unlike ``UpSampling2D(interpolation="bilinear")`` it works in graphs whose
    spatial sizes are unknown (``None``).

    >>> import numpy as np
    >>> ResizeLike()([np.zeros((1, 2, 3, 4), "float32"), np.zeros((1, 4, 6, 1), "float32")]).shape
    TensorShape([1, 4, 6, 4])
    """

    def __init__(self, interpolation="bilinear", **kwargs):
        super().__init__(**kwargs)
        self.interpolation = str(interpolation)

    def call(self, inputs):
        x, ref = inputs
        out = tf.image.resize(x, tf.shape(ref)[1:3], method=self.interpolation)
        return tf.cast(out, x.dtype)

    def compute_output_shape(self, shapes):
        x, ref = shapes
        return (x[0], ref[1], ref[2], x[3])

    def get_config(self):
        return {**super().get_config(), "interpolation": self.interpolation}
