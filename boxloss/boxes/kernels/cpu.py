"""The fused CPU kernels: build, cache and load the C++ library (``cpu/``), and launch it on torch tensors.

The library is one source file, ``cpu/kernels.cpp``, over the headers of the same folder
(``vecmath.h``, ``geometry.h``, ``terms.h``, ``box_losses.h``; the C ABI in ``abi.h``), shipped as
package data. It is compiled on first use with the C++ compiler in ``$CXX`` (default ``c++``), as two
halves in parallel (``-DBL_PART=0`` and ``1``, see kernels.cpp) linked into one shared library, and
cached under the torch extensions directory (``$TORCH_EXTENSIONS_DIR``, default
``~/.cache/torch_extensions``) in a folder named after a hash of every source file, the compiler, the
flags and the CPU, so later processes load it in milliseconds. Flags are tried in turn: with
``-march=native``, without it, without OpenMP (serial loops, still fused). The library is loaded with
ctypes (no torch headers) and refused unless its ``bl_abi_version()`` is ``ABI_VERSION``.

A compile is announced, once per process, with one line when it starts (what, where, that it happens
once and is then cached) and one when it ends (with its time): through the ``boxloss.boxes.kernels``
logger at INFO where the application has configured logging, otherwise printed to stderr. Loading a
cached library says nothing. If there is no compiler or the build fails, ``library()`` returns None
and warns once; ``BOXLOSS_CPU_KERNELS=0`` disables the library.

Launchers (torch tensors in, torch tensors out), the interface the rest of boxloss uses:

- ``box_loss_forward(kind, fmt, variant, flags, eps, p0, p1, p2, p, t, extra, reduction="none") -> loss``:
  per box ``[N]``, or its sum / mean (0-dim) with reduction "sum" / "mean"
- ``box_loss_backward(..., p, t, extra, grad, need_p, need_t) -> (grad_p | None, grad_t | None)``
- ``box_loss_forward_backward(..., p, t, extra, gscale, need_p, need_t, reduction="none") -> (loss, grad_p | None,
  grad_t | None)``: both in one pass, the gradients (of each box's loss) scaled by ``gscale`` (a float, or a
  tensor of one value or one per box)
- ``smooth_l1_forward(p, t, beta, reduction="none")``, ``smooth_l1_backward(p, t, beta, grad, need_p, need_t)``,
  ``smooth_l1_forward_backward(p, t, beta, gscale, need_p, need_t, reduction="none")``

``p``, ``t``: ``[N, 4]`` contiguous float32 / float64 CPU boxes (Smooth L1: any contiguous shape);
``extra``: ``[N]`` or ``[1]`` in their dtype (None for kinds that do not read it); ``grad``: ``[N]``
with stride 1, or an expanded scalar (stride 0, never materialised). Codes as in ``kinds.py``. A bad
argument raises ValueError, a nonzero return code of the library RuntimeError.
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
import types
import warnings
from pathlib import Path

import torch
from torch import Tensor

SOURCE_DIR = Path(__file__).resolve().parent / "cpu"
NAME = "boxloss_kernels"
ABI_VERSION = 2

_V, _I64, _INT, _DBL = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_double
# The C ABI of cpu/abi.h, declared once: function -> (restype, argtypes). tests/boxes/test_kernels_cpu.py
# checks this table against abi.h's prototypes.
ABI = {
    "bl_abi_version": (_INT, ()),
    # dtype kind fmt variant flags eps p0 p1 p2 n p t extra extra_stride gout gstride out reduce gp gt nthreads
    "bl_box_loss": (_INT, (_INT, _INT, _INT, _INT, _INT, _DBL, _DBL, _DBL, _DBL, _I64, _V, _V, _V, _I64, _V, _I64,
                           _V, _INT, _V, _V, _INT)),
    # dtype n p t beta gout gstride out reduce gp gt nthreads
    "bl_smooth_l1": (_INT, (_INT, _I64, _V, _V, _DBL, _V, _I64, _V, _INT, _V, _V, _INT)),
}
# the return codes of abi.h
ERRORS = {1: "bad dtype", 2: "bad kind", 3: "bad box format", 4: "bad variant for this kind",
          5: "bad flags for this kind", 6: "bad stride", 7: "missing pointer", 8: "bad size", 9: "out of memory",
          10: "bad reduction code"}

_FLAGS = ["-O3", "-std=c++17", "-fPIC", "-shared", "-fopenmp", "-ffp-contract=off", "-fno-math-errno"]
_NATIVE = ["-march=native"]
_DTYPES = {torch.float32: 0, torch.float64: 1}
REDUCTIONS = {"none": 0, "sum": 1, "mean": 2}  # abi.h's reduce codes
_log = logging.getLogger("boxloss.boxes.kernels")
_announced = False  # whether this process has announced a compile


# ---------------------------------------------------------------- build, cache, load


NODE_SOURCE = "autograd_node.cpp"  # the C++ autograd node, built by cpu_node.py against torch, not part of the library


def source_files() -> list[Path]:
    """Every source file of the library (what the cache key hashes and the package data ships)."""
    return sorted(p for p in SOURCE_DIR.iterdir() if p.suffix in (".h", ".cpp") and p.name != NODE_SOURCE)


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


def build_dir() -> str:
    # torch.utils.cpp_extension.get_default_build_root() without importing that module (it probes for CUDA
    # and logs a warning on CPU-only machines)
    root = os.environ.get("TORCH_EXTENSIONS_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "torch_extensions"
    )
    return os.path.join(os.path.realpath(root), NAME)


def _cache_key(cxx: str, flags: list[str]) -> str:
    h = hashlib.sha256()
    for path in source_files():
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    h.update("\n".join([cxx, " ".join(flags), _cpu_fingerprint()]).encode())
    return h.hexdigest()[:16]


def _compile(cxx: str, target: str, flags: list[str]) -> None:
    """Compile kernels.cpp into `target` atomically (concurrent processes may race; the last rename wins).

    Its two parts (BL_PART 0: float kernels, Smooth L1 and the ABI; 1: double kernels) are compiled in
    parallel, then linked: the first build waits for the longer part only."""
    os.makedirs(os.path.dirname(target), exist_ok=True)
    source = str(SOURCE_DIR / "kernels.cpp")
    with tempfile.TemporaryDirectory(dir=os.path.dirname(target)) as tmp:
        objects = [os.path.join(tmp, f"part{part}.o") for part in (0, 1)]
        cmds = [[cxx, *[f for f in flags if f != "-shared"], "-c", f"-DBL_PART={part}", "-I", str(SOURCE_DIR),
                 source, "-o", obj] for part, obj in enumerate(objects)]
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for cmd in cmds]
        try:
            deadline = time.monotonic() + 600
            for cmd, proc in zip(cmds, procs):
                out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
                if proc.returncode:
                    raise subprocess.CalledProcessError(proc.returncode, cmd, out, err)
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        library = os.path.join(tmp, f"lib{NAME}.so")
        subprocess.run([cxx, *flags, *objects, "-o", library], check=True, capture_output=True, text=True, timeout=120)
        os.replace(library, target)


def _load(path: str):
    lib = ctypes.CDLL(path)
    for name, (restype, argtypes) in ABI.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, list(argtypes)
    version = lib.bl_abi_version()
    if version != ABI_VERSION:
        raise OSError(f"{path} has ABI version {version}, expected {ABI_VERSION}")
    return lib


def _announce(message: str) -> None:
    """One line to the user: logged at INFO where logging is configured, else printed to stderr."""
    if _log.hasHandlers():
        _log.info(message)
    else:
        print(message, file=sys.stderr, flush=True)


def build(force: bool = False):
    """Compile (unless cached) and load the library; return the ctypes handle. Raises RuntimeError saying
    why when there is no compiler or every flag set fails (with the compiler's messages)."""
    global _announced
    cxx = os.environ.get("CXX", "c++")
    if shutil.which(cxx) is None:
        raise RuntimeError(f"no C++ compiler found (looked for {cxx!r}; set $CXX)")
    errors = []
    started = None  # perf_counter of the announced compile
    no_openmp = [f for f in _FLAGS if f != "-fopenmp"]  # e.g. Apple clang
    for flags in (_FLAGS + _NATIVE, _FLAGS, no_openmp):
        target = os.path.join(build_dir(), _cache_key(cxx, flags), f"lib{NAME}.so")
        try:
            if force or not os.path.exists(target):
                if not _announced:
                    _announced = True
                    started = time.perf_counter()
                    _announce(f"boxloss: compiling the fused CPU kernels {NAME} with {cxx} into {build_dir()} "
                              f"(~20-40 s, once: later runs load the cached library) ...")
                _compile(cxx, target, flags)
            lib = _load(target)
            if started is not None:
                _announce(f"boxloss: compiled {NAME} in {time.perf_counter() - started:.1f} s")
            return lib
        except (OSError, AttributeError, subprocess.SubprocessError) as e:
            detail = getattr(e, "stderr", "") or ""
            errors.append(f"{' '.join(flags)}: {e} {detail[-2000:]}")
    raise RuntimeError(f"building the boxloss CPU kernels failed ({NAME}):\n" + "\n".join(errors))


_LIBRARY = types.SimpleNamespace(lib=None, tried=False)  # the loaded library (or None); whether a build was tried
_LOCK = threading.Lock()


def library():
    """The library, built and loaded on first use, once per process (thread-safe); None when it cannot be
    built (no compiler, a failed build: warns once) or when ``BOXLOSS_CPU_KERNELS=0``."""
    if not _LIBRARY.tried:
        with _LOCK:
            if not _LIBRARY.tried:
                _LIBRARY.lib = None
                if os.environ.get("BOXLOSS_CPU_KERNELS", "1") != "0":
                    try:
                        _LIBRARY.lib = build()
                    except Exception as e:  # noqa: BLE001 -- any failure means: no fused CPU kernels
                        warnings.warn(f"boxloss: fused CPU kernels unavailable, using the reference (eager torch) "
                                      f"path. {e}", RuntimeWarning, stacklevel=3)
                _LIBRARY.tried = True
    return _LIBRARY.lib


def _reset_for_tests(lib=None, tried: bool = False) -> None:
    """Testing hook: forget the loaded library (and optionally install a replacement or None)."""
    _LIBRARY.lib, _LIBRARY.tried = lib, tried


# ---------------------------------------------------------------- launchers


def _lib():
    lib = library()
    if lib is None:
        raise RuntimeError("the boxloss CPU kernel library is not available (no C++ compiler, a failed build: "
                           "see the earlier warning, or BOXLOSS_CPU_KERNELS=0)")
    return lib


def box_loss_address() -> int:
    """The address of the loaded library's ``bl_box_loss`` (what the C++ autograd node calls)."""
    lib = _lib()
    address = getattr(lib, "_box_loss_address", None)  # (a CDLL resolves other missing names as symbols)
    if address is None:
        address = lib._box_loss_address = ctypes.cast(lib.bl_box_loss, ctypes.c_void_p).value
    return address


def reduction_scale(count: int, reduction: str) -> float:
    """The factor d(reduced loss) / d(loss of one element): 1 / count for a mean (1 for no elements), else 1."""
    return 1.0 / max(count, 1) if reduction == "mean" else 1.0


def _ptr(x: Tensor | None):
    return None if x is None else x.data_ptr()


def _per_box(x: Tensor, n: int, dtype: torch.dtype, name: str) -> tuple[Tensor, int]:
    """`x` as the kernels read it: `dtype`, n values with stride 1, or one value (stride 0)."""
    if x.dtype != dtype or not x.is_cpu:
        x = x.to(device="cpu", dtype=dtype)
    if x.dim() != 1:
        x = x.reshape(-1)
    m = x.numel()
    if m == 1:
        return x, 0
    if m != n:
        raise ValueError(f"{name} must have {n} values (one per box) or one, got shape {list(x.shape)}")
    stride = x.stride(0)
    if stride == 0:  # an expanded scalar: read once, never materialised
        return x, 0
    return (x if stride == 1 else x.contiguous()), 1


def _run(box: tuple | None, p: Tensor, t: Tensor, extra: Tensor | None, *, beta: float = 0.0,
         reduction: str | None = "none", grad: Tensor | None = None, gscale: float | Tensor | None = None,
         need_p: bool = False, need_t: bool = False) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """One call of the library: ``bl_box_loss`` with ``box = (kind, fmt, variant, flags, eps, p0, p1, p2)``,
    or ``bl_smooth_l1`` (element-wise, ``beta``) with ``box=None``. Returns ``(loss, grad_p, grad_t)``:
    the loss (per box / element, or its sum / mean, 0-dim) unless ``reduction`` is None; the gradients
    needed, ``grad · dloss/d·`` for a per-box ``grad`` (backward) or ``gscale · dloss_i/d·`` (in the
    forward's pass; a tensor ``gscale`` holds one value or one per box), else None."""
    # the cheap tensor properties only: this runs on every call (~0.6 us)
    code, shape = _DTYPES.get(p.dtype), p.shape
    if (code is None or t.dtype != p.dtype or not p.is_cpu or not t.is_cpu or t.shape != shape
            or (box and (len(shape) != 2 or shape[1] != 4)) or not p.is_contiguous() or not t.is_contiguous()):
        raise ValueError(f"the CPU kernels take {'[N, 4]' if box else 'same-shape'} contiguous float32/float64 CPU "
                         f"tensors of one dtype, got {p.dtype} {list(shape)} on {p.device} and {t.dtype} "
                         f"{list(t.shape)} on {t.device}")
    n = shape[0] if box else p.numel()
    out, red = None, 0
    if reduction is not None:
        red = REDUCTIONS.get(reduction)
        if red is None:
            raise ValueError(f"reduction={reduction!r} is not supported; accepted: {', '.join(map(repr, REDUCTIONS))}")
        out = torch.empty(shape if box is None else n, dtype=p.dtype) if red == 0 else \
            (torch.empty((), dtype=p.dtype) if n else torch.zeros((), dtype=p.dtype))  # the sum of none: 0
    gp = torch.empty_like(p) if need_p else None
    gt = torch.empty_like(t) if need_t else None
    if n == 0 or (out is None and gp is None and gt is None):
        return out, gp, gt
    gout, gstride = None, 0
    if isinstance(gscale, Tensor):
        grad, gscale = gscale, None
    if grad is not None:
        g, gstride = _per_box(grad, n, p.dtype, "grad")
        gout = g.data_ptr()
    elif gscale is not None:
        g = (ctypes.c_float if code == 0 else ctypes.c_double)(gscale)
        gout = ctypes.addressof(g)
    lib = _lib()
    if box is None:
        rc = lib.bl_smooth_l1(code, n, p.data_ptr(), t.data_ptr(), beta, gout, gstride, _ptr(out), red, _ptr(gp),
                              _ptr(gt), torch.get_num_threads())
    else:
        ex, exs = (None, 0) if extra is None else _per_box(extra, n, p.dtype, "extra")
        rc = lib.bl_box_loss(code, *box, n, p.data_ptr(), t.data_ptr(), _ptr(ex), exs, gout, gstride, _ptr(out), red,
                             _ptr(gp), _ptr(gt), torch.get_num_threads())
    if rc != 0:
        what = ("Smooth L1 " if box is None else "") + "+".join(
            w for w, on in (("forward", out is not None), ("backward", gout is not None)) if on)
        raise RuntimeError(f"boxloss CPU kernel {what} failed: {ERRORS.get(rc, 'unknown error')} (code {rc})")
    return out, gp, gt


def box_loss_forward(kind: int, fmt: int, variant: int, flags: int, eps: float, p0: float, p1: float, p2: float,
                     p: Tensor, t: Tensor, extra: Tensor | None, reduction: str = "none") -> Tensor:
    """Loss of the IoU-family loss ``kind`` (codes of ``kinds.py``): per box ``[N]``, or its sum / mean."""
    return _run((kind, fmt, variant, flags, eps, p0, p1, p2), p, t, extra, reduction=reduction)[0]


def box_loss_forward_backward(kind: int, fmt: int, variant: int, flags: int, eps: float, p0: float, p1: float,
                              p2: float, p: Tensor, t: Tensor, extra: Tensor | None, gscale: float | Tensor,
                              need_p: bool, need_t: bool,
                              reduction: str = "none") -> tuple[Tensor, Tensor | None, Tensor | None]:
    """``(loss, gscale · dloss_i/dp, gscale · dloss_i/dt)`` in one pass over the boxes: the loss per box
    ``[N]`` or its sum / mean, a gradient not needed None; ``gscale``: a float, or a tensor of one value
    or one per box."""
    return _run((kind, fmt, variant, flags, eps, p0, p1, p2), p, t, extra, reduction=reduction, gscale=gscale,
                need_p=need_p, need_t=need_t)


def box_loss_backward(kind: int, fmt: int, variant: int, flags: int, eps: float, p0: float, p1: float, p2: float,
                      p: Tensor, t: Tensor, extra: Tensor | None, grad: Tensor, need_p: bool,
                      need_t: bool) -> tuple[Tensor | None, Tensor | None]:
    """``(grad · dloss/dp, grad · dloss/dt)``, None for a gradient not needed."""
    return _run((kind, fmt, variant, flags, eps, p0, p1, p2), p, t, extra, reduction=None, grad=grad, need_p=need_p,
                need_t=need_t)[1:]


def smooth_l1_forward(p: Tensor, t: Tensor, beta: float, reduction: str = "none") -> Tensor:
    """Element-wise Smooth L1 (beta = 0: L1), same shape as ``p``; or its sum / mean (0-dim)."""
    return _run(None, p, t, None, beta=beta, reduction=reduction)[0]


def smooth_l1_forward_backward(p: Tensor, t: Tensor, beta: float, gscale: float, need_p: bool, need_t: bool,
                               reduction: str = "none") -> tuple[Tensor, Tensor | None, Tensor | None]:
    """``(loss, gscale · dloss_i/dp, gscale · dloss_i/dt)`` element-wise in one pass: the loss per element or
    its sum / mean, a gradient not needed None."""
    return _run(None, p, t, None, beta=beta, reduction=reduction, gscale=gscale, need_p=need_p, need_t=need_t)


def smooth_l1_backward(p: Tensor, t: Tensor, beta: float, grad: Tensor, need_p: bool,
                       need_t: bool) -> tuple[Tensor | None, Tensor | None]:
    """``(grad · dloss/dp, grad · dloss/dt)`` element-wise, None for a gradient not needed."""
    return _run(None, p, t, None, beta=beta, reduction=None, grad=grad, need_p=need_p, need_t=need_t)[1:]


__all__ = [
    "ABI",
    "ABI_VERSION",
    "box_loss_backward",
    "box_loss_forward",
    "box_loss_forward_backward",
    "build",
    "library",
    "reduction_scale",
    "smooth_l1_backward",
    "smooth_l1_forward",
    "smooth_l1_forward_backward",
]
