"""Synthetic image degradations as pure TensorFlow ops, one module per family.

Every function takes an HWC image or an NHWC batch of float images in [0, 1] and an
explicit ``seed``: a shape-[2] integer tensor (or a Python int ``s``, meaning
``[s, 0]``) fed to ``tf.random.stateless_*`` ops, so the result depends only on
the inputs and the seed (identical run to run, usable inside ``tf.data.map`` and
``tf.function``). Random parameters given as a ``(low, high)`` pair are drawn per
image from ``U[low, high]``; a single number fixes them. With
``return_params=True`` a function also returns a dict of the parameters it drew.

Families (module: function, configurable class):

* ``noise``: ``add_gaussian_noise`` (fixed or blind sigma, sigma map for FFDNet), ``GaussianNoise``
* ``downsample``: ``BicubicDownsample`` over ``tfrestore.data.resize.bicubic_downsample``
  (MATLAB-exact)
* ``blur``: ``motion_kernel``, ``motion_blur``, ``MotionBlur``
* ``compression``: ``jpeg_compress``, ``JPEG``
* ``haze``: ``add_haze``, ``Haze``
* ``rain``: ``add_rain``, ``Rain``
* ``lowlight``: ``low_light``, ``LowLight``
* ``compose``: ``Compose`` (chains) and ``get_degradation``, which builds any of them from
  a config dict such as ``{"type": "gaussian_noise", "sigma": [0, 0.3]}``
* ``base``: ``as_seed``, the ``Degradation`` base class and ``Identity``

The dataset builders in ``tfrestore.data`` accept the classes. Only ``jpeg_compress``
runs on the CPU (TF has no GPU JPEG encoder); everything else is plain tensor math
that runs on any device.
"""

from tfrestore.data.degradations import (
    base,
    blur,
    compose,
    compression,
    downsample,
    haze,
    lowlight,
    noise,
    rain,
)
from tfrestore.data.degradations.base import *  # noqa: F403
from tfrestore.data.degradations.blur import *  # noqa: F403
from tfrestore.data.degradations.compose import *  # noqa: F403
from tfrestore.data.degradations.compression import *  # noqa: F403
from tfrestore.data.degradations.downsample import *  # noqa: F403
from tfrestore.data.degradations.haze import *  # noqa: F403
from tfrestore.data.degradations.lowlight import *  # noqa: F403
from tfrestore.data.degradations.noise import *  # noqa: F403
from tfrestore.data.degradations.rain import *  # noqa: F403

__all__ = [
    name
    for module in (base, noise, downsample, blur, compression, haze, rain, lowlight, compose)
    for name in module.__all__
]
