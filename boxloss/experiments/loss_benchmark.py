"""Speed and peak memory of the box losses: torchvision.ops vs our reference path vs our fused kernels,
all measured in the same run (the numbers to compare are the ratios).

    from boxloss.experiments.loss_benchmark import run_benchmark, format_markdown
    rows = run_benchmark(losses=["ciou"], sizes=[10_000, 1_000_000], dtypes=["float32"], device="cpu")
    print(format_markdown(rows))

Timing: forward + backward (`loss(pred, target, reduction="mean").backward()`, gradient for pred only)
per call, median over interleaved rounds (each round runs every implementation once in turn, so load
from other processes hits all of them alike); the minimum over rounds is reported too ("best"): on a
shared machine a 2-thread op whose second thread is descheduled stalls for a scheduler time slice, which
only ever adds time. Inputs are overlapping random xyxy boxes.

torch.compile (`compile=True`, `--compile`): each implementation is also timed as
`torch.compile(fn, fullgraph=True, dynamic=False)` ("torchvision+compile", "reference+compile",
"fused+compile"; under compile the fused losses are torch custom ops). Dynamo is reset before each row,
so the recompile limit (8 shapes per function) never sends a later row silently back to eager; where
torch has `fail_on_recompile_limit_hit`, it is also set. Each compiled function is called twice before
the timed rounds (the first call compiles the forward and the backward); the first call's time is
kept as `compile_seconds`. A compile that fails is recorded in the row's `errors` and its columns are
"-". The table gives the ratios the kernels are judged by (`COMPILE_TARGETS`), and `format_overhead`
gives the time per call at N = 1e3, where it is nearly all per-call overhead. Peak memory is not
measured with compile.

Peak memory ("extra": above what is allocated before the call, inputs excluded, the gradient of pred
included):
- CUDA: `torch.cuda.max_memory_allocated()` after `reset_peak_memory_stats()`;
- CPU: the process' peak resident set (VmHWM, reset through /proc/self/clear_refs) minus the resident
  set before the call, measured in a child process started with MALLOC_MMAP_THRESHOLD_=65536 so that
  every tensor above 64 KiB is its own mmap and returned to the OS when freed (otherwise glibc recycles
  freed memory and the peak is under-counted). Linux only.

torchvision has no plain IoU loss; its row "iou" uses `torchvision.ops._utils._loss_inter_union`, the
helper its GIoU/DIoU/CIoU losses call, as `1 - inter / union`. For "smooth_l1" the baseline column
is `torch.nn.functional.smooth_l1_loss(beta=1)` (torchvision has none).

The newer losses (NEWER_LOSSES: eiou ... shape_iou) have no torchvision counterpart (their torchvision
column is "-"); each runs with its defaults, MPDIoU with img_size = (150, 150) (the extent of the boxes
`make_boxes` draws), and "wiou_v3" is the `WIoUv3Loss` module in training mode, as training uses it:
the running-mean update (a no-grad IoU pass and a few scalar ops) is part of the time.

UNFUSED_LOSSES (NWD with C = 25, Focaler-IoU, PIoU, PIoU v2, Balanced L1 on the raw coordinates) have no
fused kernel: their "fused" columns are "-", and "reference+compile" against "reference" shows what
inductor already gains without one.
"""

from __future__ import annotations

import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time

import torch

from boxloss import boxes as B

LOSSES = ("iou", "giou", "diou", "ciou", "smooth_l1")
NEWER_LOSSES = ("eiou", "focal_eiou", "siou", "alpha_iou", "wiou_v1", "wiou_v3", "mpdiou", "inner_iou", "shape_iou")
# Box losses with no fused kernel (yet): their "fused" columns are "-", and the rows show what a kernel
# would have to beat, eager and compiled.
UNFUSED_LOSSES = ("nwd", "focaler_iou", "piou", "piou_v2", "balanced_l1")
IMPLS = ("torchvision", "reference", "fused")
COMPILED_IMPLS = tuple(f"{impl}+compile" for impl in IMPLS)
# The ratios the kernels are judged by, with their targets, in the order of the --compile table's columns
# (the torchvision targets are for CIoU at N = 1e3 .. 1e6).
COMPILE_TARGETS = {
    ("fused+compile", "fused"): "<= 1.3",
    ("reference+compile", "fused+compile"): ">= 5",
    ("torchvision", "fused"): ">= 10",
    ("torchvision+compile", "fused"): ">= 10",
}
_OURS = {
    "iou": B.iou_loss, "giou": B.giou_loss, "diou": B.diou_loss, "ciou": B.ciou_loss,
    "smooth_l1": B.smooth_l1_loss, "eiou": B.eiou_loss, "focal_eiou": B.focal_eiou_loss, "siou": B.siou_loss,
    "alpha_iou": B.alpha_iou_loss, "wiou_v1": B.wiou_v1_loss, "inner_iou": B.inner_iou_loss,
    "shape_iou": B.shape_iou_loss,
}

# NWD's constant C is dataset-dependent (the paper's 12.8 for AI-TOD); the boxes of `make_boxes` have
# sides 1-50, so C = 25 keeps the similarity away from both ends.
_UNFUSED = {
    "nwd": lambda p, t: B.nwd_loss(p, t, constant=25.0, reduction="mean"),
    "focaler_iou": lambda p, t: B.focaler_iou_loss(p, t, reduction="mean"),
    "piou": lambda p, t: B.piou_loss(p, t, reduction="mean"),
    "piou_v2": lambda p, t: B.piou_v2_loss(p, t, reduction="mean"),
    "balanced_l1": lambda p, t: B.balanced_l1_loss(p, t, reduction="mean"),
}


def check_losses(names) -> list[str]:
    """`names` if every one is a benchmarked loss, else ValueError listing the accepted names."""
    known = LOSSES + NEWER_LOSSES + UNFUSED_LOSSES
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown loss(es) {', '.join(unknown)}; accepted: {', '.join(known)}")
    return list(names)


def _torchvision_fn(name):
    if name in NEWER_LOSSES + UNFUSED_LOSSES:
        return None
    if name == "smooth_l1":  # no torchvision op: torch's own one-kernel F.smooth_l1_loss is the baseline
        import torch.nn.functional as F

        return lambda p, t: F.smooth_l1_loss(p, t, beta=1.0)
    try:
        from torchvision import ops
    except Exception:  # noqa: BLE001
        return None
    if name == "giou":
        return lambda p, t: ops.generalized_box_iou_loss(p, t, reduction="mean")
    if name == "diou":
        return lambda p, t: ops.distance_box_iou_loss(p, t, reduction="mean")
    if name == "ciou":
        return lambda p, t: ops.complete_box_iou_loss(p, t, reduction="mean")
    try:
        from torchvision.ops._utils import _loss_inter_union
    except Exception:  # noqa: BLE001
        return None

    def iou(p, t, eps=1e-7):
        inter, union = _loss_inter_union(p, t)
        return (1 - inter / (union + eps)).mean()

    return iou


def loss_fn(name: str, impl: str, *, compile_backend: str = "inductor"):
    """fn(pred, target) -> scalar mean loss, or None if `impl` has no such loss. `impl` is one of IMPLS or
    COMPILED_IMPLS ("fused+compile": torch.compile(fullgraph=True, dynamic=False) of the "fused" fn, with
    `compile_backend`; compiled on its first call)."""
    if impl.endswith("+compile"):
        fn = loss_fn(name, impl[: -len("+compile")])
        return None if fn is None else torch.compile(fn, fullgraph=True, dynamic=False, backend=compile_backend)
    if impl == "torchvision":
        return _torchvision_fn(name)
    if name in UNFUSED_LOSSES:
        return None if impl == "fused" else _UNFUSED[name]
    if name == "wiou_v3":
        return B.WIoUv3Loss(impl=impl).train()
    if name == "mpdiou":
        return lambda p, t: B.mpdiou_loss(p, t, reduction="mean", img_size=(150, 150), impl=impl)
    return lambda p, t: _OURS[name](p, t, reduction="mean", impl=impl)


def make_boxes(n: int, dtype=torch.float32, device="cpu", seed: int = 0):
    """`n` overlapping (pred, target) xyxy pairs: targets with sides 1-50 in [0, 100]^2, preds jittered."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 100
    wh = 1 + torch.rand(n, 2, generator=g) * 49
    target = torch.cat([xy, xy + wh], -1)
    pred = target + 0.2 * wh.repeat(1, 2) * torch.randn(n, 4, generator=g)
    pred = torch.cat([torch.minimum(pred[:, :2], pred[:, 2:] - 0.1), pred[:, 2:]], -1)
    return pred.to(device=device, dtype=dtype), target.to(device=device, dtype=dtype)


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _fwd_bwd(fn, p, t):
    x = p.detach().requires_grad_(True)
    fn(x, t).backward()
    return x


def time_calls(fns: dict, p, t, *, rounds: int, min_seconds: float = 0.02, best: bool = False) -> dict:
    """Median (or with best=True, (median, minimum)) seconds per forward+backward call for each fn,
    over `rounds` interleaved rounds."""
    device = p.device
    reps = {}
    for name, fn in fns.items():  # warm up, then pick repetitions so one measurement lasts >= min_seconds
        _fwd_bwd(fn, p, t)
        _sync(device)
        start = time.perf_counter()
        _fwd_bwd(fn, p, t)
        _sync(device)
        once = time.perf_counter() - start
        reps[name] = max(1, min(200, int(min_seconds / max(once, 1e-7))))
    samples = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            _sync(device)
            start = time.perf_counter()
            for _ in range(reps[name]):
                _fwd_bwd(fn, p, t)
            _sync(device)
            samples[name].append((time.perf_counter() - start) / reps[name])
    if best:
        return {name: (statistics.median(s), min(s)) for name, s in samples.items()}
    return {name: statistics.median(s) for name, s in samples.items()}


def _cpu_status():
    text = open("/proc/self/status").read()
    return {k: int(re.search(k + r":\s+(\d+)", text).group(1)) * 1024 for k in ("VmRSS", "VmHWM")}


def peak_extra_bytes(fn, p, t) -> int:
    """Peak memory above the pre-call level during one forward+backward (see the module docstring)."""
    if p.device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        x = _fwd_bwd(fn, p, t)
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
        del x
        return int(peak)
    x = p.detach().requires_grad_(True)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current resident set
    base = _cpu_status()["VmRSS"]
    fn(x, t).backward()
    peak = _cpu_status()["VmHWM"] - base
    del x
    return int(peak)


def _memory_worker(spec: dict) -> dict:
    torch.set_num_threads(spec["threads"])
    out = {}
    for loss in spec["losses"]:
        for n in spec["sizes"]:
            for dt in spec["dtypes"]:
                p, t = make_boxes(n, getattr(torch, dt))
                for impl in IMPLS:
                    fn = loss_fn(loss, impl)
                    if fn is None:
                        continue
                    _fwd_bwd(fn, p, t)  # warm up (and build the kernels) outside the measurement
                    out[f"{loss}|{n}|{dt}|{impl}"] = min(peak_extra_bytes(fn, p, t) for _ in range(2))
    return out


def measure_cpu_memory(losses, sizes, dtypes, threads) -> dict:
    """Run the CPU memory measurements in a child process with a fixed mmap threshold."""
    spec = {"losses": list(losses), "sizes": list(sizes), "dtypes": list(dtypes), "threads": threads}
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    code = "import json,sys; from boxloss.experiments.loss_benchmark import _memory_worker as w; " \
           "print(json.dumps(w(json.loads(sys.argv[1]))))"
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(spec)], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"memory worker failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _dynamo_guards() -> dict:
    """Dynamo settings of the compiled rows: fail, rather than fall back to eager, at the recompile limit
    (where this torch has the option)."""
    import torch._dynamo as dynamo

    return {k: True for k in ("fail_on_recompile_limit_hit",) if hasattr(dynamo.config, k)}


def compile_and_warm_up(fns: dict, p, t) -> tuple[dict, dict, dict]:
    """Reset dynamo, then call each compiled fn twice (compile, then one compiled call). Returns (the fns
    that compiled, first-call seconds per fn, error message per fn that failed)."""
    import torch._dynamo as dynamo

    dynamo.reset()
    ok, seconds, errors = {}, {}, {}
    for name, fn in fns.items():
        try:
            _sync(p.device)
            start = time.perf_counter()
            _fwd_bwd(fn, p, t)
            _sync(p.device)
            seconds[name] = time.perf_counter() - start
            _fwd_bwd(fn, p, t)
            ok[name] = fn
        except Exception as e:  # noqa: BLE001 -- recorded in the row and shown by the script
            lines = [line.strip() for line in str(e).splitlines() if line.strip()]
            errors[name] = f"{type(e).__name__}: {' '.join(lines[:2])[:300]}"  # dynamo: a title, then the cause
    return ok, seconds, errors


def run_benchmark(
    losses=LOSSES, sizes=(1_000, 10_000, 100_000, 1_000_000), dtypes=("float32", "bfloat16"), device="cpu",
    rounds: int | None = None, memory: bool = True, log=None, compile: bool = False, compile_backend: str = "inductor",
) -> list[dict]:
    """One row per (loss, size, dtype): seconds and peak extra bytes per implementation.

    `compile=True` adds COMPILED_IMPLS (module docstring), compiled with `compile_backend` (inductor, what
    users get; the tests use "aot_eager", which traces the same graphs without generating code); rows then
    also hold `compile_seconds` and `errors`, and peak memory is not measured."""
    losses = check_losses(losses)
    memory = memory and not compile
    threads = torch.get_num_threads()
    mem = {}
    if memory and torch.device(device).type == "cpu":
        mem = measure_cpu_memory(losses, sizes, dtypes, threads)
    impls = IMPLS + COMPILED_IMPLS if compile else IMPLS
    rows = []
    for loss in losses:
        for n in sizes:
            for dt in dtypes:
                p, t = make_boxes(n, getattr(torch, dt), device)
                fns = {impl: loss_fn(loss, impl, compile_backend=compile_backend) for impl in impls}
                fns = {k: v for k, v in fns.items() if v is not None}
                extra = {}
                if compile:
                    import torch._dynamo as dynamo

                    with dynamo.config.patch(**_dynamo_guards()):
                        compiled, first, errors = compile_and_warm_up(
                            {k: v for k, v in fns.items() if k in COMPILED_IMPLS}, p, t)
                        fns = {k: v for k, v in fns.items() if k not in COMPILED_IMPLS or k in compiled}
                        r = rounds or (5 if n >= 1_000_000 else 9)
                        both = time_calls(fns, p, t, rounds=r, best=True)
                    extra = {"compile_seconds": first, "errors": errors}
                else:
                    r = rounds or (5 if n >= 1_000_000 else 9)
                    both = time_calls(fns, p, t, rounds=r, best=True)
                row = {"loss": loss, "n": n, "dtype": dt, "seconds": {k: v[0] for k, v in both.items()},
                       "best_seconds": {k: v[1] for k, v in both.items()}, "peak_bytes": {}, **extra}
                for impl, fn in fns.items():
                    if memory and torch.device(device).type == "cuda":
                        row["peak_bytes"][impl] = peak_extra_bytes(fn, p, t)
                    elif f"{loss}|{n}|{dt}|{impl}" in mem:
                        row["peak_bytes"][impl] = mem[f"{loss}|{n}|{dt}|{impl}"]
                rows.append(row)
                if log:
                    log(format_compile_row(row) if compile else format_row(row))
                del p, t
    return rows


def fused_unavailable(device="cpu") -> str | None:
    """Why the fused CPU kernels cannot run (None if they can, or for a non-CPU device). Checked before a
    CPU benchmark, whose "fused" columns need them: builds the library on first call; the library's own
    warning (no C++ compiler, a failed build) becomes the reason instead of being printed."""
    if torch.device(device).type != "cpu":
        return None
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if B.cpu_kernels_available():
            return None
    why = " ".join(str(caught[0].message).split()) if caught else "the fused CPU kernels are unavailable"
    return why[:500]


def measure_cpu_build() -> dict | None:
    """Time a fresh build of the fused CPU kernels, then a load from the user's cache, through the CPU
    backend's ``build`` (``boxloss.boxes.kernels.backends.cpu().build``). Returns
    ``{"fresh_build_s", "cached_load_s"}``, or None when the backend has no ``build`` to time. A failed
    build (no C++ compiler, a compile error) raises the backend's RuntimeError.

    The fresh build goes into a new temporary folder (``$TORCH_EXTENSIONS_DIR`` points there during the
    build only; the backend keeps its libraries under that folder), which is removed afterwards;
    ``$TORCH_EXTENSIONS_DIR`` is then restored exactly (set to its old value, or unset if it was) and
    nothing in the user's extensions folder is removed. ``build(force=True)`` is used where ``build``
    takes ``force``. The second measurement loads the library from the user's folder (building it
    there first if it is not cached).
    """
    import inspect
    import tempfile

    from boxloss.boxes.kernels import backends

    build = getattr(backends.cpu(), "build", None)
    if build is None:
        return None
    try:
        takes_force = "force" in inspect.signature(build).parameters
    except (TypeError, ValueError):
        takes_force = False
    previous = os.environ.get("TORCH_EXTENSIONS_DIR")
    with tempfile.TemporaryDirectory(prefix="boxloss-fresh-build-") as fresh:
        os.environ["TORCH_EXTENSIONS_DIR"] = fresh
        try:
            start = time.perf_counter()
            if takes_force:
                build(force=True)
            else:
                build()
            fresh_s = time.perf_counter() - start
        finally:
            if previous is None:
                os.environ.pop("TORCH_EXTENSIONS_DIR", None)
            else:
                os.environ["TORCH_EXTENSIONS_DIR"] = previous
    start = time.perf_counter()
    build()
    return {"fresh_build_s": fresh_s, "cached_load_s": time.perf_counter() - start}


def gpu_bandwidth(loss: str, n: int, seconds: float, peak_gbs: float | None = None) -> dict:
    """Achieved DRAM traffic of the fused forward+backward (fp32): forward reads 2 x 16 B and writes 4 B
    per box, backward reads 2 x 16 B (+ a broadcast scalar) and writes the 16 B gradient: 84 B per box
    (a lower bound on the real traffic). `peak_gbs` defaults to the device's memory clock x bus width."""
    gbs = 84 * n / seconds / 1e9
    if peak_gbs is None and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        clock, width = getattr(props, "memory_clock_rate", None), getattr(props, "memory_bus_width", None)
        if clock and width:
            peak_gbs = 2 * clock * 1e3 * width / 8 / 1e9
    return {"achieved_gbs": gbs, "peak_gbs": peak_gbs, "fraction": gbs / peak_gbs if peak_gbs else None}


def _ms(x):
    return f"{x * 1e3:.3f}" if x is not None else "-"


def _mb(x):
    return f"{x / 2**20:.1f}" if x is not None else "-"


def _ratio(a, b):
    return f"{a / b:.1f}x" if a is not None and b else "-"


HEADER = (
    "| loss | N | dtype | torchvision ms | reference ms | fused ms | tv / fused | ref / fused | tv / fused (best) "
    "| tv MiB | ref MiB | fused MiB | fused / tv mem |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def format_row(row: dict) -> str:
    s, m = row["seconds"], row["peak_bytes"]
    tv, ref, fu = s.get("torchvision"), s.get("reference"), s.get("fused")
    mtv, mref, mfu = m.get("torchvision"), m.get("reference"), m.get("fused")
    b = row.get("best_seconds", {})
    mem_ratio = f"{mfu / mtv:.2f}" if mfu is not None and mtv and mtv > 2**20 else "-"
    return (
        f"| {row['loss']} | {row['n']:.0e} | {row['dtype']} | {_ms(tv)} | {_ms(ref)} | {_ms(fu)} | {_ratio(tv, fu)} "
        f"| {_ratio(ref, fu)} | {_ratio(b.get('torchvision'), b.get('fused'))} "
        f"| {_mb(mtv)} | {_mb(mref)} | {_mb(mfu)} | {mem_ratio} |"
    )


HEADER_COMPILE = (
    "| loss | N | dtype | torchvision ms | tv+compile ms | reference ms | ref+compile ms | fused ms | fused+compile ms "
    "| fused+c / fused (<= 1.3) | ref+c / fused+c (>= 5) | tv / fused (>= 10) | tv+c / fused (>= 10) |\n"
    + "|---" * 13 + "|"
)


def _ratio2(a, b):
    return f"{a / b:.2f}x" if a is not None and b else "-"


def format_compile_row(row: dict) -> str:
    """One line of the --compile table: the six times (ms) and the COMPILE_TARGETS ratios."""
    s = row["seconds"]
    times = " | ".join(_ms(s.get(impl)) for pair in zip(IMPLS, COMPILED_IMPLS) for impl in pair)
    ratios = " | ".join(_ratio2(s.get(a), s.get(b)) for a, b in COMPILE_TARGETS)
    return f"| {row['loss']} | {row['n']:.0e} | {row['dtype']} | {times} | {ratios} |"


def format_overhead(rows, n: int = 1_000) -> str:
    """Microseconds per forward+backward call at N = `n` for every implementation (at 1e3 boxes the time is
    nearly all per-call overhead), and what compile adds to the fused call. Empty if no row has N = `n`."""
    chosen = [r for r in rows if r["n"] == n]
    if not chosen:
        return ""
    impls = [impl for pair in zip(IMPLS, COMPILED_IMPLS) for impl in pair]
    lines = [
        "| loss | dtype | " + " | ".join(f"{i} us" for i in impls) + " | fused+compile - fused us |",
        "|---" * (3 + len(impls)) + "|",
    ]
    for r in chosen:
        s = r["seconds"]
        us = " | ".join(f"{s[i] * 1e6:.0f}" if i in s else "-" for i in impls)
        diff = f"{(s['fused+compile'] - s['fused']) * 1e6:+.0f}" if "fused" in s and "fused+compile" in s else "-"
        lines.append(f"| {r['loss']} | {r['dtype']} | {us} | {diff} |")
    return "\n".join(lines)


def format_markdown(rows) -> str:
    """The table of `rows`: the --compile table if they were measured with compile, else the eager one."""
    if rows and "compile_seconds" in rows[0]:
        return "\n".join([HEADER_COMPILE] + [format_compile_row(r) for r in rows])
    return "\n".join([HEADER] + [format_row(r) for r in rows])


def environment(device="cpu") -> str:
    """One line describing the machine and versions, for the results file."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torchvision

    parts = [
        f"CPU {cpu} ({os.cpu_count()} cores visible, torch threads {torch.get_num_threads()})",
        f"python {platform.python_version()}, torch {torch.__version__}, torchvision {torchvision.__version__}",
    ]
    if torch.device(device).type == "cuda":
        parts.append(f"GPU {torch.cuda.get_device_name(0)}")
    return "; ".join(parts)
