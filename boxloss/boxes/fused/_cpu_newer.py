"""Build, cache and load the fused CPU kernels of the newer IoU-family losses (`_cpu_source_newer.py`).

A separate library from the core kernels (`_cpu.py`), built the same way (same compiler, flags, cache
directory root, fallbacks) on first use of a newer loss, so the core losses never pay for its build.
If it cannot be built, the first call warns once and the newer losses use the reference path
(`impl="auto"`); `BOXLOSS_CPU_KERNELS=0` disables it too.
"""

from __future__ import annotations

import ctypes
import os
import threading
import warnings

from . import _cpu
from ._cpu_source_newer import NEWER_SOURCE

_LOCK = threading.Lock()
_LIB = None
_TRIED = False
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


def library():
    """The loaded library, or None (no compiler, build failed, or BOXLOSS_CPU_KERNELS=0)."""
    global _LIB, _TRIED
    if _TRIED:
        return _LIB
    with _LOCK:
        if _TRIED:
            return _LIB
        if os.environ.get("BOXLOSS_CPU_KERNELS", "1") == "0":
            _LIB = None
        else:
            try:
                _LIB = build()
            except Exception as e:  # noqa: BLE001 -- any failure means: use the reference path
                warnings.warn(
                    f"boxloss: fused CPU kernels of the newer losses unavailable, using the reference (eager "
                    f"torch) path. {e}",
                    RuntimeWarning,
                    stacklevel=3,
                )
                _LIB = None
        _TRIED = True
    return _LIB


def _reset_for_tests(lib=None, tried: bool = False) -> None:
    """Testing hook: forget the loaded library (and optionally install a replacement or None)."""
    global _LIB, _TRIED
    _LIB, _TRIED = lib, tried
