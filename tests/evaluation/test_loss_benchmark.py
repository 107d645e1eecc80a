"""scripts/bench_losses.py --measure-build: the fresh build goes to a temporary folder of its own; the
user's TORCH_EXTENSIONS_DIR (the variable and the folder's contents) is left as it was.

The C++ build is faked (it records where it would build and writes a stand-in library there), so these
tests compile nothing and touch no real extensions cache.
"""

import os
import runpy
from pathlib import Path

import pytest

from boxloss.boxes.fused import _cpu
from boxloss.evaluation import loss_benchmark

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def fake_build(monkeypatch):
    """Replace the CPU kernel build; returns the list of (force, $TORCH_EXTENSIONS_DIR, build folder) calls."""
    calls = []

    def build(force=False, **kw):
        folder = Path(_cpu._build_dir())
        calls.append((force, os.environ.get("TORCH_EXTENSIONS_DIR"), folder))
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "libboxloss_cpu.so").write_bytes(b"stand-in")
        return object()

    monkeypatch.setattr(_cpu, "build", build)
    return calls


def _bench_main(monkeypatch):
    monkeypatch.setattr(loss_benchmark, "run_benchmark", lambda *a, **k: [])  # the timing table is not under test
    return runpy.run_path(str(ROOT / "scripts" / "bench_losses.py"))["main"]


def test_measure_build_leaves_the_users_extensions_dir_alone(fake_build, tmp_path, monkeypatch, capsys):
    user_dir = tmp_path / "my-extensions"
    (user_dir / "other_ext").mkdir(parents=True)
    sentinel = user_dir / "other_ext" / "keep.so"
    sentinel.write_bytes(b"the user's")
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(user_dir))

    _bench_main(monkeypatch)(["--measure-build", "--losses", "ciou", "--sizes", "8", "--no-memory"])

    assert os.environ.get("TORCH_EXTENSIONS_DIR") == str(user_dir)  # the variable is restored, not deleted
    assert sentinel.read_bytes() == b"the user's"
    (force, fresh_root, fresh_folder), (force2, root2, folder2) = fake_build
    assert force and fresh_root != str(user_dir) and not Path(fresh_root).resolve().is_relative_to(user_dir.resolve())
    assert not Path(fresh_root).exists()  # the temporary folder of the fresh build is gone
    assert not force2 and root2 == str(user_dir) and folder2.is_relative_to(user_dir.resolve())
    assert sorted(p.name for p in user_dir.iterdir()) == ["boxloss_cpu", "other_ext"]
    out = capsys.readouterr().out
    assert "fresh build of the CPU kernels:" in out and "load of the cached CPU kernels:" in out


def test_measure_build_without_the_variable_leaves_it_unset(fake_build, tmp_path, monkeypatch):
    monkeypatch.delenv("TORCH_EXTENSIONS_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the default root, kept inside tmp_path
    result = loss_benchmark.measure_cpu_build()
    assert "TORCH_EXTENSIONS_DIR" not in os.environ
    assert set(result) == {"fresh_build_s", "cached_load_s"}
    (force, fresh_root, _), (force2, root2, folder2) = fake_build
    assert force and not Path(fresh_root).exists() and not force2 and root2 is None
    assert folder2 == (tmp_path / "cache" / "torch_extensions" / "boxloss_cpu").resolve()


def test_a_failing_fresh_build_still_restores_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "mine"))
    seen = []

    def failing(force=False, **kw):
        seen.append(os.environ["TORCH_EXTENSIONS_DIR"])
        raise RuntimeError("no C++ compiler found")

    monkeypatch.setattr(_cpu, "build", failing)
    with pytest.raises(RuntimeError, match="no C\\+\\+ compiler"):
        loss_benchmark.measure_cpu_build()
    assert os.environ["TORCH_EXTENSIONS_DIR"] == str(tmp_path / "mine")
    assert seen and seen[0] != str(tmp_path / "mine") and not Path(seen[0]).exists()
