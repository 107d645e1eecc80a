"""The command-line tools, installed as console scripts (pyproject.toml, ``[project.scripts]``):

    boxloss-train    = python -m boxloss.cli.train     (scripts/train_det.py in a checkout)
    boxloss-compare  = python -m boxloss.cli.compare   (scripts/compare_losses.py)
    boxloss-eval     = python -m boxloss.cli.evaluate  (scripts/eval_det.py)

Each module's docstring is its ``--help`` text and its ``main(argv=None) -> int`` returns the exit
status (0 done, 1 training failed, 2 bad input); the files in ``scripts/`` only call these.

Importing this package sets ``OMP_WAIT_POLICY=PASSIVE`` (unless the environment already sets it)
before any of its modules imports torch, so every way of starting a command gets it: OpenMP threads
that spin while waiting burn the CPU other jobs need, and when the machine is shared they wait for
each other; training ran 2-3x slower on a busy 2-core machine without it (docs/protocol.md, "CPU
threads on a shared machine"). OpenMP reads the variable once, when torch loads it, so this only
works while ``import boxloss`` stays free of torch (tests/engine/test_cli.py checks it).
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
