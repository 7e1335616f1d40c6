"""`python -m mjxmbrl.cli ...`: the same as the `mjxmbrl` console script."""

import sys

from mjxmbrl.cli import main

sys.exit(main())
