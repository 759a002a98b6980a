"""Cascade of a restorer and a frozen task network (Liu et al., TIP 2020)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfrestore.losses import MSE, PerceptualLoss
from tfrestore.metrics import SegmentationMeanIoU, TopKAccuracy
from tfrestore.models import (
    DnCNN,
    FFDNet,
    LiuDenoiser,
    TaskPreprocess,
    UNet,
    cascade,
    get_restorer,
    task_feature_extractor,
)
from tfrestore.testing import TestCase

SCCE = keras.losses.SparseCategoricalCrossentropy


def _restorer(seed=0):
    keras.utils.set_random_seed(seed)
    return DnCNN(channels=3, depth=3, filters=8)


def _classifier(size=16, classes=5, seed=1):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((size, size, 3)),
            keras.layers.Conv2D(8, 3, padding="same"),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(name="relu"),
            keras.layers.Dropout(0.5),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(classes),
        ],
        name="classifier",
    )


def _segmenter(classes=4, seed=2):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(8, 3, padding="same")(inp)
    x = keras.layers.ReLU()(keras.layers.BatchNormalization()(x))
    x = keras.layers.Dropout(0.5)(x)
    return keras.Model(inp, keras.layers.Conv2D(classes, 1)(x), name="segmenter")


def _snapshot(model):
    return [v.numpy().copy() for v in model.weights]


def _images(rng, n=4, size=16):
    clean = rng.uniform(size=(n, size, size, 3)).astype("float32")
    return np.clip(clean + rng.normal(0, 0.1, clean.shape), 0, 1).astype("float32"), clean


# --------------------------------------------------------------- construction
def test_outputs_and_freezing():
    restorer, clf = _restorer(), _classifier()
    model = cascade(restorer, clf)
    assert model.output_names == ["restored", "task"]
    assert {id(v) for v in model.trainable_weights} == {id(v) for v in restorer.trainable_weights}
    assert clf.trainable is False and not clf.trainable_weights
    assert get_restorer(model) is restorer


def test_task_network_runs_in_inference_mode(rng):
    # Dropout (p=0.5) and BN in the task net must behave as at inference even when
    # the cascade is called with training=True: two calls agree and equal the
    # direct inference-mode composition.
    restorer, clf = _restorer(), _classifier()
    model = cascade(restorer, clf, preprocessing="caffe")
    x, _ = _images(rng)
    a = model(x, training=True)[1].numpy()
    b = model(x, training=True)[1].numpy()
    np.testing.assert_array_equal(a, b)
    restored = restorer(x, training=True)
    direct = clf(TaskPreprocess("caffe")(restored), training=False).numpy()
    np.testing.assert_allclose(a, direct, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "mode,reference",
    [
        ("caffe", lambda x: keras.applications.vgg16.preprocess_input(255.0 * x)),
        (
            "torch",
            lambda x: keras.applications.imagenet_utils.preprocess_input(255.0 * x, mode="torch"),
        ),
        ("tf", lambda x: keras.applications.mobilenet_v2.preprocess_input(255.0 * x)),
        ("scale255", lambda x: 255.0 * x),
        ("none", lambda x: x),
    ],
)
def test_preprocess_modes_match_keras_applications(mode, reference, rng):
    x = rng.uniform(size=(2, 4, 5, 3)).astype("float32")
    np.testing.assert_allclose(
        TaskPreprocess(mode)(x).numpy(), reference(x.copy()), rtol=1e-5, atol=1e-3
    )


# ------------------------------------------------------------ training checks
def _assert_frozen_fit_and_gradient(
    restorer, task, x, labels, clean, preprocess, lambdas=(1.0, 0.25)
):
    task_before = _snapshot(task)
    restorer_before = _snapshot(restorer)
    model = cascade(restorer, task, preprocessing=preprocess)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=[MSE(), SCCE(from_logits=not _ends_in_softmax(task))],
        loss_weights=list(lambdas),
    )
    history = model.fit(x, [clean, labels], batch_size=2, epochs=1, verbose=0)
    assert all(np.isfinite(v[-1]) for v in history.history.values())
    # The task network (weights AND BatchNorm moving statistics) is bit-identical.
    for before, after in zip(task_before, _snapshot(task)):
        np.testing.assert_array_equal(before, after)
    assert any(not np.array_equal(a, b) for a, b in zip(restorer_before, _snapshot(restorer)))

    # The cross-entropy term alone reaches every restorer variable.
    ce = SCCE(from_logits=not _ends_in_softmax(task))
    with tf.GradientTape() as tape:
        value = ce(labels, model(x, training=True)[1])
    grads = tape.gradient(value, restorer.trainable_weights)
    assert all(g is not None for g in grads)
    assert all(float(tf.reduce_max(tf.abs(g))) > 0 for g in grads)
    assert all(np.isfinite(g.numpy()).all() for g in grads)
    # ... and nothing is trainable on the task side.
    assert not task.trainable_weights


def _ends_in_softmax(model):
    return getattr(model.layers[-1], "activation", None) is keras.activations.softmax


def test_frozen_small_classifier_fit(rng):
    x, clean = _images(rng)
    labels = rng.integers(0, 5, size=(4,))
    _assert_frozen_fit_and_gradient(_restorer(), _classifier(), x, labels, clean, "caffe")


@pytest.mark.parametrize(
    "app",
    [
        keras.applications.VGG16,
        pytest.param(keras.applications.ResNet50, marks=pytest.mark.slow),
        pytest.param(keras.applications.ResNet101, marks=pytest.mark.slow),
    ],
)
def test_frozen_keras_application_with_top(app, rng):
    # Keras Applications with their classification top (random weights, 32 px), caffe domain.
    keras.utils.set_random_seed(4)
    task = app(weights=None, include_top=True, input_shape=(32, 32, 3), classes=10)
    x, clean = _images(rng, n=2, size=32)
    labels = rng.integers(0, 10, size=(2,))
    _assert_frozen_fit_and_gradient(_restorer(), task, x, labels, clean, "caffe")


def test_segmentation_ignore_label_loss_and_miou(rng):
    classes = 4
    seg = _segmenter(classes)
    model = cascade(_restorer(), seg, preprocessing="torch")
    x, clean = _images(rng)
    labels = rng.integers(0, classes, size=(4, 16, 16))
    labels[:, :5] = 255  # void

    # keras' ignore_class=255 averages over the non-ignored pixels only.
    logits = model(x)[1].numpy().astype(np.float64)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    valid = labels != 255
    nll = -np.take_along_axis(logp, np.where(valid, labels, 0)[..., None], -1)[..., 0]
    ce = SCCE(from_logits=True, ignore_class=255)
    np.testing.assert_allclose(
        float(ce(labels, logits.astype("float32"))), nll[valid].mean(), rtol=1e-5
    )

    task_before = _snapshot(seg)
    model.compile(
        optimizer="adam",
        loss=[MSE(), SCCE(from_logits=True, ignore_class=255)],
        loss_weights=[1.0, 0.5],  # lambda_H for segmentation
        metrics=[[], [SegmentationMeanIoU(classes, ignore_class=255)]],
    )
    model.fit(x, [clean, labels], batch_size=2, epochs=1, verbose=0)
    for before, after in zip(task_before, _snapshot(seg)):
        np.testing.assert_array_equal(before, after)
    results = model.evaluate(x, [clean, labels], batch_size=2, verbose=0, return_dict=True)
    pred = model.predict(x, verbose=0)[1].argmax(-1)
    ious = []
    for c in range(classes):
        inter = np.sum((pred == c) & (labels == c) & valid)
        union = np.sum(((pred == c) | (labels == c)) & valid)
        if union:
            ious.append(inter / union)
    np.testing.assert_allclose(results["task_mean_iou"], np.mean(ious), rtol=1e-5)


def test_classification_metrics_in_evaluate(rng):
    model = cascade(_restorer(), _classifier(classes=8), preprocessing="tf")
    x, clean = _images(rng, n=6)
    labels = rng.integers(0, 8, size=(6,))
    model.compile(
        loss=[MSE(), SCCE(from_logits=True)], metrics=[[], [TopKAccuracy(1), TopKAccuracy(5)]]
    )
    results = model.evaluate(x, [clean, labels], batch_size=3, verbose=0, return_dict=True)
    scores = model.predict(x, verbose=0)[1]
    rank = (scores > scores[np.arange(6), labels][:, None]).sum(
        -1
    )  # number of strictly better classes
    assert results["task_top1_accuracy"] == pytest.approx(np.mean(rank < 1))
    assert results["task_top5_accuracy"] == pytest.approx(np.mean(rank < 5))


def test_cross_task_swap(rng):
    restorer = _restorer()
    cls_model = cascade(restorer, _classifier())
    x, clean = _images(rng)
    cls_model.compile("adam", loss=[MSE(), SCCE(from_logits=True)], loss_weights=[1.0, 0.25])
    cls_model.fit(x, [clean, rng.integers(0, 5, size=(4,))], batch_size=2, verbose=0)
    seg_model = cascade(get_restorer(cls_model), _segmenter(), preprocessing="torch")
    np.testing.assert_array_equal(seg_model(x)[0].numpy(), cls_model(x)[0].numpy())
    assert {id(v) for v in seg_model.trainable_weights} == {
        id(v) for v in restorer.trainable_weights
    }


def test_multi_input_restorer_and_liu_valid(rng):
    x, clean = _images(rng, n=2)
    ffd = FFDNet(channels=3, depth=3, filters=8)
    model = cascade(ffd, _classifier(), preprocessing="caffe")
    outs = model([x, np.full((2, 1), 0.1, "float32")])
    assert outs[0].shape == (2, 16, 16, 3) and outs[1].shape == (2, 5)
    # Faithful valid-padded Liu denoiser, as in the released joint net (232 -> 226 -> crop
    # 2 at the end -> 224): here 24 px -> 18 px restored -> 16 px into the classifier.
    liu_model = cascade(LiuDenoiser(padding="valid"), _classifier(), task_crop=2)
    restored, logits = liu_model(np.zeros((1, 24, 24, 3), "float32"))
    assert restored.shape == (1, 18, 18, 3) and logits.shape == (1, 5)
    crop = liu_model.get_layer("task_crop")
    assert crop.cropping == ((0, 2), (0, 2))


# --------------------------------------------------------- perceptual features
def test_feature_layer_output_and_extractor(rng):
    keras.utils.set_random_seed(5)
    vgg = keras.applications.VGG16(weights=None, include_top=False, input_shape=(32, 32, 3))
    model = cascade(_restorer(), vgg, preprocessing="caffe", feature_layer="block3_conv3")
    assert model.output_names == ["restored", "task", "features"]
    x, _ = _images(rng, n=2, size=32)
    restored, task, feats = (o.numpy() for o in model(x))
    assert feats.shape == (2, 8, 8, 256)
    fx = task_feature_extractor(vgg, "block3_conv3", preprocessing="caffe")
    np.testing.assert_allclose(fx(restored).numpy(), feats, rtol=1e-5, atol=1e-4)
    relu3_3 = keras.Model(vgg.input, vgg.get_layer("block3_conv3").output)
    ref = relu3_3(keras.applications.vgg16.preprocess_input(255.0 * restored)).numpy()
    np.testing.assert_allclose(feats, ref, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(
        task,
        vgg(keras.applications.vgg16.preprocess_input(255.0 * restored)).numpy(),
        rtol=1e-4,
        atol=1e-3,
    )
    with pytest.raises(ValueError, match="not a layer of.*block3_conv3"):
        cascade(_restorer(), vgg, feature_layer="relu3_3x")


def test_perceptual_loss_on_the_restored_output(rng):
    """The paper's joint loss with PerceptualLoss: L_D + 0.5 L_P (relu3_3) + 0.25 L_H."""
    keras.utils.set_random_seed(6)
    vgg = keras.applications.VGG16(weights=None, include_top=False, input_shape=(32, 32, 3))
    fx = task_feature_extractor(vgg, "block3_conv3", preprocessing="caffe")
    x, clean = _images(rng, n=2, size=32)

    # L_P through the task network's own relu3_3 equals the NumPy feature distance.
    lp = PerceptualLoss(
        feature_extractor=fx, criterion="mse", channel_reduction="sum", reduction=None
    )
    fa, fb = fx(clean).numpy().astype(np.float64), fx(x).numpy().astype(np.float64)
    np.testing.assert_allclose(
        lp(clean, x).numpy(), ((fb - fa) ** 2).sum(-1).mean((1, 2)), rtol=1e-4
    )

    clf = keras.Sequential([vgg, keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)])
    model = cascade(_restorer(), clf, preprocessing="caffe")
    vgg_before = _snapshot(vgg)
    model.compile(
        optimizer="adam",
        loss=[MSE() + 0.5 * PerceptualLoss(weights=None), SCCE(from_logits=True)],
        loss_weights=[1.0, 0.25],
    )
    history = model.fit(x, [clean, rng.integers(0, 3, size=(2,))], batch_size=2, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    for before, after in zip(vgg_before, _snapshot(vgg)):
        np.testing.assert_array_equal(before, after)


# ---------------------------------------------------------------- distribution
@pytest.mark.slow
def test_fit_under_mirrored_strategy(strategy, rng):
    with strategy.scope():
        restorer, clf = _restorer(), _classifier()
        model = cascade(restorer, clf)
        model.compile("adam", loss=[MSE(), SCCE(from_logits=True)], loss_weights=[1.0, 0.25])
    before = _snapshot(clf)
    x, clean = _images(rng)
    model.fit(x, [clean, rng.integers(0, 5, size=(4,))], batch_size=4, verbose=0)
    for a, b in zip(before, _snapshot(clf)):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------ bad inputs
def test_bad_arguments():
    with pytest.raises(ValueError, match="2 outputs"):
        cascade(
            UNet(filters=4, levels=1, blocks_per_level=0, scales=2, return_all_scales=True),
            _classifier(),
        )
    with pytest.raises(ValueError, match="`preprocessing` must be one of"):
        cascade(_restorer(), _classifier(), preprocessing="bgr")
    with pytest.raises(TypeError, match="keras.Model"):
        cascade(lambda x: x, _classifier())
    with pytest.raises(ValueError, match="needs RGB images"):
        cascade(DnCNN(channels=1, depth=3, filters=4), _classifier(), preprocessing="caffe")
    with pytest.raises(TypeError, match="preprocessing"):
        cascade(_restorer(), _classifier(), preprocessing=lambda x: x)
    fixed = keras.Sequential(
        [keras.Input((8, 8, 3)), keras.layers.Flatten(), keras.layers.Dense(2)]
    )
    with pytest.raises(ValueError, match="height differ.*task_crop"):
        cascade(LiuDenoiser(padding="valid"), fixed).predict(
            np.zeros((1, 12, 12, 3), "float32"), verbose=0
        )
    liu16 = keras.Model(*(lambda i: (i, LiuDenoiser(padding="valid")(i)))(keras.Input((16, 16, 3))))
    with pytest.raises(ValueError, match="height differ"):
        cascade(liu16, fixed)
    assert cascade(liu16, fixed, task_crop=((1, 1), (1, 1))).output_names == ["restored", "task"]


def _segmentation_cascade(**kwargs):
    return cascade(_restorer(), _segmenter(), **kwargs)


class CascadeTest(TestCase):
    def test_model(self):
        # The segmenter takes any size, so the cascade does; only the restorer trains.
        self.run_model_test(
            _segmentation_cascade, {"preprocessing": "caffe"}, (2, 16, 16, 3),
            output_shape=lambda s: [tuple(s), (*s[:3], 4)],
        )

    def test_roundtrip(self):
        x, _ = _images(self.rng, n=2)
        model = cascade(_restorer(), _classifier(), preprocessing="torch")
        loaded = self.run_model_saving_test(model, x)
        self.assertEqual(loaded.output_names, ["restored", "task"])
        self.assertEqual(
            {id(v) for v in loaded.trainable_weights},
            {id(v) for v in get_restorer(loaded).trainable_weights},
        )

    def test_roundtrip_with_features(self):
        model = cascade(_restorer(), _classifier(), feature_layer="relu")
        loaded = self.run_model_saving_test(model, _images(self.rng, n=2)[0])
        self.assertEqual(loaded.output_names, ["restored", "task", "features"])
