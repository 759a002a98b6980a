"""TFDS builders (``tfrestore_*``) for standard restoration datasets read from a ``manual_dir``.

Importing this package imports ``tensorflow_datasets`` and registers the builders;
``tfrestore.data.load_tfds`` / ``tfds_builder`` do that on demand.
"""

from tfrestore.data.tfds_builders.cityscapes import TfrestoreCityscapes
from tfrestore.data.tfds_builders.image_sets import (
    TfrestoreCbsd68,
    TfrestoreCbsd432,
    TfrestoreKodak24,
    TfrestoreSet12,
)
from tfrestore.data.tfds_builders.super_resolution import (
    TfrestoreDiv2k,
    TfrestoreSet5,
    TfrestoreSet14,
)

__all__ = [
    "TfrestoreKodak24",
    "TfrestoreCbsd68",
    "TfrestoreCbsd432",
    "TfrestoreSet12",
    "TfrestoreSet5",
    "TfrestoreSet14",
    "TfrestoreDiv2k",
    "TfrestoreCityscapes",
]
