"""tf.data pipelines: shapes, determinism, evaluation variant, paired folders, clear errors
(damaged files named before training), TIFF sources."""

import os
import pathlib

import numpy as np
import pytest
import tensorflow as tf

from tfrestore.data import (
    BicubicDownsample,
    DatasetOptions,
    GaussianNoise,
    ImageFileError,
    default_images,
    image_dataset,
    imresize,
    paired_dataset,
    write_default_images,
    write_image,
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_default_images(tmp_path_factory.mktemp("clean"), max_size=72)


def _take(ds, n):
    return [tf.nest.map_structure(lambda t: t.numpy(), e) for e in ds.take(n)]


def _equal(a, b):
    fa, fb = tf.nest.flatten(a), tf.nest.flatten(b)
    return len(fa) == len(fb) and all(np.array_equal(x, y) for x, y in zip(fa, fb))


def test_training_batches_shapes_and_values(folder):
    ds = image_dataset(
        folder, GaussianNoise(sigma=(0.0, 75 / 255)), crop_size=32, batch_size=4, seed=0
    )
    assert ds.element_spec[0].shape == (4, 32, 32, 3)
    for noisy, clean in _take(ds, 3):
        assert noisy.shape == clean.shape == (4, 32, 32, 3)
        assert clean.min() >= 0 and clean.max() <= 1 and noisy.dtype == np.float32
        assert 0 < np.abs(noisy - clean).mean() < 0.3


def test_pipeline_deterministic_run_to_run_and_seed_sensitive(folder):
    kw = dict(crop_size=24, batch_size=3, patches_per_image=2)
    deg = GaussianNoise((0.0, 0.2))
    a = _take(image_dataset(folder, deg, seed=5, **kw), 6)  # > one epoch (5 images x 2 patches)
    b = _take(image_dataset(folder, deg, seed=5, num_parallel_calls=1, **kw), 6)
    tf.random.set_seed(123)  # the global seed must not matter
    c = _take(image_dataset(folder, deg, seed=5, cache=True, **kw), 6)
    d = _take(image_dataset(folder, deg, seed=6, **kw), 6)
    assert _equal(a, b) and _equal(a, c)
    assert not _equal(a, d)
    train = image_dataset(folder, deg, seed=5, **kw)
    assert int(train.cardinality()) == int(tf.data.INFINITE_CARDINALITY)
    # every epoch visits each image patches_per_image times
    from tfrestore.data.pipeline import _index_stream

    order = [
        int(e[1]) for e in _index_stream(5, per_image=2, shuffle=True, repeat=True, seed=5).take(30)
    ]
    for ep in range(3):
        assert sorted(order[ep * 10 : (ep + 1) * 10]) == sorted(list(range(5)) * 2)
    assert order[:10] != order[10:20]
    # different epochs are shuffled differently and crops vary
    clean = np.concatenate([e[1] for e in a])
    assert len({x.tobytes() for x in clean}) == len(clean)


def test_augmentation_is_a_dihedral_transform_of_the_crop():
    img = default_images(["coffee"], max_size=64)[0][
        :32, :32
    ]  # crop == image -> only augmentation varies
    ds = image_dataset([img], None, crop_size=32, batch_size=1, seed=1)
    variants = {e[1][0].tobytes() for e in _take(ds, 40)}
    refs = []
    for k in range(4):
        r = np.rot90(img, k)
        refs += [r.tobytes(), r[:, ::-1].tobytes()]
    assert variants <= set(refs) and len(variants) >= 6
    plain = _take(image_dataset([img], None, crop_size=32, batch_size=1, augment=False), 3)
    assert all(np.array_equal(e[1][0], img) for e in plain)


def test_eval_variant_full_images_single_pass_deterministic(folder):
    ds = image_dataset(folder, BicubicDownsample(4), training=False)
    items = _take(ds, 100)
    assert len(items) == 5  # one pass, in file order
    for lr, hr in items:
        assert hr.shape[1] % 4 == 0 and hr.shape[2] % 4 == 0  # modcrop to the scale
        assert lr.shape[1:3] == (hr.shape[1] // 4, hr.shape[2] // 4)
        np.testing.assert_allclose(lr[0], np.clip(imresize(hr[0], 1 / 4).numpy(), 0, 1), atol=1e-6)
    again = _take(image_dataset(folder, GaussianNoise(0.1), training=False), 100)
    assert _equal(again, _take(image_dataset(folder, GaussianNoise(0.1), training=False), 100))


def test_eval_fixed_center_crops_batchable(folder):
    ds = image_dataset(folder, GaussianNoise(0.1), training=False, crop_size=32, batch_size=2)
    items = _take(ds, 10)
    assert [e[1].shape[0] for e in items] == [2, 2, 1]
    assert int(ds.cardinality()) == 3  # known length: Keras needs no validation_steps
    full = default_images(["astronaut"], max_size=72)[0]  # first file alphabetically
    np.testing.assert_allclose(items[0][1][0], full[20:52, 20:52], atol=1 / 255)


def test_sigma_map_tuple_and_keras_fit(folder):
    import keras

    ds = image_dataset(
        folder, GaussianNoise((0.0, 0.2), sigma_map=True), crop_size=16, batch_size=2
    )
    (noisy, smap), clean = _take(ds, 1)[0]
    assert smap.shape == (2, 16, 16, 1) and np.all(smap >= 0)
    a, b = keras.Input((None, None, 3)), keras.Input((None, None, 1))
    out = keras.layers.Conv2D(3, 3, padding="same")(keras.layers.Concatenate()([a, b]))
    model = keras.Model([a, b], out)
    model.compile("adam", "mae")
    hist = model.fit(ds, steps_per_epoch=2, epochs=1, verbose=0)
    assert np.isfinite(hist.history["loss"][0])


def test_options_object_equals_keywords_and_unknown_keywords_are_named():
    imgs = default_images(["chelsea", "rocket"], max_size=48)
    opts = DatasetOptions(crop_size=16, batch_size=2, seed=4)
    by_object = _take(image_dataset(imgs, GaussianNoise(0.1), options=opts), 3)
    by_keywords = _take(
        image_dataset(imgs, GaussianNoise(0.1), crop_size=16, batch_size=2, seed=4), 3
    )
    assert _equal(by_object, by_keywords)
    # keywords override the options object; the object itself is not changed
    (noisy, _), = _take(image_dataset(imgs, None, options=opts, batch_size=1), 1)
    assert noisy.shape == (1, 16, 16, 3) and opts.batch_size == 2
    unknown = r"image_dataset\(\) got unknown argument\(s\) \['crop'\].*'crop_size'"
    with pytest.raises(TypeError, match=unknown):
        image_dataset(imgs, None, crop=16)
    with pytest.raises(TypeError, match="paired_dataset: `options` must be a tfrestore.data.Dat"):
        paired_dataset(imgs, imgs, options={"crop_size": 16})


def test_in_memory_default_and_grey_sources():
    imgs = default_images(["chelsea", "rocket"], max_size=48)
    ds = image_dataset(imgs, GaussianNoise(0.05), crop_size=16, batch_size=2, channels=1)
    noisy, clean = _take(ds, 1)[0]
    assert clean.shape == (2, 16, 16, 1)
    u8 = [np.round(i * 255).astype(np.uint8) for i in imgs]
    f = _take(image_dataset(imgs, None, crop_size=16, batch_size=2, seed=3), 2)
    q = _take(image_dataset(u8, None, crop_size=16, batch_size=2, seed=3), 2)
    np.testing.assert_allclose(f[1][1], q[1][1], atol=0.5 / 255 + 1e-6)


def test_errors_name_the_file(tmp_path, folder):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ImageFileError, match="no image files"):
        image_dataset(empty, crop_size=8)
    with pytest.raises(ImageFileError, match="does not exist"):
        image_dataset(tmp_path / "missing", crop_size=8)
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    write_image(bad_dir / "good.png", np.zeros((40, 40, 3), np.float32))
    (bad_dir / "broken.png").write_text("this is not a PNG")
    with pytest.raises(ImageFileError, match="broken.png"):
        image_dataset(bad_dir, crop_size=8)
    # without up-front validation the in-graph check still names the file
    ds = image_dataset(bad_dir, crop_size=8, batch_size=1, validate=False, shuffle=False)
    with pytest.raises(tf.errors.InvalidArgumentError, match="broken.png"):
        _take(ds, 2)
    small = tmp_path / "small"
    small.mkdir()
    write_image(small / "tiny.png", np.zeros((20, 30, 3), np.float32))
    with pytest.raises(ImageFileError, match="tiny.png.*20x30.*crop 32x32"):
        image_dataset(small, crop_size=32)
    ds = image_dataset(small, crop_size=32, batch_size=1, validate=False)
    with pytest.raises(tf.errors.InvalidArgumentError, match="tiny.png"):
        _take(ds, 1)
    with pytest.raises(ValueError, match="multiple of the degradation's scale"):
        image_dataset(folder, BicubicDownsample(3), crop_size=32)
    with pytest.raises(ValueError, match="batch_size=4"):
        image_dataset(folder, training=False, batch_size=4)


@pytest.fixture(scope="module")
def sr_pairs(tmp_path_factory):
    root = tmp_path_factory.mktemp("pairs")
    gt_dir, lq_dir = root / "gt", root / "lq"
    gt_dir.mkdir()
    lq_dir.mkdir()
    for i, img in enumerate(default_images(["astronaut", "coffee", "chelsea"], max_size=64)):
        hr = img[: img.shape[0] // 2 * 2, : img.shape[1] // 2 * 2]
        write_image(gt_dir / f"{i:04d}.png", hr)
        write_image(lq_dir / f"{i:04d}x2.png", np.clip(imresize(hr, 0.5).numpy(), 0, 1))
    return lq_dir, gt_dir


def test_paired_crops_are_aligned(sr_pairs):
    lq_dir, gt_dir = sr_pairs
    ds = paired_dataset(lq_dir, gt_dir, scale=2, crop_size=24, batch_size=4, seed=2)
    for lq, gt in _take(ds, 3):
        assert lq.shape == (4, 12, 12, 3) and gt.shape == (4, 24, 24, 3)
        # LQ is the bicubic downsample of GT, so crops (and their flips/rotations) line up
        down = imresize(gt, 0.5).numpy()
        assert np.abs(down[:, 3:-3, 3:-3] - lq[:, 3:-3, 3:-3]).mean() < 0.02
    assert _equal(
        _take(ds, 3),
        _take(paired_dataset(lq_dir, gt_dir, scale=2, crop_size=24, batch_size=4, seed=2), 3),
    )
    ev = _take(paired_dataset(lq_dir, gt_dir, scale=2, training=False), 10)
    assert len(ev) == 3 and all(g.shape[1] == 2 * lq.shape[1] for lq, g in ev)


def test_paired_mismatch_and_size_errors(tmp_path, sr_pairs):
    lq_dir, gt_dir = sr_pairs
    other = tmp_path / "gt"
    other.mkdir()
    for name in ("0000.png", "0001.png", "9999.png"):
        write_image(other / name, np.zeros((64, 64, 3), np.float32))
    with pytest.raises(ImageFileError, match=r"0002x2.png.*9999.png"):
        paired_dataset(lq_dir, other, scale=2, crop_size=16)
    os.remove(other / "9999.png")
    write_image(other / "0002.png", np.zeros((64, 64, 3), np.float32))
    with pytest.raises(
        ImageFileError, match=r"GT file .*0001.png.* is 64x64 but LQ file .*0001x2.png"
    ):
        paired_dataset(lq_dir, other, scale=2, crop_size=16)
    with pytest.raises(ValueError, match="multiple of scale"):
        paired_dataset(lq_dir, gt_dir, scale=2, crop_size=15)


def test_real_data_pipeline(data_dir):
    ds = image_dataset(
        data_dir / "set5", GaussianNoise(25 / 255), crop_size=48, batch_size=5, seed=0
    )
    noisy, clean = _take(ds, 1)[0]
    assert noisy.shape == (5, 48, 48, 3)
    assert abs((noisy - clean).std() - 25 / 255) < 0.005


# ----------------------------------------------- damaged and unusual files, argument checks


def _truncate(path, keep=0.6):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_truncated_png_in_a_training_folder_is_named_before_training(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(3):
        write_image(tmp_path / f"{i}.png", rng.uniform(size=(40, 40, 3)))
    _truncate(tmp_path / "1.png")
    with pytest.raises(ImageFileError, match=r"cannot decode image file '.*1\.png'.*truncated"):
        image_dataset(str(tmp_path), crop_size=16, batch_size=2)


def test_truncated_jpeg_in_a_training_folder_is_named_before_training(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "a.jpg")
    _truncate(tmp_path / "a.jpg", 0.5)
    with pytest.raises(ImageFileError, match=r"a\.jpg"):
        image_dataset(str(tmp_path), crop_size=16, batch_size=1)


def test_damage_inside_a_file_is_found_by_full_validation(tmp_path):
    path = pathlib.Path(
        write_image(tmp_path / "a.png", np.random.default_rng(0).uniform(size=(32, 32, 3)))
    )
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 64] = b"\x00" * 64  # IDAT damaged, IEND intact: passes the cheap check
    path.write_bytes(bytes(data))
    image_dataset(str(tmp_path), crop_size=16, batch_size=1)  # cheap check: not detected
    with pytest.raises(ImageFileError, match=r"a\.png"):
        image_dataset(str(tmp_path), crop_size=16, batch_size=1, validate="full")


def test_tiff_training_data_decodes_in_the_pipeline(tmp_path):
    from PIL import Image

    rgb = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.tiff")
    _, clean = next(iter(image_dataset(str(tmp_path), training=False, batch_size=1)))
    np.testing.assert_allclose(clean[0].numpy(), rgb / 255.0, atol=1e-7)


def test_batch_size_zero_names_the_argument():
    with pytest.raises(ValueError, match="`batch_size` must be an integer >= 1, got 0"):
        image_dataset("default", batch_size=0, crop_size=16)
