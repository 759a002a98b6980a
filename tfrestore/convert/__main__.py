"""``python -m tfrestore.convert adm in.pt out.weights.h5 [--preset ...]``."""

import sys

from tfrestore.convert.cli import main

if __name__ == "__main__":
    sys.exit(main())
