"""MATLAB-exact bicubic downsampling as a degradation (the maths: ``tfrestore.data.resize``)."""

from __future__ import annotations

from tfrestore.data.degradations.base import Degradation, register
from tfrestore.data.resize import bicubic_downsample

__all__ = ["BicubicDownsample"]


@register
class BicubicDownsample(Degradation):
    """MATLAB-exact bicubic ``x scale`` downsampling (``bicubic_downsample``).

    Example:
        >>> import tensorflow as tf
        >>> BicubicDownsample(scale=2)(tf.zeros((1, 8, 8, 3)), 0).shape
        TensorShape([1, 4, 4, 3])
    """

    name = "bicubic_downsample"

    def __init__(self, scale=4, quantize=False, clip=True):
        if int(scale) != scale or scale < 1:
            raise ValueError(
                f"BicubicDownsample: `scale` must be a positive integer, got {scale!r}."
            )
        self.scale = int(scale)
        self.quantize = bool(quantize)
        self.clip = bool(clip)

    def apply(self, images, seed):
        return bicubic_downsample(images, self.scale, quantize=self.quantize, clip=self.clip)

    def get_config(self):
        return {"scale": self.scale, "quantize": self.quantize, "clip": self.clip}

