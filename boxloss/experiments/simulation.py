"""The simulation experiment of the DIoU paper (Zheng et al., "Distance-IoU Loss", AAAI 2020, section
"Simulation Experiment"): how fast and how far does plain gradient descent on each IoU-family loss move
an anchor box onto its target?

Setup, as in the paper and the authors' code:
- 7 target boxes of area 1, aspect ratios (w:h) 1:4, 1:3, 1:2, 1:1, 2:1, 3:1, 4:1, centred at (10, 10);
- 5,000 anchor centres drawn uniformly in the disc of radius 3 around (10, 10); at each, 7 scales
  (areas 0.5, 0.67, 0.75, 1, 1.33, 1.5, 2) x the same 7 aspect ratios: 7 x 7 x 7 x 5,000 = 1,715,000
  (anchor, target) regression cases;
- boxes are parameterised as (cx, cy, w, h); every case runs T = 200 steps
  B_t = B_{t-1} - eta_t * (2 - IoU(B_{t-1}, B_gt)) * dL/dB_{t-1},
  eta = 0.1 for steps 1-160, 0.01 for 161-180, 0.001 for 181-200 (the same 80% / 10% / 10% split for
  other T);
- error at step t: the l1 distance |B_t - B_gt|_1 in (cx, cy, w, h), summed over all cases.

The descent is a torch loop over the T steps; each step runs a whole batch of cases at once. The
"fused" backend calls the public losses with `impl="fused"`, which are the same kernels users get;
nothing is compiled for the simulation alone. One step is one forward and one backward of
`loss(B, B_gt, reduction="sum")` (the cases are independent, so the gradient of the sum with respect to
a case is that case's gradient) and one `box_iou` for the step size. The "torch" backend runs the same
loop with autograd on the reference losses, and it is the check on the fused one. CIoU with
grad_mode="paper" uses the paper's gradient, which `ciou_loss` offers on its fused path only. The torch
backend therefore has its own torch formulation of it, `ciou_loss_paper_grad`, which is also an
independent check of the kernel.
"""

from __future__ import annotations

import math
import time

import torch

from boxloss.boxes import box_convert, box_iou, ciou_loss, cpu_kernels_available, diou_loss, giou_loss, iou_loss
from boxloss.boxes.kernels import GRAD_MODES

SIM_LOSSES = ("iou", "giou", "diou", "ciou")
ASPECT_RATIOS = (1 / 4, 1 / 3, 1 / 2, 1.0, 2.0, 3.0, 4.0)
SCALES = (0.5, 0.67, 0.75, 1.0, 1.33, 1.5, 2.0)
FULL_CASES = len(ASPECT_RATIOS) * len(SCALES) * len(ASPECT_RATIOS) * 5000


def _wh(area: float, ratio: float) -> tuple[float, float]:
    return math.sqrt(area * ratio), math.sqrt(area / ratio)


def make_cases(n_cases: int = FULL_CASES, *, seed: int = 0, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Anchors and targets `[n_cases, 4]` in (cx, cy, w, h).

    Centres are the slowest index, so any prefix of the full 1,715,000 cases holds every (target, scale,
    ratio) combination equally often; `n_cases` below the full set uses ceil(n_cases / 343) centres.
    """
    combos = len(ASPECT_RATIOS) * len(SCALES) * len(ASPECT_RATIOS)
    n_centres = max(1, -(-n_cases // combos))
    g = torch.Generator().manual_seed(seed)
    r = 3.0 * torch.rand(n_centres, generator=g, dtype=torch.float64).sqrt()  # uniform in the disc
    phi = 2 * math.pi * torch.rand(n_centres, generator=g, dtype=torch.float64)
    centres = torch.stack((10 + r * phi.cos(), 10 + r * phi.sin()), dim=-1)
    targets = torch.tensor([(10.0, 10.0, *_wh(1.0, a)) for a in ASPECT_RATIOS], dtype=torch.float64)
    shapes = torch.tensor([_wh(s, a) for s in SCALES for a in ASPECT_RATIOS], dtype=torch.float64)
    n_t, n_s = len(targets), len(shapes)
    anchors = torch.cat(
        (centres[:, None, None, :].expand(n_centres, n_t, n_s, 2), shapes[None, None].expand(n_centres, n_t, n_s, 2)),
        dim=-1,
    )
    tgt = targets[None, :, None, :].expand(n_centres, n_t, n_s, 4)
    anchors, tgt = anchors.reshape(-1, 4)[:n_cases], tgt.reshape(-1, 4)[:n_cases]
    return anchors.to(dtype).contiguous(), tgt.to(dtype).contiguous()


def learning_rates(iters: int = 200) -> list[float]:
    """eta per step: 0.1 for the first 80% of steps, 0.01 for the next 10%, 0.001 for the rest."""
    return [0.1 if i < 0.8 * iters else 0.01 if i < 0.9 * iters else 0.001 for i in range(iters)]


class _PaperAtan(torch.autograd.Function):
    """atan(w / h) whose backward is the DIoU paper's: d/dw = h, d/dh = -w, i.e. the true derivative
    with the factor 1 / (w^2 + h^2) dropped (Zheng et al. 2020, after eq. 12)."""

    @staticmethod
    def forward(ctx, w, h):
        ctx.save_for_backward(w, h)
        return torch.atan(w / h)

    @staticmethod
    def backward(ctx, grad):
        w, h = ctx.saved_tensors
        return grad * h, -grad * w


def ciou_loss_paper_grad(pred, target, *, fmt="xyxy", eps=1e-7):
    """Per-box CIoU loss `[...]` (1 - IoU + rho^2/c^2 + alpha * v, alpha a constant) whose gradient is the
    DIoU paper's (`ciou_loss(..., grad_mode="paper")`), in torch autograd on the reference formulas: the
    same value as `ciou_loss`, and in v = 4/pi^2 (atan(w_gt/h_gt) - atan(w/h))^2 the derivative of
    atan(w/h) is (h, -w) instead of (h, -w) / (w^2 + h^2)."""
    p, t = box_convert(pred, fmt, "xyxy"), box_convert(target, fmt, "xyxy")
    angle_p = _PaperAtan.apply(p[..., 2] - p[..., 0], p[..., 3] - p[..., 1] + eps)
    angle_t = _PaperAtan.apply(t[..., 2] - t[..., 0], t[..., 3] - t[..., 1] + eps)
    v = (4 / math.pi**2) * (angle_t - angle_p) ** 2
    with torch.no_grad():
        iou = box_iou(pred, target, fmt=fmt, aligned=True, eps=eps)
        alpha = v / (1 - iou + v).clamp_min(eps)
    return diou_loss(pred, target, fmt=fmt, reduction="none", eps=eps, impl="reference") + alpha * v


_LOSSES = {"iou": iou_loss, "giou": giou_loss, "diou": diou_loss, "ciou": ciou_loss}
# Cases per batch. On the shared 2-core VM, 8192 was the fastest of 1,024 ... 262,144. Larger batches also
# run torch's own element-wise ops in OpenMP parallel regions, and on a loaded machine each region can wait
# for a descheduled thread (CIoU, 68,600 cases x 50 steps: 0.6 s at 8192, 4-14 s at 16,384-262,144).
CHUNK = 8192


def _total_loss(kind: str, backend: str, grad_mode: str, eps: float):
    """fn(b, t) -> the loss summed over the cases: the public loss with impl="fused" (backend "fused"),
    or autograd on the reference formulas (backend "torch"; CIoU's paper gradient through
    `ciou_loss_paper_grad`)."""
    fn = _LOSSES[kind]
    if backend == "fused":
        extra = {"grad_mode": grad_mode} if kind == "ciou" else {}
        return lambda b, t: fn(b, t, fmt="cxcywh", reduction="sum", eps=eps, impl="fused", **extra)
    if kind == "ciou" and grad_mode == "paper":
        return lambda b, t: ciou_loss_paper_grad(b, t, fmt="cxcywh", eps=eps).sum()
    return lambda b, t: fn(b, t, fmt="cxcywh", reduction="sum", eps=eps, impl="reference")


def _descend(kind, anchors, targets, iters, grad_mode, eps, backend, chunk=CHUNK):
    """Run the descent; returns (final boxes, error per step `[iters]` float64).

    Each step, on a batch of cases: B <- B - lr[it] * (2 - IoU(B, B_gt)) * dL/dB, then
    err[it] += sum |B - B_gt| (differences in the boxes' dtype, summed in float64). The step size takes
    its IoU from `box_iou` on both backends. In fp32 that IoU was bit for bit the C++ kernels' own when
    this loop replaced the one compiled into the loss library: the fused backend then took exactly the
    old loop's steps. Writing 2 - IoU as 1 + iou_loss instead rounds differently where IoU < 1/2."""
    total_loss = _total_loss(kind, backend, grad_mode, eps)
    lr = learning_rates(iters)
    err = torch.zeros(iters, dtype=torch.float64)
    out = []
    for s in range(0, anchors.shape[0], chunk):
        b, t = anchors[s : s + chunk].clone(), targets[s : s + chunk]
        for it in range(iters):
            x = b.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(total_loss(x, t), x)
            with torch.no_grad():
                step = (2 - box_iou(b, t, fmt="cxcywh", aligned=True, eps=eps).to(b.dtype)).mul_(lr[it])
                b.sub_(grad * step[:, None])
                err[it] += (b - t).abs_().sum(dtype=torch.float64)
        out.append(b)
    return torch.cat(out) if out else anchors.clone(), err


def run_simulation(
    losses=SIM_LOSSES,
    *,
    n_cases: int = FULL_CASES,
    iters: int = 200,
    grad_mode: str = "exact",
    dtype=torch.float32,
    eps: float = 1e-7,
    seed: int = 0,
    num_threads: int | None = None,
    backend: str = "auto",
) -> dict:
    """Run the simulation for each loss in `losses`; returns
    `{"final_error": {loss: float}, "error_curve": {loss: [float] * iters}, "seconds": {loss: float},
    "config": {...}}`. `grad_mode` applies to CIoU ("exact" or the paper's "paper").
    `backend`: "auto" (the fused kernels if they are available, else torch), "fused" (the public losses
    with impl="fused") or "torch" (autograd on the reference losses). `num_threads` sets torch's thread
    count for the run (the fused kernels use it too) and restores it afterwards."""
    for name in losses:
        if name not in SIM_LOSSES:
            raise ValueError(f"unknown loss {name!r}; accepted: {', '.join(SIM_LOSSES)}")
    if grad_mode not in GRAD_MODES:
        raise ValueError(f"grad_mode={grad_mode!r} is not supported; accepted: {', '.join(GRAD_MODES)}")
    if backend not in ("auto", "fused", "torch"):
        raise ValueError(f"backend={backend!r} is not supported; accepted: 'auto', 'fused', 'torch'")
    if backend != "torch":
        available = cpu_kernels_available()
        if backend == "fused" and not available:
            raise RuntimeError("backend='fused' needs the fused CPU kernels, which are unavailable (no C++ compiler, "
                               "a failed build, or BOXLOSS_CPU_KERNELS=0); use backend='torch' or 'auto'")
        backend = "fused" if available else "torch"
    previous_threads = torch.get_num_threads()
    threads = num_threads or previous_threads
    anchors, targets = make_cases(n_cases, seed=seed, dtype=dtype)
    result = {"final_error": {}, "error_curve": {}, "seconds": {}}
    torch.set_num_threads(threads)
    try:
        for name in losses:
            start = time.perf_counter()
            _, err = _descend(name, anchors, targets, iters, grad_mode, eps, backend)
            result["seconds"][name] = time.perf_counter() - start
            result["error_curve"][name] = err.tolist()
            result["final_error"][name] = float(err[-1]) if iters else float("nan")
    finally:
        torch.set_num_threads(previous_threads)
    result["config"] = {
        "n_cases": int(anchors.shape[0]), "iters": iters, "grad_mode": grad_mode, "dtype": str(dtype).split(".")[-1],
        "seed": seed, "threads": threads, "backend": backend,
        "initial_error": float((anchors.double() - targets.double()).abs().sum()),
    }
    return result


def plot_error_curves(result: dict, path: str, *, title: str | None = None) -> None:
    """Total error vs iteration, one line per loss, log scale (needs matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8), dpi=110)
    for name, curve in result["error_curve"].items():
        ax.plot(range(1, len(curve) + 1), curve, label=f"{name} (final {curve[-1]:.3g})")
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("total l1 error (all cases)")
    cfg = result.get("config", {})
    ax.set_title(title or f"DIoU simulation: {cfg.get('n_cases', '?')} cases, CIoU grad {cfg.get('grad_mode', '?')}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
