"""``python -m texturebias`` = the ``texturebias`` console command."""

import sys

from texturebias.cli import main

sys.exit(main())
