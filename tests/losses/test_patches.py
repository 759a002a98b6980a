"""Sliding-window grid of D2SM patches (`tfrestore.losses.patches`)."""

import numpy as np
import pytest
import tensorflow as tf

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
