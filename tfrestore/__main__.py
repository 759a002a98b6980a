"""``python -m tfrestore ...``: the ``tfrestore`` command line (see :mod:`tfrestore.cli`)."""

import sys

from tfrestore.cli import main

if __name__ == "__main__":
    sys.exit(main())
