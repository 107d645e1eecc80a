"""Smoke tests of the loss benchmark (boxloss.experiments.loss_benchmark and scripts/bench_losses.py); no
timing assertions: speed is measured by the script, not by tests."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from boxloss.boxes import cpu_kernels_available
from boxloss.experiments.loss_benchmark import (
    HEADER_COMPILE, format_markdown, format_overhead, gpu_bandwidth, loss_fn, make_boxes, run_benchmark,
)

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
    from boxloss.experiments.loss_benchmark import NEWER_LOSSES

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


def test_unfused_losses_in_the_benchmark():
    """The box losses without a kernel time their reference only (eager and compiled), and it is the
    library's own function with the benchmark's arguments."""
    from boxloss import boxes as B
    from boxloss.experiments.loss_benchmark import UNFUSED_LOSSES

    rows = run_benchmark(["nwd", "balanced_l1"], sizes=[64], dtypes=["float32"], rounds=1, memory=False)
    assert [set(r["seconds"]) for r in rows] == [{"reference"}] * 2
    assert re.search(r"\| balanced_l1 \| 6e\+01 \| float32 \| - \| [0-9.]+ \| - \|", format_markdown(rows))
    p, t = make_boxes(1000)
    for name in UNFUSED_LOSSES:
        assert loss_fn(name, "torchvision") is None and loss_fn(name, "fused") is None
    torch.testing.assert_close(loss_fn("nwd", "reference")(p, t), B.nwd_loss(p, t, constant=25.0))
    torch.testing.assert_close(loss_fn("piou_v2", "reference")(p, t), B.piou_v2_loss(p, t))


NEEDS_CPP = pytest.mark.skipif(not cpu_kernels_available(), reason="no C++ compiler for the fused kernels")
COMPILE_COLUMNS = ["torchvision", "torchvision+compile", "reference", "reference+compile", "fused", "fused+compile"]


@NEEDS_CPP
def test_compile_rows_have_every_column():
    """compile=True times the three implementations eager and compiled (fullgraph) and fills every column of
    the --compile table: six times and the four target ratios (aot_eager: the same graphs as inductor,
    without generating code, so the test is quick)."""
    rows = run_benchmark(["ciou", "eiou"], sizes=[1000], dtypes=["float32"], rounds=1, compile=True,
                         compile_backend="aot_eager")
    ciou, eiou = rows
    assert ciou["errors"] == {} and eiou["errors"] == {}
    assert set(ciou["seconds"]) == set(COMPILE_COLUMNS) and all(v > 0 for v in ciou["seconds"].values())
    assert set(ciou["compile_seconds"]) == {c for c in COMPILE_COLUMNS if c.endswith("+compile")}
    assert set(eiou["seconds"]) == {"reference", "reference+compile", "fused", "fused+compile"}  # no torchvision
    assert ciou["peak_bytes"] == {}  # no memory with compile
    table = format_markdown(rows).splitlines()
    assert table[0] == HEADER_COMPILE.splitlines()[0] and len(table) == 4
    n_columns = table[0].count("|") - 1
    assert n_columns == 13 and all(line.count("|") - 1 == n_columns for line in table)
    cells = [c.strip() for c in table[2].strip("|").split("|")]
    assert cells[:3] == ["ciou", "1e+03", "float32"] and "-" not in cells
    assert all(c.endswith("x") for c in cells[9:])  # the four ratios
    eiou_cells = [c.strip() for c in table[3].strip("|").split("|")]
    assert eiou_cells[3:5] == ["-", "-"] and eiou_cells[9] != "-" and eiou_cells[10] != "-"
    overhead = format_overhead(rows).splitlines()
    assert len(overhead) == 4 and "fused+compile us" in overhead[0]
    assert all(line.count("|") == overhead[0].count("|") for line in overhead)


def test_compile_resets_dynamo_between_rows(monkeypatch):
    """Each row starts from a reset dynamo (so the recompile limit never sends a row back to eager), and a
    compile that fails is reported in the row, not hidden."""
    import torch._dynamo

    resets = []
    real_reset = torch._dynamo.reset
    monkeypatch.setattr(torch._dynamo, "reset", lambda: (resets.append(1), real_reset())[1])
    rows = run_benchmark(["smooth_l1"], sizes=[64, 128], dtypes=["float32"], rounds=1, compile=True,
                         compile_backend="eager")
    assert len(resets) == 2 and all(r["errors"] == {} for r in rows)

    def broken(gm, example_inputs):
        raise RuntimeError("this backend always fails")

    rows = run_benchmark(["smooth_l1"], sizes=[64], dtypes=["float32"], rounds=1, compile=True,
                         compile_backend=broken)
    assert set(rows[0]["errors"]) == {"torchvision+compile", "reference+compile", "fused+compile"}
    assert "this backend always fails" in rows[0]["errors"]["fused+compile"]
    assert set(rows[0]["seconds"]) == {"torchvision", "reference", "fused"}
    assert format_markdown(rows).splitlines()[2].count(" - ") >= 3


@pytest.mark.slow  # inductor compiles six functions in a fresh interpreter: ~1 min on 2 cores
@NEEDS_CPP
def test_script_with_compile(tmp_path):
    """scripts/bench_losses.py --compile with inductor: the --compile table, the per-call table at 1e3."""
    cmd = [sys.executable, str(ROOT / "scripts" / "bench_losses.py"), "--losses", "smooth_l1", "--sizes", "1e3",
           "--dtypes", "float32", "--rounds", "1", "--threads", "1", "--compile", "--no-memory"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert HEADER_COMPILE.splitlines()[0] in proc.stdout
    row = next(line for line in proc.stdout.splitlines() if line.startswith("| smooth_l1 | 1e+03 |"))
    assert "-" not in [c.strip() for c in row.strip("|").split("|")]
    assert "time per call at N=1e3" in proc.stdout
