"""Additive white Gaussian noise (fixed or blind sigma, the FFDNet noise-level map)."""

from __future__ import annotations

import tensorflow as tf

from tfrestore.data.degradations import base

__all__ = ["add_gaussian_noise", "GaussianNoise"]


def add_gaussian_noise(images, seed, sigma=25.0 / 255.0, *, clip=False, return_params=False):
    """Additive white Gaussian noise with fixed or blind (per-image uniform) sigma.

    Args:
        images: HWC or NHWC float images in [0, 1].
        seed: shape-[2] int tensor (or int) for the stateless random ops.
        sigma: noise std in image units (``25/255`` for "sigma 25"), or a ``(min, max)``
            pair for blind denoising: sigma ~ U[min, max] per image (the D2SM/FFDNet
            setting is ``(0, 75/255)``).
        clip: clip the noisy image to [0, 1] (the DnCNN/FFDNet benchmarks do not clip).
        return_params: also return ``{"sigma": (B,) or (), "sigma_map": (..., H, W, 1)}``;
            ``sigma_map`` is the constant noise-level map FFDNet takes as extra input.

    Example:
        >>> x = tf.fill((64, 64, 3), 0.5)
        >>> y, p = add_gaussian_noise(x, seed=[1, 2], sigma=(0.0, 75 / 255), return_params=True)
        >>> tuple(p["sigma_map"].shape), bool(0 <= float(p["sigma"]) <= 75 / 255)
        ((64, 64, 1), True)
    """
    fn = "add_gaussian_noise"
    x, single = base.as_batch(images, fn)
    rng = base.check_range(sigma, "sigma", fn, low=0.0)
    seed = base.as_seed(seed)
    s_sigma, s_noise = base.split_seed(seed, 2)
    shape = tf.shape(x)
    sig = base.sample(rng, shape[0], s_sigma)
    noise = tf.random.stateless_normal(shape, s_noise, dtype=x.dtype)
    out = x + base.per_image(sig, x) * noise
    if clip:
        out = tf.clip_by_value(out, 0.0, 1.0)
    if not return_params:  # skip building the sigma map
        return base.finish(out, single, False)
    sigma_map = tf.broadcast_to(base.per_image(sig, x), tf.concat([shape[:3], [1]], 0))
    return base.finish(out, single, True, sigma=sig, sigma_map=sigma_map)


@base.register
class GaussianNoise(base.Degradation):
    """``add_gaussian_noise`` as a configurable object.

    Args:
        sigma: fixed std or ``(min, max)`` (blind), image units.
        clip: clip to [0, 1].
        sigma_map: return ``(noisy, sigma_map)``, the two FFDNet inputs.

    Example:
        >>> deg = GaussianNoise(sigma=(0, 75 / 255), sigma_map=True)
        >>> noisy, smap = deg(tf.zeros((2, 8, 8, 3)), seed=0)
        >>> tuple(smap.shape)
        (2, 8, 8, 1)
    """

    name = "gaussian_noise"

    def __init__(self, sigma=25.0 / 255.0, clip=False, sigma_map=False):
        base.check_range(sigma, "sigma", "GaussianNoise", low=0.0)
        self.sigma = tuple(sigma) if isinstance(sigma, (list, tuple)) else float(sigma)
        self.clip = bool(clip)
        self.sigma_map = bool(sigma_map)

    def apply(self, images, seed):
        if self.sigma_map:
            y, p = add_gaussian_noise(images, seed, self.sigma, clip=self.clip, return_params=True)
            return y, p["sigma_map"]
        return add_gaussian_noise(images, seed, self.sigma, clip=self.clip)

    def get_config(self):
        return {"sigma": self.sigma, "clip": self.clip, "sigma_map": self.sigma_map}

