"""``python -m oturn``: the same command line as the ``oturn`` script."""

import sys

from oturn.cli import main

sys.exit(main())
