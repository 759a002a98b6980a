"""Chains of degradations and the entry points: ``get_degradation`` / ``build_degradation``
(config dicts) and ``degrade_image`` (one image, fixed seed)."""

from __future__ import annotations

import numpy as np

from tfrestore.data.degradations.base import (
    REGISTRY,
    Degradation,
    Identity,
    register,
    split_seed,
)

__all__ = ["Compose", "get_degradation", "build_degradation", "degrade_image"]


@register
class Compose(Degradation):
    """Apply degradations in order, each with its own sub-seed (e.g. blur -> downsample -> noise).

    Only the last stage may return a tuple (e.g. ``GaussianNoise(sigma_map=True)``).

    Example:
        >>> import tensorflow as tf
        >>> from tfrestore.data.degradations import JPEG, BicubicDownsample, MotionBlur
        >>> blur = MotionBlur(kernel_size=7, length=(3, 7))
        >>> deg = Compose([blur, BicubicDownsample(2), JPEG(quality=(60, 90))])
        >>> deg(tf.random.stateless_uniform((16, 16, 3), seed=[0, 0]), seed=[1, 1]).shape
        TensorShape([8, 8, 3])
    """

    name = "compose"

    def __init__(self, degradations):
        self.degradations = [get_degradation(d) for d in degradations]
        self.scale = 1
        for d in self.degradations:
            self.scale *= int(getattr(d, "scale", 1))

    def apply(self, images, seed):
        x = images
        seeds = split_seed(seed, max(len(self.degradations), 1))
        for i, (d, s) in enumerate(zip(self.degradations, seeds)):
            if isinstance(x, tuple):
                raise ValueError(
                    f"Compose: stage {i - 1} ({self.degradations[i - 1]!r}) returned a "
                    "tuple; only the last stage may do so."
                )
            x = d(x, s)
        return x

    def get_config(self):
        return {"degradations": [d.to_dict() for d in self.degradations]}


def get_degradation(spec):
    """A degradation from a ``Degradation``, a name, a config dict or a callable.

    A dict names the type and its parameters either beside it, ``{"type": ..., **kw}`` (the
    ``tfrestore eval --degradation`` spelling), or under ``args``, ``{"type": ..., "args": kw}``
    (the spelling of a training config's ``data.degradation``); both are accepted everywhere,
    also for the stages of a ``compose``. An unknown type or parameter raises ``ValueError``
    naming the accepted ones.

    Example:
        >>> get_degradation({"type": "gaussian_noise", "sigma": [0.0, 0.2]})
        GaussianNoise(sigma=(0.0, 0.2), clip=False, sigma_map=False)
        >>> get_degradation({"type": "gaussian_noise", "args": {"sigma": 0.1}})
        GaussianNoise(sigma=0.1, clip=False, sigma_map=False)
        >>> get_degradation({"type": "gaussian_noise", "sigmaa": 0.1})
        Traceback (most recent call last):
        ...
        ValueError: degradation 'gaussian_noise' has no parameter 'sigmaa'; its parameters are
        sigma, clip, sigma_map, data_range
    """
    if spec is None:
        return Identity()
    if isinstance(spec, Degradation):
        return spec
    if isinstance(spec, str):
        spec = {"type": spec}
    if isinstance(spec, dict):
        spec = dict(spec)
        kind = spec.pop("type", None)
        if kind not in REGISTRY:
            what = "no 'type' given" if kind is None else f"Unknown degradation type {kind!r}"
            raise ValueError(f"{what}; choose from {', '.join(sorted(REGISTRY))}")
        cls = REGISTRY[kind]
        spec = _parameters(kind, cls, spec)
        if kind == "compose":
            return cls(**spec)
        spec = {k: tuple(v) if isinstance(v, list) else v for k, v in spec.items()}
        # from_config: a config saved before an argument rename still builds
        return cls.from_config(spec)
    if callable(spec):
        return spec
    raise TypeError(
        f"`degradation` must be a Degradation, a registered name, a config dict or a callable "
        f"(images, seed) -> degraded; got {type(spec).__name__}."
    )


def _parameters(kind, cls, spec):
    """The keyword arguments of ``cls`` in ``spec`` (``args`` merged in), checked by name."""
    import inspect

    params = inspect.signature(cls.__init__).parameters
    if "args" in spec and "args" not in params:
        args = spec.pop("args")
        if args is None:
            args = {}
        if not isinstance(args, dict):
            raise ValueError(
                f"degradation {kind!r}: 'args' must be a mapping of parameters, e.g. "
                f"{{type: {kind}, args: {{...}}}}; got {type(args).__name__}"
            )
        both = sorted(set(args) & set(spec))
        if both:
            raise ValueError(
                f"degradation {kind!r}: {', '.join(both)} given both beside 'type' and under "
                "'args'; give each parameter once"
            )
        spec = {**spec, **args}
    names = [n for n, p in params.items() if n != "self" and p.kind not in (p.VAR_POSITIONAL,)]
    if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
        unknown = [k for k in spec if k not in names]
        if unknown:
            listed = ", ".join(names) or "none"
            raise ValueError(
                f"degradation {kind!r} has no parameter {', '.join(map(repr, unknown))}; its "
                f"parameters are {listed}"
            )
    return spec


def build_degradation(deg_cfg, path="data.degradation"):
    """The degradation of a training config's ``{type, args}`` section.

    Args:
        deg_cfg: ``{"type": name, "args": {...}}`` (``args`` optional).
        path: str. The config key named in errors.

    Raises:
        ValueError: naming ``path`` for an unknown type or parameter.

    Example:
        >>> build_degradation({"type": "gaussian_noise", "args": {"sigma": 0.1}})
        GaussianNoise(sigma=0.1, clip=False, sigma_map=False)
    """
    spec = {"type": deg_cfg["type"], **(deg_cfg.get("args") or {})}
    try:
        return get_degradation(spec)
    except (TypeError, ValueError) as e:
        raise ValueError(f"config key '{path}': {e}") from e


def degrade_image(degradation, clean, seed):
    """Degrade one clean HWC image with a fixed seed.

    Args:
        degradation: callable. A degradation, called as ``(images, seed)``.
        clean: ``(H, W, C)`` float image in [0, 1].
        seed: int or (int, int). Stateless seed, e.g. ``[run_seed, image_index]``.

    Returns:
        The model input(s) with a batch axis: an array, or a tuple of arrays for
        multi-input degradations (e.g. a noise-level map).
    """
    out = degradation(clean[None], seed)
    if isinstance(out, (tuple, list)):
        return tuple(np.asarray(o) for o in out)
    return np.asarray(out)
