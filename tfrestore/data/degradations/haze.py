"""Haze from the atmospheric scattering model."""

from __future__ import annotations

import tensorflow as tf

from tfrestore.data.degradations import base
from tfrestore.utils import validation

__all__ = ["add_haze", "Haze"]

#: old argument name -> new one (for models ``depth`` is the number of layers).
_RENAMED = {"depth": "depth_map"}


def _depth_proxy(kind, b, h, w, seed):
    rows = tf.linspace(1.0, 0.0, h)  # top of the frame far (1), bottom near (0)
    ramp = tf.broadcast_to(rows[None, :, None, None], tf.stack([b, h, w, 1]))
    if kind == "vertical":
        return ramp
    if kind == "uniform":
        return tf.ones(tf.stack([b, h, w, 1]))
    if kind == "random":
        coarse = tf.random.stateless_uniform([b, 4, 4, 1], seed)
        field = tf.image.resize(coarse, tf.stack([h, w]), method="bicubic")
        lo = tf.reduce_min(field, axis=[1, 2, 3], keepdims=True)
        hi = tf.reduce_max(field, axis=[1, 2, 3], keepdims=True)
        field = (field - lo) / tf.maximum(hi - lo, 1e-6)
        return 0.5 * ramp + 0.5 * field
    raise ValueError(
        f"add_haze: `depth_map` must be 'vertical', 'uniform', 'random' or a depth tensor, "
        f"got {kind!r}."
    )


def add_haze(
    images,
    seed,
    *,
    beta=(0.6, 1.8),
    airlight=(0.7, 1.0),
    depth_map="random",
    return_params=False,
    **kwargs,
):
    """Haze from the atmospheric scattering model ``I = J t + A (1 - t)``, ``t = exp(-beta d)``.

    Args:
        images: float tensor (H, W, C) or (B, H, W, C). Clear images ``J`` in [0, 1].
        seed: int or int tensor (2,). Stateless seed.
        beta: float or (float, float). Scattering coefficient (per image, fixed or
            ``(low, high)``).
        airlight: float or (float, float). Grey atmospheric light ``A`` in [0, 1] (per image).
        depth_map: str or tensor. The scene depth ``d`` (relative units, ~[0, 1]). Without
            a depth sensor a
            proxy is used: ``"vertical"`` (linear ramp, 1 at the top row to 0 at the
            bottom: sky/far at the top as in street and landscape photos),
            ``"uniform"`` (``d = 1``, homogeneous haze, ``t = exp(-beta)``) or
            ``"random"`` (default: the mean of the vertical ramp and a smooth random
            field, a 4x4 uniform grid upsampled bicubically and rescaled to [0, 1]).
            A tensor ``(H, W, 1)`` / ``(B, H, W, 1)`` gives a real depth map. (Formerly
            ``depth``: that keyword raises ``TypeError``; ``Haze`` configs saved with it
            still load.)
        return_params: bool. Also return ``{"transmission", "airlight", "beta",
            "depth_map"}``.

    Example:
        >>> hazy, p = add_haze(tf.zeros((16, 16, 3)), seed=3, return_params=True)
        >>> bool(tf.reduce_all(hazy >= 0)), tuple(p["transmission"].shape)
        (True, (16, 16, 1))
    """
    fn = "add_haze"
    validation.refuse_renamed(kwargs, _RENAMED, fn, allow_other=False)
    x, single = base.as_batch(images, fn)
    rb = base.check_range(beta, "beta", fn, low=0.0)
    ra = base.check_range(airlight, "airlight", fn, low=0.0, high=1.0)
    s_beta, s_air, s_depth = base.split_seed(base.as_seed(seed), 3)
    shape = tf.shape(x)
    b, h, w = shape[0], shape[1], shape[2]
    if isinstance(depth_map, str):
        d = _depth_proxy(depth_map, b, h, w, s_depth)
    else:
        d = tf.cast(tf.convert_to_tensor(depth_map), tf.float32)
        if d.shape.rank == 3:
            d = d[None]
        if d.shape.rank != 4 or (d.shape[-1] is not None and d.shape[-1] != 1):
            raise ValueError(
                f"{fn}: a `depth_map` tensor must be (H, W, 1) or (B, H, W, 1), "
                f"got {tuple(d.shape)}."
            )
        d = tf.broadcast_to(d, tf.stack([b, h, w, 1]))
    bet = base.sample(rb, b, s_beta)
    air = base.sample(ra, b, s_air)
    t = tf.cast(tf.exp(-base.per_image(bet, d) * d), x.dtype)
    out = x * t + base.per_image(air, x) * (1.0 - t)
    return base.finish(
        out, single, return_params, transmission=t, airlight=air, beta=bet, depth_map=d
    )


Haze = base.function_wrapper(
    add_haze,
    "haze",
    "Haze",
    "``add_haze`` as a configurable object (same keyword arguments).",
    renamed=_RENAMED,
)
