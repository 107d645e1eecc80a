#!/usr/bin/env python
"""Train the one-stage detector with a box loss chosen by name: ``boxloss-train`` run from a checkout.

The command (arguments, --help, ``main(argv=None) -> int``) lives in boxloss/cli/train.py, so that the
installed ``boxloss-train`` and ``python -m boxloss.cli.train`` are the same program. Importing boxloss.cli
sets OMP_WAIT_POLICY=PASSIVE before torch loads OpenMP (boxloss/cli/__init__.py says why).
"""

import sys

from boxloss.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
