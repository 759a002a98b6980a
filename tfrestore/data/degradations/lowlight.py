"""Low-light images: gamma darkening, exposure and Poisson-Gaussian sensor noise."""

from __future__ import annotations

import tensorflow as tf

from tfrestore.data.degradations import base
from tfrestore.utils.validation import check_noise_level

__all__ = ["low_light", "LowLight"]


def low_light(
    images,
    seed,
    *,
    gamma=(1.5, 3.0),
    exposure=(0.1, 0.5),
    shot_noise=(1e-3, 1e-2),
    read_noise=(1e-3, 1e-2),
    exact_poisson=False,
    clip=True,
    return_params=False,
):
    """Low-light images: gamma darkening, exposure scaling and Poisson-Gaussian noise.

    ``y = exposure * x ** gamma``; noise with variance ``shot_noise * y + read_noise**2``
    (Foi et al. 2008 Poisson-Gaussian model: ``shot_noise`` is the gain ``a`` so that
    ``y / a`` is a photon count, ``read_noise`` the std of the signal-independent part).
    By default the Poisson part uses the usual heteroscedastic Gaussian approximation
    (runs on any device); ``exact_poisson=True`` samples ``a * Poisson(y / a)`` instead.

    Args:
        images: HWC or NHWC float in [0, 1].
        seed: int or int tensor (2,). Stateless seed.
        gamma, exposure, shot_noise, read_noise: float or (float, float). Per-image
            values, fixed or drawn from ``(low, high)``.
        exact_poisson: bool. Exact Poisson sampling (``tf.random.stateless_poisson``).
        clip: bool. Clip the result to [0, 1].
        return_params: bool. Also return ``{"gamma", "exposure", "shot_noise",
            "read_noise", "clean"}`` where ``clean`` is the noise-free dark image.

    Example:
        >>> dark = low_light(tf.fill((8, 8, 3), 0.8), seed=1, shot_noise=0.0, read_noise=0.0,
        ...                  gamma=2.0, exposure=0.5)
        >>> round(float(dark[0, 0, 0]), 4)
        0.32
    """
    fn = "low_light"
    x, single = base.as_batch(images, fn)
    rg = base.check_range(gamma, "gamma", fn, low=0.0)
    re_ = base.check_range(exposure, "exposure", fn, low=0.0)
    check_noise_level(shot_noise, "shot_noise", fn)
    check_noise_level(read_noise, "read_noise", fn)
    rs = base.check_range(shot_noise, "shot_noise", fn, low=0.0)
    rr = base.check_range(read_noise, "read_noise", fn, low=0.0)
    s = base.split_seed(base.as_seed(seed), 6)
    shape = tf.shape(x)
    b = shape[0]
    gam, exp_, shot, read = (base.sample(r, b, si) for r, si in zip((rg, re_, rs, rr), s[:4]))
    y = base.per_image(exp_, x) * tf.pow(tf.clip_by_value(x, 0.0, 1.0), base.per_image(gam, x))
    a = base.per_image(shot, x)
    read_n = base.per_image(read, x) * tf.random.stateless_normal(shape, s[5], dtype=x.dtype)
    if exact_poisson:
        safe_a = tf.maximum(a, 1e-12)
        counts = tf.random.stateless_poisson(shape, s[4], lam=y / safe_a, dtype=x.dtype)
        shot_part = tf.where(a > 0, counts * safe_a, y)
        out = shot_part + read_n
    else:
        out = y + tf.sqrt(a * y) * tf.random.stateless_normal(shape, s[4], dtype=x.dtype) + read_n
    if clip:
        out = tf.clip_by_value(out, 0.0, 1.0)
    params = dict(gamma=gam, exposure=exp_, shot_noise=shot, read_noise=read, clean=y)
    return base.finish(out, single, return_params, **params)


LowLight = base.function_wrapper(
    low_light, "low_light", "LowLight", "``low_light`` as a configurable object."
)
