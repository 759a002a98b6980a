"""ResNet50 / ResNet101 from ``keras.applications`` (v1, Caffe-style weights).

Taps use the Keras layer names (``conv1_relu``, ``pool1_pool``,
``conv{stage}_block{k}_out``, or any inner layer such as ``conv4_block3_2_relu``).
Only Keras weights are supported (torchvision's ResNets put the stride on a
different convolution, so their weights do not fit this graph).

>>> from tfrestore.features.resnet import stage_outputs
>>> stage_outputs("resnet50")[2:]
['conv2_block3_out', 'conv3_block4_out', 'conv4_block6_out', 'conv5_block3_out']
"""

from __future__ import annotations

import keras
import numpy as np

from tfrestore.features import sources
from tfrestore.features.backbone import BackboneSpec

__all__ = ["build_resnet", "stage_outputs", "RESNET50", "RESNET101"]

_BLOCKS = {"resnet50": (3, 4, 6, 3), "resnet101": (3, 4, 23, 3)}
# md5 of the official notop files (keras.applications.resnet.WEIGHTS_HASHES)
_NOTOP_MD5 = {
    "resnet50": "4d473c1dd8becc155b73f8504c6f6626",
    "resnet101": "88cf7a10940856eca736dc7b7e228a21",
}
_BASE = "https://storage.googleapis.com/tensorflow/keras-applications/resnet"


def stage_outputs(name):
    """The usual taps: stem, pool and the last block of each stage."""
    return ["conv1_relu", "pool1_pool"] + [
        f"conv{stage}_block{n}_out" for stage, n in zip((2, 3, 4, 5), _BLOCKS[name])
    ]


def build_resnet(name):
    app = keras.applications.ResNet50 if name == "resnet50" else keras.applications.ResNet101
    return app(weights=None, include_top=False, input_shape=(None, None, 3))


def _random_init(model, seed=0):
    """Seeded He-normal convolutions; the last BatchNorm of every residual branch
    starts at ``gamma = 0.2`` so that activations stay O(1) through 33 blocks
    (plain He init doubles the variance at every residual addition and overflows
    float16 in ResNet101)."""
    from tfrestore.features.backbone import seeded_init

    seeded_init(model, seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization) and layer.name.endswith("_3_bn"):
            layer.gamma.assign(np.full(layer.gamma.shape, 0.2, "float32"))


def _spec(name):
    filename = f"{name}_weights_tf_dim_ordering_tf_kernels_notop.h5"
    return BackboneSpec(
        name=name,
        build=lambda: build_resnet(name),
        loaders={
            sources.KERAS_FORMAT: lambda model, path: sources.load_keras_weights(
                model, path, name, "ResNet50" if name == "resnet50" else "ResNet101"
            )
        },
        known_weights={
            "imagenet": sources.KnownWeights(
                format=sources.KERAS_FORMAT,
                filename=filename,
                origin=f"{_BASE}/{filename}",
                file_hash=_NOTOP_MD5[name],
                hash_algorithm="md5",
                description=f"Keras ImageNet {name} weights ({filename})",
            )
        },
        main_layers=lambda model: stage_outputs(name),
        random_init=_random_init,
    )


RESNET50 = _spec("resnet50")
RESNET101 = _spec("resnet101")
