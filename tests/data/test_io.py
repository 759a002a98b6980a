"""Image listing/reading with clear errors; real BMP/PNG/JPEG files; TIFF, 16-bit, greyscale."""

import os

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
    with pytest.raises(ImageFileError, match="found in") as info:
        list_images(sub, extensions=(".bmp",))
    assert "sub-folders" not in str(info.value)


def test_images_only_in_sub_folders_named_with_a_glob_not_python(tmp_path):
    """The hint works on the command line and in configs too: a glob, not ``recursive=True``."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.png").write_bytes(b"")
    with pytest.raises(ImageFileError, match="sub-folders hold images") as info:
        list_images(tmp_path)
    message = str(info.value)
    assert "recursive=True" not in message
    glob = message.split("such as ")[1].strip("'")
    assert [p.split("/")[-1] for p in list_images(glob)] == ["d.png"]
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


# ------------------------------------------------------------------ EXIF orientation


def _oriented(path, stored, orientation, fmt="PNG"):
    """Save ``stored`` (H, W, 3 uint8) with an EXIF orientation tag."""
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(stored).save(path, format=fmt, exif=exif.tobytes(), quality=95)
    return str(path)


def _upright(path):
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_like_pillow_on_every_read_path(tmp_path, orientation):
    import tensorflow as tf

    from tfrestore.data import image_dataset
    from tfrestore.data.io import decode_image, image_details

    stored = np.random.default_rng(orientation).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    path = _oriented(tmp_path / "photo.png", stored, orientation)
    want = _upright(path)
    assert want.shape == ((96, 64, 3) if orientation >= 5 else (64, 96, 3))
    d = image_details(path)
    assert (d.height, d.width, d.orientation) == (*want.shape[:2], orientation)
    np.testing.assert_array_equal(read_image(path, dtype="uint8"), want)
    # tf.data, orientation read in-graph from the file's first bytes
    np.testing.assert_array_equal(decode_image(tf.constant(path)).numpy(), want)
    # the datasets: orientation from the validation pass, with and without cache
    for cache in (False, True):
        ds = image_dataset([path], training=False, batch_size=1, cache=cache)
        clean = next(iter(ds))[1]
        np.testing.assert_array_equal(np.round(clean[0].numpy() * 255).astype(np.uint8), want)
    ds = image_dataset([path], training=False, batch_size=1, validate=False)
    np.testing.assert_array_equal(np.round(next(iter(ds))[1][0].numpy() * 255), want)


def test_a_jpeg_that_displays_96x64_is_read_96x64(tmp_path):
    yy, xx = np.mgrid[0:96, 0:64]
    stored = np.stack([yy * 2, xx * 3, 255 - yy * 2], -1).astype(np.uint8)  # smooth: no JPEG noise
    path = _oriented(tmp_path / "photo.jpg", stored, 6, fmt="JPEG")
    img = read_image(path)
    assert img.shape == (64, 96, 3)
    assert image_info(path)[:2] == (64, 96)
    assert np.abs(img * 255 - _upright(path)).mean() < 1.5  # two JPEG decoders


def test_a_crop_larger_than_the_displayed_side_is_refused(tmp_path):
    stored = np.zeros((40, 20, 3), np.uint8)  # stored 40x20, displayed 20x40
    path = _oriented(tmp_path / "p.png", stored, 8)
    with pytest.raises(ImageFileError, match="is 20x40 pixels"):
        validate_images([path], min_size=(32, 32))


# ------------------------------------------------------------------ TIFF, 16-bit, greyscale


def test_tiff_files_are_listed_and_read(tmp_path):
    from PIL import Image

    rgb = np.random.default_rng(0).integers(0, 256, (12, 10, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "kodim.tif")
    assert [os.path.basename(p) for p in list_images(tmp_path)] == ["kodim.tif"]
    np.testing.assert_array_equal(read_image(tmp_path / "kodim.tif", dtype="uint8"), rgb)


def test_16bit_png_keeps_its_precision(tmp_path):
    from tfrestore.data import image_dataset

    u16 = np.random.default_rng(0).integers(0, 65536, (16, 16, 3), dtype=np.uint16)
    write_image(tmp_path / "deep.png", u16)
    np.testing.assert_array_equal(read_image(tmp_path / "deep.png", dtype="native"), u16)
    np.testing.assert_allclose(read_image(tmp_path / "deep.png"), u16 / 65535.0, atol=1e-7)
    _, clean = next(iter(image_dataset(str(tmp_path), training=False, batch_size=1)))
    np.testing.assert_allclose(clean[0].numpy(), u16 / 65535.0, atol=1e-7)


def test_16bit_grey_tiff_is_read_as_16bit(tmp_path):
    from PIL import Image

    u16 = np.random.default_rng(0).integers(0, 65536, (8, 9), dtype=np.uint16)
    Image.fromarray(u16).save(tmp_path / "g.tif")
    got = read_image(tmp_path / "g.tif", channels=None, dtype="native")
    assert got.dtype == np.uint16 and got.shape == (8, 9, 1)
    np.testing.assert_array_equal(got[..., 0], u16)
