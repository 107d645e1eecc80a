"""Smoke tests of the weighted / avg_factor benchmark (boxloss.experiments.weighted_benchmark, and
``scripts/bench_losses.py --weighted``); no timing assertions."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from boxloss.boxes import cpu_kernels_available
from boxloss.experiments.loss_benchmark import make_boxes
from boxloss.experiments.weighted_benchmark import HEADER, _fns, format_row, run_weighted_benchmark

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not cpu_kernels_available(), reason="no C++ compiler for the fused kernels")


def test_rows_have_every_form_and_format_as_the_header():
    rows = run_weighted_benchmark(["ciou", "giou"], [64], rounds=1, log=lambda line: None)
    assert [r["loss"] for r in rows] == ["ciou", "giou"]
    for r in rows:
        assert set(r["seconds"]) == {"mean", "avg_factor/two-pass", "avg_factor/one-pass",
                                     "weight+avg_factor/two-pass", "weight+avg_factor/one-pass"}
        assert all(v > 0 for v in r["seconds"].values())
        line = format_row(r)
        assert line.count("|") == HEADER.splitlines()[0].count("|") and line.startswith(f"| {r['loss']} | 6e+01 |")


def test_each_one_pass_form_gives_its_two_pass_gradient():
    from boxloss.boxes import ciou_loss

    p, t = make_boxes(300)
    fns = _fns(ciou_loss, t, torch.rand(300))
    for form in ("avg_factor", "weight+avg_factor"):
        grads = []
        for path in ("two-pass", "one-pass"):
            x = p.detach().requires_grad_(True)
            loss = fns[f"{form}/{path}"](x, t)
            loss.backward()
            grads.append(x.grad)
            assert ("WeightedOnePass" in loss.grad_fn.name()) == (path == "one-pass")
        assert torch.equal(*grads)


def test_script_weighted_prints_the_table_and_refuses_smooth_l1():
    cmd = [sys.executable, "scripts/bench_losses.py", "--losses", "giou", "--sizes", "100", "--weighted",
           "--rounds", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "| giou | 1e+02 |" in proc.stdout and "avg_factor: two-pass / one-pass ms" in proc.stdout
    bad = subprocess.run(cmd[:3] + ["smooth_l1,giou"] + cmd[4:], capture_output=True, text=True, timeout=300,
                         cwd=ROOT)
    assert bad.returncode == 2 and "leave out smooth_l1" in bad.stderr
