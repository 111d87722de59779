"""``python -m pyramids``: the same command line as the ``pyramids`` script."""

import sys

from .cli import main

sys.exit(main())
