"""Embedded default photographs and the lazy-import guarantee of tfrestore.data."""

import subprocess
import sys

import numpy as np

from tfrestore.data import (
    DEFAULT_IMAGE_NAMES,
    default_images,
    image_dataset,
    read_image,
    write_default_images,
)


def test_default_images_are_real_rgb_photos():
    imgs = default_images()
    assert len(imgs) == len(DEFAULT_IMAGE_NAMES) == 5
    for img in imgs:
        assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.float32
        assert min(img.shape[:2]) >= 300 and 0 <= img.min() and img.max() <= 1
        assert img.std() > 0.1  # real content, not a flat/synthetic array
    u8 = default_images(["astronaut"], dtype="uint8")[0]
    np.testing.assert_array_equal(np.round(imgs[0] * 255).astype(np.uint8), u8)
    small = default_images("rocket", max_size=80)[0]
    assert max(small.shape[:2]) == 80 and small.shape[1] > small.shape[0]


def test_write_default_images_round_trip(tmp_path):
    folder = write_default_images(tmp_path / "demo", ["coffee", "chelsea"], max_size=40)
    files = sorted(p.name for p in folder.iterdir())
    assert files == ["chelsea.png", "coffee.png"]
    np.testing.assert_allclose(
        read_image(folder / "coffee.png"),
        default_images("coffee", max_size=40)[0],
        atol=0.5 / 255 + 1e-6,
    )
    jpg = write_default_images(tmp_path / "jpg", ["coffee"], max_size=40, format="jpg")
    assert read_image(jpg / "coffee.jpg").shape == (27, 40, 3)


def test_default_source_string():
    noisy, clean = next(iter(image_dataset("default", None, crop_size=32, batch_size=5, seed=0)))
    assert clean.shape == (5, 32, 32, 3)


def test_import_does_not_import_tfds():
    code = (
        "import sys, tfrestore.data; "
        "assert 'tensorflow_datasets' not in sys.modules, 'tfds imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=300)


def test_default_splits_hold_out_the_test_images_from_training():
    from tfrestore.data import DEFAULT_SPLITS

    assert set(DEFAULT_SPLITS) == {"train", "val", "test", "all"} and DEFAULT_SPLITS["all"] is None
    train = set(DEFAULT_SPLITS["train"])
    held_out = set(DEFAULT_SPLITS["val"]) | set(DEFAULT_SPLITS["test"])
    assert train | held_out == set(DEFAULT_IMAGE_NAMES) and not train & held_out


def test_max_size_shrinks_the_whole_picture_not_a_crop(tmp_path):
    # issue 20: default_images/write_default_images(max_size=) resize (bicubic, aspect kept);
    # the training config's data.test.max_size centre-crops instead (documented on both).
    from tfrestore.data import imresize

    full = default_images("coffee")[0]  # 400x600
    small = default_images("coffee", max_size=60)[0]
    assert small.shape == (40, 60, 3)
    np.testing.assert_allclose(
        small, np.clip(imresize(full, size=(40, 60)).numpy(), 0, 1), atol=1e-6
    )
    assert not np.allclose(small, full[180:220, 270:330], atol=0.05)  # not a centre crop
    # already small enough: unchanged
    np.testing.assert_array_equal(default_images("coffee", max_size=600)[0], full)
    folder = write_default_images(tmp_path, ["coffee"], max_size=60)
    assert read_image(folder / "coffee.png").shape == (40, 60, 3)
