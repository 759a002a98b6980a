"""Data for restoration training: degradations, ``tf.data`` pipelines, demo images, TFDS builders.

* ``tfrestore.data.degrade``: pure-TF synthetic degradations with stateless seeds
  (Gaussian noise, MATLAB-exact bicubic downsampling, haze, rain, low light, JPEG,
  motion blur) and configurable wrappers (``GaussianNoise``, ..., ``Compose``).
* ``image_dataset`` / ``paired_dataset``: deterministic ``(degraded, clean)`` pipelines.
* ``default_images()``: real photographs shipped with scikit-image, for demos and tests.
* ``load_tfds`` / ``tfds_builder``: optional TFDS builders for standard sets from a
  ``manual_dir`` (``tensorflow_datasets`` is imported only when these are called).

Example:
    >>> from tfrestore import data
    >>> noise = data.GaussianNoise(sigma=(0, 75 / 255))
    >>> ds = data.image_dataset("default", noise, crop_size=64, batch_size=2)
    >>> [tuple(t.shape) for t in next(iter(ds))]
    [(2, 64, 64, 3), (2, 64, 64, 3)]
"""

from tfrestore.data import degrade  # noqa: F401
from tfrestore.data.datasets import image_dataset, match_pairs, paired_dataset
from tfrestore.data.defaults import DEFAULT_IMAGE_NAMES, default_images, write_default_images
from tfrestore.data.degrade import (
    JPEG,
    BicubicDownsample,
    Compose,
    Degradation,
    GaussianNoise,
    Haze,
    Identity,
    LowLight,
    MotionBlur,
    Rain,
    get_degradation,
)
from tfrestore.data.io import ImageFileError, list_images, read_image, write_image
from tfrestore.data.resize import bicubic_downsample, imresize, modcrop
from tfrestore.data.tfds import TFDS_BUILDERS, load_tfds, tfds_builder

__all__ = [
    "degrade",
    "image_dataset",
    "paired_dataset",
    "match_pairs",
    "DEFAULT_IMAGE_NAMES",
    "default_images",
    "write_default_images",
    "Degradation",
    "Identity",
    "GaussianNoise",
    "BicubicDownsample",
    "Haze",
    "Rain",
    "LowLight",
    "JPEG",
    "MotionBlur",
    "Compose",
    "get_degradation",
    "ImageFileError",
    "list_images",
    "read_image",
    "write_image",
    "imresize",
    "bicubic_downsample",
    "modcrop",
    "TFDS_BUILDERS",
    "tfds_builder",
    "load_tfds",
]
