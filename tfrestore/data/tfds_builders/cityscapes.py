"""Cityscapes fine annotations (images + labelIds masks), for semantic/task losses."""

from __future__ import annotations

import pathlib

import tensorflow_datasets as tfds


class TfrestoreCityscapes(tfds.core.GeneratorBasedBuilder):
    """Cityscapes ``leftImg8bit`` images with ``gtFine`` ``labelIds`` segmentation masks."""

    name = "tfrestore_cityscapes"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Register at https://www.cityscapes-dataset.com/ and put in `manual_dir` either
leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip, or their extracted folders
leftImg8bit/{train,val,test}/<city>/*_leftImg8bit.png and
gtFine/{train,val,test}/<city>/*_gtFine_labelIds.png.
"""

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            description="Cityscapes street scenes with fine pixel labels (labelIds 0-33).",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(None, None, 3)),
                    "segmentation": tfds.features.Image(shape=(None, None, 1)),
                    "image/filename": tfds.features.Text(),
                }
            ),
            supervised_keys=("image", "segmentation"),
            homepage="https://www.cityscapes-dataset.com/",
            citation="@inproceedings{Cordts2016Cityscapes, "
            "title={The Cityscapes Dataset for Semantic "
            "Urban Scene Understanding}, year={2016}}",
        )

    def _split_generators(self, dl_manager):
        images = _root(dl_manager, "leftImg8bit", "leftImg8bit_trainvaltest.zip")
        labels = _root(dl_manager, "gtFine", "gtFine_trainvaltest.zip")
        out = {}
        for split, part in (("train", "train"), ("validation", "val"), ("test", "test")):
            if (images / part).is_dir():
                out[split] = self._generate_examples(images / part, labels / part)
        if not out:
            raise FileNotFoundError(f"no train/val/test folders under {images}")
        return out

    def _generate_examples(self, image_dir, label_dir):
        for img in sorted(image_dir.glob("*/*_leftImg8bit.png")):
            stem = img.name[: -len("_leftImg8bit.png")]
            label = label_dir / img.parent.name / f"{stem}_gtFine_labelIds.png"
            if not label.is_file():
                raise FileNotFoundError(f"Cityscapes: no label {label} for image {img}")
            yield img.name, {"image": img, "segmentation": label, "image/filename": img.name}


def _root(dl_manager, folder, archive):
    root = pathlib.Path(dl_manager.manual_dir)
    if (root / folder).is_dir():
        return root / folder
    if (root / archive).is_file():
        return pathlib.Path(dl_manager.extract(root / archive)) / folder
    raise FileNotFoundError(
        f"Cityscapes: neither {root / folder} nor {root / archive} exists in manual_dir"
    )
