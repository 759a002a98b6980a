"""Restorer + frozen high-level network cascade (Liu et al., TIP 2020, Fig. 2).

``cascade(restorer, task_model)`` builds one functional model with outputs
``[restored, task_logits]``. Only the restorer is trained: the task network is
frozen (``trainable=False``) and always run with ``training=False`` (no dropout,
BatchNorm on moving statistics, which are never updated), while gradients of
the task loss flow through it into the restorer. The joint loss of the paper,
``L = L_D + lambda_P L_P + lambda_H L_H``, is then the idiomatic Keras call::

    vgg = keras.applications.VGG16()                      # with its top, "caffe" domain
    # 232 px noisy -> 226 px restored -> cropped to 224 for VGG16 (as in the released code)
    model = cascade(LiuDenoiser(padding="valid"), vgg, preprocessing="caffe", task_crop=2)
    relu3_3 = task_feature_extractor(vgg, "block3_conv3")  # phi = the task net's own relu3_3
    model.compile(
        optimizer="adam",
        loss=[MSE() + 0.5 * PerceptualLoss(feature_extractor=relu3_3, criterion="mse",
                                           channel_reduction="sum"),
              keras.losses.SparseCategoricalCrossentropy()],   # VGG16 ends in a softmax
        loss_weights=[1.0, 0.25],
    )
    model.fit(noisy_232px, [keras.layers.Cropping2D(3)(clean_232px), labels])

For segmentation use a network returning per-pixel logits at the label
resolution, ``SparseCategoricalCrossentropy(from_logits=True, ignore_class=255)``
(Keras averages over the non-ignored pixels only, checked against NumPy in the
tests) and ``loss_weights=[1.0, 0.5]``; report
:class:`tfrestore.metrics.SegmentationMeanIoU` / :class:`tfrestore.metrics.TopKAccuracy`
on the ``"task"`` output. ``PerceptualLoss(backbone="vgg16", weights="imagenet")``
is the same relu3_3 when the task net is Keras's ImageNet VGG16.

The released code differs from the paper (no L_P, Caffe loss weights; see the
reference spec, section 2.4); this module follows the paper. The frozen task
network runs without dropout (``training=False``), whereas Caffe's TRAIN phase
kept dropout active in fc6/fc7: a deliberate deviation.
"""

from __future__ import annotations

import keras

from tfrestore.models.base import RestorationModel
from tfrestore.models.layers import output_dtype
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

#: mode -> description; inputs are RGB images in [0, 1]. ``"caffe"``, ``"torch"`` and
#: ``"none"`` are the feature extractors' ``preprocessing`` values
#: (:mod:`tfrestore.features.preprocessing`); ``"tf"`` and ``"scale255"`` are the other
#: modes of Keras' ``preprocess_input``, for task networks only.
PREPROCESS_MODES = {
    "caffe": "x*255, RGB->BGR, minus ImageNet BGR mean (Keras VGG16/19, ResNet v1; Caffe models)",
    "torch": "(x - ImageNet mean) / ImageNet std, RGB (torchvision, DenseNet)",
    "tf": "x*2 - 1 (Keras MobileNet, Inception, Xception, ResNetV2)",
    "scale255": "x*255 (Keras EfficientNet/ConvNeXt, which normalise internally)",
    "none": "unchanged [0, 1] input",
}
#: Former spellings of a mode (configs saved with them still load).
_RENAMED_MODES = {"identity": "none"}
_CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)


@keras.saving.register_keras_serializable(package="tfrestore")
class TaskPreprocess(keras.layers.Layer):
    """Map RGB images in [0, 1] to a task network's input domain.

    Modes: see :data:`PREPROCESS_MODES`; ``mode`` as in Keras' ``preprocess_input``.
    ``"caffe"`` equals ``keras.applications.vgg16.preprocess_input(255 * x)``;
    ``"none"`` (formerly ``"identity"``, which raises ``ValueError``; layers saved with
    it still load) passes the image through.

    >>> import numpy as np
    >>> x = np.full((1, 1, 1, 3), [1.0, 0.5, 0.0], "float32")  # RGB
    >>> TaskPreprocess("caffe")(x).numpy().round(3).tolist()
    [[[[-103.939, 10.721, 131.32]]]]
    """

    def __init__(self, mode="caffe", **kwargs):
        super().__init__(**kwargs)
        _check_mode(mode, "mode", "TaskPreprocess")
        self.mode = mode

    @classmethod
    def from_config(cls, config):
        # layers saved before the rename store the identity as "identity"
        config = dict(config)
        config["mode"] = _RENAMED_MODES.get(config.get("mode"), config.get("mode", "caffe"))
        return cls(**config)

    def _check(self, shape):
        if self.mode in ("caffe", "torch") and shape[-1] is not None and shape[-1] != 3:
            raise ValueError(
                f"TaskPreprocess({self.mode!r}) needs RGB images (3 channels), got shape "
                f"{tuple(shape)}; for grey restorers pass a custom preprocessing layer "
                f"(e.g. one that tiles the channel) as `preprocessing=`."
            )

    def call(self, x):
        self._check(x.shape)
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
        self._check(s)
        return s

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


def _check_mode(mode, arg, owner=None):
    prefix = f"{owner}: " if owner else ""
    if mode in _RENAMED_MODES:
        raise ValueError(
            f"{prefix}`{arg}={mode!r}` was renamed {_RENAMED_MODES[mode]!r} (one vocabulary "
            f"with the feature extractors' `preprocessing`)."
        )
    if mode not in PREPROCESS_MODES:
        extra = " (or None, or a keras Layer)" if arg == "preprocessing" else ""
        raise ValueError(
            f"{prefix}`{arg}` must be one of {sorted(PREPROCESS_MODES)}{extra}, got {mode!r}."
        )


def _preprocessing_layer(preprocessing):
    if preprocessing is None:
        return TaskPreprocess("none")
    if isinstance(preprocessing, str):
        _check_mode(preprocessing, "preprocessing")
        return TaskPreprocess(preprocessing)
    if isinstance(preprocessing, dict):
        return keras.saving.deserialize_keras_object(preprocessing)
    if isinstance(preprocessing, keras.layers.Layer):
        return preprocessing
    raise TypeError(
        "`preprocessing` must be a mode name "
        f"{sorted(PREPROCESS_MODES)}, None, or a keras Layer (serializable), got "
        f"{type(preprocessing).__name__}; wrap plain functions in a registered Layer."
    )


@keras.saving.register_keras_serializable(package="tfrestore")
class FrozenTask(keras.layers.Layer):
    """A frozen task network behind its input-domain conversion.

    ``call(images)`` returns ``task_model(preprocessing(images), training=False)``
    (plus the activation of ``feature_layer`` when given, as a list). The layer
    and the wrapped model are non-trainable (this sets
    ``task_model.trainable = False`` on the model passed in); gradients still
    flow to ``images``.

    Args:
        task_model: a Keras model (functional/sequential for ``feature_layer``).
        preprocessing: str, None or keras.layers.Layer. A mode name of
            :data:`PREPROCESS_MODES` (``"caffe"``, ``"torch"``, ``"tf"``,
            ``"scale255"``, ``"none"``); None means ``"none"`` (no ``weights``
            here imply a normalisation).
        feature_layer: str or None. A layer of ``task_model`` whose output is
            also returned (e.g. ``"block3_conv3"`` = VGG relu3_3).
        outputs: str. One of "task", "features" or "both".
    """

    def __init__(
        self, task_model, preprocessing="caffe", feature_layer=None, outputs="task", **kwargs
    ):
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
        self.preprocessing = _preprocessing_layer(preprocessing)
        self.feature_layer = feature_layer
        self.outputs_mode = outputs
        self._tapped = None
        if feature_layer is not None:
            self._tapped = Hidden(_tap(task_model, feature_layer))
        self.trainable = False
        self.built = True

    def call(self, images):
        _check_task_input(self.task_model, images)  # sizes unknown when the cascade was built
        x = self.preprocessing(images)
        if self._tapped is None:
            return self.task_model(x, training=False)
        logits, feats = self._tapped.value(x, training=False)
        return {"task": logits, "features": feats, "both": [logits, feats]}[self.outputs_mode]

    def compute_output_spec(self, images):
        x = self.preprocessing.compute_output_spec(images)
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
            "preprocessing": keras.saving.serialize_keras_object(self.preprocessing),
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


def _check_task_input(task_model, images):
    inputs = getattr(task_model, "inputs", None)
    if not inputs:
        return
    want, got = tuple(inputs[0].shape), tuple(images.shape)
    if len(want) != len(got):
        raise ValueError(
            f"The task network expects inputs of shape {want}, the restored images are {got}."
        )
    if want[-1] is not None and got[-1] is not None and want[-1] != got[-1]:
        raise ValueError(
            f"The task network {task_model.name!r} expects {want[-1]} input channels, the "
            f"restorer produces {got[-1]}; adapt them with a `preprocessing` layer."
        )
    for axis, what in ((1, "height"), (2, "width")):
        if want[axis] is not None and got[axis] is not None and want[axis] != got[axis]:
            raise ValueError(
                f"The task network {task_model.name!r} expects inputs of shape {want} but the "
                f"restored images (after `task_crop`) are {got}: the {what} differ. Feed the "
                "restorer inputs of the right size, or use `task_crop`."
            )


def cascade(
    restorer, task_model, preprocessing="caffe", feature_layer=None, task_crop=None, name="cascade"
):
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
        preprocessing: str, None or keras.layers.Layer. The task network's input
            domain (:data:`PREPROCESS_MODES`; "caffe" for Keras VGG/ResNet v1);
            ``"none"`` or None for [0, 1] input; or a serializable Layer.
        task_crop: int, ((int, int), (int, int)) or None. Pixels removed from the
            restored image before the task network only (the ``restored``
            output keeps its size): an int ``n`` removes ``n`` rows/columns at the
            bottom/right, like the released code's ``Padding`` layer with
            ``pad_end=-n`` (the valid-padded :func:`LiuDenoiser` gives 226 px from
            232, cropped to 224 for VGG16; 321 for DeepLab from 328 with ``task_crop=1``); or
            ``((top, bottom), (left, right))`` as in ``keras.layers.Cropping2D``.
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
    >>> model = cascade(DnCNN(channels=3, depth=3, filters=4), clf, preprocessing="torch")
    >>> [tuple(o.shape) for o in model(np.zeros((2, 16, 16, 3), "float32"))]
    [(2, 16, 16, 3), (2, 5)]
    >>> model.output_names, len(clf.trainable_weights)
    (['restored', 'task'], 0)
    """
    if not isinstance(restorer, keras.Model):
        raise TypeError(f"`restorer` must be a keras.Model, got {type(restorer).__name__}.")
    _single_image_output(restorer)
    inputs = [
        keras.Input(
            batch_shape=t.shape, dtype=t.dtype, name=t.name.split(":")[0] if t.name else None
        )
        for t in restorer.inputs
    ]
    restored = restorer(inputs if len(inputs) > 1 else inputs[0])
    # Output identities return float32 under a mixed policy (Keras' practice: the losses see
    # float32), else keep their input's dtype (the global policy would recast them).
    restored = keras.layers.Identity(name="restored", dtype=output_dtype() or restored.dtype)(
        restored
    )
    task_input = restored
    if task_crop:
        if isinstance(task_crop, int):
            task_crop = ((0, task_crop), (0, task_crop))
        task_input = keras.layers.Cropping2D(task_crop, name="task_crop")(restored)
    if feature_layer is None:
        frozen = FrozenTask(task_model, preprocessing, name="frozen_task")
    else:
        frozen = FrozenTask(
            task_model, preprocessing, feature_layer, outputs="both", name="frozen_task"
        )
    frozen.preprocessing.compute_output_shape(tuple(task_input.shape))  # domain errors first
    _check_task_input(task_model, task_input)
    if feature_layer is None:
        task = frozen(task_input)
        task = keras.layers.Identity(name="task", dtype=output_dtype() or task.dtype)(task)
        outputs = [restored, task]
    else:
        task, feats = frozen(task_input)
        outputs = [
            restored,
            keras.layers.Identity(name="task", dtype=output_dtype() or task.dtype)(task),
            keras.layers.Identity(name="features", dtype=output_dtype() or feats.dtype)(feats),
        ]
    return RestorationModel(inputs if len(inputs) > 1 else inputs[0], outputs, name=name)


def get_restorer(cascade_model):
    """The restorer inside a model built by :func:`cascade` (also after loading).

    >>> import keras
    >>> from tfrestore.models import DnCNN, cascade, get_restorer
    >>> r = DnCNN(channels=3, depth=3, filters=4)
    >>> clf = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(),
    ...                         keras.layers.Dense(2)])
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


def task_feature_extractor(task_model, feature_layer, preprocessing="caffe", name=None):
    """A frozen model ``RGB [0, 1] -> activation of feature_layer`` of a task network.

    This is the perceptual feature phi of Liu et al. (relu3_3 of the task
    network itself, e.g. ``"block3_conv3"`` for Keras VGG16), usable as a
    perceptual loss's ``feature_extractor`` or to compute feature targets.
    ``preprocessing`` as in :func:`cascade` (None means ``"none"``).

    >>> import numpy as np, keras
    >>> from tfrestore.models import task_feature_extractor
    >>> vgg = keras.applications.VGG16(weights=None, include_top=False, input_shape=(32, 32, 3))
    >>> fx = task_feature_extractor(vgg, "block3_conv3")
    >>> fx(np.zeros((1, 32, 32, 3), "float32")).shape
    TensorShape([1, 8, 8, 256])
    """
    shape = (
        task_model.inputs[0].shape[1:] if getattr(task_model, "inputs", None) else (None, None, 3)
    )
    inp = keras.Input(shape)
    feats = FrozenTask(
        task_model, preprocessing, feature_layer, outputs="features", name="frozen_features"
    )(inp)
    return keras.Model(inp, feats, name=name or f"{task_model.name}_{feature_layer}")
