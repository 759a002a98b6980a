"""What every degradation shares: stateless seeds, argument checks, the ``Degradation``
base class and the registry that ``get_degradation`` reads."""

from __future__ import annotations

import inspect
import numbers

import tensorflow as tf

from tfrestore.utils import validation

__all__ = ["as_seed", "Degradation", "Identity"]


def as_seed(seed):
    """Normalise ``seed`` (int, pair, or shape-[2] tensor) to a shape-[2] int64 tensor.

    Example:
        >>> as_seed(7).numpy().tolist()
        [7, 0]
    """
    if isinstance(seed, bool) or seed is None:
        raise TypeError(
            "`seed` must be an int or a shape-[2] integer tensor for stateless random ops, "
            f"got {seed!r}."
        )
    if isinstance(seed, numbers.Integral):
        return tf.constant([int(seed), 0], tf.int64)
    s = tf.convert_to_tensor(seed)
    if not s.dtype.is_integer:
        raise TypeError(f"`seed` must be integer-valued, got dtype {s.dtype.name}.")
    if s.shape.rank != 1 or (s.shape[0] is not None and s.shape[0] != 2):
        raise ValueError(f"`seed` must have shape [2], got shape {tuple(s.shape)}.")
    return tf.cast(s, tf.int64)


def split_seed(seed, n):
    """``n`` independent stateless seeds derived from ``seed``."""
    return tf.unstack(tf.random.experimental.stateless_split(seed, n), num=n)


def as_batch(images, fn):
    """``(NHWC float batch, was_single_image)``; ``fn`` names the caller in errors."""
    x = tf.convert_to_tensor(images)
    if not x.dtype.is_floating:
        raise TypeError(
            f"{fn}: `images` must be float in [0, 1], got dtype {x.dtype.name}; convert with "
            f"`tf.image.convert_image_dtype(images, tf.float32)`."
        )
    if x.shape.rank == 3:
        return x[None], True
    if x.shape.rank == 4:
        return x, False
    raise ValueError(
        f"{fn}: `images` must be an HWC image or an NHWC batch (rank 3 or 4), "
        f"got shape {tuple(x.shape)}."
    )


def check_range(value, name, fn, low=None, high=None):
    """Validate a fixed value or a (low, high) pair; returns (lo, hi) floats."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(
                f"{fn}: `{name}` must be a number or a (low, high) pair, got {value!r}."
            )
        lo, hi = float(value[0]), float(value[1])
    else:
        lo = hi = float(value)
    if lo > hi:
        raise ValueError(f"{fn}: `{name}` range must satisfy low <= high, got {value!r}.")
    if (low is not None and lo < low) or (high is not None and hi > high):
        raise ValueError(f"{fn}: `{name}` must lie in [{low}, {high}], got {value!r}.")
    return lo, hi


def sample(rng, batch, seed, dtype=tf.float32):
    """``batch`` values from ``U[lo, hi]`` (constant when ``lo == hi``)."""
    lo, hi = rng
    if lo == hi:
        return tf.fill([batch], tf.constant(lo, dtype))
    return tf.random.stateless_uniform([batch], seed, lo, hi, dtype=dtype)


def per_image(v, x):
    """A ``(B,)`` parameter as ``(B, 1, 1, 1)`` in ``x``'s dtype, to broadcast over images."""
    return tf.reshape(tf.cast(v, x.dtype), [-1, 1, 1, 1])


def finish(out, single, return_params, **params):
    """Drop the batch axis added by ``as_batch``; ``(out, params)`` with ``return_params``."""
    if not return_params:
        return out[0] if single else out
    if single:
        out = out[0]
        params = {k: v[0] for k, v in params.items()}
    return out, params


class Degradation:
    """Base class: ``degradation(images, seed) -> degraded`` with a serialisable config.

    Subclasses set ``name`` (the registry key) and implement ``apply``. ``__call__``
    returns a tensor, or a tuple of model inputs (e.g. ``(noisy, sigma_map)``).
    ``scale`` is the spatial down-scaling factor the degradation applies (1 if none).
    """

    name = None
    scale = 1

    def __call__(self, images, seed):
        return self.apply(images, as_seed(seed))

    def apply(self, images, seed):  # pragma: no cover - abstract
        raise NotImplementedError

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def to_dict(self):
        """``{"type": name, **config}``, the inverse of ``get_degradation``."""
        return {"type": self.name, **self.get_config()}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


REGISTRY = {}


def register(cls):
    REGISTRY[cls.name] = cls
    return cls


@register
class Identity(Degradation):
    """No degradation (``(clean, clean)`` pairs, e.g. for auto-encoding checks)."""

    name = "identity"

    def apply(self, images, seed):
        return tf.convert_to_tensor(images)


def function_wrapper(fn, reg_name, cls_name, doc, renamed=None):
    """A registered ``Degradation`` class whose config is ``fn``'s keyword-only arguments.

    ``renamed`` maps old argument names to new ones: the class refuses an old name with a
    ``TypeError`` naming the new one, while ``from_config`` (and so ``get_degradation`` on a
    saved config) maps an old key to the new one, so configs saved before a rename load.
    """
    params = [
        p
        for p in inspect.signature(fn).parameters.values()
        if p.kind == p.KEYWORD_ONLY and p.name not in ("return_params", "kernel")
    ]
    defaults = {p.name: p.default for p in params}
    renamed = dict(renamed or {})

    def __init__(self, **kwargs):
        validation.refuse_renamed(kwargs, renamed, cls_name)
        unknown = set(kwargs) - set(defaults)
        if unknown:
            raise TypeError(
                f"{cls_name}: unknown argument(s) {sorted(unknown)}; valid: {sorted(defaults)}."
            )
        cfg = {**defaults, **kwargs}
        self._config = {k: (tuple(v) if isinstance(v, list) else v) for k, v in cfg.items()}
        # Validate eagerly (cheap) so a bad config fails at construction, not in tf.data.
        side = max(16, 2 * int(self._config.get("kernel_size", 0)) + 1)
        fn(tf.zeros((1, side, side, 3)), 0, **self._config)

    def apply(self, images, seed):
        return fn(images, seed, **self._config)

    def get_config(self):
        return dict(self._config)

    def from_config(cls, config):
        # configs saved before a rename hold the old key
        return cls(**validation.renamed_config(config, renamed))

    cls = type(
        cls_name,
        (Degradation,),
        {
            "__init__": __init__,
            "apply": apply,
            "get_config": get_config,
            "from_config": classmethod(from_config),
            "name": reg_name,
            "__doc__": doc,
            "__module__": fn.__module__,
        },
    )
    return register(cls)

