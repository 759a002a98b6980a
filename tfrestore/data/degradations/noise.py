"""Additive white Gaussian noise (fixed or blind sigma, the FFDNet noise-level map)."""

from __future__ import annotations

import tensorflow as tf

from tfrestore.data.degradations import base
from tfrestore.utils.validation import check_noise_level

__all__ = ["add_gaussian_noise", "GaussianNoise"]


def add_gaussian_noise(
    images, seed, sigma=25.0 / 255.0, *, clip=False, return_params=False, data_range=1.0
):
    """Additive white Gaussian noise with fixed or blind (per-image uniform) sigma.

    Args:
        images: HWC or NHWC float images in [0, 1].
        seed: int or int tensor (2,). Seed for the stateless random ops.
        sigma: float or (float, float). Noise std in image units (``25/255`` for
            "sigma 25"); a ``(min, max)`` pair is blind: sigma ~ U[min, max] per image
            (the D2SM/FFDNet setting is ``(0, 75/255)``).
        clip: bool. Clip the noisy image to [0, data_range] (the DnCNN/FFDNet benchmarks
            do not clip).
        return_params: bool. Also return
            ``{"sigma": (B,) or (), "sigma_map": (..., H, W, 1)}``; ``sigma_map`` is the
            constant noise-level map FFDNet takes as extra input.
        data_range: float. The images' value range (1 for [0, 1], 255 for [0, 255]); a
            ``sigma`` above it is refused (``sigma=25`` on [0, 1] images means ``25/255``).

    Example:
        >>> x = tf.fill((64, 64, 3), 0.5)
        >>> y, p = add_gaussian_noise(x, seed=[1, 2], sigma=(0.0, 75 / 255), return_params=True)
        >>> tuple(p["sigma_map"].shape), bool(0 <= float(p["sigma"]) <= 75 / 255)
        ((64, 64, 1), True)
    """
    fn = "add_gaussian_noise"
    x, single = base.as_batch(images, fn)
    check_noise_level(sigma, "sigma", fn, data_range)
    rng = base.check_range(sigma, "sigma", fn, low=0.0)
    seed = base.as_seed(seed)
    s_sigma, s_noise = base.split_seed(seed, 2)
    shape = tf.shape(x)
    sig = base.sample(rng, shape[0], s_sigma)
    noise = tf.random.stateless_normal(shape, s_noise, dtype=x.dtype)
    out = x + base.per_image(sig, x) * noise
    if clip:
        out = tf.clip_by_value(out, 0.0, float(data_range))
    if not return_params:  # skip building the sigma map
        return base.finish(out, single, False)
    sigma_map = tf.broadcast_to(base.per_image(sig, x), tf.concat([shape[:3], [1]], 0))
    return base.finish(out, single, True, sigma=sig, sigma_map=sigma_map)


@base.register
class GaussianNoise(base.Degradation):
    """``add_gaussian_noise`` as a configurable object.

    Args:
        sigma: float or (float, float). Fixed std or ``(min, max)`` (blind), image units.
        clip: bool. Clip to [0, data_range].
        sigma_map: bool. Return ``(noisy, sigma_map)``, the two FFDNet inputs.
        data_range: float. The images' value range; a ``sigma`` above it is refused with
            the ``/255`` it probably lacks (``data_range=255`` accepts ``sigma=25``).

    Example:
        >>> deg = GaussianNoise(sigma=(0, 75 / 255), sigma_map=True)
        >>> noisy, smap = deg(tf.zeros((2, 8, 8, 3)), seed=0)
        >>> tuple(smap.shape)
        (2, 8, 8, 1)
    """

    name = "gaussian_noise"

    def __init__(self, sigma=25.0 / 255.0, clip=False, sigma_map=False, data_range=1.0):
        if isinstance(data_range, bool) or not isinstance(data_range, (int, float)) or not (
            data_range > 0
        ):
            raise ValueError(
                f"GaussianNoise: `data_range` must be a positive number (1 for images in [0, 1], "
                f"255 for [0, 255]), got {data_range!r}."
            )
        self.data_range = float(data_range)
        check_noise_level(sigma, "sigma", "GaussianNoise", self.data_range)
        base.check_range(sigma, "sigma", "GaussianNoise", low=0.0)
        self.sigma = tuple(sigma) if isinstance(sigma, (list, tuple)) else float(sigma)
        self.clip = bool(clip)
        self.sigma_map = bool(sigma_map)

    def apply(self, images, seed):
        if self.sigma_map:
            y, p = add_gaussian_noise(
                images, seed, self.sigma, clip=self.clip, return_params=True,
                data_range=self.data_range,
            )
            return y, p["sigma_map"]
        return add_gaussian_noise(
            images, seed, self.sigma, clip=self.clip, data_range=self.data_range
        )

    def get_config(self):
        config = {"sigma": self.sigma, "clip": self.clip, "sigma_map": self.sigma_map}
        if self.data_range != 1.0:
            config["data_range"] = self.data_range
        return config

