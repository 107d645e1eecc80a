"""Smoke tests of two measurement scripts: scripts/count_lines.py (the kernel folder's line count in
docs/benchmarks.md) and scripts/bench_compile_floor.py (what torch.compile adds to a fused loss call)."""

import subprocess
import sys
from pathlib import Path

import pytest

from boxloss.boxes import cpu_kernels_available

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import count_lines  # noqa: E402


def test_python_code_lines_skip_docstrings_comments_and_blank_lines():
    src = ('"""Module doc\nover two lines."""\n\nimport os  # a comment\n\n\ndef f(x):\n    """Doc."""\n'
           '    # only a comment\n    return (x +\n            1)\n')
    assert count_lines.python_code_lines(src) == 4  # import, def, and the two lines of the return


def test_cpp_kept_in_a_python_string_counts_as_cpp():
    src = 'SOURCE = r"""\n// a comment\n#include <x.h>\n\nint f() { return 1; }\n"""\n'
    # the assignment's line, the include, the function and the closing quotes: not the comment or the blank line
    assert count_lines.python_code_lines(src) == 4
    assert count_lines.cpp_code_lines("// c\nint a;\n\n  // d\nint b;  // e\n") == 2


def test_script_counts_the_kernel_folder_and_refuses_an_empty_one(tmp_path):
    proc = subprocess.run([sys.executable, "scripts/count_lines.py", "boxloss/boxes/kernels"], capture_output=True,
                          text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    total, code = (int(x) for x in last.split()[:2])
    assert last.endswith("total lines, code lines") and 0 < code < total
    assert "boxloss/boxes/kernels/cpu/kernels.cpp" in proc.stdout
    empty = subprocess.run([sys.executable, "scripts/count_lines.py", str(tmp_path)], capture_output=True, text=True,
                           timeout=60, cwd=ROOT)
    assert empty.returncode == 2 and "no .py/.h/.cpp files" in empty.stderr


@pytest.mark.skipif(not cpu_kernels_available(), reason="no C++ compiler for the fused kernels")
def test_compile_floor_script_prints_a_row_per_loss_and_size():
    cmd = [sys.executable, "scripts/bench_compile_floor.py", "--sizes", "100", "--losses", "iou", "--rounds", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| 1e+02 |")]
    assert len(rows) == 1 and "| iou |" in rows[0] and rows[0].rstrip().endswith(("| yes |", "| no |"))
