"""Build models, losses, optimizers, schedules and metrics from a resolved config.

Every builder checks the config's ``args`` against the target's signature and
raises :class:`~tfrestore.training.schema.ConfigError` naming the bad key, e.g.
``config key 'model.args.filter' is not an argument of DnCNN (did you mean
'filters'?)``.

Losses are looked up among the Keras-registered ``tfrestore>`` classes and
combined into a :class:`tfrestore.losses.WeightedSum`:

>>> loss, used = build_loss([{"type": "L1", "weight": 1.0, "args": {}, "fallback": []},
...                          {"type": "MSE", "weight": 0.5, "args": {}, "fallback": []}])
>>> loss
WeightedSum(1 * L1 + 0.5 * MSE)
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import math

import keras

from tfrestore.training.schema import ConfigError

__all__ = [
    "accepted_arguments",
    "check_arguments",
    "build_model",
    "build_loss",
    "build_optimizer",
    "build_schedule",
    "build_metrics",
    "registered_losses",
    "available_models",
    "lpips_available",
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
    for key in args:
        if key not in accepted:
            close = difflib.get_close_matches(key, sorted(accepted), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
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


def _import_object(spec, path):
    module, _, attr = spec.partition(":")
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
    try:
        import tfrestore.models as models
    except ImportError:
        return []
    return [n for n in _RESTORERS if hasattr(models, n)]


def build_model(model_cfg, path="model"):
    """Build the restoration network named by ``{type, args}``."""
    kind = model_cfg["type"]
    args = dict(model_cfg.get("args") or {})
    if ":" in kind:
        builder = _import_object(kind, f"{path}.type")
    else:
        try:
            import tfrestore.models as models
        except ImportError as e:
            raise ConfigError(
                f"config key '{path}.type' is {kind!r} but tfrestore.models cannot be imported "
                f"({e})"
            ) from e
        names = available_models()
        if kind not in names:
            close = difflib.get_close_matches(kind, names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"config key '{path}.type': unknown model {kind!r}{hint}; "
                f"choose from {', '.join(names)} "
                "or give 'package.module:function'"
            )
        builder = getattr(models, kind)
    model = _call(builder, args, f"{path}.args", kind)
    if not isinstance(model, keras.Model):
        raise ConfigError(
            f"config key '{path}.type': {kind} returned {type(model).__name__}, not a keras.Model"
        )
    return model


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
    types = []
    try:
        from tfrestore.utils.weights import WeightsNotFoundError

        types.append(WeightsNotFoundError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(types) or (FileNotFoundError,)


def _build_term(term, path, losses):
    kind = term["type"]
    if kind not in losses:
        close = difflib.get_close_matches(kind, list(losses), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
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
            weights.append(float(term["weight"]))
            used.append({k: term[k] for k in ("type", "weight", "args")})
        except _weights_error_types() as e:
            if not term.get("fallback"):
                raise
            print(
                f"[tfrestore] {p} ({term['type']}) cannot be built: {short_reason(e)} Using its "
                "fallback "
                + " + ".join(f"{fb['weight']:g}*{fb['type']}" for fb in term["fallback"]),
                flush=True,
            )
            for j, fb in enumerate(term["fallback"]):
                built.append(_build_term(fb, f"{p}.fallback[{j}]", losses))
                weights.append(float(fb["weight"]))
                used.append(
                    {**{k: fb[k] for k in ("type", "weight", "args")}, "fallback_for": term["type"]}
                )
    return WeightedSum(built, weights), used


# --------------------------------------------------------------------------- optimizer / schedule


def build_schedule(sched_cfg, learning_rate, total_steps, path="schedule"):
    """A learning rate (float) or ``LearningRateSchedule`` for ``total_steps`` steps.

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

    if warmup >= total_steps:
        # A short trial run (--epochs 1 --steps-per-epoch 5) should not turn a valid config invalid.
        print(
            f"[tfrestore] note: '{path}.warmup_steps' ({warmup}) shortened to {total_steps - 1} "
            "for a "
            f"{total_steps}-step run",
            flush=True,
        )
        warmup = max(0, total_steps - 1)
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
            alpha=float(args.get("alpha", 0.0)),
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
        close = difflib.get_close_matches(kind, names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
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


def short_reason(exc, limit=240):
    """First sentence of an exception message, capped at ``limit`` characters."""
    text = " ".join(str(exc).split())
    cut = text.find(". ")
    text = text[: cut + 1] if cut > 0 else text
    return text if len(text) <= limit else text[: limit - 3] + "..."


_LPIPS_STATUS = {}


def lpips_available(backbone="alexnet"):
    """``(True, None)`` when LPIPS-``backbone`` can be built (its weights are found),
    else ``(False, reason)``. Builds (and caches) the LPIPS network."""
    try:
        # Not `from tfrestore.metrics import lpips`: that name is the re-exported function.
        lpips_module = importlib.import_module("tfrestore.metrics.lpips")
    except ImportError as e:
        return False, f"tfrestore.metrics has no LPIPS in this version ({e})"
    get = getattr(lpips_module, "get_lpips_network", None)
    if get is None:
        return False, "tfrestore.metrics.lpips has no get_lpips_network()"
    import os

    # Probing may try a download: once per process and weights location.
    key = (backbone, os.environ.get("TFRESTORE_WEIGHTS_DIR"), os.environ.get("KERAS_HOME"))
    if key not in _LPIPS_STATUS:
        try:
            get(backbone)
            _LPIPS_STATUS[key] = (True, None)
        except _weights_error_types() as e:
            _LPIPS_STATUS[key] = (False, short_reason(e))
    return _LPIPS_STATUS[key]


def steps_total(cfg):
    return int(cfg["train"]["epochs"]) * int(cfg["train"]["steps_per_epoch"])


def ceil_div(a, b):
    return int(math.ceil(a / b))
