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
(:meth:`ADMUNet.torch_variables`); :func:`tfrestore.diffusion.adm_state_dict_shapes`
(:mod:`tfrestore.diffusion.config`) gives the same key → shape table from the
hyper-parameters alone (no variables), which is what the converter checks
checkpoints against. The layers are in :mod:`tfrestore.diffusion.layers`.

Example (random weights, tiny preset):

>>> import numpy as np
>>> from tfrestore.diffusion import ADMUNet, adm_state_dict_shapes
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

import keras
import tensorflow as tf

from tfrestore.diffusion.config import adm_config, plan_blocks
from tfrestore.diffusion.layers import (
    _AttentionBlock,
    _Block,
    _conv,
    _conv2d_weights,
    _dense_weights,
    _InputConv,
    _norm,
    _norm_weights,
    _Resample,
    _ResBlock,
    timestep_embedding,
)

__all__ = ["ADMUNet"]


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
        plan = plan_blocks(cfg)
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
        :func:`tfrestore.diffusion.convert_adm` / ``load_adm_weights`` for weights)."""
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
