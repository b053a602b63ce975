"""`python -m streams.cli` = `leadpulse`."""

import sys

from leadpulse.streams.cli import main

sys.exit(main())
