"""D2SM safety rails: sets too small to carry a signal (issue 12.1), evaluation on
another image size than the queue's (issue 10.3), saved Keras-model extractors
(issue 12.3)."""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfrestore.losses import D2SMLoss, L1
from tfrestore.models import RestorationModel

_KERNEL = np.random.default_rng(5).normal(size=(3, 3, 3, 6)).astype("float32") / 3.0


@keras.saving.register_keras_serializable(package="tests_d2sm_safety")
def safety_features(x):
    y = tf.nn.conv2d(tf.cast(x, tf.float32) - 0.5, tf.constant(_KERNEL), 1, "SAME")
    return tf.nn.avg_pool2d(y, 4, 4, "VALID")


def _pair(rng, b, s=16):
    y = rng.uniform(size=(b, s, s, 3)).astype("float32")
    p = np.clip(y + 0.2 * rng.normal(size=y.shape), 0, 1).astype("float32")
    return y, p


def _restorer(seed=0):
    inp = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(
        3,
        3,
        padding="same",
        kernel_initializer=keras.initializers.RandomNormal(stddev=0.1, seed=seed),
    )(inp)
    # A RestorationModel tells its losses when Keras evaluates (validation on another size).
    return RestorationModel(inp, keras.layers.Add()([inp, x]))


# ----------------------------------------------------------- 12.1: set size
def test_two_images_without_queue_and_diagonal_is_an_error(rng):
    y, p = _pair(rng, 2)
    with pytest.raises(ValueError, match=r"fewer than 3 samples.*include_diagonal=False"):
        D2SMLoss(feature_extractor=safety_features, patch_size=None)(y, p)
    # With the diagonal a 2-row set is informative (released code's setting).
    v = D2SMLoss(feature_extractor=safety_features, patch_size=None, include_diagonal=True)(y, p)
    assert float(v) > 0


def test_two_windows_per_image_with_group_by_image_is_an_error(rng):
    y, p = _pair(rng, 4, s=16)  # 8px windows every 8px on 16x8 strips -> 2 windows
    y, p = y[:, :8], p[:, :8]
    with pytest.raises(ValueError, match=r"each image.*2 window\(s\).*group_by_image=True"):
        D2SMLoss(
            feature_extractor=safety_features, patch_size=8, patch_stride=8, group_by_image=True
        )(y, p)


def test_256px_crops_with_default_windows_and_batch_2_is_an_error(rng):
    y, p = _pair(rng, 2, s=256)  # 224/56 windows fit once in 256 px
    with pytest.raises(ValueError, match=r"global batch 2, 1 window\(s\)"):
        D2SMLoss(feature_extractor=safety_features)(y, p)


def test_dynamic_batch_too_small_raises_at_run_time(rng):
    loss = D2SMLoss(feature_extractor=safety_features, patch_size=None)
    fn = tf.function(loss, input_signature=[tf.TensorSpec((None, 16, 16, 3))] * 2)
    y, p = _pair(rng, 3)
    assert float(fn(y, p)) > 0  # 3 rows: fine
    with pytest.raises(tf.errors.InvalidArgumentError, match="fewer than 3 samples"):
        fn(y[:2], p[:2])


def test_fit_with_batch_1_dataset_does_not_train_silently(rng):
    y, p = _pair(rng, 4)
    ds = tf.data.Dataset.from_tensor_slices((p, y)).batch(1)
    assert ds.element_spec[0].shape[0] is None
    model = _restorer()
    model.compile(
        optimizer="sgd",
        loss=D2SMLoss(feature_extractor=safety_features, patch_size=None),
        jit_compile=False,
    )
    with pytest.raises(tf.errors.InvalidArgumentError, match="drop_remainder=True"):
        model.fit(ds, epochs=1, verbose=0, shuffle=False)
    # XLA compiles assertions out; the loss then reads NaN, not a silent 0.
    model = _restorer()
    model.compile(
        optimizer="sgd",
        loss=D2SMLoss(feature_extractor=safety_features, patch_size=None),
        jit_compile=True,
    )
    history = model.fit(ds, epochs=1, verbose=0, shuffle=False)
    assert np.isnan(history.history["loss"][0])
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())


# ------------------------------------------- 10.3: validation on another size
def test_fit_validates_on_another_crop_size_without_the_queue(rng):
    train_y, train_p = _pair(rng, 8, s=16)
    val_y, val_p = _pair(rng, 6, s=32)  # 4x the feature values of a training crop
    model = _restorer()
    loss = D2SMLoss(
        feature_extractor=safety_features, patch_size=None, queue_size=8, image_size=16
    )
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=L1() + loss)
    history = model.fit(
        train_p, train_y, batch_size=4, epochs=2, verbose=0, validation_data=(val_p, val_y)
    )
    assert loss.queue_count == 16  # training rows only
    val = history.history["val_loss"]
    assert len(val) == 2 and np.all(np.isfinite(val))
    # The validation value is the queue-free loss of each validation batch.
    ref = D2SMLoss(feature_extractor=safety_features, patch_size=None)
    pred = model.predict(val_p, batch_size=3, verbose=0)
    expected = np.mean(
        [
            float(ref(val_y[i:i + 3], pred[i:i + 3])) + float(L1()(val_y[i:i + 3], pred[i:i + 3]))
            for i in (0, 3)
        ]
    )
    got = model.evaluate(val_p, val_y, batch_size=3, verbose=0, return_dict=True)["loss"]
    np.testing.assert_allclose(got, expected, rtol=1e-4)
    assert loss.queue_count == 16


def test_training_on_another_size_than_the_queue_is_still_an_error(rng):
    y, p = _pair(rng, 4, s=32)
    loss = D2SMLoss(
        feature_extractor=safety_features, patch_size=None, queue_size=8, image_size=16
    )
    with pytest.raises(ValueError, match="queue was sized for 96.*skip the queue"):
        loss(y, p)


# --------------------------------------- 12.3: a Keras-model extractor is saved
def _keras_extractor(seed):
    inp = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(6, 3, padding="same", name="fx_conv")(inp)
    x = keras.layers.BatchNormalization(name="fx_bn")(x)
    out = keras.layers.AveragePooling2D(4, name="fx_pool")(x)
    fx = keras.Model(inp, out, name="user_extractor")
    # "Trained" weights that no seeded initialiser reproduces.
    r = np.random.default_rng(seed)
    fx.set_weights([r.normal(size=w.shape).astype("float32") for w in fx.get_weights()])
    fx.get_layer("fx_bn").moving_variance.assign(np.abs(r.normal(size=6)).astype("float32") + 0.5)
    return fx


def _compiled_with_keras_extractor(seed):
    model = _restorer()
    loss = D2SMLoss(
        feature_extractor=_keras_extractor(seed), patch_size=None, queue_size=8, image_size=16
    )
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=L1() + loss)
    return model, loss


def test_keras_model_extractor_round_trips_through_keras_file(tmp_path, rng):
    y, p = _pair(rng, 4)
    model, loss = _compiled_with_keras_extractor(seed=1)
    model.fit(p, y, batch_size=4, epochs=1, verbose=0)
    with loss.frozen_queue():
        before = float(loss(y, p))
    path = tmp_path / "m.keras"
    model.save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "fresh weights" warning after a proper load
        loaded = keras.models.load_model(path)
        new = loaded.loss.losses[1]
        for a, b in zip(new._source.network().get_weights(), loss._source.network().get_weights()):
            np.testing.assert_array_equal(a, b)
        with new.frozen_queue():
            np.testing.assert_allclose(float(new(y, p)), before, rtol=1e-6)
    np.testing.assert_array_equal(new.queue_state()[1], loss.queue_state()[1])


def test_keras_model_extractor_round_trips_through_weights_file(tmp_path, rng):
    y, p = _pair(rng, 4)
    model, loss = _compiled_with_keras_extractor(seed=1)
    model.fit(p, y, batch_size=4, epochs=1, verbose=0)
    model.save_weights(tmp_path / "w.weights.h5")
    other, other_loss = _compiled_with_keras_extractor(seed=2)  # different extractor weights
    assert not np.allclose(other_loss(y, p), loss(y, p), rtol=1e-3, atol=0)
    other.load_weights(tmp_path / "w.weights.h5")
    other_net, net = other_loss._source.network(), loss._source.network()
    for a, b in zip(other_net.get_weights(), net.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_extractor_rebuilt_without_saved_weights_warns(rng):
    y, p = _pair(rng, 4)
    loss = D2SMLoss(feature_extractor=_keras_extractor(seed=1), patch_size=None)
    clone = D2SMLoss.from_config(loss.get_config())  # config only: fresh weights
    with pytest.warns(UserWarning, match=r"user_extractor.*freshly initialised weights"):
        clone(y, p)
    assert not np.allclose(clone(y, p), loss(y, p), rtol=1e-3, atol=0)


def test_mismatched_saved_extractor_is_a_clear_error(tmp_path, rng):
    y, p = _pair(rng, 4)
    model, loss = _compiled_with_keras_extractor(seed=1)
    model.save_weights(tmp_path / "w.weights.h5")
    inp = keras.Input((None, None, 3))
    small = keras.Model(inp, keras.layers.AveragePooling2D(4)(keras.layers.Conv2D(6, 1)(inp)))
    other = _restorer()
    other.compile(
        optimizer="sgd",
        loss=L1() + D2SMLoss(feature_extractor=small, patch_size=None, queue_size=8, image_size=16),
    )
    with pytest.raises(ValueError, match="same extractor architecture"):
        other.load_weights(tmp_path / "w.weights.h5")
