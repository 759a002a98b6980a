"""``python -m tfrestore.convert adm in.pt out.weights.h5 [--preset ...]``
(= ``tfrestore convert``)."""

import sys

from tfrestore.convert.cli import main

if __name__ == "__main__":
    sys.exit(main())
