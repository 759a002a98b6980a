"""Freeze a network down to its TensorFlow variables.

``layer.trainable = False`` only flips a Keras flag: the ``tf.Variable`` under
each Keras variable was created ``trainable=True`` and stays so (the TF flag is
fixed at creation). A ``tf.GradientTape`` watches every trainable variable it
sees, so in eager mode (``run_eagerly=True``, custom training loops) a frozen
loss network is still recorded, including its no-gradient branch (the
``stop_gradient`` target). Peak memory of one eager tape step on CPU, Keras
flag only vs. frozen TF variables: DiffLoss (``adm_tiny``, 4x64x64) 2062 vs
1032 MB, PerceptualLoss (VGG16, 4x192x192) 488 vs 315 MB. Graph mode prunes
that work, eager mode cannot.

:func:`freeze` re-creates each TF variable with ``trainable=False`` (same value,
aggregation and synchronization; one variable at a time, so the peak is one
extra tensor). Gradients still flow through the network to its *input*.

Only call it on networks the library builds and owns (shared backbones, ADM
UNets): a user's model whose variables were re-created non-trainable could not
be fine-tuned later by setting ``trainable = True``.
"""

from __future__ import annotations

import tensorflow as tf

from tfrestore.utils import keras_compat

__all__ = ["freeze"]


def freeze(model):
    """Set ``model.trainable = False`` and make its TF variables non-trainable.

    Call it in the distribution-strategy scope the model was built in (the new
    variables are created there). Returns ``model``.
    """
    model.trainable = False
    for var in model.variables:
        var.trainable = False
        value = keras_compat.backing_variable(var)
        if not isinstance(value, tf.Variable) or not value.trainable:
            continue
        with tf.init_scope():
            keras_compat.set_backing_variable(var, tf.Variable(
                value, trainable=False, name=var.name,
                aggregation=value.aggregation, synchronization=value.synchronization,
            ))
    return model
