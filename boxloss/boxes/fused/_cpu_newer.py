"""Build, cache and load the fused CPU kernels of the newer IoU-family losses (`_cpu_source_newer.py`).

A separate library from the core kernels (`_cpu.py`), built the same way (same compiler, flags, cache
directory root, fallbacks) on first use of a newer loss, so the core losses never pay for its build.
If it cannot be built, the first call warns once and the newer losses use the reference path
(`impl="auto"`); `BOXLOSS_CPU_KERNELS=0` disables it too.
"""

from __future__ import annotations

import ctypes

from . import _cpu
from ._cpu_source_newer import NEWER_SOURCE

_V, _I64, _INT, _DBL = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_double


def _load(path: str):
    lib = ctypes.CDLL(path)
    lib.bl_newer_version.restype = _INT
    lib.bl_newer.argtypes = [
        _INT, _INT, _INT, _INT, _DBL, _DBL, _DBL, _DBL, _I64, _V, _V, _V, _V, _V, _V, _V, _INT
    ]
    lib.bl_newer.restype = _INT
    return lib


def build(force: bool = False):
    """Compile (if not cached) and load the library; raises on failure."""
    return _cpu.build(force, source=NEWER_SOURCE, name="boxloss_cpu_newer", loader=_load)


_NEWER = _cpu.LazyLibrary(lambda: build(), "fused CPU kernels of the newer losses")


def library():
    """The loaded library, or None (no compiler, build failed, or BOXLOSS_CPU_KERNELS=0)."""
    return _NEWER.get()


def _reset_for_tests(lib=None, tried: bool = False) -> None:
    """Testing hook: forget the loaded library (and optionally install a replacement or None)."""
    _NEWER.reset(lib, tried)
