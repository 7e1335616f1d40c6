"""`python -m mjxmbrl ...`: the `mjxmbrl` command where no console script is on PATH (e.g. wheels installed
with `pip install --target DIR` and PYTHONPATH=DIR, as on a lent GPU machine)."""

import sys

from mjxmbrl.cli import main

sys.exit(main())
