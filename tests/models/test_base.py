"""RestorationModel.fit on a tf.data dataset: no Keras warning about the ignored shuffle."""

import warnings

import numpy as np
import tensorflow as tf

from tfrestore.models import DnCNN


def _fit(model, **kwargs):
    x = np.random.default_rng(0).random((4, 8, 8, 1), np.float32)
    ds = tf.data.Dataset.from_tensor_slices((x, x)).batch(2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(ds, epochs=1, verbose=0, **kwargs)
    return [str(w.message) for w in caught if "shuffle" in str(w.message)]


def test_fit_on_a_dataset_does_not_warn_about_shuffle():
    model = DnCNN(channels=1, depth=2, filters=4, batch_norm=False)
    model.compile(optimizer="adam", loss="mse")
    assert _fit(model) == []
    # an explicit shuffle=True is the caller's choice: Keras' warning stays
    assert _fit(model, shuffle=True)
