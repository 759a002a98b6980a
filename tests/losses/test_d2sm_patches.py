"""Sliding-window grid of D2SM patches."""

import numpy as np
import pytest
import tensorflow as tf

from tfrestore.losses import D2SMLoss
from tfrestore.losses.patches import extract_windows, window_grid


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


def test_image_mode_is_xla_compatible(rng):
    fx = _local_extractor()
    y = rng.uniform(size=(2, 24, 24, 3)).astype("float32")
    p = np.clip(y + rng.normal(0, 0.2, y.shape), 0, 1).astype("float32")
    loss = D2SMLoss(feature_extractor=fx, patch_size=16, patch_stride=4, reduction=None)
    eager = loss(y, p).numpy()
    xla = tf.function(loss.call, jit_compile=True)(tf.constant(y), tf.constant(p)).numpy()
    np.testing.assert_allclose(xla, eager, rtol=1e-3)


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
