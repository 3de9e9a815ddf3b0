"""`python -m poptrain`: the same command line as the `poptrain` console script."""

import sys

from .cli import main

sys.exit(main())
