"""The one-pass sum / mean of a box loss as a C++ autograd node (``cpu/autograd_node.cpp``).

It does what ``functions.BoxLossOnePass`` does -- same kernel call, same gradient bits, same handling of a
second backward, of create_graph and of inputs changed in place -- but the node is C++: the autograd
engine runs a Python node in ~20 µs, which at 1e3 boxes was a third of the call (docs/benchmarks.md,
"A C++ autograd node"). The eager dispatch uses it for an unweighted sum / mean on CPU when it loads, and
the Python node otherwise, with the same results.

Built on first use with ``torch.utils.cpp_extension.load`` (torch's headers and ABI, ninja), ~30 s once,
announced like the kernel library's build; then cached under the torch extensions directory
(``$TORCH_EXTENSIONS_DIR``), in a folder keyed by the source, ``abi.h``, torch's and Python's versions, the
compiler and the source's folder, and loaded in ~0.1 s (0.06 s measured). It calls the kernel library's
``bl_box_loss`` through a function pointer passed with each call, so the library itself stays a C ABI built
without torch.
Not built, without
a message, when ninja or the C++ compiler is missing or with ``BOXLOSS_CPU_NODE=0``; a build that fails
with both present warns once (``why_not()`` says why in every case).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import sys
import threading
import time
import types
import warnings

import torch

from . import cpu

_NODE = types.SimpleNamespace(module=None, tried=False, why="not built yet")
_LOCK = threading.Lock()


def _key(cxx: str) -> str:
    h = hashlib.sha256()
    for name in (cpu.NODE_SOURCE, "abi.h"):
        h.update((cpu.SOURCE_DIR / name).read_bytes() + b"\0")
    # the source folder too: torch's builder rebuilds when a build folder's sources move, so two checkouts
    # sharing one folder would rebuild each other's module on every first call
    h.update(f"{torch.__version__}\n{sys.version}\n{cxx}\n{cpu.SOURCE_DIR}".encode())
    return h.hexdigest()[:16]


def build():
    """Build (unless cached) and import the extension module; raises RuntimeError (or the builder's error)
    when it cannot."""
    cxx = os.environ.get("CXX", "c++")
    key = _key(cxx)
    directory = os.path.join(cpu.build_dir(), "node_" + key)
    os.makedirs(directory, exist_ok=True)
    fresh = not any(f.endswith(".so") for f in os.listdir(directory))
    started = time.perf_counter()
    if fresh:
        cpu._announce(f"boxloss: compiling the C++ autograd node of the fused CPU losses with {cxx} into {directory} "
                      f"(~30 s, once: later runs load the cached module) ...")
    # importing cpp_extension logs a warning about CUDA on machines without it: not this build's concern
    log = logging.getLogger("torch.utils.cpp_extension")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        from torch.utils import cpp_extension

        module = cpp_extension.load(f"boxloss_autograd_node_{key}", [str(cpu.SOURCE_DIR / cpu.NODE_SOURCE)],
                                    extra_cflags=["-O2"], extra_include_paths=[str(cpu.SOURCE_DIR)],
                                    build_directory=directory, verbose=False)
    finally:
        log.setLevel(level)
    if module.abi_version() != cpu.ABI_VERSION:
        raise RuntimeError(f"the autograd node was built for ABI {module.abi_version()}, expected {cpu.ABI_VERSION}")
    if fresh:
        cpu._announce(f"boxloss: compiled the C++ autograd node in {time.perf_counter() - started:.1f} s")
    return module


def module():
    """The extension module, built and imported on first use (thread-safe), or None (see ``why_not``)."""
    if not _NODE.tried:
        with _LOCK:
            if not _NODE.tried:
                _NODE.module, _NODE.why = None, None
                cxx = os.environ.get("CXX", "c++")
                if os.environ.get("BOXLOSS_CPU_NODE", "1") == "0":
                    _NODE.why = "disabled by BOXLOSS_CPU_NODE=0"
                elif shutil.which("ninja") is None:
                    _NODE.why = "ninja is not installed (torch's C++ extension builder needs it)"
                elif shutil.which(cxx) is None:
                    _NODE.why = f"no C++ compiler found (looked for {cxx!r})"
                else:
                    try:
                        _NODE.module = build()
                    except Exception as e:  # noqa: BLE001 -- any failure means: the Python node
                        _NODE.why = f"its build failed: {e}"
                        warnings.warn(f"boxloss: the C++ autograd node could not be built; the fused losses use "
                                      f"the Python node (the same results, ~15 us more per call). {e}",
                                      RuntimeWarning, stacklevel=3)
                _NODE.tried = True
    return _NODE.module


def why_not() -> str | None:
    """None when the node is loaded (after ``module()``), else why not."""
    return None if module() is not None else _NODE.why


def _reset_for_tests(module=None, tried: bool = False) -> None:
    """Testing hook: forget the module (``tried=True`` with None: use the Python node from now on)."""
    _NODE.module, _NODE.tried, _NODE.why = module, tried, "disabled by a test" if tried and module is None else None


def box_loss_one_pass(p, t, extra, cfg: tuple, reduction: str):
    """``functions.BoxLossOnePass.apply(p, t, extra, cfg, reduction)`` through the C++ node, or None when it is
    not available."""
    node = module()
    if node is None:
        return None
    return node.box_loss_one_pass(p, t, extra, cpu.box_loss_address(), *cfg, cpu.REDUCTIONS[reduction])
