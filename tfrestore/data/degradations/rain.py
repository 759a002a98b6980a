"""Synthetic rain streaks."""

from __future__ import annotations

import math

import tensorflow as tf

from tfrestore.data.degradations import base
from tfrestore.data.degradations.blur import line_kernels, per_image_conv

__all__ = ["add_rain", "Rain"]


def add_rain(
    images,
    seed,
    *,
    density=(0.002, 0.008),
    length=(10.0, 25.0),
    angle=(-20.0, 20.0),
    intensity=(0.5, 0.9),
    thickness=1.0,
    return_params=False,
):
    """Synthetic rain streaks: sparse random drops smeared along a line, screen-blended.

    Drops are Bernoulli(``density``) pixels with uniform brightness; they are convolved
    with an anti-aliased line of length ``length`` pixels tilted by ``angle`` degrees
    from the vertical, clipped to [0, 1], scaled by ``intensity`` and blended with
    ``out = 1 - (1 - image) (1 - streaks)`` (stays in [0, 1]). One angle per image,
    as in real rain.

    Args:
        images: HWC or NHWC float in [0, 1].
        seed: int or int tensor (2,). Stateless seed.
        density: float or (float, float). Fraction of pixels that start a streak (per
            image).
        length: float or (float, float). Streak length in pixels (per image, at most 63).
        angle: float or (float, float). Tilt in degrees from vertical (per image).
        intensity: float or (float, float). Streak brightness (per image).
        thickness: float. Streak width in pixels.
        return_params: bool. Also return ``{"streaks" (.., H, W, 1), "density", "length",
            "angle", "intensity"}``.

    Example:
        >>> rainy = add_rain(tf.zeros((2, 32, 32, 3)), seed=[0, 5])
        >>> bool(tf.reduce_max(rainy) > 0), bool(tf.reduce_max(rainy) <= 1)
        (True, True)
    """
    fn = "add_rain"
    x, single = base.as_batch(images, fn)
    rd = base.check_range(density, "density", fn, low=0.0, high=1.0)
    rl = base.check_range(length, "length", fn, low=1.0, high=63.0)
    ran = base.check_range(angle, "angle", fn, low=-90.0, high=90.0)
    ri = base.check_range(intensity, "intensity", fn, low=0.0, high=1.0)
    s = base.split_seed(base.as_seed(seed), 7)
    shape = tf.shape(x)
    b, h, w = shape[0], shape[1], shape[2]
    dens, ln, ang, inten = (base.sample(r, b, si) for r, si in zip((rd, rl, ran, ri), s[:4]))
    drops = tf.cast(
        tf.random.stateless_uniform(tf.stack([b, h, w, 1]), s[4]) < tf.reshape(dens, [-1, 1, 1, 1]),
        tf.float32,
    )
    drops = drops * tf.random.stateless_uniform(tf.stack([b, h, w, 1]), s[5], 0.5, 1.0)
    ksize = 2 * int(math.ceil(rl[1] / 2.0)) + 1
    kernels = line_kernels(ln, ang, ksize, thickness)
    streaks = tf.clip_by_value(per_image_conv(drops, kernels), 0.0, 1.0)
    streaks = streaks * base.per_image(inten, drops)
    streaks = tf.cast(streaks, x.dtype)
    out = 1.0 - (1.0 - x) * (1.0 - streaks)
    return base.finish(
        out,
        single,
        return_params,
        streaks=streaks,
        density=dens,
        length=ln,
        angle=ang,
        intensity=inten,
    )


Rain = base.function_wrapper(
    add_rain, "rain", "Rain", "``add_rain`` as a configurable object (same keyword arguments)."
)
