"""Visualisation helpers (optional ``viz`` extra: matplotlib, scikit-learn).

* :func:`plot_feature_space` -- t-SNE scatter plot of backbone features of image
  sets (e.g. clean / noisy / restored), the space D2SM matches statistics in.
* Command line: ``tfrestore viz --images clean=DIR --sigma 0.1 --out map.png``
  (``--help`` lists the options).

matplotlib and scikit-learn are imported only when a function runs; without them
a :class:`MissingVizDependency` (an ``ImportError``) says what to install.
"""

from tfrestore.viz.feature_space import (
    MissingVizDependency,
    embed_features,
    plot_feature_space,
    sample_features,
)


__all__ = [
    "plot_feature_space",
    "embed_features",
    "sample_features",
    "MissingVizDependency",
]
