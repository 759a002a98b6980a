"""Helpers shared by the network tests."""

import keras
import numpy as np
import pytest


@pytest.fixture
def roundtrip(tmp_path):
    """Save ``model`` as ``.keras``, reload it, and check identical predictions on ``inputs``."""

    def check(model, inputs, atol=0.0):
        path = tmp_path / f"{model.name}.keras"
        model.save(path)
        loaded = keras.models.load_model(path)
        assert type(loaded) is type(model)
        assert loaded.count_params() == model.count_params()
        a = model.predict(inputs, verbose=0)
        b = loaded.predict(inputs, verbose=0)
        for x, y in zip(keras.tree.flatten(a), keras.tree.flatten(b)):
            np.testing.assert_allclose(x, y, atol=atol, rtol=0)
        return loaded

    return check
