"""tfrestore losses: every loss is a ``keras.losses.Loss`` returning per-sample values.

Combine on one output as a list, ``model.compile(loss=[L1(), D2SMLoss()], loss_weights=[1, 0.1])``
(tfrestore models; any functional Keras model after ``model = enable_loss_terms(model)``),
or with ``+`` / ``*``:
``model.compile(loss=L1() + 0.1 * D2SMLoss())``. Each term is logged as its own metric.
:func:`gradient_ratios` tells how hard each term pulls relative to the pixel term
before training (to choose the weights).
"""

from tfrestore.losses._counter import OutsideScopeError
from tfrestore.losses.base import ListOfLossesError, RestorationLoss, WeightedSum
from tfrestore.losses.contextual import ContextualLoss
from tfrestore.losses.d2sm import D2SMLoss
from tfrestore.losses.diffloss import DiffLoss
from tfrestore.losses.gradient_ratio import format_gradient_ratios, gradient_ratios, loss_terms
from tfrestore.losses.lpips import LPIPSLoss
from tfrestore.losses.pdl import PDLoss
from tfrestore.losses.perceptual import PerceptualLoss
from tfrestore.losses.pixel import L1, MSE, Charbonnier
from tfrestore.losses.ssim import MSSSIMLoss, SSIMLoss
from tfrestore.losses.terms import enable_loss_terms

__all__ = [
    "RestorationLoss",
    "WeightedSum",
    "ListOfLossesError",
    "OutsideScopeError",
    "L1",
    "MSE",
    "Charbonnier",
    "PerceptualLoss",
    "PDLoss",
    "ContextualLoss",
    "LPIPSLoss",
    "D2SMLoss",
    "DiffLoss",
    "SSIMLoss",
    "MSSSIMLoss",
    "enable_loss_terms",
    "gradient_ratios",
    "format_gradient_ratios",
    "loss_terms",
]


_RENAMED = {"ProjectedDistributionLoss": "PDLoss"}


def __getattr__(name):
    if name in _RENAMED:
        raise AttributeError(
            f"tfrestore.losses.{name} was renamed {_RENAMED[name]}: use "
            f"tfrestore.losses.{_RENAMED[name]}"
        )
    raise AttributeError(f"module 'tfrestore.losses' has no attribute {name!r}")
