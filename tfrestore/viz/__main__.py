"""``python -m tfrestore.viz`` (= ``tfrestore viz``): see :mod:`tfrestore.viz.cli_main`."""

import sys

from tfrestore.viz.cli_main import main

if __name__ == "__main__":
    sys.exit(main())
