"""The Keras model class of tfrestore's networks.

:class:`RestorationModel` is a functional ``keras.Model`` whose ``compile`` reads
``loss=[L1(), D2SMLoss()]`` on one output as the weighted sum of the terms and logs each
term as a metric (:mod:`tfrestore.losses.terms`). It is registered, so a saved model loads
back as a ``RestorationModel`` and keeps that behaviour.

>>> import keras
>>> from tfrestore.models import RestorationModel
>>> inp = keras.Input((None, None, 3))
>>> model = RestorationModel(inp, keras.layers.Conv2D(3, 3, padding="same")(inp))
>>> from tfrestore.losses import L1, MSE
>>> model.compile(loss=[L1(), MSE()], loss_weights=[1.0, 0.1])
>>> model.loss
WeightedSum(1 * L1 + 0.1 * MSE)
"""

from __future__ import annotations

import keras

from tfrestore.losses.terms import LossTermsMixin

__all__ = ["RestorationModel"]


@keras.saving.register_keras_serializable(package="tfrestore")
class RestorationModel(LossTermsMixin, keras.Model):
    """A ``keras.Model`` (built functionally, ``RestorationModel(inputs, outputs)``) whose
    ``compile`` takes the list spelling of several losses on one output."""
