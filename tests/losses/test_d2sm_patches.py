"""Sliding-window grid of D2SM and the two patch modes."""

import numpy as np
import pytest
import tensorflow as tf

from tfrestore.losses import D2SMLoss
from tfrestore.losses.patches import (
    extract_windows,
    interpolation_matrix,
    sample_feature_windows,
    window_grid,
)


def test_paper_grid_is_36_row_major_windows():
    grid = window_grid(512, 512, 224, 56)
    assert len(grid) == 36
    assert grid[:7] == [(0, 0), (0, 56), (0, 112), (0, 168), (0, 224), (0, 280), (56, 0)]
    assert grid == sorted(grid)  # row-major
    assert max(y for y, _ in grid) + 224 == 504  # coverage ends at pixel 504, as in the code


@pytest.mark.parametrize(
    "h,w,size,stride", [(512, 512, 224, 56), (100, 37, 16, 7), (64, 64, 64, 8), (33, 70, 32, 32)]
)
def test_windows_never_read_past_the_image(h, w, size, stride):
    grid = window_grid(h, w, size, stride)
    ys, xs = sorted({y for y, _ in grid}), sorted({x for _, x in grid})
    assert all(y + size <= h for y in ys) and all(x + size <= w for x in xs)
    # no further window fits: the dropped remainder is smaller than one stride
    assert ys[-1] + stride + size > h and xs[-1] + stride + size > w
    assert len(grid) == ((h - size) // stride + 1) * ((w - size) // stride + 1)


def test_image_smaller_than_window_is_a_clear_error():
    with pytest.raises(ValueError, match=r"smaller than the patch window \(patch_size=224\)"):
        window_grid(200, 512, 224, 56)


def test_extract_windows_matches_numpy_and_tf_extract_patches(rng):
    x = rng.uniform(size=(2, 13, 11, 3)).astype("float32")
    got = extract_windows(tf.constant(x), 5, 3).numpy()
    ref = np.stack(
        [x[b, y:y + 5, c:c + 5] for b in range(2) for y, c in window_grid(13, 11, 5, 3)]
    )
    np.testing.assert_array_equal(got, ref)
    tfp = tf.image.extract_patches(x, [1, 5, 5, 1], [1, 3, 3, 1], [1, 1, 1, 1], "VALID")
    np.testing.assert_array_equal(got, tf.reshape(tfp, [-1, 5, 5, 3]).numpy())


def test_identity_extractor_sees_the_paper_grid_on_512_crops(rng):
    """Cheap end-to-end check of the grid through the loss: with an identity
    extractor the sample rows are the (normalised) pixels of each window."""
    img = rng.uniform(size=(1, 512, 512, 3)).astype("float32")
    loss = D2SMLoss(feature_extractor=lambda x: x, patch_size=224, patch_stride=56)
    rows = loss.features(tf.constant(img)).numpy()
    assert rows.shape == (1, 36, 224 * 224 * 3)
    for k, (y, x) in enumerate(window_grid(512, 512, 224, 56)):
        ref = img[0, y:y + 224, x:x + 224].ravel().astype(np.float64)
        np.testing.assert_allclose(
            rows[0, k], ref / (np.linalg.norm(ref) + 1e-6), rtol=1e-5, atol=1e-8
        )


def _local_extractor():
    """Pointwise linear map + 4x4 average pooling: no padding, stride 4. Windows at
    multiples of 4 see exactly the same cells in both patch modes."""
    w = tf.constant(np.random.default_rng(3).normal(size=(1, 1, 3, 5)).astype("float32"))

    def fx(x):
        return tf.nn.avg_pool2d(tf.nn.conv2d(x - 0.5, w, 1, "VALID"), 4, 4, "VALID")

    return fx


def test_feature_mode_equals_image_mode_for_aligned_windows(rng):
    fx = _local_extractor()
    y = rng.uniform(size=(2, 40, 40, 3)).astype("float32")
    p = np.clip(y + rng.normal(0, 0.2, y.shape), 0, 1).astype("float32")
    kw = dict(feature_extractor=fx, patch_size=16, patch_stride=8, reduction=None)
    img_mode, feat_mode = D2SMLoss(patch_mode="image", **kw), D2SMLoss(patch_mode="feature", **kw)
    np.testing.assert_allclose(
        feat_mode.features(tf.constant(y)), img_mode.features(tf.constant(y)), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(feat_mode(y, p), img_mode(y, p), rtol=1e-4)
    assert feat_mode._patch_cells() == (4, 4)


def test_feature_mode_interpolates_unaligned_windows(rng):
    """Windows every 6 px on a stride-4 map start at cell 1.5, 3, ...: bilinear."""
    fmap = rng.normal(size=(1, 10, 10, 2)).astype("float32")
    got = sample_feature_windows(tf.constant(fmap), (40, 40), 16, 6, 4, 4).numpy()
    starts = [0, 6, 12, 18, 24]
    assert got.shape == (25, 4, 4, 2)
    for k, (y0, x0) in enumerate((a, b) for a in starts for b in starts):
        for i in range(4):
            for j in range(4):
                ty, tx = y0 / 4 + i, x0 / 4 + j
                ly, lx = int(np.floor(ty)), int(np.floor(tx))
                fy, fx_ = ty - ly, tx - lx
                ref = (
                    (1 - fy) * (1 - fx_) * fmap[0, ly, lx]
                    + (1 - fy) * fx_ * fmap[0, ly, min(lx + 1, 9)]
                    + fy * (1 - fx_) * fmap[0, min(ly + 1, 9), lx]
                    + fy * fx_ * fmap[0, min(ly + 1, 9), min(lx + 1, 9)]
                )
                np.testing.assert_allclose(got[k, i, j], ref, rtol=1e-5, atol=1e-6)


def test_interpolation_rows_sum_to_one_and_clamp():
    a = interpolation_matrix([0, 6, 30], 4, 9, 4)
    np.testing.assert_allclose(a.sum(-1), 1.0)
    assert a[2, 3, 8] == 1.0  # 30/4 + 3 = 10.5 is clamped to the last row


def test_image_mode_is_xla_compatible(rng):
    fx = _local_extractor()
    y = rng.uniform(size=(2, 24, 24, 3)).astype("float32")
    p = np.clip(y + rng.normal(0, 0.2, y.shape), 0, 1).astype("float32")
    loss = D2SMLoss(feature_extractor=fx, patch_size=16, patch_stride=4, reduction=None)
    eager = loss(y, p).numpy()
    xla = tf.function(loss.call, jit_compile=True)(tf.constant(y), tf.constant(p)).numpy()
    np.testing.assert_allclose(xla, eager, rtol=1e-3)


# ----------------------------------------------------------------- real VGG16 weights
def _kodak(data_dir, n, size):
    from PIL import Image

    files = sorted((data_dir / "kodak24").glob("*.png"))[:n]
    out = []
    for f in files:
        a = np.asarray(Image.open(f).convert("RGB"), np.float32) / 255.0
        h, w = a.shape[:2]
        out.append(
            a[(h - size) // 2:(h - size) // 2 + size, (w - size) // 2:(w - size) // 2 + size]
        )
    return np.stack(out)


@pytest.mark.weights
def test_feature_mode_geometry_with_real_vgg16(weights_dir, data_dir):
    """A window covering the whole crop must give identical rows in both modes
    (checks the cell count and stride of the real backbone: 96 px -> 6x6 cells)."""
    npz = str(weights_dir / "vgg16_torchvision_features.npz")
    x = tf.constant(_kodak(data_dir, 2, 96))
    kw = dict(backbone="vgg16", layer="conv5_3", weights=npz, patch_size=96, patch_stride=16)
    img_rows = D2SMLoss(patch_mode="image", **kw).features(x).numpy()
    feat = D2SMLoss(patch_mode="feature", **kw)
    np.testing.assert_allclose(feat.features(x).numpy(), img_rows, rtol=1e-4, atol=1e-6)
    assert feat._patch_cells() == (6, 16)


@pytest.mark.slow
@pytest.mark.weights
def test_patch_modes_agree_on_real_images(weights_dir, data_dir):
    """Measured (4 kodak crops of 256 px, 112/28 windows, 3 noise levels, VGG16
    conv5_3 torchvision): Spearman 0.89 of the loss values, mean gradient cosine
    0.38; see bench/bench_d2sm.py --agreement. Misaligned windows give ~0."""
    import pathlib
    import sys

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
    from bench.bench_d2sm import mode_agreement

    r = mode_agreement(
        _kodak(data_dir, 4, 256),
        weights=str(weights_dir / "vgg16_torchvision_features.npz"),
        patch_size=112,
        patch_stride=28,
    )
    assert r["spearman"] > 0.6
    assert np.mean(r["grad_cos"]) > 0.2
    assert r["seconds"]["image"] > 2 * r["seconds"]["feature"]


def test_patches_take_the_static_size_from_y_true_when_y_pred_lost_it(rng):
    """Networks like FFDNet output tensors of unknown height/width even on fixed crops;
    the window grid then comes from y_true (the shapes are checked equal at run time)."""
    y = rng.uniform(size=(2, 24, 24, 3)).astype("float32")
    p = np.clip(y + rng.normal(0, 0.1, y.shape), 0, 1).astype("float32")
    loss = D2SMLoss(feature_extractor=lambda x: x, patch_size=16, patch_stride=8)

    @tf.function(input_signature=[tf.TensorSpec([2, 24, 24, 3]), tf.TensorSpec([2, None, None, 3])])
    def f(a, b):
        return loss.call(a, b)

    np.testing.assert_allclose(f(y, p).numpy(), loss.call(y, p).numpy(), rtol=1e-5, atol=1e-7)
    with pytest.raises(tf.errors.InvalidArgumentError):
        f(y, p[:, :20, :20])
