"""`python -m fleetaudit` runs the command line."""

import sys

from fleetaudit.cli import main

sys.exit(main())
