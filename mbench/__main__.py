"""`python -m mbench` is the same as the `mbench` command."""

import sys

from mbench.cli import main

sys.exit(main())
