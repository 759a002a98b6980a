"""Single-split folders of clean test/training images (denoising benchmarks)."""

from __future__ import annotations

import pathlib

import tensorflow_datasets as tfds

from tfrestore.data.io import list_images, read_image
from tfrestore.data.tfds_builders._common import find_folder

_INSTRUCTIONS = """\
Put the {title} images ({count} files) in `manual_dir`, either directly or in a
sub-folder named {folders}. PNG, JPEG and BMP are read.
"""


class _ImageFolderBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """One split of images, features ``image`` (uint8) and ``image/filename``."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    TITLE = ""
    COUNT = ""
    FOLDERS = ()
    SPLIT = "test"
    CHANNELS = 3
    HOMEPAGE = ""
    CITATION = ""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS.format(
            title=cls.TITLE, count=cls.COUNT, folders=" or ".join(f"`{f}`" for f in cls.FOLDERS)
        )

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            description=f"{self.TITLE} images, read from a manual download.",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(None, None, self.CHANNELS)),
                    "image/filename": tfds.features.Text(),
                }
            ),
            homepage=self.HOMEPAGE,
            citation=self.CITATION,
        )

    def _split_generators(self, dl_manager):
        folder = find_folder(dl_manager, ("",) + tuple(self.FOLDERS), what=f"{self.TITLE} images")
        return {self.SPLIT: self._generate_examples(folder)}

    def _generate_examples(self, folder):
        for path in list_images(folder):
            name = pathlib.Path(path).name
            yield (
                name,
                {"image": read_image(path, self.CHANNELS, dtype="uint8"), "image/filename": name},
            )


class TfrestoreKodak24(_ImageFolderBuilder):
    """Kodak PhotoCD set (kodim01-24, 768x512), the colour-denoising test set."""

    name = "tfrestore_kodak24"
    TITLE, COUNT, FOLDERS = "Kodak24", "24", ("kodak24", "Kodak24", "kodak")
    HOMEPAGE = "https://r0k.us/graphics/kodak/"


class TfrestoreCbsd68(_ImageFolderBuilder):
    """CBSD68: the 68 colour BSD test images used for denoising (481x321)."""

    name = "tfrestore_cbsd68"
    TITLE, COUNT, FOLDERS = "CBSD68", "68", ("cbsd68", "CBSD68")
    HOMEPAGE = "https://www2.eecs.berkeley.edu/Research/Projects/CS/vision/bsds/"
    CITATION = (
        "@inproceedings{martin2001bsd, "
        "title={A Database of Human Segmented Natural Images}, year={2001}}"
    )


class TfrestoreCbsd432(_ImageFolderBuilder):
    """CBSD432: BSDS500 minus CBSD68, the usual colour-denoising training set."""

    name = "tfrestore_cbsd432"
    TITLE, COUNT, FOLDERS = "CBSD432", "432", ("cbsd432", "CBSD432")
    SPLIT = "train"
    HOMEPAGE = TfrestoreCbsd68.HOMEPAGE
    CITATION = TfrestoreCbsd68.CITATION


class TfrestoreSet12(_ImageFolderBuilder):
    """Set12: the 12 grey images of the DnCNN paper (single channel)."""

    name = "tfrestore_set12"
    TITLE, COUNT, FOLDERS = "Set12", "12", ("set12", "Set12")
    CHANNELS = 1
    HOMEPAGE = "https://github.com/cszn/DnCNN"
