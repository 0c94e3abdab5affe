"""`python -m cli`: the `landmarks` command line."""

import sys

from cli import main

sys.exit(main())
