"""Training config: schema, YAML loading, ``--set`` overrides and the resolved dump.

A config is a YAML mapping (see ``train/configs/*.yaml``). Every key is checked
against :data:`SCHEMA`; an unknown key anywhere raises :class:`ConfigError`
naming it (``unknown config key 'data.crop_sise' (did you mean 'data.crop_size'?)``); a
renamed key names its new spelling (``data.crop`` -> ``data.crop_size``).
``args`` mappings are passed to the named class/builder and checked against its
signature when it is built. In ``args``, a string ``"a/b"`` of two numbers is
read as the fraction (``sigma: 25/255``).

>>> cfg = load_config({"task": "denoise", "model": {"type": "DnCNN"},
...                    "losses": [{"type": "L1"}]}, overrides=["data.crop_size=48"])
>>> cfg["data"]["crop_size"], cfg["losses"][0]["loss_weight"], cfg["train"]["epochs"]
(48, 1.0, 10)
>>> load_config({"task": "denoise", "model": {"type": "DnCNN"},
...              "losses": [{"type": "L1", "loss_wieght": 2}]})
Traceback (most recent call last):
...
tfrestore.training.schema.ConfigError: unknown config key 'losses[0].loss_wieght'
(did you mean 'losses[0].loss_weight'?); valid keys in 'losses[0]': type, loss_weight, args,
fallback
"""

from __future__ import annotations

import copy
import math
import os
import re
from collections.abc import Callable
from typing import NamedTuple

import yaml

from tfrestore.training.schema import (
    REQUIRED,
    Args,
    ConfigError,
    Field,
    ListOf,
    Section,
    describe,
    upgrade_renamed,
    validate,
)

__all__ = [
    "SCHEMA",
    "TASK_NAMES",
    "TASK_DEGRADATIONS",
    "ConfigError",
    "load_config",
    "load_saved_config",
    "apply_overrides",
    "dump_config",
    "describe_config",
    "resolve_fractions",
    "config_diff",
    "shipped_configs",
    "find_config",
]

TASK_NAMES = ("denoise", "super_resolution", "dehaze", "derain", "lowlight")

#: Degradation used when ``data.degradation.type`` is null (arguments: the
#: degradation's own defaults unless given in ``data.degradation.args``).
TASK_DEGRADATIONS = {
    "denoise": ("gaussian_noise", {"sigma": 25 / 255}),
    "super_resolution": ("bicubic_downsample", {"scale": 4}),
    "dehaze": ("haze", {}),
    "derain": ("rain", {}),
    "lowlight": ("low_light", {}),
}


def _positive(v):
    if not math.isfinite(v):
        return "must be a finite number"
    return None if v > 0 else "must be > 0"


def _non_negative(v):
    if not math.isfinite(v):
        return "must be a finite number"
    return None if v >= 0 else "must be >= 0"


_LOSS_FIELDS = dict(
    type=Field(
        REQUIRED,
        str,
        "registered tfrestore loss class, e.g. L1, SSIMLoss, PerceptualLoss, D2SMLoss",
    ),
    loss_weight=Field(
        1.0,
        float,
        "weight of this term in the WeightedSum (a finite number; formerly 'weight')",
        check=lambda v: None if math.isfinite(v) else "must be a finite number (not .nan or .inf)",
    ),
    args=Args("keyword arguments of the loss class"),
)

# BasicSR's YAML spelling; `weight` sat next to `args: {weights: ...}` (pretrained weights).
_RENAMED_LOSS_KEYS = {"weight": "loss_weight"}

_FALLBACK_ITEM = Section("a replacement loss term", renamed=_RENAMED_LOSS_KEYS, **_LOSS_FIELDS)

_LOSS_ITEM = Section(
    "one weighted loss term",
    renamed=_RENAMED_LOSS_KEYS,
    **_LOSS_FIELDS,
    fallback=ListOf(
        _FALLBACK_ITEM,
        "terms used instead when this one cannot be built because its pretrained weights are "
        "missing "
        "(empty: such a failure is an error)",
    ),
)

_SOURCE = dict(
    source=Field(
        "default",
        str,
        "'default' (embedded scikit-image photos), an image directory or a glob; "
        "$VARS and ~ are expanded",
    ),
    max_images=Field(None, int, "use at most this many images (null: all)", check=_positive),
)


def _auto_or_bool(description):
    """A field that is true, false or "auto" (default)."""
    return Field(
        "auto",
        (bool, str),
        description,
        check=lambda v: None if v in (True, False, "auto") else "must be auto, true or false",
    )


def _images(description, split, renamed=None, **fields):
    """A data section: an image source (default images: ``split``) and its own ``fields``."""
    return Section(
        description,
        renamed=renamed,
        **_SOURCE,
        split=Field(split, str, "split of the default images"),
        **fields,
    )

SCHEMA = Section(
    "training config",
    task=Field(REQUIRED, str, "restoration task", choices=TASK_NAMES),
    name=Field(None, str, "run name (default: the config file name)"),
    seed=Field(
        0,
        int,
        "random seed (weights, crops, degradations); 0 to 4294967295 (--seed sets it)",
        check=lambda v: None if 0 <= v <= 2**32 - 1 else "must be from 0 to 4294967295",
    ),
    model=Section(
        "restoration network",
        type=Field(
            REQUIRED,
            (str, Callable),
            "tfrestore.models builder (DnCNN, FFDNet, LiuDenoiser, EDSR, UNet), a name registered "
            "with keras.saving.register_keras_serializable, or 'package.module:function' (imported "
            "only with --allow-import package / train(allowed_imports=...)); a Python dict config "
            "may give the function itself",
        ),
        args=Args("keyword arguments of the builder"),
        init=Field(
            None,
            str,
            "fine-tune: initialise the weights of the model built from type/args from a preset "
            "name (tfrestore.models.list_presets(), e.g. ffdnet_color), a .keras file (weights "
            "copied layer by layer, matched by name, so its inputs may differ, e.g. a scalar vs a "
            "map noise level) or a .weights.h5 file (model.save_weights of the exact "
            "architecture); $VARS and ~ are expanded, relative paths are relative to the current "
            "directory; a missing layer or a shape mismatch is an error; a resumed run keeps its "
            "backup's weights (--init sets it; null: the builder's random initialisation)",
        ),
    ),
    losses=ListOf(
        _LOSS_ITEM,
        "loss terms, summed with their weights into a WeightedSum",
        default=REQUIRED,
        min_len=1,
    ),
    data=Section(
        "training / validation / held-out data",
        renamed={"crop": "crop_size"},
        removed={
            "shuffle_buffer": "the pipeline shuffles every image index each epoch, with no "
            "buffer, so it never had an effect"
        },
        train=_images("training images", "train"),
        val=_images(
            "validation images (fixed degradation seed)",
            "val",
            renamed={"crop": "crop_size"},
            crop_size=Field(
                128,
                int,
                "centre crop of each validation image (clean resolution); null: whole images",
                check=_positive,
                nullable=True,
            ),
            batch_size=Field(4, int, "validation batch size", check=_positive),
        ),
        test=_images(
            "held-out images for the final report",
            "test",
            renamed={"max_size": "crop_size"},
            crop_size=Field(
                256,
                int,
                "centre crop of each held-out image: height and width each cut to at most this "
                "(clean resolution; null: full size)",
                check=_positive,
                nullable=True,
            ),
        ),
        degradation=Section(
            "synthetic degradation applied to clean images (tfrestore.data)",
            type=Field(
                None,
                str,
                "registered degradation: gaussian_noise, bicubic_downsample, haze, rain, "
                "low_light, jpeg, motion_blur, compose (null: the task's default, see "
                "TASK_DEGRADATIONS)",
            ),
            args=Args("keyword arguments of the degradation (e.g. sigma: 25/255)"),
        ),
        crop_size=Field(
            64, int, "training crop size (clean / high-resolution pixels)", check=_positive
        ),
        batch_size=Field(
            8, int, "global training batch size (split over replicas)", check=_positive
        ),
        augment=Field(True, bool, "random flips and 90-degree rotations"),
        channels=Field(3, int, "image channels", choices=(1, 3)),
    ),
    optimizer=Section(
        "optimizer",
        type=Field("Adam", str, "keras.optimizers class name (Adam, AdamW, SGD, ...)"),
        learning_rate=Field(1e-3, float, "(peak) learning rate", check=_positive),
        clipnorm=Field(None, float, "clip each gradient's norm (null: off)", check=_positive),
        global_clipnorm=Field(
            None, float, "clip the global gradient norm (null: off)", check=_positive
        ),
        args=Args("other keyword arguments of the optimizer"),
    ),
    schedule=Section(
        "learning-rate schedule over the whole run (epochs * steps_per_epoch steps)",
        type=Field(
            "constant", str, "schedule", choices=("constant", "cosine", "step", "exponential")
        ),
        warmup_steps=Field(0, int, "linear warm-up steps", check=_non_negative),
        args=Args(
            "cosine: alpha; step: milestones (steps), gamma; exponential: decay_steps, decay_rate"
        ),
    ),
    train=Section(
        "fit() settings",
        epochs=Field(10, int, "epochs", check=_positive),
        steps_per_epoch=Field(100, int, "training steps per epoch", check=_positive),
        validation_steps=Field(
            None, int, "validation batches per epoch (null: all)", check=_positive
        ),
        mixed_precision=Field(False, bool, "train under the 'mixed_float16' dtype policy"),
        jit_compile=_auto_or_bool("XLA: auto, true or false"),
        strategy=Field(
            "auto",
            str,
            "auto (MultiWorkerMirroredStrategy when TF_CONFIG names a cluster, else "
            "MirroredStrategy over all GPUs, default strategy on CPU), mirrored, default or "
            "multi_worker",
            choices=("auto", "mirrored", "default", "multi_worker"),
        ),
        backup_every_steps=Field(
            None,
            int,
            "also back up every this many training steps (resume mid-epoch after a kill); "
            "null: at the end of each epoch only",
            check=_positive,
        ),
        deterministic=Field(
            False, bool, "enable TF op determinism (bit-reproducible runs, slower)"
        ),
        run_eagerly=Field(
            False, bool, "run train/test steps eagerly (debugging; skips tf.function tracing)"
        ),
        verbose=Field(
            "auto",
            (int, str),
            "Keras progress output: auto, 0, 1 (bars) or 2 (one line/epoch)",
            check=lambda v: None if v in ("auto", 0, 1, 2) else "must be auto, 0, 1 or 2",
        ),
    ),
    metrics=Section(
        "validation metrics",
        psnr=Field(True, bool, "PSNR (dB, RGB, data range 1)"),
        ssim=Field(True, bool, "SSIM (Gaussian window 11, sigma 1.5)"),
        lpips=_auto_or_bool("LPIPS: auto (when its weights are available), true or false"),
        monitor=Field("val_psnr", str, "quantity ModelCheckpoint keeps the best of"),
        mode=Field(
            "max", str, "whether larger or smaller 'monitor' is better", choices=("max", "min")
        ),
    ),
    output=Section(
        "what the run writes",
        dir=Field(
            None, str, "run directory (default: runs/<name>); a killed run resumes from here"
        ),
        overwrite=Field(
            False,
            bool,
            "start a new run even if the run directory holds an earlier run's results "
            "(deletes them; --overwrite)",
        ),
        tensorboard=Field(True, bool, "TensorBoard scalars (logs/)"),
        image_summaries=Field(
            3,
            int,
            "validation images (degraded/restored/clean) logged to TensorBoard " "each epoch",
            check=_non_negative,
        ),
        csv=Field(True, bool, "history.csv (one row per epoch)"),
        checkpoint=Field(True, bool, "best.keras: the best model by metrics.monitor"),
        backup=Field(
            True,
            bool,
            "training state in backup/ at each epoch end and every train.backup_every_steps "
            "steps (resume after a kill)",
        ),
        report=Field(
            True,
            bool,
            "final evaluation on the held-out images: table, metrics.csv, grid.png, "
            "loss_curve.png",
        ),
    ),
)


# --------------------------------------------------------------------------- helpers

_FRACTION = re.compile(
    r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"  # numerator
    r"\s*/\s*((?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$"
)


def resolve_fractions(value):
    """Replace strings like ``"25/255"`` by their float value, recursively.

    >>> resolve_fractions({"sigma": "25/255", "range": ["0/255", "75/255"], "name": "a/b"})
    {'sigma': 0.09803921568627451, 'range': [0.0, 0.29411764705882354], 'name': 'a/b'}
    """
    if isinstance(value, dict):
        return {k: resolve_fractions(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [resolve_fractions(v) for v in value]
    if isinstance(value, str):
        m = _FRACTION.match(value)
        if m:
            den = float(m.group(2))
            if den == 0:
                raise ConfigError(f"division by zero in {value!r}")
            return float(m.group(1)) / den
    return value


def _set_path(cfg, dotted, value):
    parts = _split_path(dotted)
    node = cfg
    for i, p in enumerate(parts[:-1]):
        nxt = parts[i + 1]
        if isinstance(p, int):
            if not isinstance(node, list) or p > len(node):
                raise ConfigError(f"override '{dotted}': index [{p}] does not exist")
            if p == len(node):
                node.append([] if isinstance(nxt, int) else {})
            node = node[p]
            continue
        if p not in node or node[p] is None:
            node[p] = [] if isinstance(nxt, int) else {}
        node = node[p]
        if not isinstance(node, (dict, list)):
            raise ConfigError(f"override '{dotted}': '{p}' is not a mapping")
    last = parts[-1]
    if isinstance(last, int):
        if not isinstance(node, list):
            raise ConfigError(f"override '{dotted}': not a list")
        if last == len(node):
            node.append(value)
        elif last < len(node):
            node[last] = value
        else:
            raise ConfigError(f"override '{dotted}': index [{last}] is past the end")
    else:
        node[last] = value


def _split_path(dotted):
    parts = []
    for token in re.findall(r"[^.\[\]]+|\[\d+\]", dotted):
        parts.append(int(token[1:-1]) if token.startswith("[") else token)
    if not parts:
        raise ConfigError(f"empty override key in {dotted!r}")
    return parts


def apply_overrides(cfg, overrides):
    """Apply ``key.sub=value`` overrides (values parsed as YAML) to a raw config.

    >>> apply_overrides({"data": {"crop_size": 64}}, ["data.crop_size=32", "losses[0].type=L1"])
    {'data': {'crop_size': 32}, 'losses': [{'type': 'L1'}]}
    """
    cfg = copy.deepcopy(cfg)
    for item in overrides or ():
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.subkey=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as e:
            raise ConfigError(f"override {item!r}: cannot parse the value as YAML ({e})") from None
        _set_path(cfg, key.strip(), value)
    return cfg


class ShippedConfig(NamedTuple):
    path: str
    description: str


def _shipped_configs_dir():
    """``train/configs`` of a source tree (also an editable install), else the installed copy
    (package data ``tfrestore/configs``, mapped from ``train/configs`` in pyproject.toml)."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    source = os.path.join(os.path.dirname(package), "train", "configs")
    return source if os.path.isdir(source) else os.path.join(package, "configs")


def _description(path):
    """First sentence of the config's leading comment block."""
    lines = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.startswith("#"):
                break
            lines.append(line.lstrip("#").strip())
    text = " ".join(" ".join(lines).split())
    # A sentence ends at ". " before a capital ("Lim et al. 2017" goes on).
    return re.split(r"(?<=\.) (?=[A-Z])", text, maxsplit=1)[0]


def shipped_configs():
    """The training configs shipped with tfrestore: ``{name: ShippedConfig(path, description)}``
    sorted by name (``tfrestore configs`` lists them).

    >>> shipped_configs()["denoise_demo"].description
    'README demo: `python train/denoise.py` (no arguments) runs this config.'
    """
    folder = _shipped_configs_dir()
    if not os.path.isdir(folder):
        return {}
    paths = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".yaml"))
    return {
        os.path.basename(p)[: -len(".yaml")]: ShippedConfig(p, _description(p)) for p in paths
    }


def find_config(source, files=True):
    """The YAML file of a config given as a path (``files=True``; an existing file wins) or as
    the name of a shipped config (``denoise_demo`` or ``denoise_demo.yaml``).

    Raises:
        ConfigError: neither; the message lists the shipped names.
    """
    path = os.fspath(source)
    if files and os.path.isfile(path):
        return path
    shipped = shipped_configs()
    name = path[: -len(".yaml")] if path.endswith(".yaml") else path
    if name in shipped:
        return shipped[name].path
    what = "config file not found" if files else "no shipped config named"
    raise ConfigError(
        f"{what}: {path}; the shipped configs are {', '.join(shipped) or '(none found)'} "
        "('tfrestore configs' describes them)"
    )


def _read_yaml(path):
    with open(path, encoding="utf-8") as f:
        try:
            data = yaml.safe_load(f)
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: invalid YAML ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config must be a YAML mapping, got {type(data).__name__}")
    return data


_VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)\}")


def expand_path(text, key):
    """A path of the config ``key`` with ``~`` and ``$VARIABLES`` expanded; an unset variable
    raises :class:`ConfigError` naming it, rather than leaving ``$NAME`` in the path.

    >>> import os; os.environ.pop("TFRESTORE_NO_SUCH_DIR", None)
    >>> expand_path("$TFRESTORE_NO_SUCH_DIR/cbsd432", "data.train.source")
    Traceback (most recent call last):
    ...
    tfrestore.training.schema.ConfigError: config key 'data.train.source'
    ('$TFRESTORE_NO_SUCH_DIR/cbsd432'): the environment variable TFRESTORE_NO_SUCH_DIR is not set;
    set it to the folder holding cbsd432/ (export TFRESTORE_NO_SUCH_DIR=/path/to/data) or give the
    folder in the config
    """
    text = os.fspath(text)
    for m in _VARIABLE.finditer(text):
        name = m.group(1) or m.group(2)
        if name not in os.environ:
            rest = text[m.end():].lstrip("/\\")
            first = re.split(r"[/\\]", rest)[0] if rest else ""
            holding = f"the folder holding {first}/" if first else "a folder"
            raise ConfigError(
                f"config key '{key}' ({text!r}): the environment variable {name} is not set; set "
                f"it to {holding} (export {name}=/path/to/data) or give the folder in the config"
            )
    return os.path.expanduser(os.path.expandvars(text))


def check_sources(cfg):
    """Every image source of ``data`` (train, val, test): unset variables named (no TensorFlow)."""
    for section in ("train", "val", "test"):
        src = cfg["data"][section]["source"]
        if isinstance(src, str) and src != "default":
            expand_path(src, f"data.{section}.source")


def load_config(source, overrides=(), task=None):
    """Load, override and validate a config.

    Args:
        source: a YAML file path, the name of a shipped config (:func:`shipped_configs`;
            a file of that name wins) or a dict.
        overrides: list of str. ``["train.epochs=2", ...]``.
        task: str or None. If given, the config's ``task`` must equal it.

    Returns:
        The resolved config dict (defaults filled in, fractions in ``args``
        evaluated, ``name`` set).
    """
    if isinstance(source, (str, os.PathLike)):
        path = find_config(source)
        raw = _read_yaml(path)
        default_name = os.path.splitext(os.path.basename(path))[0]
    elif isinstance(source, dict):
        raw = copy.deepcopy(source)
        default_name = None
    else:
        raise TypeError(f"`source` must be a YAML path or a dict, got {type(source).__name__}.")
    raw = apply_overrides(raw, overrides)
    cfg = validate(SCHEMA, raw)
    if task is not None and cfg["task"] != task:
        raise ConfigError(
            f"config key 'task' is {cfg['task']!r} but task={task!r} was asked for; leave the "
            "task out (the config names it) or use a config of that task"
        )
    cfg["name"] = cfg["name"] or default_name or cfg["task"]
    deg = cfg["data"]["degradation"]
    if deg["type"] is None:
        kind, defaults = TASK_DEGRADATIONS[cfg["task"]]
        deg["type"] = kind
        deg["args"] = {**defaults, **deg["args"]}
    _resolve_args(cfg)
    return cfg


def load_saved_config(path):
    """The resolved config a run directory's ``config.yaml`` holds, keys an earlier version
    spelled differently (``data.crop``, ``losses[i].weight``) read in their new spelling, so an
    older interrupted run still resumes."""
    return load_config(upgrade_renamed(SCHEMA, _read_yaml(path)))


def _resolve_args(cfg):
    cfg["model"]["args"] = resolve_fractions(cfg["model"]["args"])
    for term in cfg["losses"]:
        term["args"] = resolve_fractions(term["args"])
        for fb in term["fallback"]:
            fb["args"] = resolve_fractions(fb["args"])
    cfg["data"]["degradation"]["args"] = resolve_fractions(cfg["data"]["degradation"]["args"])
    cfg["optimizer"]["args"] = resolve_fractions(cfg["optimizer"]["args"])
    cfg["schedule"]["args"] = resolve_fractions(cfg["schedule"]["args"])


def model_type_name(kind):
    """``model.type`` as text: a callable (a Python dict config) as ``module:qualname``."""
    if callable(kind):
        return f"{getattr(kind, '__module__', '?')}:{getattr(kind, '__qualname__', repr(kind))}"
    return kind


def _plain(value):
    if callable(value):
        return model_type_name(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def dump_config(cfg, path=None):
    """YAML text of a resolved config (written to ``path`` if given)."""
    text = yaml.safe_dump(_plain(cfg), sort_keys=False, default_flow_style=None)
    if path is not None:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    return text


def config_diff(a, b, path=""):
    """Dotted keys whose values differ between two resolved configs."""
    out = []
    a, b = _plain(a), _plain(b)
    if isinstance(a, dict) and isinstance(b, dict):
        for k in list(a) + [k for k in b if k not in a]:
            out += config_diff(a.get(k), b.get(k), f"{path}.{k}" if path else k)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            out += config_diff(x, y, f"{path}[{i}]")
    elif a != b:
        out.append(path)
    return out


def describe_config():
    """Every config key with its default and description (``--help-config``)."""
    return "\n".join(describe(SCHEMA))
