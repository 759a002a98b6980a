"""tfrestore losses: every loss is a ``keras.losses.Loss`` returning per-sample values.

Combine with ``+`` / ``*``: ``model.compile(loss=L1() + 0.1 * D2SMLoss())``.
"""

from tfrestore.losses.base import ListOfLossesError, RestorationLoss, WeightedSum
from tfrestore.losses.pixel import L1, MSE, Charbonnier

__all__ = [
    "RestorationLoss",
    "WeightedSum",
    "ListOfLossesError",
    "L1",
    "MSE",
    "Charbonnier",
]
