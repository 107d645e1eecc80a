#!/usr/bin/env python
"""Which box loss should my detector use, on my data? ``boxloss-compare`` run from a checkout.

The command (arguments, --help, ``main(argv=None) -> int``) lives in boxloss/cli/compare.py, so that the
installed ``boxloss-compare`` and ``python -m boxloss.cli.compare`` are the same program. Importing boxloss.cli
sets OMP_WAIT_POLICY=PASSIVE before torch loads OpenMP (boxloss/cli/__init__.py says why).
"""

import sys

from boxloss.cli.compare import main

if __name__ == "__main__":
    sys.exit(main())
