"""Smoke test of the loss benchmark (no timing assertions: speed is measured by the script, not tests)."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from boxloss.evaluation.loss_benchmark import format_markdown, gpu_bandwidth, loss_fn, make_boxes, run_benchmark

ROOT = Path(__file__).resolve().parents[2]


def test_run_benchmark_rows_and_table():
    rows = run_benchmark(["ciou", "smooth_l1"], sizes=[64], dtypes=["float32"], rounds=1, memory=False)
    assert [r["loss"] for r in rows] == ["ciou", "smooth_l1"]
    for r in rows:
        assert set(r["seconds"]) == {"torchvision", "reference", "fused"}
        assert all(v > 0 for v in r["seconds"].values())
    table = format_markdown(rows)
    assert table.count("\n") == 3 and "| ciou | 6e+01 | float32 |" in table


def test_implementations_agree_on_the_benchmark_inputs():
    p, t = make_boxes(1000)
    for name in ("iou", "giou", "diou", "ciou"):
        vals = [loss_fn(name, impl)(p, t) for impl in ("torchvision", "reference", "fused")]
        torch.testing.assert_close(vals[0], vals[1], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(vals[1], vals[2], rtol=1e-6, atol=1e-7)


def test_bandwidth_arithmetic():
    bw = gpu_bandwidth("ciou", 10_000_000, 1e-3, peak_gbs=3350.0)
    assert abs(bw["achieved_gbs"] - 840.0) < 1e-9 and abs(bw["fraction"] - 840 / 3350) < 1e-12


@pytest.mark.slow  # two fresh interpreters (the script and its memory worker): ~10 s
def test_script_with_memory_worker():
    cmd = [sys.executable, str(ROOT / "scripts" / "bench_losses.py"), "--losses", "giou", "--sizes", "2000",
           "--dtypes", "float32", "--rounds", "1", "--threads", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "| giou | 2e+03 | float32 |" in proc.stdout


def test_newer_losses_in_the_benchmark():
    """The newer losses run through the benchmark (no torchvision column) and their implementations agree on
    its inputs; an unknown name is a ValueError listing the accepted ones."""
    from boxloss.evaluation.loss_benchmark import NEWER_LOSSES

    rows = run_benchmark(["eiou", "wiou_v3"], sizes=[64], dtypes=["float32"], rounds=1, memory=False)
    assert [set(r["seconds"]) for r in rows] == [{"reference", "fused"}] * 2
    assert "| eiou | 6e+01 | float32 | - |" in format_markdown(rows)
    p, t = make_boxes(1000)
    for name in NEWER_LOSSES:
        assert loss_fn(name, "torchvision") is None
        ref, fus = (loss_fn(name, impl)(p, t) for impl in ("reference", "fused"))
        torch.testing.assert_close(ref, fus, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="accepted: iou, giou"):
        run_benchmark(["eiou", "fiou"], sizes=[64], dtypes=["float32"], rounds=1, memory=False)
