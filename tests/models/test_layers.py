import numpy as np
import pytest
import tensorflow as tf

from tfrestore.models.layers import (
    CropToMatch,
    DepthToSpace,
    InputCheck,
    NoiseLevelMap,
    PadToMultiple,
    ResizeLike,
    SpaceToDepth,
)


def np_space_to_depth(x, r):
    b, h, w, c = x.shape
    y = x.reshape(b, h // r, r, w // r, r, c).transpose(0, 1, 3, 2, 4, 5)
    return y.reshape(b, h // r, w // r, r * r * c)


def test_space_to_depth_roundtrip_matches_numpy(rng):
    x = rng.normal(size=(2, 6, 9, 2)).astype("float32")
    y = SpaceToDepth(3)(x).numpy()
    np.testing.assert_array_equal(y, np_space_to_depth(x, 3))
    np.testing.assert_array_equal(DepthToSpace(3)(y).numpy(), x)


def test_pad_to_multiple_replicates_edges_and_crop_undoes_it(rng):
    x = rng.normal(size=(1, 5, 3, 2)).astype("float32")
    y = PadToMultiple(2)(x).numpy()
    np.testing.assert_array_equal(y, np.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)), mode="edge"))
    np.testing.assert_array_equal(CropToMatch()([y, x]).numpy(), x)
    assert PadToMultiple(4)(np.zeros((1, 8, 4, 1), "float32")).shape == (1, 8, 4, 1)
    with pytest.raises(ValueError, match="mode"):
        PadToMultiple(2, mode="edge")


def test_input_check_static_and_dynamic():
    check = InputCheck("Net", channels=3, multiple=4, offset=4, min_size=8)
    assert check(np.zeros((1, 12, 8, 3), "float32")).shape == (1, 12, 8, 3)
    with pytest.raises(ValueError, match="minus 4 divisible by 4, got 12x10"):
        check(np.zeros((1, 12, 10, 3), "float32"))
    with pytest.raises(ValueError, match="at least 8x8"):
        check(np.zeros((1, 4, 4, 3), "float32"))
    with pytest.raises(ValueError, match="rank-4"):
        check(np.zeros((12, 12, 3), "float32"))
    fn = tf.function(check, input_signature=[tf.TensorSpec((None, None, None, 3))])
    with pytest.raises(
        tf.errors.InvalidArgumentError, match="Net: `inputs` must have height and width minus 4"
    ):
        fn(tf.zeros((1, 12, 10, 3)))
    with pytest.raises(tf.errors.InvalidArgumentError, match="at least 8x8"):
        fn(tf.zeros((1, 4, 4, 3)))


def test_noise_level_map_forms(rng):
    ref = np.zeros((2, 3, 4, 5), "float32")
    for sigma in (np.array([0.1, 0.2], "float32"), np.array([[0.1], [0.2]], "float32")):
        out = NoiseLevelMap()([ref, sigma]).numpy()
        np.testing.assert_allclose(
            out[:, :, :, 0], np.broadcast_to(np.array([0.1, 0.2])[:, None, None], (2, 3, 4))
        )
    full = rng.uniform(size=(2, 6, 8, 1)).astype("float32")
    pooled = NoiseLevelMap(factor=2)([ref, full]).numpy()
    np.testing.assert_allclose(pooled, full.reshape(2, 3, 2, 4, 2, 1).mean(axis=(2, 4)), rtol=1e-6)
    with pytest.raises(ValueError, match="noise_level"):
        NoiseLevelMap()([ref, np.zeros((2, 3), "float32")])


def test_resize_like_dynamic_shapes():
    layer = ResizeLike()
    fn = tf.function(
        lambda a, b: layer([a, b]), input_signature=[tf.TensorSpec((None, None, None, 2))] * 2
    )
    assert fn(tf.ones((1, 2, 3, 2)), tf.ones((1, 4, 6, 2))).shape == (1, 4, 6, 2)


def test_noise_level_map_pools_a_full_size_map_of_unknown_size(rng):
    # In a traced training step both sizes can be unknown; the map must still be pooled.
    layer = NoiseLevelMap(factor=2)
    fn = tf.function(
        lambda r, s: layer([r, s]),
        input_signature=[
            tf.TensorSpec((None, None, None, 5)),
            tf.TensorSpec((None, None, None, 1)),
        ],
    )
    ref = np.zeros((2, 3, 4, 5), "float32")
    full = rng.uniform(size=(2, 6, 8, 1)).astype("float32")
    np.testing.assert_allclose(
        fn(ref, full).numpy(), full.reshape(2, 3, 2, 4, 2, 1).mean(axis=(2, 4)), rtol=1e-6
    )
    half = full[:, :3, :4]  # already at the reference's size: used as is
    np.testing.assert_allclose(fn(ref, half).numpy(), half)
