"""Super-resolution sets: Set5/Set14 (LR made with MATLAB-exact bicubic) and DIV2K (official LR)."""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np
import tensorflow_datasets as tfds

from tfrestore.data.pairs import match_pairs
from tfrestore.data.io import list_images, read_image
from tfrestore.data.resize import imresize, modcrop
from tfrestore.data.tfds_builders._common import find_folder


def _sr_features():
    return tfds.features.FeaturesDict(
        {
            "lr": tfds.features.Image(shape=(None, None, 3)),
            "hr": tfds.features.Image(shape=(None, None, 3)),
            "image/filename": tfds.features.Text(),
        }
    )


@dataclasses.dataclass
class SRConfig(tfds.core.BuilderConfig):
    scale: int = 4
    track: str = "bicubic"


def _bicubic_configs():
    return [
        SRConfig(
            name=f"bicubic_x{s}",
            scale=s,
            description=f"x{s}: HR modcropped to a multiple of {s}; "
            "LR = MATLAB imresize(HR, 1/{s}, 'bicubic') on uint8 (tfrestore.data.imresize).".format(
                s=s
            ),
        )
        for s in (2, 3, 4)
    ]


class _GeneratedLRBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """HR images from ``manual_dir``; LR images generated with MATLAB-exact bicubic downsampling."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = _bicubic_configs()
    DEFAULT_CONFIG_NAME = "bicubic_x4"
    TITLE = ""
    FOLDERS = ()
    HOMEPAGE = ""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.MANUAL_DOWNLOAD_INSTRUCTIONS = (
            f"Put the {cls.TITLE} HR images in `manual_dir`, either directly or in a sub-folder "
            f"named {' or '.join(f'`{f}`' for f in cls.FOLDERS)}. LR images are generated."
        )

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            description=f"{self.TITLE} super-resolution test set (HR from a manual download).",
            features=_sr_features(),
            supervised_keys=("lr", "hr"),
            homepage=self.HOMEPAGE,
        )

    def _split_generators(self, dl_manager):
        folder = find_folder(
            dl_manager, ("",) + tuple(self.FOLDERS), what=f"{self.TITLE} HR images"
        )
        return {"test": self._generate_examples(folder)}

    def _generate_examples(self, folder):
        s = self.builder_config.scale
        for path in list_images(folder):
            hr = modcrop(read_image(path, 3, dtype="uint8"), s).numpy()
            lr = imresize(hr, scale_factor=1.0 / s).numpy()  # uint8 in -> MATLAB uint8 semantics
            name = pathlib.Path(path).name
            yield name, {"lr": lr, "hr": np.ascontiguousarray(hr), "image/filename": name}


class TfrestoreSet5(_GeneratedLRBuilder):
    """Set5 (baby, bird, butterfly, head, woman) with generated bicubic LR images."""

    name = "tfrestore_set5"
    TITLE, FOLDERS = "Set5", ("set5", "Set5", "Set5/HR", "set5/HR", "HR")


class TfrestoreSet14(_GeneratedLRBuilder):
    """Set14 with generated bicubic LR images."""

    name = "tfrestore_set14"
    TITLE, FOLDERS = "Set14", ("set14", "Set14", "Set14/HR", "set14/HR", "HR")


class TfrestoreDiv2k(tfds.core.GeneratorBasedBuilder):
    """DIV2K (800 train / 100 validation 2K images) with the official LR images."""

    name = "tfrestore_div2k"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = [
        SRConfig(name=f"{track}_x{s}", scale=s, track=track, description=f"{track} x{s} track")
        for track in ("bicubic", "unknown")
        for s in (2, 3, 4)
    ]
    DEFAULT_CONFIG_NAME = "bicubic_x4"
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Download DIV2K from https://data.vision.ee.ethz.ch/cvl/DIV2K/ and put in `manual_dir`
either the official zip archives (DIV2K_train_HR.zip, DIV2K_valid_HR.zip,
DIV2K_train_LR_bicubic_X4.zip, DIV2K_valid_LR_bicubic_X4.zip, ... for the configs you use)
or their extracted folders: DIV2K_train_HR/, DIV2K_valid_HR/,
DIV2K_train_LR_bicubic/X4/, DIV2K_valid_LR_bicubic/X4/ (LR files named 0001x4.png).
"""

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            description="DIV2K super-resolution dataset (NTIRE 2017), read from a manual download.",
            features=_sr_features(),
            supervised_keys=("lr", "hr"),
            homepage="https://data.vision.ee.ethz.ch/cvl/DIV2K/",
            citation="@InProceedings{Agustsson_2017_CVPR_Workshops, title={NTIRE 2017 Challenge on "
            "Single Image Super-Resolution: Dataset and Study}, year={2017}}",
        )

    def _split_generators(self, dl_manager):
        cfg = self.builder_config
        out = {}
        for split, part in (("train", "train"), ("validation", "valid")):
            hr = find_folder(
                dl_manager,
                (f"DIV2K_{part}_HR",),
                ((f"DIV2K_{part}_HR.zip", f"DIV2K_{part}_HR"),),
                what=f"DIV2K {part} HR images",
            )
            lr_dir = f"DIV2K_{part}_LR_{cfg.track}"
            lr = find_folder(
                dl_manager,
                (f"{lr_dir}/X{cfg.scale}",),
                ((f"{lr_dir}_X{cfg.scale}.zip", f"{lr_dir}/X{cfg.scale}"),),
                what=f"DIV2K {part} {cfg.track} x{cfg.scale} LR images",
            )
            out[split] = self._generate_examples(lr, hr)
        return out

    def _generate_examples(self, lr_folder, hr_folder):
        lr_paths, hr_paths = match_pairs(
            list_images(lr_folder), list_images(hr_folder), scale=self.builder_config.scale
        )
        for lp, hp in zip(lr_paths, hr_paths):
            name = pathlib.Path(hp).name
            yield name, {"lr": lp, "hr": hp, "image/filename": name}
