"""Chains of degradations and ``get_degradation``, the config-dict entry point."""

from __future__ import annotations

from tfrestore.data.degradations.base import (
    REGISTRY,
    Degradation,
    Identity,
    register,
    split_seed,
)

__all__ = ["Compose", "get_degradation"]


@register
class Compose(Degradation):
    """Apply degradations in order, each with its own sub-seed (e.g. blur -> downsample -> noise).

    Only the last stage may return a tuple (e.g. ``GaussianNoise(sigma_map=True)``).

    Example:
        >>> import tensorflow as tf
        >>> from tfrestore.data.degradations import JPEG, BicubicDownsample, MotionBlur
        >>> blur = MotionBlur(size=7, length=(3, 7))
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
    """A degradation from a ``Degradation``, a name, a ``{"type": ..., **kw}`` dict or a callable.

    Example:
        >>> get_degradation({"type": "gaussian_noise", "sigma": [0.0, 0.2]})
        GaussianNoise(sigma=(0.0, 0.2), clip=False, sigma_map=False)
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
            raise ValueError(f"Unknown degradation type {kind!r}; choose from {sorted(REGISTRY)}.")
        cls = REGISTRY[kind]
        if kind == "compose":
            return cls(**spec)
        spec = {k: tuple(v) if isinstance(v, list) else v for k, v in spec.items()}
        return cls(**spec)
    if callable(spec):
        return spec
    raise TypeError(
        f"`degradation` must be a Degradation, a registered name, a config dict or a callable "
        f"(images, seed) -> degraded; got {type(spec).__name__}."
    )
