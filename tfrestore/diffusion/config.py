"""ADM (guided-diffusion) hyper-parameters: presets, config parsing, and the
PyTorch state-dict key → shape table they imply (pure Python, no TensorFlow).

:func:`adm_config` normalises a preset name or a guided-diffusion ``create_model``
flag dict; :func:`adm_state_dict_shapes` gives every PyTorch key and shape of the
UNet those flags build, which :func:`tfrestore.diffusion.convert_adm` checks
checkpoints against and :class:`tfrestore.diffusion.ADMUNet` is built from.

>>> adm_config("adm_tiny")["num_channels"]
32
>>> len(adm_state_dict_shapes("adm_tiny"))
306
"""

from __future__ import annotations

import collections
import copy

__all__ = ["ADM_PRESETS", "adm_config", "adm_state_dict_shapes", "plan_blocks"]

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


_INT_KEYS = ("image_size", "num_channels", "num_res_blocks", "num_heads",
             "num_head_channels", "num_heads_upsample", "in_channels")
_BOOL_KEYS = ("learn_sigma", "use_scale_shift_norm", "resblock_updown",
              "use_new_attention_order", "conv_resample")


def _type_error(key, expected, value):
    return ValueError(
        f"ADM config key {key!r} must be {expected}, got {value!r} ({type(value).__name__}); "
        "fix it in the config (guided-diffusion create_model flags)"
    )


def _as_int(value, key):
    """An integer flag: an int, an integer-valued float or a decimal string ("64")."""
    if isinstance(value, bool):
        raise _type_error(key, "an integer", value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise _type_error(key, "an integer", value)


def _as_bool(value, key):
    """A boolean flag: true/false, 0/1, or the strings argparse flag files hold."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    raise _type_error(key, "true or false", value)


def _as_float(value, key):
    if isinstance(value, bool):
        raise _type_error(key, "a number", value)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise _type_error(key, "a number", value) from None


def _parse_ints(value, what):
    if isinstance(value, str):
        value = [v for v in value.replace(" ", "").split(",") if v]
    try:
        return tuple(float(v) if float(v) != int(float(v)) else int(float(v)) for v in value)
    except (TypeError, ValueError):
        raise ValueError(
            f"ADM config key {what!r} must be a sequence of numbers (or a string like "
            f"'1,2,2'), got {value!r}."
        ) from None


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
    # Types first, naming the key: a later default or arithmetic error would mislead.
    for key in _INT_KEYS:
        out[key] = _as_int(out[key], key)
    for key in _BOOL_KEYS:
        out[key] = _as_bool(out[key], key)
    out["dropout"] = _as_float(out["dropout"], "dropout")
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
    if out["num_channels"] <= 0 or out["num_res_blocks"] < 0 or not out["channel_mult"]:
        raise ValueError(f"invalid ADM hyper-parameters: {out}")
    return out


# Block layout and the PyTorch key -> shape table, from the hyper-parameters alone.
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


def plan_blocks(cfg):
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

    >>> import math
    >>> shapes = adm_state_dict_shapes("adm_256_uncond")
    >>> len(shapes), sum(math.prod(s) for s in shapes.values())
    (566, 552814086)
    >>> shapes["out.2.weight"]
    (6, 256, 3, 3)
    """
    cfg = adm_config(config)
    plan = plan_blocks(cfg)
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
