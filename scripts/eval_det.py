#!/usr/bin/env python
"""COCO evaluation and error analysis of a checkpoint or a detections file: ``boxloss-eval`` run from a checkout.

The command (arguments, --help, ``main(argv=None) -> int``) lives in boxloss/cli/evaluate.py, so that the
installed ``boxloss-eval`` and ``python -m boxloss.cli.evaluate`` are the same program. Importing boxloss.cli
sets OMP_WAIT_POLICY=PASSIVE before torch loads OpenMP (boxloss/cli/__init__.py says why).
"""

import sys

from boxloss.cli.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
