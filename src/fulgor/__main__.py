"""`python -m fulgor`: the same as the `fulgor` console command."""

import sys

from fulgor.cli import main

sys.exit(main())
