"""The --jobs launcher's command lines (the end-to-end run is in tests/evaluation/test_scripts.py)."""

import sys

from boxloss.engine.sweep_jobs import child_command, strip_jobs, threads_per_job


def test_threads_per_job_splits_the_cores_and_never_gives_zero():
    assert threads_per_job(2, cores=2) == 1
    assert threads_per_job(2, cores=16) == 8
    assert threads_per_job(3, cores=2) == 1


def test_strip_jobs_removes_both_spellings_only():
    argv = ["--config", "c.yaml", "--jobs", "2", "--seeds", "3", "--jobs=4", "--set", "optim.lr=0.1"]
    assert strip_jobs(argv) == ["--config", "c.yaml", "--seeds", "3", "--set", "optim.lr=0.1"]


def test_child_command_adds_shard_quiet_and_threads_unless_the_user_set_them():
    cmd = child_command(["--config", "c.yaml", "--set", "optim.lr=0.1"], 1, 2, 1, "s.py")
    assert cmd[:2] == [sys.executable, "s.py"]
    assert cmd[cmd.index("--shard") + 1] == "1/2" and "--quiet" in cmd and "--no-report" in cmd
    assert cmd[-2:] == ["--set", "train.threads=1"]
    mine = child_command(["--config", "c.yaml", "--set", "train.threads=3"], 0, 2, 1, "s.py")
    assert "train.threads=1" not in mine and "train.threads=3" in mine
