"""`python -m nixlookup.bench`: the same as the `nixlookup-bench` script."""

import sys

from nixlookup.bench.cli import main

sys.exit(main())
