"""What every feature-space loss shares: its :class:`FeatureSource`, the size
check, the config entries, and saving a user's Keras-model ``feature_extractor``.

A user's Keras model/layer is rebuilt from its Keras config when a saved model is
loaded, i.e. with freshly initialised weights: the loss would silently change (and
a D2SM queue would hold features of the old network). The loss therefore writes
the extractor's variables into its own weight store (``save_own_variables``) and
reads them back (``load_own_variables``); a loss rebuilt without them warns on
first use. The storage itself is :class:`tfrestore.features.feature_source.FeatureSource`'s.
"""

from __future__ import annotations

import inspect

from tfrestore.features.feature_source import FeatureSource, upgrade_layers_config
from tfrestore.utils import validation

__all__ = ["FeatureLossMixin"]


class FeatureLossMixin:
    """Put it before ``RestorationLoss`` in the bases, call :meth:`_init_features`
    in ``__init__`` and list the loss's other arguments in ``_config_attrs``. Its ``validate`` adds the backbone's minimum input size check
    and the warning about a user extractor rebuilt without its weights."""

    def _init_features(self, layers, backbone, weights, preprocessing, feature_extractor,
                       default_layers, rank=4, layer_weights=None):
        self._source = FeatureSource(
            layers, backbone, weights, feature_extractor, owner=self.name,
            preprocessing=preprocessing, default_layers=default_layers, rank=rank,
            layer_weights=layer_weights,
        )
        # ``layers``: the names tapped (None: every output of a user extractor);
        # ``layer_weights``: {name: weight} of every tapped layer (1.0 unless given).
        source_layers = self._source.layers
        self.layers = None if source_layers is None else list(source_layers)
        self.layer_weights = None if source_layers is None else dict(source_layers)
        self.backbone, self.weights = self._source.backbone, self._source.weights
        self.preprocessing = self._source.preprocessing
        if self._source.custom:
            self.data_range = None  # a custom extractor defines its own input domain
        else:
            self.expected_channels = 3

    def validate(self, y_true, y_pred):
        y_true, y_pred = super().validate(y_true, y_pred)
        size = self._source.min_size
        if size > 1:
            for x, arg in ((y_pred, "y_pred"), (y_true, "y_true")):
                validation.check_min_size(x, size, size, arg, self._source.describe(), self.name)
        self._check_fresh_extractor()
        return y_true, y_pred

    #: the loss's own constructor arguments, stored as attributes of the same name
    _config_attrs = ()

    def get_config(self):
        return {
            **super().get_config(),
            **self._source.config(),
            **{name: getattr(self, name) for name in self._config_attrs},
        }

    def save_own_variables(self, store):
        self._source.save_extractor_weights(store)

    def load_own_variables(self, store):
        if self._source.load_extractor_weights(store):
            self._fresh_extractor = False

    @classmethod
    def from_config(cls, config):
        # Saved when `layers` held {name: weight}: today `layers` + `layer_weights`.
        takes = "layer_weights" in inspect.signature(cls.__init__).parameters
        loss = super().from_config(upgrade_layers_config(config, takes))
        # Fresh weights until load_own_variables restores the saved ones.
        loss._fresh_extractor = loss._source.saved_extractor() is not None
        return loss

    def _check_fresh_extractor(self):
        if getattr(self, "_fresh_extractor", False):
            self._fresh_extractor = False
            self._source.warn_fresh_extractor()
