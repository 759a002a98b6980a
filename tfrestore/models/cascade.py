"""Restorer + frozen high-level network cascade (Liu et al., TIP 2020, Fig. 2).

``cascade(restorer, task_model)`` builds one functional model with outputs
``[restored, task_logits]``. Only the restorer is trained: the task network is
frozen (``trainable=False``) and always run with ``training=False`` (no dropout,
BatchNorm on moving statistics, which are never updated), while gradients of
the task loss flow through it into the restorer. The joint loss of the paper,
``L = L_D + lambda_P L_P + lambda_H L_H``, is then the idiomatic Keras call::

    model = cascade(LiuDenoiser("same"), keras.applications.VGG16(), preprocess="caffe")
    model.compile(
        optimizer="adam",
        loss=[MSE() + 0.5 * PerceptualLoss(...),
              keras.losses.SparseCategoricalCrossentropy(from_logits=False)],
        loss_weights=[1.0, 0.25],   # segmentation: ignore_class=255, weights [1.0, 0.5]
    )
    model.fit(noisy, [clean, labels])

(Keras Applications classifiers end in a softmax: use ``from_logits=False`` for
them, ``from_logits=True`` for networks returning logits.)

The released code differs from the paper (no L_P, Caffe loss weights; see the
reference spec, section 2.4); this module follows the paper. The frozen task
network runs without dropout (``training=False``), whereas Caffe's TRAIN phase
kept dropout active in fc6/fc7: a deliberate deviation.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tfrestore.utils.hidden import Hidden

__all__ = [
    "TaskPreprocess",
    "FrozenTask",
    "cascade",
    "get_restorer",
    "task_feature_extractor",
    "PREPROCESS_MODES",
]

#: mode -> description; inputs are RGB images in [0, 1].
PREPROCESS_MODES = {
    "caffe": "x*255, RGB->BGR, minus ImageNet BGR mean (Keras VGG16/19, ResNet50/101/152 v1; Caffe models)",
    "torch": "(x - ImageNet mean) / ImageNet std, RGB (torchvision, DenseNet)",
    "tf": "x*2 - 1 (Keras MobileNet, Inception, Xception, ResNetV2)",
    "scale255": "x*255 (Keras EfficientNet/ConvNeXt, which normalise internally)",
    "identity": "unchanged [0, 1] input",
}
_CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)


@keras.saving.register_keras_serializable(package="tfrestore")
class TaskPreprocess(keras.layers.Layer):
    """Map RGB images in [0, 1] to a task network's input domain.

    Modes: see :data:`PREPROCESS_MODES`. ``"caffe"`` equals
    ``keras.applications.vgg16.preprocess_input(255 * x)``.

    >>> import numpy as np
    >>> x = np.full((1, 1, 1, 3), [1.0, 0.5, 0.0], "float32")  # RGB
    >>> TaskPreprocess("caffe")(x).numpy().round(3).tolist()
    [[[[-103.939, 10.721, 131.32]]]]
    """

    def __init__(self, mode="caffe", **kwargs):
        super().__init__(**kwargs)
        if mode not in PREPROCESS_MODES:
            raise ValueError(
                f"`preprocess` must be one of {sorted(PREPROCESS_MODES)} (or a keras Layer), got {mode!r}."
            )
        self.mode = mode

    def call(self, x):
        if self.mode in ("caffe", "torch") and x.shape[-1] is not None and x.shape[-1] != 3:
            raise ValueError(
                f"TaskPreprocess({self.mode!r}) needs RGB images (3 channels), got shape "
                f"{tuple(x.shape)}; for grey restorers pass a custom preprocessing layer "
                f"(e.g. one that tiles the channel) as `preprocess=`."
            )
        dtype = x.dtype
        if self.mode == "caffe":
            return x[..., ::-1] * tf.constant(255.0, dtype) - tf.constant(_CAFFE_BGR_MEAN, dtype)
        if self.mode == "torch":
            return (x - tf.constant(_TORCH_MEAN, dtype)) / tf.constant(_TORCH_STD, dtype)
        if self.mode == "tf":
            return x * tf.constant(2.0, dtype) - tf.constant(1.0, dtype)
        if self.mode == "scale255":
            return x * tf.constant(255.0, dtype)
        return x

    def compute_output_shape(self, s):
        return s

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


def _preprocess_layer(preprocess):
    if preprocess is None:
        return TaskPreprocess("identity")
    if isinstance(preprocess, str):
        return TaskPreprocess(preprocess)
    if isinstance(preprocess, dict):
        return keras.saving.deserialize_keras_object(preprocess)
    if isinstance(preprocess, keras.layers.Layer):
        return preprocess
    raise TypeError(
        "`preprocess` must be a mode name "
        f"{sorted(PREPROCESS_MODES)}, None, or a keras Layer (serializable), got "
        f"{type(preprocess).__name__}; wrap plain functions in a registered Layer."
    )


@keras.saving.register_keras_serializable(package="tfrestore")
class FrozenTask(keras.layers.Layer):
    """A frozen task network behind its input-domain conversion.

    ``call(images)`` returns ``task_model(preprocess(images), training=False)``
    (plus the activation of ``feature_layer`` when given, as a list). The layer
    and the wrapped model are non-trainable (this sets
    ``task_model.trainable = False`` on the model passed in); gradients still
    flow to ``images``.

    Args:
        task_model: a Keras model (functional/sequential for ``feature_layer``).
        preprocess: mode name (:data:`PREPROCESS_MODES`), None, or a Layer.
        feature_layer: name of a layer of ``task_model`` whose output is also
            returned (e.g. ``"block3_conv3"`` = VGG relu3_3).
        outputs: "task", "features" or "both".
    """

    def __init__(self, task_model, preprocess="caffe", feature_layer=None, outputs="task", **kwargs):
        kwargs.pop("trainable", None)
        super().__init__(**kwargs)
        if isinstance(task_model, dict):
            task_model = keras.saving.deserialize_keras_object(task_model)
        if not isinstance(task_model, keras.layers.Layer):
            raise TypeError(f"`task_model` must be a Keras model, got {type(task_model).__name__}.")
        if outputs not in ("task", "features", "both"):
            raise ValueError(f"`outputs` must be 'task', 'features' or 'both', got {outputs!r}.")
        if outputs != "task" and feature_layer is None:
            raise ValueError(f"`outputs={outputs!r}` needs a `feature_layer`.")
        self.task_model = task_model
        self.preprocess = _preprocess_layer(preprocess)
        self.feature_layer = feature_layer
        self.outputs_mode = outputs
        self._tapped = None
        if feature_layer is not None:
            self._tapped = Hidden(_tap(task_model, feature_layer))
        self.trainable = False
        self.built = True

    def call(self, images):
        x = self.preprocess(images)
        if self._tapped is None:
            return self.task_model(x, training=False)
        logits, feats = self._tapped.value(x, training=False)
        return {"task": logits, "features": feats, "both": [logits, feats]}[self.outputs_mode]

    def compute_output_spec(self, images):
        x = self.preprocess.compute_output_spec(images)
        if self._tapped is None:
            return self.task_model.compute_output_spec(x)
        logits, feats = self._tapped.value.compute_output_spec(x)
        return {"task": logits, "features": feats, "both": [logits, feats]}[self.outputs_mode]

    def get_config(self):
        config = super().get_config()
        config.pop("trainable", None)
        return {
            **config,
            "task_model": keras.saving.serialize_keras_object(self.task_model),
            "preprocess": keras.saving.serialize_keras_object(self.preprocess),
            "feature_layer": self.feature_layer,
            "outputs": self.outputs_mode,
        }


def _tap(task_model, feature_layer):
    try:
        layer = task_model.get_layer(feature_layer)
        inputs, outputs = task_model.inputs, task_model.outputs
    except (ValueError, AttributeError) as exc:
        names = [l.name for l in getattr(task_model, "layers", [])]
        raise ValueError(
            f"`feature_layer={feature_layer!r}` is not a layer of {task_model.name!r}; "
            f"valid names: {names}."
        ) from exc
    if len(outputs) != 1:
        raise ValueError(f"The task model must have a single output, got {len(outputs)}.")
    return keras.Model(inputs, [outputs[0], layer.output], name=f"{task_model.name}_tapped")


def _single_image_output(restorer):
    outs = restorer.outputs
    if len(outs) != 1:
        raise ValueError(
            f"The restorer {restorer.name!r} has {len(outs)} outputs; cascade needs one restored "
            "image (e.g. build UNet with return_all_scales=False)."
        )
    if len(outs[0].shape) != 4:
        raise ValueError(
            f"The restorer's output must be an NHWC image batch, got shape {tuple(outs[0].shape)}."
        )


def cascade(restorer, task_model, preprocess="caffe", feature_layer=None, name="cascade"):
    """Build the cascade ``inputs -> [restored, task_logits]`` with a frozen task network.

    Args:
        restorer: a Keras model producing RGB images in [0, 1] (trained).
            Multi-input restorers (e.g. non-blind :func:`FFDNet`) keep their
            inputs. The model is shared, not copied: training the cascade trains
            ``restorer`` itself, so ``cascade(trained_restorer, other_task_net)``
            evaluates it through another task network (cross-task, paper Tables
            IV-V).
        task_model: a frozen classifier (e.g. ``keras.applications.VGG16()``
            with its top, ``ResNet101``) or a dense segmenter returning
            per-pixel logits/probabilities. It is set non-trainable.
        preprocess: the task network's input domain (see
            :data:`PREPROCESS_MODES`; "caffe" for Keras VGG/ResNet v1), None
            for [0, 1] input, or a serializable Layer.
        feature_layer: optional layer name of ``task_model`` (e.g.
            ``"block3_conv3"``, VGG relu3_3); adds a third output with its
            activation on the restored image. To compare it with the clean
            image's features inside a loss, use :func:`task_feature_extractor`.
        name: model name.

    Returns:
        A functional model with outputs named ``"restored"`` and ``"task"`` (and
        ``"features"``).

    >>> import numpy as np, keras
    >>> from tfrestore.models import DnCNN, cascade
    >>> clf = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.GlobalAveragePooling2D(),
    ...                         keras.layers.Dense(5)])
    >>> model = cascade(DnCNN(depth=3, filters=4, channels=3), clf, preprocess="torch")
    >>> [tuple(o.shape) for o in model(np.zeros((2, 16, 16, 3), "float32"))]
    [(2, 16, 16, 3), (2, 5)]
    >>> model.output_names, len(clf.trainable_weights)
    (['restored', 'task'], 0)
    """
    if not isinstance(restorer, keras.Model):
        raise TypeError(f"`restorer` must be a keras.Model, got {type(restorer).__name__}.")
    _single_image_output(restorer)
    inputs = [
        keras.Input(batch_shape=t.shape, dtype=t.dtype, name=t.name.split(":")[0] if t.name else None)
        for t in restorer.inputs
    ]
    restored = restorer(inputs if len(inputs) > 1 else inputs[0])
    restored = keras.layers.Identity(name="restored")(restored)
    if feature_layer is None:
        task = FrozenTask(task_model, preprocess, name="frozen_task")(restored)
        outputs = [restored, keras.layers.Identity(name="task")(task)]
    else:
        frozen = FrozenTask(task_model, preprocess, feature_layer, outputs="both", name="frozen_task")
        task, feats = frozen(restored)
        outputs = [
            restored,
            keras.layers.Identity(name="task")(task),
            keras.layers.Identity(name="features")(feats),
        ]
    return keras.Model(inputs if len(inputs) > 1 else inputs[0], outputs, name=name)


def get_restorer(cascade_model):
    """The restorer inside a model built by :func:`cascade` (also after loading).

    >>> import keras
    >>> from tfrestore.models import DnCNN, cascade, get_restorer
    >>> r = DnCNN(depth=3, filters=4, channels=3)
    >>> clf = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(), keras.layers.Dense(2)])
    >>> get_restorer(cascade(r, clf)) is r
    True
    """
    models = [l for l in cascade_model.layers if isinstance(l, keras.Model)]
    if len(models) != 1:
        raise ValueError(
            f"{cascade_model.name!r} does not look like a cascade: expected exactly one nested "
            f"restorer model, found {[m.name for m in models]}."
        )
    return models[0]


def task_feature_extractor(task_model, feature_layer, preprocess="caffe", name=None):
    """A frozen model ``RGB [0, 1] -> activation of feature_layer`` of a task network.

    This is the perceptual feature phi of Liu et al. (relu3_3 of the task
    network itself, e.g. ``"block3_conv3"`` for Keras VGG16), usable as a
    perceptual loss's ``feature_extractor`` or to compute feature targets.

    >>> import numpy as np, keras
    >>> from tfrestore.models import task_feature_extractor
    >>> vgg = keras.applications.VGG16(weights=None, include_top=False, input_shape=(32, 32, 3))
    >>> fx = task_feature_extractor(vgg, "block3_conv3")
    >>> fx(np.zeros((1, 32, 32, 3), "float32")).shape
    TensorShape([1, 8, 8, 256])
    """
    shape = task_model.inputs[0].shape[1:] if getattr(task_model, "inputs", None) else (None, None, 3)
    inp = keras.Input(shape)
    feats = FrozenTask(task_model, preprocess, feature_layer, outputs="features", name="frozen_features")(inp)
    return keras.Model(inp, feats, name=name or f"{task_model.name}_{feature_layer}")
