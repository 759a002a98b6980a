"""copy_weights / load_weights_file: initialise a model from another one's weights."""

import numpy as np
import pytest

from tfrestore.models import (
    DnCNN,
    FFDNet,
    WeightTransferError,
    copy_weights,
    load_weights_file,
)


def _randomize(model, seed=0):
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, 0.1, w.shape).astype("float32") for w in model.get_weights()])
    return model


def test_scalar_ffdnet_initialises_a_map_ffdnet_with_the_same_output(rng):
    source = _randomize(FFDNet(channels=3, depth=4, filters=8))
    target = FFDNet(channels=3, depth=4, filters=8, sigma_input="map")
    assert copy_weights(source, target) == ["conv1", "conv2", "conv3", "conv4"]
    x = rng.random((2, 10, 7, 3), dtype=np.float32)
    sigma = np.full((2, 1), 30 / 255, "float32")
    sigma_map = np.full((2, 10, 7, 1), 30 / 255, "float32")
    np.testing.assert_allclose(
        np.asarray(target([x, sigma_map])), np.asarray(source([x, sigma])), atol=1e-6
    )


def test_batch_norm_statistics_are_copied():
    source = _randomize(DnCNN(channels=1, depth=4, filters=8), seed=1)
    target = DnCNN(channels=1, depth=4, filters=8)
    copy_weights(source, target)
    for a, b in zip(source.get_weights(), target.get_weights()):  # moving mean / variance too
        np.testing.assert_array_equal(a, b)


def test_shape_mismatch_names_the_layer_and_both_shapes_and_changes_nothing():
    source = _randomize(FFDNet(channels=3, depth=3, filters=8))
    target = FFDNet(channels=3, depth=3, filters=16)
    before = [w.copy() for w in target.get_weights()]
    with pytest.raises(WeightTransferError) as info:
        copy_weights(source, target)
    e = info.value
    assert (e.layer, e.source_shapes, e.target_shapes) == (
        "conv1",
        [(3, 3, 13, 8), (8,)],
        [(3, 3, 13, 16), (16,)],
    )
    assert "conv1" in str(e) and "(3, 3, 13, 8)" in str(e) and "(3, 3, 13, 16)" in str(e)
    for a, b in zip(before, target.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_target_layer_missing_from_the_source():
    # The target's middle convolution has no bias (BN follows it) and a BN layer the source lacks.
    source = DnCNN(channels=1, depth=3, filters=8, batch_norm=False)
    target = DnCNN(channels=1, depth=3, filters=8, batch_norm=True)
    with pytest.raises(WeightTransferError) as info:
        copy_weights(source, target)
    e = info.value
    assert (e.layer, e.source_shapes, e.target_shapes) == (
        "conv2", [(3, 3, 8, 8), (8,)], [(3, 3, 8, 8)]
    )
    assert e.problems == 2  # and bn2, which the source lacks
    # Only a layer that is in the target and not in the source:
    import keras

    from tfrestore.models import RestorationModel

    inp = keras.Input((None, None, 1))
    a = keras.layers.Conv2D(4, 3, padding="same", name="conv1")(inp)
    b = keras.layers.Conv2D(4, 3, padding="same", name="conv2")(a)
    src = RestorationModel(inp, a)
    with pytest.raises(WeightTransferError, match=r"layer 'conv2': the target has weights"):
        copy_weights(src, RestorationModel(inp, b))


def test_source_layer_missing_from_the_target():
    import keras

    from tfrestore.models import RestorationModel

    def model(*names):
        inp = keras.Input((None, None, 1))
        outs = [keras.layers.Conv2D(4, 3, padding="same", name=n)(inp) for n in names]
        return RestorationModel(inp, outs)

    with pytest.raises(WeightTransferError, match=r"layer 'extra': the source has weights") as e:
        copy_weights(model("conv1", "extra"), model("conv1"))
    assert e.value.source_shapes == [(3, 3, 1, 4), (4,)] and e.value.target_shapes is None


def test_weights_file_round_trip_and_mismatch(tmp_path):
    source = _randomize(DnCNN(channels=3, depth=4, filters=8), seed=2)
    path = str(tmp_path / "m.weights.h5")
    source.save_weights(path)
    target = DnCNN(channels=3, depth=4, filters=8)
    load_weights_file(target, path)
    for a, b in zip(source.get_weights(), target.get_weights()):
        np.testing.assert_array_equal(a, b)

    wider = DnCNN(channels=3, depth=4, filters=16)
    with pytest.raises(WeightTransferError) as info:
        load_weights_file(wider, path)
    e = info.value
    assert e.layer == "conv1" and e.source_shapes[0] == (3, 3, 3, 8)
    assert e.target_shapes[0] == (3, 3, 3, 16)

    deeper = DnCNN(channels=3, depth=5, filters=8)
    with pytest.raises(WeightTransferError) as info:
        load_weights_file(deeper, path)
    # The file's 4th convolution is the output layer (3 filters), the target's a middle one;
    # then bn4 and conv5 are missing from the file.
    e = info.value
    assert (e.layer, e.source_shapes, e.target_shapes, e.problems) == (
        "conv4", [(3, 3, 8, 3)], [(3, 3, 8, 8)], 3
    )

    with pytest.raises(FileNotFoundError):
        load_weights_file(target, str(tmp_path / "missing.weights.h5"))
