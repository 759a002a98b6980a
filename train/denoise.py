#!/usr/bin/env python
"""Train a denoiser (DnCNN, FFDNet, LiuDenoiser) on synthetic Gaussian noise.

With no arguments this runs the README demo, train/configs/denoise_demo.yaml: a small DnCNN
trained for about two minutes on 2 CPU cores on the photographs embedded in scikit-image; it
prints PSNR/SSIM of noisy vs restored held-out images and writes a before/after grid and a
loss curve.

Usage: python train/denoise.py [--config train/configs/denoise_demo.yaml] [--set key=value ...]
(same as `tfrestore train denoise --config ...`; --help lists every option).
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
try:
    import tfrestore  # noqa: F401
except ImportError:  # running from a source checkout without installing
    sys.path.insert(0, os.path.dirname(HERE))

from tfrestore.training.script import script_main  # noqa: E402

DEFAULT_CONFIG = os.path.join(HERE, "configs", "denoise_demo.yaml")


def main(argv=None):
    return script_main("denoise", argv, default_config=DEFAULT_CONFIG, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
