"""Build, cache and call the fused CPU kernels (C++ with OpenMP, no torch headers, loaded with ctypes).

The library is compiled on first use with the C++ compiler in `$CXX` (default `c++`) and cached under the
torch extensions directory (`$TORCH_EXTENSIONS_DIR`, default `~/.cache/torch_extensions`) in a folder
named after a hash of the source, the flags and the CPU, so later processes load it in milliseconds.
A first build takes about 13 s on a 2-core VM (flags tried in turn: with `-march=native`, without it,
without OpenMP). If there is no compiler or the build fails, `library()` returns None,
warns once, and every loss falls back to the reference (eager torch) path.

A compile is announced, once per process and library, with one line when it starts (what, where, that
it takes ~15-30 s once and is then cached) and one when it ends (with its time): through the
`boxloss.boxes.fused` logger at INFO where the application has configured logging (the scripts do),
otherwise printed to stderr, so the first call of a fused loss never blocks in silence. Loading a cached
library says nothing.

`BOXLOSS_CPU_KERNELS=0` in the environment disables the library (the reference path is used).
`build(source=..., name=...)` builds other libraries the same way (`_cpu_newer.py`: the newer losses).
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings

from ._cpu_source import CPU_SOURCE

_FLAGS = ["-O3", "-std=c++17", "-fPIC", "-shared", "-fopenmp", "-ffp-contract=off", "-fno-math-errno"]
_NATIVE = ["-march=native"]
_VOID_P, _I64, _INT, _DBL = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_double
_log = logging.getLogger("boxloss.boxes.fused")
_announced: set[str] = set()  # libraries whose compile this process has announced


def _cpu_fingerprint() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return line
    except OSError:
        pass
    import platform

    return platform.machine() + platform.processor()


def _build_dir(name: str = "boxloss_cpu") -> str:
    # Same root as torch.utils.cpp_extension.get_default_build_root(), without importing that module
    # (it probes for CUDA and logs a warning on CPU-only machines).
    root = os.environ.get("TORCH_EXTENSIONS_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "torch_extensions"
    )
    return os.path.join(os.path.realpath(root), name)


def _compile(cxx: str, target: str, flags: list[str], source: str = CPU_SOURCE) -> None:
    """Compile `source` into `target` atomically (concurrent processes may race; the last rename wins)."""
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with tempfile.TemporaryDirectory(dir=os.path.dirname(target)) as tmp:
        src = os.path.join(tmp, "boxloss_cpu.cpp")
        with open(src, "w") as f:
            f.write(source)
        out = os.path.join(tmp, "libboxloss_cpu.so")
        subprocess.run([cxx, *flags, src, "-o", out], check=True, capture_output=True, text=True, timeout=300)
        os.replace(out, target)


def _load(path: str):
    lib = ctypes.CDLL(path)
    lib.bl_version.restype = _INT
    lib.bl_overlap_fwd.argtypes = [_INT, _INT, _INT, _INT, _DBL, _I64, _VOID_P, _VOID_P, _VOID_P, _INT]
    lib.bl_overlap_fwd.restype = _INT
    lib.bl_overlap_bwd.argtypes = [
        _INT, _INT, _INT, _INT, _INT, _DBL, _I64, _VOID_P, _VOID_P, _VOID_P, _I64, _VOID_P, _VOID_P, _INT
    ]
    lib.bl_overlap_bwd.restype = _INT
    lib.bl_simulate.argtypes = [_INT, _INT, _INT, _DBL, _I64, _VOID_P, _VOID_P, _INT, _VOID_P, _VOID_P, _INT]
    lib.bl_simulate.restype = _INT
    lib.bl_smooth_l1_fwd.argtypes = [_INT, _I64, _VOID_P, _VOID_P, _VOID_P, _DBL, _INT]
    lib.bl_smooth_l1_fwd.restype = _INT
    lib.bl_smooth_l1_bwd.argtypes = [_INT, _I64, _VOID_P, _VOID_P, _VOID_P, _I64, _VOID_P, _VOID_P, _DBL, _INT]
    lib.bl_smooth_l1_bwd.restype = _INT
    return lib


def _announce(message: str) -> None:
    """One line to the user: logged at INFO where logging is configured, else printed to stderr."""
    if _log.hasHandlers():
        _log.info(message)
    else:
        print(message, file=sys.stderr, flush=True)


def build(force: bool = False, *, source: str = CPU_SOURCE, name: str = "boxloss_cpu", loader=None):
    """Compile (if not cached) and load the library; return the ctypes handle. Raises on failure.

    `source`, `name` and `loader` (path -> ctypes handle with argtypes set) select another library built
    the same way (the newer losses' kernels, `_cpu_newer.py`); the default is the core kernels."""
    cxx = os.environ.get("CXX", "c++")
    if shutil.which(cxx) is None:
        raise RuntimeError(f"no C++ compiler found (looked for {cxx!r}; set $CXX)")
    errors = []
    started = None  # perf_counter of the announced compile
    no_openmp = [f for f in _FLAGS if f != "-fopenmp"]  # e.g. Apple clang: serial loops, still fused
    for flags in (_FLAGS + _NATIVE, _FLAGS, no_openmp):
        key = hashlib.sha256("\n".join([source, cxx, " ".join(flags), _cpu_fingerprint()]).encode()).hexdigest()
        target = os.path.join(_build_dir(name), key[:16], f"lib{name}.so")
        try:
            if force or not os.path.exists(target):
                if name not in _announced:
                    _announced.add(name)
                    started = time.perf_counter()
                    _announce(f"boxloss: compiling the fused CPU kernels {name} with {cxx} into {_build_dir(name)} "
                              f"(~15-30 s, once: later runs load the cached library) ...")
                _compile(cxx, target, flags, source)
            lib = (loader or _load)(target)
            if started is not None:
                _announce(f"boxloss: compiled {name} in {time.perf_counter() - started:.1f} s")
            return lib
        except (OSError, subprocess.SubprocessError) as e:
            detail = getattr(e, "stderr", "") or ""
            errors.append(f"{' '.join(flags)}: {e} {detail[-2000:]}")
    raise RuntimeError(f"building the boxloss CPU kernels failed ({name}):\n" + "\n".join(errors))


class LazyLibrary:
    """A kernel library built and loaded on first use, once per process (thread-safe); None when it
    cannot be built (warns once) or when ``BOXLOSS_CPU_KERNELS=0``."""

    def __init__(self, build_fn, what: str):
        self._build, self._what = build_fn, what
        self._lock = threading.Lock()
        self.lib, self.tried = None, False

    def get(self):
        if self.tried:
            return self.lib
        with self._lock:
            if not self.tried:
                self.lib = None
                if os.environ.get("BOXLOSS_CPU_KERNELS", "1") != "0":
                    try:
                        self.lib = self._build()
                    except Exception as e:  # noqa: BLE001 -- any failure means: use the reference path
                        warnings.warn(f"boxloss: {self._what} unavailable, using the reference (eager torch) "
                                      f"path. {e}", RuntimeWarning, stacklevel=4)
                self.tried = True
        return self.lib

    def reset(self, lib=None, tried: bool = False) -> None:
        """Testing hook: forget the loaded library (and optionally install a replacement or None)."""
        self.lib, self.tried = lib, tried


_CORE = LazyLibrary(lambda: build(), "fused CPU kernels")


def library():
    """The loaded kernel library, or None (no compiler, build failed, or BOXLOSS_CPU_KERNELS=0)."""
    return _CORE.get()


def _reset_for_tests(lib=None, tried: bool = False) -> None:
    """Testing hook: forget the loaded library (and optionally install a replacement or None)."""
    _CORE.reset(lib, tried)
