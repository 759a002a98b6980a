"""Data for restoration training: degradations, ``tf.data`` pipelines, demo images, TFDS builders.

* ``tfrestore.data.degradations``: pure-TF synthetic degradations with stateless seeds,
  one module per family (noise, downsample, blur, compression, haze, rain, lowlight)
  and configurable wrappers (``GaussianNoise``, ..., ``Compose``).
* ``image_dataset`` / ``paired_dataset``: deterministic ``(degraded, clean)`` pipelines
  (``datasets``) over one shared builder (``pipeline``, options in ``DatasetOptions``)
  and image stores (``sources``; ``match_pairs`` in ``pairs``).
* ``io``: listing, validating, reading and writing image files; ``resize``:
  MATLAB-exact ``imresize``.
* ``default_images()``: real photographs shipped with scikit-image, for demos and tests.
* ``load_tfds`` / ``tfds_builder``: optional TFDS builders for standard sets from a
  ``manual_dir`` (``tensorflow_datasets`` is imported only when these are called).

Every public name of those modules is importable from ``tfrestore.data``.

Example:
    >>> from tfrestore import data
    >>> noise = data.GaussianNoise(sigma=(0, 75 / 255))
    >>> ds = data.image_dataset("default", noise, crop_size=64, batch_size=2)
    >>> [tuple(t.shape) for t in next(iter(ds))]
    [(2, 64, 64, 3), (2, 64, 64, 3)]
"""

from tfrestore.data import datasets, defaults, degradations, io, pairs, pipeline, resize, tfds
from tfrestore.data.datasets import *  # noqa: F403
from tfrestore.data.defaults import *  # noqa: F403
from tfrestore.data.degradations import *  # noqa: F403
from tfrestore.data.io import *  # noqa: F403
from tfrestore.data.pairs import *  # noqa: F403
from tfrestore.data.pipeline import *  # noqa: F403
from tfrestore.data.resize import *  # noqa: F403
from tfrestore.data.tfds import *  # noqa: F403

__all__ = ["degradations"] + [
    name
    for module in (datasets, pipeline, pairs, degradations, io, resize, defaults, tfds)
    for name in module.__all__
]
