"""Image listing/reading with clear errors; real BMP/PNG/JPEG files."""

import numpy as np
import pytest

from tfrestore.data import ImageFileError, list_images, read_image, write_image
from tfrestore.data.io import image_info, validate_images


def test_list_images_sorted_filtered_and_errors(tmp_path):
    for name in ("b.png", "a.PNG", "c.txt"):
        (tmp_path / name).write_bytes(b"")
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "d.jpg").write_bytes(b"")
    assert [p.split("/")[-1] for p in list_images(tmp_path)] == ["a.PNG", "b.png"]
    assert len(list_images(tmp_path, recursive=True)) == 3
    assert len(list_images(str(tmp_path / "*.png"))) == 1
    with pytest.raises(ImageFileError, match="recursive=True"):
        list_images(sub, extensions=(".bmp",))
    with pytest.raises(ImageFileError, match="does not exist"):
        list_images([str(tmp_path / "nope.png")])
    with pytest.raises(ImageFileError, match="empty"):
        list_images([])


def test_unreadable_files_named(tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ImageFileError, match="empty.png.*empty"):
        read_image(empty)
    psd = tmp_path / "scan.jpg"  # a Photoshop file under a wrong name
    psd.write_bytes(b"8BPS" + b"\x00" * 64)
    with pytest.raises(ImageFileError, match="scan.jpg.*not a PNG/JPEG"):
        image_info(psd)
    good = write_image(tmp_path / "good.png", np.ones((10, 12, 3), np.float32))
    truncated = tmp_path / "trunc.png"
    truncated.write_bytes(open(good, "rb").read()[:40])
    with pytest.raises(ImageFileError, match="trunc.png"):
        read_image(truncated)
    with pytest.raises(ImageFileError, match="good.png.*10x12.*crop 16x16"):
        validate_images([good], min_size=(16, 16))


def test_real_files(data_dir):
    bmp = read_image(data_dir / "set5" / "baby.bmp")
    assert bmp.shape == (512, 512, 3) and bmp.dtype == np.float32
    grey = read_image(data_dir / "set12" / "01.png", channels=1)
    assert grey.ndim == 3 and grey.shape[2] == 1
    assert image_info(data_dir / "set12" / "01.png")[2] == 1
    jpg = read_image(data_dir / "cbsd432" / "100007.jpg", dtype="uint8")
    assert jpg.dtype == np.uint8 and sorted(jpg.shape[:2]) == [321, 481]
