"""`python -m streams.cli` = `leadpulse`."""

import sys

from streams.cli import main

sys.exit(main())
