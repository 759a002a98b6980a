"""ADM UNet (openai/guided-diffusion) as a Keras model built from hyper-parameters.

:class:`ADMUNet` reproduces ``guided_diffusion.unet.UNetModel`` (unconditional,
2-D) from its ``create_model`` hyper-parameters: ResBlocks with scale-shift
norm, ResBlock or conv/pool resampling, legacy- or new-order QKV attention with
``num_head_channels`` or ``num_heads``, GroupNorm(32, eps 1e-5) computed in
float32, cos-first sinusoidal timestep embedding and the output-side skip
concatenation ``concat([h, skip])``. Calling it returns ``(out, h)``: the
``(B, H, W, out_channels)`` output (ε̂ then, with ``learn_sigma``, the variance
interpolation values) and the middle-block ("h-space") features.

Every variable corresponds to exactly one tensor of the PyTorch state dict
(:meth:`ADMUNet.torch_variables`); :func:`adm_state_dict_shapes` gives the same
key → shape table from the hyper-parameters alone (no variables), which is
what the converter checks checkpoints against.

Example (random weights, tiny preset):

>>> import numpy as np
>>> from tfrestore.diffusion import ADMUNet
>>> unet = ADMUNet.from_preset("adm_tiny")
>>> out, h = unet(np.zeros((1, 32, 32, 3), "float32"), np.array([10]))
>>> tuple(out.shape), tuple(h.shape)
((1, 32, 32, 6), (1, 8, 8, 64))
>>> len(unet.torch_variables()) == len(adm_state_dict_shapes("adm_tiny"))
True
"""

from __future__ import annotations

import collections
import copy
import math

import keras
import numpy as np
import tensorflow as tf

__all__ = [
    "ADMUNet",
    "ADM_PRESETS",
    "adm_config",
    "adm_state_dict_shapes",
    "timestep_embedding",
]

# Official hyper-parameters (guided-diffusion README / script_util defaults).
ADM_PRESETS = {
    "adm_256_uncond": dict(
        image_size=256, num_channels=256, num_res_blocks=2, channel_mult=(1, 1, 2, 2, 4, 4),
        learn_sigma=True, attention_resolutions=(32, 16, 8), num_heads=4,
        num_head_channels=64, num_heads_upsample=-1, use_scale_shift_norm=True,
        dropout=0.0, resblock_updown=True, use_new_attention_order=False,
        diffusion_steps=1000, noise_schedule="linear",
    ),
    # A small architecture with the same structure (the golden-vector config in
    # shared/vectors/adm_tiny); for tests and examples, there are no trained weights.
    "adm_tiny": dict(
        image_size=32, num_channels=32, num_res_blocks=2, channel_mult=(1, 2, 2),
        learn_sigma=True, attention_resolutions=(16, 8), num_heads=4,
        num_head_channels=16, num_heads_upsample=-1, use_scale_shift_norm=True,
        dropout=0.0, resblock_updown=True, use_new_attention_order=False,
        diffusion_steps=1000, noise_schedule="linear",
    ),
}

_DEFAULT_CHANNEL_MULT = {
    512: (0.5, 1, 1, 2, 2, 4, 4),
    256: (1, 1, 2, 2, 4, 4),
    128: (1, 1, 2, 3, 4),
    64: (1, 2, 3, 4),
}

_ARCH_KEYS = (
    "image_size", "num_channels", "num_res_blocks", "channel_mult", "learn_sigma",
    "attention_resolutions", "num_heads", "num_head_channels", "num_heads_upsample",
    "use_scale_shift_norm", "dropout", "resblock_updown", "use_new_attention_order",
    "conv_resample", "in_channels",
)
# Accepted in configs (guided-diffusion flag files) but irrelevant to the architecture.
_IGNORED_KEYS = ("use_checkpoint", "use_fp16", "diffusion_steps", "noise_schedule",
                 "timestep_respacing", "rescale_timesteps", "predict_xstart",
                 "use_kl", "rescale_learned_sigmas", "learn_sigma_", "class_cond")
_DEFAULTS = dict(
    image_size=256, num_channels=256, num_res_blocks=2, channel_mult=None, learn_sigma=True,
    attention_resolutions=(32, 16, 8), num_heads=4, num_head_channels=64,
    num_heads_upsample=-1, use_scale_shift_norm=True, dropout=0.0, resblock_updown=True,
    use_new_attention_order=False, conv_resample=True, in_channels=3,
)


def _parse_ints(value, what):
    if isinstance(value, str):
        value = [v for v in value.replace(" ", "").split(",") if v]
    try:
        return tuple(float(v) if float(v) != int(float(v)) else int(float(v)) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"`{what}` must be a sequence of numbers, got {value!r}.") from None


def adm_config(config=None, **overrides):
    """Normalise ADM hyper-parameters: a preset name, a dict (guided-diffusion
    ``create_model`` flags, e.g. ``shared/vectors/adm_tiny/config.json``) or None
    (``adm_256_uncond``) → dict with exactly the architecture keys.

    Raises ``ValueError`` for unknown presets/keys and unsupported flags
    (class-conditional models).
    """
    if config is None:
        config = "adm_256_uncond"
    if isinstance(config, str):
        if config not in ADM_PRESETS:
            raise ValueError(
                f"Unknown ADM preset {config!r}; available presets: {sorted(ADM_PRESETS)}."
            )
        config = ADM_PRESETS[config]
    if not isinstance(config, dict):
        raise TypeError(
            f"ADM config must be a preset name or a dict of hyper-parameters, got "
            f"{type(config).__name__}."
        )
    config = {**copy.deepcopy(dict(config)), **overrides}
    if config.get("class_cond"):
        raise ValueError(
            "class-conditional ADM models (class_cond=True) are not supported; "
            "DiffLoss uses the unconditional model."
        )
    if config.get("dims", 2) != 2:
        raise ValueError(f"only 2-D ADM models are supported, got dims={config['dims']}.")
    unknown = sorted(k for k in config if k not in _ARCH_KEYS and k not in _IGNORED_KEYS
                     and k not in ("dims", "num_classes"))
    if unknown:
        raise ValueError(
            f"Unknown ADM hyper-parameter(s) {unknown}; expected some of {list(_ARCH_KEYS)}."
        )
    out = {k: config.get(k, _DEFAULTS[k]) for k in _ARCH_KEYS}
    if out["channel_mult"] in (None, "", ()):
        if out["image_size"] not in _DEFAULT_CHANNEL_MULT:
            raise ValueError(
                f"no default channel_mult for image_size={out['image_size']}; pass "
                "channel_mult explicitly."
            )
        out["channel_mult"] = _DEFAULT_CHANNEL_MULT[out["image_size"]]
    out["channel_mult"] = list(_parse_ints(out["channel_mult"], "channel_mult"))
    out["attention_resolutions"] = [
        int(r) for r in _parse_ints(out["attention_resolutions"], "attention_resolutions")
    ]
    for key in ("image_size", "num_channels", "num_res_blocks", "num_heads",
                "num_head_channels", "num_heads_upsample", "in_channels"):
        out[key] = int(out[key])
    for key in ("learn_sigma", "use_scale_shift_norm", "resblock_updown",
                "use_new_attention_order", "conv_resample"):
        out[key] = bool(out[key])
    out["dropout"] = float(out["dropout"])
    if out["num_channels"] <= 0 or out["num_res_blocks"] < 0 or not out["channel_mult"]:
        raise ValueError(f"invalid ADM hyper-parameters: {out}")
    return out


# --------------------------------------------------------------------------- plan
def _heads(channels, num_heads, num_head_channels):
    if num_head_channels == -1:
        if channels % num_heads:
            raise ValueError(f"{channels} channels are not divisible by num_heads={num_heads}")
        return num_heads
    if channels % num_head_channels:
        raise ValueError(
            f"{channels} channels are not divisible by num_head_channels={num_head_channels}"
        )
    return channels // num_head_channels


def _plan(cfg):
    """Block layout of guided-diffusion's UNetModel.__init__ (pure Python)."""
    mc = cfg["num_channels"]
    attention_ds = {cfg["image_size"] // r for r in cfg["attention_resolutions"]}
    heads_up = cfg["num_heads_upsample"] if cfg["num_heads_upsample"] != -1 else cfg["num_heads"]
    emb = 4 * mc
    ch = input_ch = int(cfg["channel_mult"][0] * mc)

    def res(cin, cout, up=False, down=False):
        return dict(type="res", cin=cin, cout=cout, up=up, down=down)

    def attn(c, heads_arg):
        return dict(type="attn", ch=c, heads=_heads(c, heads_arg, cfg["num_head_channels"]))

    inputs = [[dict(type="conv", cin=cfg["in_channels"], cout=ch)]]
    chans = [ch]
    ds = 1
    for level, mult in enumerate(cfg["channel_mult"]):
        for _ in range(cfg["num_res_blocks"]):
            layers = [res(ch, int(mult * mc))]
            ch = int(mult * mc)
            if ds in attention_ds:
                layers.append(attn(ch, cfg["num_heads"]))
            inputs.append(layers)
            chans.append(ch)
        if level != len(cfg["channel_mult"]) - 1:
            if cfg["resblock_updown"]:
                inputs.append([res(ch, ch, down=True)])
            else:
                inputs.append([dict(type="down", ch=ch, conv=cfg["conv_resample"])])
            chans.append(ch)
            ds *= 2
    middle = [res(ch, ch), attn(ch, cfg["num_heads"]), res(ch, ch)]
    outputs = []
    for level, mult in list(enumerate(cfg["channel_mult"]))[::-1]:
        for i in range(cfg["num_res_blocks"] + 1):
            ich = chans.pop()
            layers = [res(ch + ich, int(mc * mult))]
            ch = int(mc * mult)
            if ds in attention_ds:
                layers.append(attn(ch, heads_up))
            if level and i == cfg["num_res_blocks"]:
                if cfg["resblock_updown"]:
                    layers.append(res(ch, ch, up=True))
                else:
                    layers.append(dict(type="up", ch=ch, conv=cfg["conv_resample"]))
                ds //= 2
            outputs.append(layers)
    out_channels = 2 * cfg["in_channels"] if cfg["learn_sigma"] else cfg["in_channels"]
    return dict(emb=emb, model_channels=mc, inputs=inputs, middle=middle, outputs=outputs,
                final=dict(cin=input_ch, cout=out_channels))


def _module_shapes(spec, emb, scale_shift):
    t = spec["type"]
    if t == "conv":
        return [("weight", (spec["cout"], spec["cin"], 3, 3)), ("bias", (spec["cout"],))]
    if t == "res":
        cin, cout = spec["cin"], spec["cout"]
        shapes = [
            ("in_layers.0.weight", (cin,)), ("in_layers.0.bias", (cin,)),
            ("in_layers.2.weight", (cout, cin, 3, 3)), ("in_layers.2.bias", (cout,)),
            ("emb_layers.1.weight", ((2 if scale_shift else 1) * cout, emb)),
            ("emb_layers.1.bias", ((2 if scale_shift else 1) * cout,)),
            ("out_layers.0.weight", (cout,)), ("out_layers.0.bias", (cout,)),
            ("out_layers.3.weight", (cout, cout, 3, 3)), ("out_layers.3.bias", (cout,)),
        ]
        if cin != cout:
            shapes += [("skip_connection.weight", (cout, cin, 1, 1)),
                       ("skip_connection.bias", (cout,))]
        return shapes
    if t == "attn":
        c = spec["ch"]
        return [("norm.weight", (c,)), ("norm.bias", (c,)),
                ("qkv.weight", (3 * c, c, 1)), ("qkv.bias", (3 * c,)),
                ("proj_out.weight", (c, c, 1)), ("proj_out.bias", (c,))]
    if t in ("down", "up"):
        if not spec["conv"]:
            return []
        name = "op" if t == "down" else "conv"
        c = spec["ch"]
        return [(f"{name}.weight", (c, c, 3, 3)), (f"{name}.bias", (c,))]
    raise AssertionError(t)


def adm_state_dict_shapes(config=None):
    """PyTorch state-dict keys and shapes of the ADM UNet with these
    hyper-parameters, in state-dict order, without building any variable.

    >>> shapes = adm_state_dict_shapes("adm_256_uncond")
    >>> len(shapes), sum(int(np.prod(s)) for s in shapes.values())
    (566, 552814086)
    >>> shapes["out.2.weight"]
    (6, 256, 3, 3)
    """
    cfg = adm_config(config)
    plan = _plan(cfg)
    emb, mc = plan["emb"], plan["model_channels"]
    shapes = collections.OrderedDict(
        [("time_embed.0.weight", (emb, mc)), ("time_embed.0.bias", (emb,)),
         ("time_embed.2.weight", (emb, emb)), ("time_embed.2.bias", (emb,))]
    )
    ss = cfg["use_scale_shift_norm"]
    for group, blocks in (("input_blocks", plan["inputs"]), ("output_blocks", plan["outputs"])):
        if group == "output_blocks":
            for j, spec in enumerate(plan["middle"]):
                for key, shape in _module_shapes(spec, emb, ss):
                    shapes[f"middle_block.{j}.{key}"] = shape
        for i, block in enumerate(blocks):
            for j, spec in enumerate(block):
                for key, shape in _module_shapes(spec, emb, ss):
                    shapes[f"{group}.{i}.{j}.{key}"] = shape
    f = plan["final"]
    shapes["out.0.weight"] = (f["cin"],)
    shapes["out.0.bias"] = (f["cin"],)
    shapes["out.2.weight"] = (f["cout"], f["cin"], 3, 3)
    shapes["out.2.bias"] = (f["cout"],)
    return shapes


# ------------------------------------------------------------------------- layers
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


@keras.saving.register_keras_serializable(package="tfrestore")
class ADMUNet(keras.Model):
    """guided-diffusion ``UNetModel`` (unconditional, 2-D) as a Keras model.

    ``unet(x, t, training=False) -> (out, h)``: ``x`` is ``(B, H, W, in_channels)``
    in the diffusion's data range ([−1, 1] for ADM), ``t`` integer steps ``(B,)``
    (raw 0 … T−1, no rescaling). ``H`` and ``W`` must be multiples of
    :attr:`downsampling_factor`. ``out`` has ``2·in_channels`` channels with
    ``learn_sigma`` (ε̂ first) and is float32; ``h`` is the middle-block output.

    Args: the guided-diffusion ``create_model`` hyper-parameters (see
    :data:`ADM_PRESETS`; ``attention_resolutions`` are resolutions as in
    ``script_util``, i.e. attention where ``image_size / res`` equals the
    downsampling factor). The attention flags ``num_heads``,
    ``num_head_channels``, ``num_heads_upsample`` and ``use_new_attention_order``
    change how QKV is split into heads but no tensor shape, so a checkpoint
    loads under wrong values without error: take them from the checkpoint's
    training flags and verify the loaded model against reference outputs
    (``load_adm_weights(unet, path, verify="io.npz")`` or
    ``tfrestore convert adm ... --verify io.npz``). Plus

    * ``recompute``: wrap every input/middle/output block in
      ``tf.recompute_grad`` (activations of a block are recomputed during the
      backward pass instead of being stored: less memory, ~one extra forward).
    * ``dtype``: Keras dtype policy. Under ``mixed_float16`` the convolutions and
      attention run in float16 while GroupNorm, the attention softmax, the
      timestep embedding MLP, the ResBlocks' embedding projections and the
      output head stay float32, as in ADM's fp16 mode.

    The model is built (variables created) on construction.
    """

    def __init__(
        self,
        image_size=256,
        num_channels=256,
        num_res_blocks=2,
        channel_mult=None,
        learn_sigma=True,
        attention_resolutions=(32, 16, 8),
        num_heads=4,
        num_head_channels=64,
        num_heads_upsample=-1,
        use_scale_shift_norm=True,
        dropout=0.0,
        resblock_updown=True,
        use_new_attention_order=False,
        conv_resample=True,
        in_channels=3,
        recompute=False,
        name="adm_unet",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        cfg = adm_config(dict(
            image_size=image_size, num_channels=num_channels, num_res_blocks=num_res_blocks,
            channel_mult=channel_mult, learn_sigma=learn_sigma,
            attention_resolutions=attention_resolutions, num_heads=num_heads,
            num_head_channels=num_head_channels, num_heads_upsample=num_heads_upsample,
            use_scale_shift_norm=use_scale_shift_norm, dropout=dropout,
            resblock_updown=resblock_updown, use_new_attention_order=use_new_attention_order,
            conv_resample=conv_resample, in_channels=in_channels,
        ))
        # plain dict, not tracked by Keras (a TrackedDict would reference the model)
        object.__setattr__(self, "hparams", cfg)
        self.recompute = bool(recompute)
        plan = _plan(cfg)
        self.model_channels = plan["model_channels"]
        self.emb_channels = plan["emb"]
        self.in_channels = cfg["in_channels"]
        self.out_channels = plan["final"]["cout"]
        self.downsampling_factor = 2 ** (len(cfg["channel_mult"]) - 1)
        policy = self.dtype_policy
        mixed = policy.compute_dtype in ("float16", "bfloat16")
        f32 = "float32" if mixed else policy
        dt = policy

        def make(spec, where):
            # explicit names: auto-names of "_Private" classes start with "_", which
            # tf.recompute_grad's gradient name scopes reject
            t, name = spec["type"], f"{where}_{spec['type']}"
            if t == "conv":
                return _InputConv(spec["cin"], spec["cout"], dtype=dt, name=name)
            if t == "res":
                return _ResBlock(spec["cin"], spec["cout"], self.emb_channels, spec["up"],
                                 spec["down"], cfg["use_scale_shift_norm"], cfg["dropout"],
                                 dtype=dt, f32=f32, name=name)
            if t == "attn":
                return _AttentionBlock(spec["ch"], spec["heads"],
                                       not cfg["use_new_attention_order"], dtype=dt, f32=f32,
                                       name=name)
            return _Resample(spec["ch"], t == "up", spec["conv"], dtype=dt, name=name)

        self.time_embed_0 = keras.layers.Dense(self.emb_channels, dtype=f32, name="time_embed_0")
        self.time_embed_2 = keras.layers.Dense(self.emb_channels, dtype=f32, name="time_embed_2")
        self.input_blocks = [
            _Block([make(s, f"input_{i}_{j}") for j, s in enumerate(b)], f"input_blocks.{i}.",
                   recompute=self.recompute and i > 0,
                   dtype=dt, name=f"input_block_{i}")
            for i, b in enumerate(plan["inputs"])
        ]
        self.middle_block = _Block([make(s, f"middle_{j}") for j, s in enumerate(plan["middle"])],
                                   "middle_block.",
                                   recompute=self.recompute, dtype=dt, name="middle_block")
        self.output_blocks = [
            _Block([make(s, f"output_{i}_{j}") for j, s in enumerate(b)], f"output_blocks.{i}.",
                   concat_skip=True,
                   recompute=self.recompute, dtype=dt, name=f"output_block_{i}")
            for i, b in enumerate(plan["outputs"])
        ]
        self.out_norm = _norm(f32, "out_norm", plan["final"]["cin"])
        self.out_conv = _conv(self.out_channels, 3, f32, "out_conv")
        self._final_channels = plan["final"]["cin"]
        self.build()

    def build(self, input_shape=None):
        self.time_embed_0.build((None, self.model_channels))
        self.time_embed_2.build((None, self.emb_channels))
        for block in [*self.input_blocks, self.middle_block, *self.output_blocks]:
            block.build()
        self.out_norm.build()
        self.out_conv.build((None, None, None, self._final_channels))
        self.built = True

    def call(self, x, timesteps, training=False):
        emb = timestep_embedding(timesteps, self.model_channels)
        emb = self.time_embed_2(tf.nn.silu(self.time_embed_0(emb)))
        h = tf.cast(x, self.compute_dtype)
        hs = []
        for block in self.input_blocks:
            h = block(h, emb, training=training)
            hs.append(h)
        h = self.middle_block(h, emb, training=training)
        middle = h
        for block in self.output_blocks:
            h = block(h, emb, skip=hs.pop(), training=training)
        out = self.out_conv(tf.nn.silu(self.out_norm(tf.cast(h, tf.float32))))
        return tf.cast(out, tf.float32), tf.cast(middle, tf.float32)

    def torch_variables(self):
        """``OrderedDict``: PyTorch state-dict key → ``(keras variable, kind)``,
        kind in ``conv2d`` / ``conv1d`` / ``linear`` / ``vector`` (layout rule)."""
        entries = (_dense_weights(self.time_embed_0, "time_embed.0.", "linear")
                   + _dense_weights(self.time_embed_2, "time_embed.2.", "linear"))
        for block in self.input_blocks:
            entries += block.torch_weights()
        entries += self.middle_block.torch_weights()
        for block in self.output_blocks:
            entries += block.torch_weights()
        entries += _norm_weights(self.out_norm, "out.0.") + _conv2d_weights(self.out_conv, "out.2.")
        table = collections.OrderedDict()
        for key, var, kind in entries:
            assert key not in table, f"duplicate key {key}"
            table[key] = (var, kind)
        return table

    @classmethod
    def from_preset(cls, preset="adm_256_uncond", **kwargs):
        """Build the architecture of a preset (random weights; see
        :func:`tfrestore.convert.convert_adm` / ``load_adm_weights`` for weights)."""
        cfg = adm_config(preset)
        return cls(**cfg, **kwargs)

    def get_config(self):
        config = super().get_config()
        config.update(copy.deepcopy(self.hparams))
        config["recompute"] = self.recompute
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)
