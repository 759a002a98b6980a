"""The layers of the ADM UNet (guided-diffusion ``unet.py``), each able to list its
variables under their PyTorch state-dict names (``torch_weights``).

GroupNorm(32, eps 1e-5) is computed in float32, the timestep embedding is
cos-first sinusoidal, and resampling is nearest-neighbour ×2 / stride-2 conv or
average pooling, all as in ADM, so converted weights give the original outputs.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

__all__ = ["timestep_embedding"]


def timestep_embedding(timesteps, dim, max_period=10000):
    """Sinusoidal embedding, **cos first**: ``concat([cos(t·f), sin(t·f)])`` with
    ``f_k = exp(−ln(max_period)·k/half)``, computed in float32 like ADM."""
    half = dim // 2
    # float32 arithmetic in the order torch uses, so the frequencies round alike
    freqs = np.exp(
        (np.float32(-math.log(max_period)) * np.arange(half, dtype=np.float32))
        / np.float32(half)
    ).astype(np.float32)
    args = tf.cast(tf.reshape(timesteps, [-1, 1]), tf.float32) * tf.constant(freqs)[None]
    emb = tf.concat([tf.cos(args), tf.sin(args)], axis=-1)
    if dim % 2:
        emb = tf.pad(emb, [[0, 0], [0, 1]])
    return emb


def _conv(filters, kernel, dtype, name, strides=1, padding="same"):
    return keras.layers.Conv2D(filters, kernel, strides=strides, padding=padding,
                               dtype=dtype, name=name)


class _GroupNorm32(keras.layers.Layer):
    """torch ``GroupNorm(32, C, eps=1e-5)`` evaluated in float32 (ADM's
    ``GroupNorm32``); groups are contiguous channel ranges. Leaner than
    ``keras.layers.GroupNormalization`` (whose default epsilon is 1e-3)."""

    def __init__(self, channels, groups=32, epsilon=1e-5, **kwargs):
        super().__init__(**kwargs)
        if channels % groups:
            raise ValueError(f"GroupNorm: {channels} channels are not divisible by {groups} groups")
        self.channels, self.groups, self.epsilon = channels, groups, epsilon

    def build(self, input_shape=None):
        self.gamma = self.add_weight(shape=(self.channels,), initializer="ones", name="gamma")
        self.beta = self.add_weight(shape=(self.channels,), initializer="zeros", name="beta")

    def call(self, x):
        dtype = tf.float64 if self.compute_dtype == "float64" else tf.float32
        x = tf.cast(x, dtype)
        shape = tf.shape(x)
        g = tf.reshape(x, [shape[0], shape[1], shape[2], self.groups, self.channels // self.groups])
        mean, var = tf.nn.moments(g, axes=[1, 2, 4], keepdims=True)
        g = (g - mean) * tf.math.rsqrt(var + self.epsilon)
        return (tf.reshape(g, shape) * tf.cast(self.gamma, dtype)
                + tf.cast(self.beta, dtype))


def _norm(dtype, name, channels):
    return _GroupNorm32(channels, dtype=dtype, name=name)


def _upsample_nearest(x):
    shape = tf.shape(x)
    x = tf.tile(tf.reshape(x, [shape[0], shape[1], 1, shape[2], 1, shape[3]]), [1, 1, 2, 1, 2, 1])
    return tf.reshape(x, [shape[0], 2 * shape[1], 2 * shape[2], shape[3]])


def _conv2d_weights(layer, prefix):
    return [(f"{prefix}weight", layer.kernel, "conv2d"), (f"{prefix}bias", layer.bias, "vector")]


def _dense_weights(layer, prefix, kind):
    return [(f"{prefix}weight", layer.kernel, kind), (f"{prefix}bias", layer.bias, "vector")]


def _norm_weights(layer, prefix):
    return [(f"{prefix}weight", layer.gamma, "vector"), (f"{prefix}bias", layer.beta, "vector")]


class _ResBlock(keras.layers.Layer):
    """guided-diffusion ResBlock (optionally up/down-sampling, scale-shift norm)."""

    def __init__(self, cin, cout, emb_channels, up, down, scale_shift, dropout,
                 dtype=None, f32=None, **kwargs):
        super().__init__(dtype=dtype, **kwargs)
        self._convert_input_args = False  # keep `emb` float32 under mixed precision
        self.cin, self.cout, self.emb_channels = cin, cout, emb_channels
        self.up, self.down, self.scale_shift = up, down, scale_shift
        self.in_norm = _norm(f32, "in_norm", cin)
        self.in_conv = _conv(cout, 3, dtype, "in_conv")
        # ADM keeps the Linear emb layers in float32 under fp16 (only convs are cast).
        self.emb_dense = keras.layers.Dense((2 if scale_shift else 1) * cout, dtype=f32,
                                            name="emb_dense")
        self.out_norm = _norm(f32, "out_norm", cout)
        self.dropout = keras.layers.Dropout(dropout, dtype=dtype) if dropout > 0 else None
        self.out_conv = _conv(cout, 3, dtype, "out_conv")
        self.skip = _conv(cout, 1, dtype, "skip") if cin != cout else None

    def build(self, input_shape=None):
        self.in_norm.build()
        self.in_conv.build((None, None, None, self.cin))
        self.emb_dense.build((None, self.emb_channels))
        self.out_norm.build()
        self.out_conv.build((None, None, None, self.cout))
        if self.skip is not None:
            self.skip.build((None, None, None, self.cin))

    def _resample(self, x):
        if self.up:
            return _upsample_nearest(x)
        if self.down:
            return tf.nn.avg_pool2d(x, 2, 2, "VALID")
        return x

    def call(self, x, emb, training=False):
        h = tf.nn.silu(self.in_norm(x))
        if self.up or self.down:
            h = self._resample(tf.cast(h, self.compute_dtype))
            x = self._resample(x)
        h = self.in_conv(h)
        emb_out = tf.cast(self.emb_dense(tf.nn.silu(emb)), tf.float32)[:, None, None, :]
        if self.scale_shift:
            scale, shift = tf.split(emb_out, 2, axis=-1)
            h = tf.cast(self.out_norm(h), tf.float32) * (1.0 + scale) + shift
            h = tf.nn.silu(h)
        else:
            h = tf.nn.silu(self.out_norm(h + tf.cast(emb_out, h.dtype)))
        h = tf.cast(h, self.compute_dtype)
        if self.dropout is not None:
            h = self.dropout(h, training=training)
        h = self.out_conv(h)
        skip = self.skip(x) if self.skip is not None else tf.cast(x, h.dtype)
        return skip + h

    def torch_weights(self, prefix):
        w = (_norm_weights(self.in_norm, prefix + "in_layers.0.")
             + _conv2d_weights(self.in_conv, prefix + "in_layers.2.")
             + _dense_weights(self.emb_dense, prefix + "emb_layers.1.", "linear")
             + _norm_weights(self.out_norm, prefix + "out_layers.0.")
             + _conv2d_weights(self.out_conv, prefix + "out_layers.3."))
        if self.skip is not None:
            w += _conv2d_weights(self.skip, prefix + "skip_connection.")
        return w


class _AttentionBlock(keras.layers.Layer):
    """Spatial self-attention; legacy QKV layout groups channels per head as
    ``[q | k | v]`` (new order: ``[all q | all k | all v]``); softmax in float32."""

    def __init__(self, channels, heads, legacy_order=True, dtype=None, f32=None, **kwargs):
        super().__init__(dtype=dtype, **kwargs)
        self.channels, self.heads, self.legacy_order = channels, heads, legacy_order
        self.norm = _norm(f32, "norm", channels)
        self.qkv = keras.layers.Dense(3 * channels, dtype=dtype, name="qkv")
        self.proj_out = keras.layers.Dense(channels, dtype=dtype, name="proj_out")

    def build(self, input_shape=None):
        self.norm.build()
        self.qkv.build((None, None, self.channels))
        self.proj_out.build((None, None, self.channels))

    def call(self, x):
        shape = tf.shape(x)
        b, c, nh = shape[0], self.channels, self.heads
        d = c // nh
        qkv = self.qkv(tf.reshape(self.norm(x), [b, -1, c]))  # (B, T, 3C)
        if self.legacy_order:
            qkv = tf.reshape(qkv, [b, -1, nh, 3, d])
            q, k, v = qkv[:, :, :, 0], qkv[:, :, :, 1], qkv[:, :, :, 2]
        else:
            qkv = tf.reshape(qkv, [b, -1, 3, nh, d])
            q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        scale = tf.cast(1.0 / math.sqrt(math.sqrt(d)), q.dtype)
        logits = tf.einsum("bthd,bshd->bhts", q * scale, k * scale)
        weights = tf.cast(tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1), v.dtype)
        a = tf.reshape(tf.einsum("bhts,bshd->bthd", weights, v), [b, -1, c])
        return x + tf.reshape(self.proj_out(a), shape)

    def torch_weights(self, prefix):
        return (_norm_weights(self.norm, prefix + "norm.")
                + _dense_weights(self.qkv, prefix + "qkv.", "conv1d")
                + _dense_weights(self.proj_out, prefix + "proj_out.", "conv1d"))


class _Resample(keras.layers.Layer):
    """Downsample (stride-2 conv with torch's symmetric padding, or 2×2 average
    pool) / Upsample (nearest ×2, then an optional 3×3 conv)."""

    def __init__(self, channels, up, use_conv, dtype=None, **kwargs):
        super().__init__(dtype=dtype, **kwargs)
        self.channels, self.up, self.use_conv = channels, up, use_conv
        self.conv = None
        if use_conv:
            self.conv = _conv(channels, 3, dtype, "conv", strides=1 if up else 2,
                              padding="same" if up else "valid")

    def build(self, input_shape=None):
        if self.conv is not None:
            self.conv.build((None, None, None, self.channels))

    def call(self, x):
        if self.up:
            x = _upsample_nearest(x)
            return self.conv(x) if self.conv is not None else x
        if self.conv is not None:
            # torch pads 1 on both sides; TF "same" would pad (0, 1) for stride 2
            return self.conv(tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]]))
        return tf.nn.avg_pool2d(x, 2, 2, "VALID")

    def torch_weights(self, prefix):
        if self.conv is None:
            return []
        return _conv2d_weights(self.conv, prefix + ("conv." if self.up else "op."))


class _Block(keras.layers.Layer):
    """One ``TimestepEmbedSequential`` (list of modules), optionally rematerialised."""

    def __init__(self, modules, torch_prefix, concat_skip=False, recompute=False,
                 dtype=None, **kwargs):
        super().__init__(dtype=dtype, **kwargs)
        self._convert_input_args = False  # keep `emb` float32 under mixed precision
        self.modules_ = modules
        self.torch_prefix = torch_prefix
        self.concat_skip = concat_skip
        self.recompute = recompute

    def build(self, input_shape=None):
        for m in self.modules_:
            m.build()

    def _forward(self, h, emb, skip=None, training=False):
        if skip is not None:
            h = tf.concat([h, tf.cast(skip, h.dtype)], axis=-1)  # h first, skip second
        for m in self.modules_:
            h = m(h, emb, training=training) if isinstance(m, _ResBlock) else m(h)
        return h

    def call(self, h, emb, skip=None, training=False):
        if not self.recompute:
            return self._forward(h, emb, skip, training)
        if skip is None:
            return tf.recompute_grad(lambda a, e: self._forward(a, e, None, training))(h, emb)
        return tf.recompute_grad(lambda a, e, s: self._forward(a, e, s, training))(h, emb, skip)

    def torch_weights(self):
        out = []
        for j, m in enumerate(self.modules_):
            out += m.torch_weights(f"{self.torch_prefix}{j}.")
        return out


class _InputConv(keras.layers.Layer):
    def __init__(self, cin, cout, dtype=None, **kwargs):
        super().__init__(dtype=dtype, **kwargs)
        self.cin = cin
        self.conv = _conv(cout, 3, dtype, "conv")

    def build(self, input_shape=None):
        self.conv.build((None, None, None, self.cin))

    def call(self, x):
        return self.conv(x)

    def torch_weights(self, prefix):
        return _conv2d_weights(self.conv, prefix)
