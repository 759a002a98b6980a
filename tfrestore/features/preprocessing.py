"""Input normalisation owned by the feature extractors.

Callers always pass RGB images in ``[0, 1]``; the normalisation a backbone was
trained with depends on where its weights come from, so the extractor applies it:

* ``"caffe"`` -- Keras Applications ImageNet weights (ported from Caffe): scale to
  0-255, RGB -> BGR, subtract the BGR ImageNet mean ``(103.939, 116.779, 123.68)``.
  Same as ``keras.applications.vgg16.preprocess_input``.
* ``"torch"`` -- torchvision weights: ``(x - (0.485, 0.456, 0.406)) / (0.229, 0.224, 0.225)``.
* ``"none"`` -- identity.
* a dict ``{"mean": (r, g, b), "std": (r, g, b), "scale": 1.0, "bgr": False}`` --
  ``(scale * x[..., order] - mean) / std`` for anything else (e.g. D2SM's DIV2K mean
  shift: ``{"mean": (0.4488, 0.4371, 0.4040)}``).

>>> import numpy as np
>>> from tfrestore.features.preprocessing import Preprocessing
>>> x = np.full((1, 1, 1, 3), 0.5, "float32")
>>> np.round(Preprocessing("caffe")(x).numpy().ravel(), 3).tolist()  # BGR, 0-255, mean-free
[23.561, 10.721, 3.82]
>>> np.round(Preprocessing("torch")(x).numpy().ravel(), 4).tolist()
[0.0655, 0.1964, 0.4178]
"""

from __future__ import annotations

import numbers

import numpy as np
import tensorflow as tf

__all__ = ["Preprocessing", "CAFFE_MEAN_BGR", "IMAGENET_MEAN", "IMAGENET_STD"]

CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _triple(value, arg):
    if isinstance(value, numbers.Real):
        value = (value,) * 3
    value = tuple(float(v) for v in value)
    if len(value) != 3:
        raise ValueError(
            f"preprocessing `{arg}` must be a number or 3 numbers (R, G, B), got {value!r}."
        )
    return value


class Preprocessing:
    """Maps RGB ``[0, 1]`` images to a backbone's expected input.

    Args:
        spec: ``"caffe"``, ``"torch"``, ``"none"``, a dict with keys ``mean``,
            ``std``, ``scale``, ``bgr`` (all optional), or another ``Preprocessing``.
    """

    MODES = ("caffe", "torch", "none")

    def __init__(self, spec):
        if isinstance(spec, Preprocessing):
            spec = spec.spec
        if spec is None:
            spec = "none"
        if isinstance(spec, str):
            mode = spec.lower()
            if mode == "caffe":
                scale, mean, std, bgr = 255.0, CAFFE_MEAN_BGR, (1.0, 1.0, 1.0), True
            elif mode in ("torch", "torchvision"):
                mode = "torch"
                scale, mean, std, bgr = 1.0, IMAGENET_MEAN, IMAGENET_STD, False
            elif mode == "none":
                scale, mean, std, bgr = 1.0, (0.0,) * 3, (1.0,) * 3, False
            else:
                raise ValueError(
                    f"`preprocessing` must be one of {self.MODES} or a dict with keys "
                    f"mean/std/scale/bgr, got {spec!r}."
                )
            self.spec = mode
        elif isinstance(spec, dict):
            unknown = set(spec) - {"mean", "std", "scale", "bgr"}
            if unknown:
                raise ValueError(
                    f"`preprocessing` dict accepts keys mean, std, scale, bgr; "
                    f"got unknown {sorted(unknown)}."
                )
            scale = float(spec.get("scale", 1.0))
            mean = _triple(spec.get("mean", 0.0), "mean")
            std = _triple(spec.get("std", 1.0), "std")
            bgr = bool(spec.get("bgr", False))
            if min(std) <= 0:
                raise ValueError(f"preprocessing `std` must be positive, got {std}.")
            self.spec = {"mean": list(mean), "std": list(std), "scale": scale, "bgr": bgr}
        else:
            raise TypeError(
                f"`preprocessing` must be a string {self.MODES}, a dict or None, "
                f"got {type(spec).__name__}."
            )
        self.scale, self.mean, self.std, self.bgr = scale, mean, std, bgr

    def __call__(self, images):
        # Always float32: 0-255 mean subtraction in float16 would lose ~0.1 grey levels.
        x = tf.cast(images, tf.float32)
        if self.bgr:
            x = tf.reverse(x, axis=[-1])
        if self.scale != 1.0:
            x = x * self.scale
        if any(self.mean):
            x = x - tf.constant(self.mean, tf.float32)
        if any(s != 1.0 for s in self.std):
            x = x / tf.constant(self.std, tf.float32)
        return x

    def numpy(self, images):
        """NumPy (float64) version, for references in tests."""
        x = np.asarray(images, np.float64)
        if self.bgr:
            x = x[..., ::-1]
        return (x * self.scale - np.asarray(self.mean)) / np.asarray(self.std)

    def key(self):
        return repr(self.spec) if isinstance(self.spec, dict) else self.spec

    def __eq__(self, other):
        return isinstance(other, Preprocessing) and self.key() == other.key()

    def __hash__(self):
        return hash(self.key())

    def __repr__(self):
        return f"Preprocessing({self.spec!r})"
