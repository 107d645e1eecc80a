"""scripts/bench_losses.py --measure-build: the fresh build goes to a temporary folder of its own; the
user's TORCH_EXTENSIONS_DIR (the variable and the folder's contents) is left as it was; a CPU backend
without a ``build`` is skipped with a note; a failed build (no C++ compiler) is one ``error:`` line, and
so are fused CPU kernels that cannot run.

The CPU backend (``boxloss.boxes.kernels.backends.cpu()``) is replaced by a stand-in whose ``build``
records where it would build and writes a stand-in library there, so these tests compile nothing and
touch no real extensions cache.
"""

import os
import runpy
import types
from pathlib import Path

import pytest

from boxloss.boxes.kernels import backends
from boxloss.experiments import loss_benchmark

ROOT = Path(__file__).resolve().parents[2]


def _extensions_root() -> Path:
    """Where a backend keeps its libraries: $TORCH_EXTENSIONS_DIR, else the torch default."""
    root = os.environ.get("TORCH_EXTENSIONS_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "torch_extensions"
    )
    return Path(root).resolve()


def _install_backend(monkeypatch, build):
    module = types.SimpleNamespace() if build is None else types.SimpleNamespace(build=build)
    monkeypatch.setattr(backends, "cpu", lambda: module)


@pytest.fixture
def fake_build(monkeypatch):
    """A CPU backend whose build writes a stand-in library; returns its (force, $TORCH_EXTENSIONS_DIR,
    build folder) calls."""
    calls = []

    def build(force=False):
        folder = _extensions_root() / "boxloss_cpu"
        calls.append((force, os.environ.get("TORCH_EXTENSIONS_DIR"), folder))
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "libboxloss_cpu.so").write_bytes(b"stand-in")
        return object()

    _install_backend(monkeypatch, build)
    return calls


def _bench_main(monkeypatch, ran=None, *, check_kernels=False):
    """The script's main, with the timing table (not under test) replaced; `ran` records its calls. The
    check that the fused kernels can run is skipped unless `check_kernels` (the stand-in backends have no
    library)."""
    monkeypatch.setattr(loss_benchmark, "run_benchmark", lambda *a, **k: [] if ran is None else (ran.append(1) or []))
    if not check_kernels:
        monkeypatch.setattr(loss_benchmark, "fused_unavailable", lambda device="cpu": None)
    return runpy.run_path(str(ROOT / "scripts" / "bench_losses.py"))["main"]


def test_measure_build_leaves_the_users_extensions_dir_alone(fake_build, tmp_path, monkeypatch, capsys):
    user_dir = tmp_path / "my-extensions"
    (user_dir / "other_ext").mkdir(parents=True)
    sentinel = user_dir / "other_ext" / "keep.so"
    sentinel.write_bytes(b"the user's")
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(user_dir))

    assert _bench_main(monkeypatch)(["--measure-build", "--losses", "ciou", "--sizes", "8", "--no-memory"]) == 0

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


def test_a_build_without_force_still_builds_in_the_fresh_folder(tmp_path, monkeypatch):
    """A backend whose build takes no `force`: the empty temporary folder alone makes the build fresh."""
    seen = []
    _install_backend(monkeypatch, lambda: seen.append(os.environ.get("TORCH_EXTENSIONS_DIR")))
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "mine"))
    assert set(loss_benchmark.measure_cpu_build()) == {"fresh_build_s", "cached_load_s"}
    assert seen[0] != str(tmp_path / "mine") and seen[1] == str(tmp_path / "mine")


def test_a_failing_fresh_build_still_restores_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "mine"))
    seen = []

    def failing(force=False):
        seen.append(os.environ["TORCH_EXTENSIONS_DIR"])
        raise RuntimeError("no C++ compiler found (looked for 'c++'; set $CXX)")

    _install_backend(monkeypatch, failing)
    with pytest.raises(RuntimeError, match="no C\\+\\+ compiler"):
        loss_benchmark.measure_cpu_build()
    assert os.environ["TORCH_EXTENSIONS_DIR"] == str(tmp_path / "mine")
    assert seen and seen[0] != str(tmp_path / "mine") and not Path(seen[0]).exists()


def test_script_without_a_compiler_is_one_error_line(tmp_path, monkeypatch, capsys):
    """--measure-build with no C++ compiler: one ``error:`` line on stderr, exit status 2, no traceback, and
    nothing benchmarked."""
    def failing(force=False):
        raise RuntimeError("no C++ compiler found (looked for 'c++'; set $CXX)")

    _install_backend(monkeypatch, failing)
    ran = []
    main = _bench_main(monkeypatch, ran)
    assert main(["--measure-build", "--losses", "ciou", "--sizes", "8", "--no-memory"]) == 2
    err = capsys.readouterr().err
    assert err == "error: --measure-build: no C++ compiler found (looked for 'c++'; set $CXX)\n", err
    assert not ran


def test_script_skips_the_build_timing_when_the_backend_has_no_build(monkeypatch, capsys):
    _install_backend(monkeypatch, None)
    assert loss_benchmark.measure_cpu_build() is None
    assert _bench_main(monkeypatch)(["--measure-build", "--losses", "ciou", "--sizes", "8", "--no-memory"]) == 0
    out = capsys.readouterr().out
    assert "note: --measure-build skipped: the CPU kernel backend has no build() to time" in out
    assert "fresh build" not in out


def test_script_without_the_fused_kernels_is_one_error_line(monkeypatch, capsys):
    """No C++ compiler: the "fused" columns cannot run, so the benchmark stops before its table with one
    ``error:`` line carrying the library's reason (its warning is not printed as well)."""
    import warnings

    import boxloss.boxes

    def unavailable():
        warnings.warn("boxloss: fused CPU kernels unavailable, using the reference (eager torch) path. no C++ "
                      "compiler found (looked for 'c++'; set $CXX)", RuntimeWarning)
        return False

    monkeypatch.setattr(boxloss.boxes, "cpu_kernels_available", unavailable)
    ran = []
    assert _bench_main(monkeypatch, ran, check_kernels=True)(["--losses", "ciou", "--sizes", "8", "--no-memory"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the fused CPU kernels cannot run") and err.count("\n") == 1, err
    assert "no C++ compiler found (looked for 'c++'; set $CXX)" in err and not ran
