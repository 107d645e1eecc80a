"""Run a loss sweep as N concurrent processes on one machine (``compare_losses.py --jobs N``).

Each child is the same ``compare_losses.py`` command with ``--shard i/N``, ``train.threads`` set to
``cores // N`` (at least 1) and its output in ``<output_dir>/job<i>.log``; the parent waits for all
and then writes the report. On a small CPU this is faster than one process using every core: a
detector this small does not keep two intra-op threads busy (measured in docs/benchmarks.md,
"Detector training": two 1-thread runs together train ~25 % more images/s than one 2-thread run).

Runs do not depend on which child trains them except through the thread count: float sums inside
convolutions are ordered differently with 1 and 2 threads, so a run's numbers can differ from a
one-process sweep's at the level of rounding noise (seed-to-seed differences are ~1000x larger).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path


def threads_per_job(jobs: int, cores: int | None = None) -> int:
    """Intra-op threads for each of ``jobs`` concurrent runs on ``cores`` cores (>= 1)."""
    cores = cores or os.cpu_count() or 1
    return max(1, cores // jobs)


def child_command(argv: list[str], index: int, jobs: int, threads: int, script: str) -> list[str]:
    """``argv`` (this script's arguments without ``--jobs``) turned into shard ``index`` of ``jobs``;
    ``train.threads`` is added unless the user set it."""
    cmd = [sys.executable, script, *argv, "--shard", f"{index}/{jobs}", "--quiet", "--no-report"]
    if not any(arg.startswith("train.threads=") for arg in argv):
        cmd += ["--set", f"train.threads={threads}"]
    return cmd


def strip_jobs(argv: list[str]) -> list[str]:
    """``argv`` without ``--jobs N`` / ``--jobs=N``."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--jobs":
            skip = True
        elif not arg.startswith("--jobs="):
            out.append(arg)
    return out


def run_jobs(argv: list[str], jobs: int, out_dir: str, script: str, log=print, progress=None,
             poll_s: float = 5.0) -> list[int]:
    """Start ``jobs`` shards of ``script argv`` at once, wait for all; returns their exit codes.

    ``progress``: optional callable returning a status (e.g. ``sweep_progress.format_progress``); it is
    polled every ``poll_s`` seconds and logged whenever it changes, since the children are quiet."""
    threads = threads_per_job(jobs)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    procs = []
    for i in range(jobs):
        log_path = Path(out_dir) / f"job{i}.log"
        cmd = child_command(strip_jobs(argv), i, jobs, threads, script)
        f = open(log_path, "w")
        procs.append((subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT), f, log_path))
    log(f"[sweep] {jobs} processes x {threads} thread(s); their output: "
        + ", ".join(str(p) for _, _, p in procs))
    last = None
    while any(proc.poll() is None for proc, _, _ in procs):
        status = progress() if progress else None
        if status != last and status is not None:
            log(f"[sweep] {status}")
            last = status
        time.sleep(poll_s)
    codes = []
    for proc, f, log_path in procs:
        codes.append(proc.wait())
        f.close()
        if codes[-1] != 0:
            log(f"[sweep] {log_path.name} ended with exit code {codes[-1]}; its last lines:\n"
                + "".join(log_path.read_text().splitlines(keepends=True)[-5:]))
    return codes
