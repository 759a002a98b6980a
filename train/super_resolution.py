#!/usr/bin/env python
"""Train a super-resolution network (EDSR) on bicubic-downsampled images.

Usage: python train/super_resolution.py [--config train/configs/super_resolution.yaml]
       [--set key=value ...]
(same as `tfrestore train super_resolution --config ...`; --help lists every option).
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
try:
    import tfrestore  # noqa: F401
except ImportError:  # running from a source checkout without installing
    sys.path.insert(0, os.path.dirname(HERE))

from tfrestore.training.script import script_main  # noqa: E402

DEFAULT_CONFIG = os.path.join(HERE, "configs", "super_resolution.yaml")


def main(argv=None):
    return script_main("super_resolution", argv, default_config=DEFAULT_CONFIG, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
