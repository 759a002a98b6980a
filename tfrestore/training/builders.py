"""Build models, losses, optimizers, schedules and metrics from a resolved config.

Every builder checks the config's ``args`` against the target's signature and
raises :class:`~tfrestore.training.schema.ConfigError` naming the bad key, e.g.
``config key 'model.args.filter' is not an argument of DnCNN (did you mean
'filters'?)``.

Losses are looked up among the Keras-registered ``tfrestore>`` classes and
combined into a :class:`tfrestore.losses.WeightedSum`:

>>> loss, used = build_loss([{"type": "L1", "loss_weight": 1.0, "args": {}, "fallback": []},
...                          {"type": "MSE", "loss_weight": 0.5, "args": {}, "fallback": []}])
>>> loss
WeightedSum(1 * L1 + 0.5 * MSE)
"""

from __future__ import annotations

import importlib
import inspect
import os
from typing import NamedTuple

import keras

from tfrestore.metrics.lpips import lpips_available
from tfrestore.training.config import model_type_name
from tfrestore.training.schema import ConfigError, did_you_mean
from tfrestore.utils.text import short_reason

__all__ = [
    "accepted_arguments",
    "check_arguments",
    "build_model",
    "resolve_model_builder",
    "check_allowed_imports",
    "callable_spec",
    "InitSource",
    "resolve_init",
    "load_init_source",
    "init_weights",
    "build_loss",
    "build_optimizer",
    "build_schedule",
    "build_metrics",
    "registered_losses",
    "available_models",
]

# --------------------------------------------------------------------------- signatures


def accepted_arguments(target, closed=False):
    """Keyword arguments ``target`` (a class or function) accepts, or None if
    it takes arbitrary ``**kwargs``. For classes, ``**kwargs`` forwarded to a
    base class are followed up the MRO. ``closed=True``: the last ``**kwargs``
    of the chain is taken to reject unknown names (Keras optimizers do)."""
    names = set()
    if inspect.isclass(target):
        inits = [
            c.__dict__["__init__"]
            for c in target.__mro__
            if "__init__" in c.__dict__ and c is not object
        ]
    else:
        inits = [target]
    for fn in inits:
        try:
            params = inspect.signature(fn).parameters.values()
        except (TypeError, ValueError):
            return None
        has_var_kw = False
        for p in params:
            if p.name == "self" or p.kind == p.VAR_POSITIONAL:
                continue
            if p.kind == p.VAR_KEYWORD:
                has_var_kw = True
            else:
                names.add(p.name)
        if not has_var_kw:
            return names
    return names if closed and names else None


def check_arguments(target, args, path, what, closed=False):
    """Raise ConfigError if ``args`` has a key ``target`` does not accept."""
    accepted = accepted_arguments(target, closed=closed)
    if accepted is None:
        return
    renamed = getattr(target, "renamed_arguments", {})
    for key in args:
        if key in renamed and key not in accepted:
            raise ConfigError(
                f"config key '{path}.{key}' was renamed '{renamed[key]}': write "
                f"'{path}.{renamed[key]}'"
            )
        if key not in accepted:
            hint = did_you_mean(key, sorted(accepted))
            raise ConfigError(
                f"config key '{path}.{key}' is not an argument of {what}{hint}; valid: "
                f"{', '.join(sorted(accepted))}"
            )


def _call(target, args, path, what):
    check_arguments(target, args, path, what)
    try:
        return target(**args)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"config key '{path}': {what}({_fmt(args)}) failed: {e}") from e


def _fmt(args):
    return ", ".join(f"{k}={v!r}" for k, v in args.items())


def check_allowed_imports(allowed_imports, name="allowed_imports"):
    """``allowed_imports`` as a tuple of dotted package names (``"mypkg"``, ``"mypkg.nets"``).

    >>> check_allowed_imports(["mypkg", "other.sub"])
    ('mypkg', 'other.sub')
    """
    if allowed_imports is None:
        return ()
    if isinstance(allowed_imports, str):
        allowed_imports = (allowed_imports,)
    out = []
    for item in allowed_imports:
        text = item.strip() if isinstance(item, str) else None
        if not text or not all(part.isidentifier() for part in text.split(".")):
            raise ValueError(
                f"{name}: {item!r} is not a Python package name; give the top-level package (or "
                "a dotted sub-package) of your own code, e.g. 'mypkg'"
            )
        out.append(text)
    return tuple(out)


def _is_allowed(module, allowed_imports):
    return any(module == p or module.startswith(p + ".") for p in allowed_imports)


def callable_spec(obj):
    """``"module:qualname"`` of a callable (how a config given as a Python dict with
    ``model.type`` set to a function is written to ``config.yaml``)."""
    return model_type_name(obj)


def _import_object(spec, path, allowed_imports, registered):
    """The object ``'package.module:attr'`` names, imported only when its package is in
    ``allowed_imports``; otherwise refused before anything is imported."""
    module, _, attr = spec.partition(":")
    module = module.strip()
    if not _is_allowed(module, allowed_imports):
        package = module.split(".")[0] or "PKG"
        raise ConfigError(
            f"config key '{path}' is {spec!r}, which names Python code to import; a config is "
            "data, and tfrestore imports a module a config names only when you allow its "
            f"package: pass --allow-import {package} (tfrestore train, train/<task>.py) or "
            f"train(..., allowed_imports=({package!r},)), or give the builder itself "
            f"(model: {{type: <function>}} in a Python dict config); built-in models: {registered}"
        )
    try:
        obj = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"config key '{path}': cannot import {spec!r} ({e})") from None
    return obj


# --------------------------------------------------------------------------- models

_RESTORERS = ("DnCNN", "FFDNet", "LiuDenoiser", "EDSR", "UNet")


def available_models():
    """Restoration network builders in ``tfrestore.models``."""
    import tfrestore.models as models

    return [n for n in _RESTORERS if hasattr(models, n)]


def resolve_model_builder(kind, path="model.type", allowed_imports=()):
    """The function that builds the model named by ``model.type``.

    ``kind`` is one of :func:`available_models`, a name registered with
    ``keras.saving.register_keras_serializable`` (``"mypkg>MyNet"``: the user's code
    registered it, so it is already imported), the callable itself (a config given as a Python
    dict), or ``'package.module:function'`` -- imported only when ``package`` is in
    ``allowed_imports`` (``tfrestore train --allow-import package``): a config is data, and a
    string in it never runs code on its own.

    >>> resolve_model_builder("os:system")
    Traceback (most recent call last):
    ...
    tfrestore.training.schema.ConfigError: config key 'model.type' is 'os:system', which names
    Python code to import; ...
    """
    if callable(kind):
        return kind
    allowed_imports = check_allowed_imports(allowed_imports)
    names = available_models()
    registered = ", ".join(names)
    if not isinstance(kind, str):
        raise ConfigError(
            f"config key '{path}' must be a model name or a callable, got {kind!r}; choose from "
            f"{registered}"
        )
    if ":" in kind:
        return _import_object(kind, path, allowed_imports, registered)
    if kind in names:
        import tfrestore.models as models

        return getattr(models, kind)
    obj = keras.saving.get_registered_object(kind)
    if obj is not None and callable(obj):
        return obj
    hint = did_you_mean(kind, names)
    raise ConfigError(
        f"config key '{path}': unknown model {kind!r}{hint}; choose from {registered}, a name "
        "registered with keras.saving.register_keras_serializable ('package>Name'), or "
        "'package.module:function' together with --allow-import package"
    )


def build_model(model_cfg, path="model", allowed_imports=()):
    """Build the restoration network named by ``{type, args}`` (see
    :func:`resolve_model_builder` for what ``type`` may be)."""
    kind = model_cfg["type"]
    args = dict(model_cfg.get("args") or {})
    builder = resolve_model_builder(kind, f"{path}.type", allowed_imports)
    if callable(kind):
        kind = callable_spec(kind)
    model = _call(builder, args, f"{path}.args", kind)
    if not isinstance(model, keras.Model):
        raise ConfigError(
            f"config key '{path}.type': {kind} returned {type(model).__name__}, not a keras.Model"
        )
    return model


# --------------------------------------------------------------------------- model.init


class InitSource(NamedTuple):
    """Where ``model.init`` takes the weights from: ``kind`` is ``"preset"``, ``"keras"`` or
    ``"weights"`` (a ``.weights.h5`` file); ``location`` the preset name or the absolute path."""

    kind: str
    location: str

    def __str__(self):
        return f"preset {self.location}" if self.kind == "preset" else self.location


_INIT_HELP = (
    "model.init takes a preset name, a .keras file or a .weights.h5 file (null: no "
    "initialisation)"
)
_FIT_HELP = (
    "the source must have the layers with weights of the model built from 'model.type' / "
    "'model.args', with the same shapes: check model.args (channels, depth, filters, ...) "
    "against the source, or set model.init to null"
)


def _is_preset_name(text):
    return not any(sep in text for sep in ("/", "\\", os.sep)) and not text.endswith(
        (".keras", ".h5")
    )


def resolve_init(init, path="model.init"):
    """The :class:`InitSource` of a ``model.init`` value (None: None).

    A string with no path separator and no ``.keras`` / ``.h5`` suffix names a preset
    (``tfrestore.models.from_preset``); anything else is a file, with ``$VARS`` and ``~``
    expanded and a relative path taken from the current directory.

    >>> resolve_init("ffdnet_color")
    InitSource(kind='preset', location='ffdnet_color')
    >>> resolve_init("no/such.keras")
    Traceback (most recent call last):
    ...
    tfrestore.training.schema.ConfigError: config key 'model.init': no such file:
    .../no/such.keras (from 'no/such.keras'); model.init takes a preset name, a .keras file or a
    .weights.h5 file (null: no initialisation)
    """
    if init is None:
        return None
    text = str(init).strip()
    if not text:
        raise ConfigError(f"config key '{path}' is empty; {_INIT_HELP}")
    if _is_preset_name(text):
        return InitSource("preset", text)
    location = os.path.abspath(os.path.expanduser(os.path.expandvars(text)))
    if text.endswith(".weights.h5"):
        kind = "weights"
    elif text.endswith(".keras"):
        kind = "keras"
    else:
        raise ConfigError(
            f"config key '{path}': {text!r} is neither a .keras nor a .weights.h5 file; "
            f"{_INIT_HELP}"
        )
    if not os.path.isfile(location):
        shown = text if location == text else f"{location} (from {text!r})"
        raise ConfigError(f"config key '{path}': no such file: {shown}; {_INIT_HELP}")
    return InitSource(kind, location)


def _presets(path):
    import tfrestore.models as models

    if not hasattr(models, "from_preset"):
        raise ConfigError(
            f"config key '{path}': presets are not available in this tfrestore version (no "
            "tfrestore.models.from_preset); give a .keras or .weights.h5 file"
        )
    return models


def load_init_source(source, path="model.init"):
    """The model to copy weights from (None for a ``.weights.h5`` file, loaded into the target
    directly). Build it outside a distribution strategy's scope: it is only read."""
    if source is None or source.kind == "weights":
        return None
    if source.kind == "preset":
        models = _presets(path)
        try:
            return models.from_preset(source.location)
        except _weights_error_types() as e:
            raise ConfigError(
                f"config key '{path}': the weights of preset {source.location!r} are missing "
                f"({short_reason(e)})"
            ) from e
        except ValueError as e:  # an unknown name: the message lists the presets
            raise ConfigError(f"config key '{path}': {e}") from e
    from tfrestore.inference.restore import load_model

    try:
        return load_model(source.location)
    except ValueError as e:
        raise ConfigError(f"config key '{path}': {e}") from e


def init_weights(model, source, source_model=None, path="model.init"):
    """Initialise ``model``'s weights from ``source`` (:func:`resolve_init`).

    A ``.weights.h5`` file is loaded as is (``model.load_weights``: the exact architecture);
    a preset or a ``.keras`` model (``source_model``, else :func:`load_init_source`) is copied
    layer by layer by name (:func:`tfrestore.models.copy_weights`).

    Returns:
        The names of the layers initialised (None for a ``.weights.h5`` file: all of them).

    Raises:
        ConfigError: naming ``path``, the layer and both shapes when the weights do not fit.
    """
    from tfrestore.models.transfer import WeightTransferError, copy_weights, load_weights_file

    if source is None:
        return None
    try:
        if source.kind == "weights":
            load_weights_file(model, source.location)
            return None
        if source_model is None:
            source_model = load_init_source(source, path)
        return copy_weights(source_model, model)
    except WeightTransferError as e:
        extra = (
            "; a .weights.h5 file stores layers by class and position, so it must come from "
            "model.save_weights of the same architecture (a .keras file is matched by layer "
            "name)"
            if source.kind == "weights"
            else ""
        )
        raise ConfigError(
            f"config key '{path}' ({source}): {e}; {_FIT_HELP}{extra}"
        ) from e
    except FileNotFoundError as e:
        raise ConfigError(f"config key '{path}': {e}; {_INIT_HELP}") from e
    except ValueError as e:  # Keras could not load the file
        raise ConfigError(
            f"config key '{path}' ({source}): cannot load it ({short_reason(e)}); {_FIT_HELP}"
        ) from e


# --------------------------------------------------------------------------- losses


def registered_losses():
    """``{name: class}`` of the Keras-registered ``tfrestore>`` loss classes."""
    import tfrestore.losses  # noqa: F401  (registers the classes)

    out = {}
    for key, obj in keras.saving.get_custom_objects().items():
        if (
            key.startswith("tfrestore>")
            and inspect.isclass(obj)
            and issubclass(obj, keras.losses.Loss)
        ):
            out[key.split(">", 1)[1]] = obj
    out.pop("WeightedSum", None)
    return dict(sorted(out.items()))


def _weights_error_types():
    from tfrestore.utils.weights import WeightsNotFoundError

    return (WeightsNotFoundError,)


def _build_term(term, path, losses):
    kind = term["type"]
    if kind not in losses:
        hint = did_you_mean(kind, list(losses))
        raise ConfigError(
            f"config key '{path}.type': unknown loss {kind!r}{hint}; registered tfrestore losses: "
            f"{', '.join(losses)}"
        )
    cls = losses[kind]
    args = dict(term.get("args") or {})
    check_arguments(cls, args, f"{path}.args", kind)
    try:
        # from_config is the Keras deserialization path (the same as loading a .keras file).
        return cls.from_config(args)
    except _weights_error_types():
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"config key '{path}': {kind}({_fmt(args)}) failed: {e}") from e


def build_loss(terms, path="losses"):
    """Build the ``WeightedSum`` of the configured terms.

    A term whose pretrained weights cannot be found is replaced by its
    ``fallback`` terms (with a warning); without a fallback the
    ``WeightsNotFoundError`` propagates.

    Returns:
        ``(loss, used_terms)``: the ``WeightedSum`` and the list of term configs
        actually used (fallbacks substituted, each marked ``fallback_for``).
    """
    from tfrestore.losses import WeightedSum

    losses = registered_losses()
    built, weights, used = [], [], []
    for i, term in enumerate(terms):
        p = f"{path}[{i}]"
        try:
            built.append(_build_term(term, p, losses))
            weights.append(float(term["loss_weight"]))
            used.append({k: term[k] for k in ("type", "loss_weight", "args")})
        except _weights_error_types() as e:
            if not term.get("fallback"):
                raise
            print(
                f"[tfrestore] {p} ({term['type']}) cannot be built: {short_reason(e)} Using its "
                "fallback "
                + " + ".join(f"{fb['loss_weight']:g}*{fb['type']}" for fb in term["fallback"]),
                flush=True,
            )
            for j, fb in enumerate(term["fallback"]):
                built.append(_build_term(fb, f"{p}.fallback[{j}]", losses))
                weights.append(float(fb["loss_weight"]))
                kept = {k: fb[k] for k in ("type", "loss_weight", "args")}
                used.append({**kept, "fallback_for": term["type"]})
    return WeightedSum(built, weights), used


# --------------------------------------------------------------------------- optimizer / schedule


#: Largest share of a run's steps spent warming up: a shortened run (``--epochs 1
#: --steps-per-epoch 3``) keeps learning instead of spending its steps in the warm-up.
WARMUP_MAX_FRACTION = 0.1
#: Final learning rate of a cosine schedule, as a fraction of the peak, unless
#: ``schedule.args.alpha`` is set: a run never ends at learning rate 0.
COSINE_FLOOR = 0.01


def _capped_warmup(warmup, total_steps, path="schedule"):
    """``warmup`` capped at 10 % of the run's steps (at least 1 step when the config asks for a
    warm-up, 0 in a 1-step run), with one line saying so when it had to shrink."""
    if warmup <= 0:
        return 0
    cap = max(0, min(max(1, int(total_steps * WARMUP_MAX_FRACTION)), total_steps - 1))
    if warmup <= cap:
        return warmup
    print(
        f"[tfrestore] schedule: warm-up {warmup} -> {cap} step{'' if cap == 1 else 's'} (at most "
        f"{round(WARMUP_MAX_FRACTION * 100)} % of a {total_steps}-step run; "
        f"'{path}.warmup_steps' is {warmup})",
        flush=True,
    )
    return cap


def build_schedule(sched_cfg, learning_rate, total_steps, path="schedule"):
    """A learning rate (float) or ``LearningRateSchedule`` for ``total_steps`` steps.

    The warm-up (``warmup_steps``) takes at most 10 % of the run (a shortened run says so in
    one line and still learns); a cosine schedule ends at ``alpha`` (default 1 %) of the peak
    learning rate, not at 0.

    >>> s = build_schedule({"type": "step", "warmup_steps": 0,
    ...                     "args": {"milestones": [10], "gamma": 0.5}}, 1e-3, 20)
    >>> float(s(5)), float(s(15))
    (0.001, 0.0005)
    """
    kind = sched_cfg["type"]
    args = dict(sched_cfg.get("args") or {})
    warmup = int(sched_cfg.get("warmup_steps") or 0)
    sch = keras.optimizers.schedules
    apath = f"{path}.args"

    def only(*allowed):
        for k in args:
            if k not in allowed:
                raise ConfigError(
                    f"config key '{apath}.{k}' is not an argument of the {kind!r} schedule; valid: "
                    f"{', '.join(allowed) or '(none)'}"
                )

    warmup = _capped_warmup(warmup, total_steps, path)
    if kind == "constant":
        only()
        if not warmup:
            return float(learning_rate)
        return _Warmup(
            sch.PiecewiseConstantDecay([warmup], [learning_rate, learning_rate]),
            learning_rate,
            warmup,
        )
    if kind == "cosine":
        only("alpha")
        return sch.CosineDecay(
            initial_learning_rate=0.0 if warmup else learning_rate,
            decay_steps=max(1, total_steps - warmup),
            alpha=float(args.get("alpha", COSINE_FLOOR)),
            warmup_target=learning_rate if warmup else None,
            warmup_steps=warmup,
        )
    if kind == "step":
        only("milestones", "gamma")
        milestones = [int(m) for m in args.get("milestones", [])]
        if milestones != sorted(milestones) or any(m <= 0 for m in milestones):
            raise ConfigError(
                f"config key '{apath}.milestones' must be increasing positive step numbers"
            )
        gamma = float(args.get("gamma", 0.5))
        values = [learning_rate * gamma**i for i in range(len(milestones) + 1)]
        base = sch.PiecewiseConstantDecay(milestones, values) if milestones else None
        if base is None:
            return (
                float(learning_rate)
                if not warmup
                else _Warmup(
                    sch.PiecewiseConstantDecay([warmup], [learning_rate, learning_rate]),
                    learning_rate,
                    warmup,
                )
            )
        return _Warmup(base, learning_rate, warmup) if warmup else base
    if kind == "exponential":
        only("decay_steps", "decay_rate", "staircase")
        base = sch.ExponentialDecay(
            learning_rate,
            decay_steps=int(args.get("decay_steps", max(1, total_steps))),
            decay_rate=float(args.get("decay_rate", 0.1)),
            staircase=bool(args.get("staircase", False)),
        )
        return _Warmup(base, learning_rate, warmup) if warmup else base
    raise ConfigError(f"config key '{path}.type': unknown schedule {kind!r}")  # pragma: no cover


@keras.saving.register_keras_serializable(package="tfrestore")
class _Warmup(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from 0 to ``peak`` over ``warmup_steps``, then ``schedule``."""

    def __init__(self, schedule, peak, warmup_steps):
        self.schedule = schedule
        self.peak = float(peak)
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        warm = self.peak * (step + 1.0) / float(self.warmup_steps)
        return keras.ops.where(step < self.warmup_steps, warm, self.schedule(step))

    def get_config(self):
        return {
            "schedule": keras.saving.serialize_keras_object(self.schedule),
            "peak": self.peak,
            "warmup_steps": self.warmup_steps,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["schedule"] = keras.saving.deserialize_keras_object(config["schedule"])
        return cls(**config)


def build_optimizer(opt_cfg, schedule, path="optimizer"):
    """A Keras optimizer from ``{type, learning_rate, clipnorm, global_clipnorm, args}``."""
    kind = opt_cfg["type"]
    cls = getattr(keras.optimizers, kind, None)
    if not (inspect.isclass(cls) and issubclass(cls, keras.optimizers.Optimizer)):
        names = sorted(
            n
            for n in dir(keras.optimizers)
            if inspect.isclass(getattr(keras.optimizers, n))
            and issubclass(getattr(keras.optimizers, n), keras.optimizers.Optimizer)
            and n not in ("Optimizer", "LossScaleOptimizer")
        )
        hint = did_you_mean(kind, names)
        raise ConfigError(
            f"config key '{path}.type': unknown optimizer {kind!r}{hint}; "
            f"choose from {', '.join(names)}"
        )
    args = dict(opt_cfg.get("args") or {})
    for key in ("learning_rate", "clipnorm", "global_clipnorm"):
        if key in args:
            raise ConfigError(f"config key '{path}.args.{key}': set '{path}.{key}' instead")
    if opt_cfg.get("clipnorm") is not None:
        args["clipnorm"] = opt_cfg["clipnorm"]
    if opt_cfg.get("global_clipnorm") is not None:
        args["global_clipnorm"] = opt_cfg["global_clipnorm"]
    check_arguments(cls, args, f"{path}.args", kind, closed=True)
    return _call(cls, {"learning_rate": schedule, **args}, f"{path}.args", kind)


# --------------------------------------------------------------------------- metrics


def build_metrics(metrics_cfg, data_range=1.0):
    """Compiled metrics (PSNR / SSIM from ``tfrestore.metrics``) and the LPIPS
    function for validation when enabled and its weights are available.

    Returns ``(metrics, lpips_fn, notes)``; ``lpips_fn`` is None when LPIPS is
    off or unavailable, and ``notes`` says why it was skipped.
    """
    from tfrestore import metrics as tm

    metrics, notes = [], []
    if metrics_cfg.get("psnr"):
        metrics.append(tm.PSNR(data_range=data_range, name="psnr"))
    if metrics_cfg.get("ssim"):
        metrics.append(tm.SSIM(data_range=data_range, name="ssim"))
    lpips_fn = None
    lp = metrics_cfg.get("lpips", "auto")
    if lp:
        ok, why = lpips_available()
        if ok:
            lpips_fn = tm.lpips
        elif lp is True:
            raise ConfigError(f"config key 'metrics.lpips' is true but LPIPS is unavailable: {why}")
        else:
            notes.append(f"LPIPS skipped: {why}")
    return metrics, lpips_fn, notes
