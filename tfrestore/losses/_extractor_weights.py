"""Saving a user's Keras-model ``feature_extractor`` with the loss that uses it.

Feature-space losses keep their network in a :class:`tfrestore.utils.Hidden` so
that Keras saving never writes the *built-in* backbones (they are rebuilt from
their ``weights`` argument). A user's own Keras model/layer, however, is rebuilt
from its Keras config when a saved model is loaded, i.e. with freshly initialised
weights: the loss would silently change (and a D2SM queue would hold features of
the old network). The owning loss therefore writes the extractor's variables
into its own weight store (``save_own_variables``) and reads them back
(``load_own_variables``); a loss rebuilt without them warns on first use.

Stored entries: ``extractor_count`` and ``extractor_<i>`` for the extractor's
``weights`` in order (trainable and non-trainable, e.g. BatchNorm statistics).
"""

from __future__ import annotations

import warnings

import keras
import numpy as np

__all__ = [
    "ExtractorWeightsMixin",
    "has_extractor_weights",
    "save_extractor_weights",
    "load_extractor_weights",
    "warn_fresh_extractor",
]

_COUNT = "extractor_count"


def has_extractor_weights(extractor):
    """True for a Keras layer/model holding variables (plain functions hold none)."""
    return isinstance(extractor, keras.layers.Layer) and bool(extractor.weights)


def save_extractor_weights(store, extractor):
    """Write the extractor's variables into ``store`` (no-op for non-Keras extractors)."""
    if not has_extractor_weights(extractor):
        return
    variables = extractor.weights
    for i, v in enumerate(variables):
        store[f"extractor_{i}"] = np.asarray(keras.ops.convert_to_numpy(v))
    store[_COUNT] = np.asarray(len(variables), np.int64)


def load_extractor_weights(store, extractor, owner):
    """Restore the extractor's variables from ``store``.

    Returns True when they were restored, False when ``store`` holds none (a file
    written before extractors were saved, or a visit without data). Raises a
    ``ValueError`` naming the fix when the saved variables do not fit.
    """
    if store is None or not has_extractor_weights(extractor) or _COUNT not in store:
        return False
    variables = extractor.weights
    count = int(np.asarray(store[_COUNT]))
    if count != len(variables):
        raise ValueError(
            f"{owner}: the file holds {count} variables of the feature_extractor, the "
            f"rebuilt extractor has {len(variables)}. Load it with the same extractor "
            f"architecture as when it was saved."
        )
    values = [np.asarray(store[f"extractor_{i}"]) for i in range(count)]
    for v, a in zip(variables, values):
        if tuple(v.shape) != a.shape:
            raise ValueError(
                f"{owner}: the saved feature_extractor variable {v.path!r} has shape "
                f"{a.shape}, the rebuilt extractor expects {tuple(v.shape)}. Load it with "
                f"the same extractor architecture as when it was saved."
            )
    for v, a in zip(variables, values):
        v.assign(a.astype(v.dtype))
    return True


def warn_fresh_extractor(owner, extractor):
    """Warn that a Keras-model extractor was rebuilt without its saved weights."""
    warnings.warn(
        f"{owner}: the Keras-model feature_extractor {extractor.name!r} was rebuilt from "
        f"its config and no saved weights were loaded into it, so it holds freshly "
        f"initialised weights and the loss differs from the one that was saved. Load a "
        f"file saved by this version of tfrestore (it stores the extractor's weights with "
        f"the loss), or build the loss again with your trained extractor "
        f"(feature_extractor=<model>) and compile with it.",
        UserWarning,
        stacklevel=3,
    )


class ExtractorWeightsMixin:
    """Gives a loss ``save_own_variables`` / ``load_own_variables`` for its user
    Keras-model extractor, and a warning on first use when it was rebuilt from a
    config without them. The loss defines ``_saved_extractor()`` (the user's
    extractor, or None for built-in backbones and plain functions) and calls
    ``_check_fresh_extractor()`` at the start of ``compute``.

    Put it before ``RestorationLoss`` in the bases.
    """

    def _saved_extractor(self):  # pragma: no cover - every user overrides it
        return None

    def save_own_variables(self, store):
        save_extractor_weights(store, self._saved_extractor())

    def load_own_variables(self, store):
        if load_extractor_weights(store, self._saved_extractor(), self.name):
            self._fresh_extractor = False

    @classmethod
    def from_config(cls, config):
        loss = super().from_config(config)
        loss._fresh_extractor = has_extractor_weights(loss._saved_extractor())
        return loss

    def _check_fresh_extractor(self):
        if getattr(self, "_fresh_extractor", False):
            self._fresh_extractor = False
            warn_fresh_extractor(self.name, self._saved_extractor())
