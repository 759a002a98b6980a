"""TFDS builders on tiny manual_dir fixtures (and real Set5 when shared data is present)."""

import numpy as np
import pytest

from tfrestore.data import (
    TFDS_BUILDERS,
    imresize,
    load_tfds,
    modcrop,
    tfds_builder,
    write_default_images,
    write_image,
)

tfds = pytest.importorskip("tensorflow_datasets")


def test_names_are_prefixed_and_distinct_from_catalog():
    for short, full in TFDS_BUILDERS.items():
        assert full == f"tfrestore_{short}"
        assert tfds_builder(short).name == full
    assert tfds_builder("div2k/bicubic_x2").builder_config.scale == 2
    with pytest.raises(ValueError, match="Unknown tfrestore TFDS dataset"):
        tfds_builder("div2k_typo")


def test_image_folder_builder(tmp_path):
    manual = write_default_images(
        tmp_path / "manual" / "kodak24", ["coffee", "chelsea"], max_size=32
    ).parent
    ds = load_tfds("kodak24", "test", manual_dir=manual, data_dir=tmp_path / "tfds")
    items = list(ds.as_numpy_iterator())
    assert sorted(i["image/filename"].decode() for i in items) == ["chelsea.png", "coffee.png"]
    assert all(i["image"].dtype == np.uint8 and i["image"].shape[2] == 3 for i in items)
    # prepared once: loading again needs no manual_dir
    assert len(list(load_tfds("tfrestore_kodak24", "test", data_dir=tmp_path / "tfds"))) == 2


def test_missing_manual_dir_explains(tmp_path):
    with pytest.raises(AssertionError, match="Kodak24 images"):
        load_tfds("kodak24", "test", manual_dir=tmp_path / "nothing", data_dir=tmp_path / "tfds")


def test_div2k_pairs_from_folders_and_zip(tmp_path):
    manual = tmp_path / "manual"
    for part, names in (("train", ["0001", "0002"]), ("valid", ["0801"])):
        hr_dir = manual / f"DIV2K_{part}_HR"
        lr_dir = manual / f"DIV2K_{part}_LR_bicubic" / "X2"
        hr_dir.mkdir(parents=True)
        lr_dir.mkdir(parents=True)
        for n, img in zip(
            names, [np.full((16, 20, 3), 0.25, np.float32), np.full((12, 8, 3), 0.75, np.float32)]
        ):
            write_image(hr_dir / f"{n}.png", img)
            write_image(lr_dir / f"{n}x2.png", img[::2, ::2])
    # the validation HR images as the official zip archive instead of a folder
    import shutil

    shutil.make_archive(str(manual / "DIV2K_valid_HR"), "zip", manual, "DIV2K_valid_HR")
    shutil.rmtree(manual / "DIV2K_valid_HR")
    ds = load_tfds(
        "div2k/bicubic_x2", manual_dir=manual, data_dir=tmp_path / "tfds", as_supervised=True
    )
    assert set(ds) == {"train", "validation"}
    pairs = list(ds["train"].as_numpy_iterator())
    assert len(pairs) == 2 and len(list(ds["validation"])) == 1
    for lr, hr in pairs:
        assert hr.shape[0] == 2 * lr.shape[0] and hr.shape[1] == 2 * lr.shape[1]


def test_set5_real_data_lr_is_matlab_bicubic(tmp_path, data_dir):
    ds = load_tfds(
        "set5/bicubic_x3", "test", manual_dir=data_dir / "set5", data_dir=tmp_path / "tfds"
    )
    items = {i["image/filename"].decode(): i for i in ds.as_numpy_iterator()}
    assert sorted(items) == ["baby.bmp", "bird.bmp", "butterfly.bmp", "head.bmp", "woman.bmp"]
    bird = items["bird.bmp"]
    from tfrestore.data import read_image

    hr = modcrop(read_image(data_dir / "set5" / "bird.bmp", dtype="uint8"), 3).numpy()
    np.testing.assert_array_equal(bird["hr"], hr)
    np.testing.assert_array_equal(bird["lr"], imresize(hr, 1 / 3).numpy())


def test_cityscapes_layout(tmp_path):
    manual = tmp_path / "manual"
    img_dir = manual / "leftImg8bit" / "val" / "aachen"
    lab_dir = manual / "gtFine" / "val" / "aachen"
    img_dir.mkdir(parents=True)
    lab_dir.mkdir(parents=True)
    write_image(img_dir / "aachen_000000_000019_leftImg8bit.png", np.zeros((8, 16, 3), np.float32))
    mask = np.full((8, 16, 1), 7, np.uint8)
    write_image(lab_dir / "aachen_000000_000019_gtFine_labelIds.png", mask)
    ds = load_tfds(
        "cityscapes",
        "validation",
        manual_dir=manual,
        data_dir=tmp_path / "tfds",
        as_supervised=True,
    )
    image, seg = next(iter(ds))
    assert image.shape == (8, 16, 3) and seg.shape == (8, 16, 1) and int(seg[0, 0, 0]) == 7
