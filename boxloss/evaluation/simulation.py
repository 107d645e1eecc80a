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

The descent runs in the fused C++ kernel of `boxloss.boxes.fused` (one loop per case, the whole
trajectory in registers), with the same loss and gradient as `boxloss.boxes`; without a C++ compiler
(or with backend="torch") it runs batched torch autograd on the reference losses (much slower). CIoU
with grad_mode="paper" (the paper's gradient, which `ciou_loss` offers on its fused path only) has its
own torch formulation here, `ciou_loss_paper_grad`; it is also the independent check of the kernel's.
"""

from __future__ import annotations

import math
import time

import torch

from boxloss.boxes import box_convert, box_iou, ciou_loss, diou_loss, giou_loss, iou_loss
from boxloss.boxes.fused import GRAD_MODES, _cpu

SIM_LOSSES = ("iou", "giou", "diou", "ciou")
ASPECT_RATIOS = (1 / 4, 1 / 3, 1 / 2, 1.0, 2.0, 3.0, 4.0)
SCALES = (0.5, 0.67, 0.75, 1.0, 1.33, 1.5, 2.0)
FULL_CASES = len(ASPECT_RATIOS) * len(SCALES) * len(ASPECT_RATIOS) * 5000
_KIND = {"iou": 0, "giou": 1, "diou": 2, "ciou": 3}


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


def _descend_fused(lib, kind, anchors, targets, iters, grad_mode, eps, num_threads):
    boxes = anchors.clone()
    lr = torch.tensor(learning_rates(iters), dtype=torch.float64)
    err = torch.zeros(iters, dtype=torch.float64)
    dtype = {torch.float32: 0, torch.float64: 1}[boxes.dtype]
    rc = lib.bl_simulate(
        dtype, _KIND[kind], GRAD_MODES.index(grad_mode), eps, boxes.shape[0], boxes.data_ptr(), targets.data_ptr(),
        iters, lr.data_ptr(), err.data_ptr(), num_threads,
    )
    if rc != 0:
        raise RuntimeError(f"simulation kernel failed (code {rc})")
    return boxes, err


def _descend_torch(kind, anchors, targets, iters, grad_mode, eps, chunk=1 << 18):
    """Same descent with torch autograd on the reference losses (the fallback, and the kernel's check);
    CIoU with grad_mode="paper" through `ciou_loss_paper_grad`."""
    if kind == "ciou" and grad_mode == "paper":
        def total_loss(b, t):
            return ciou_loss_paper_grad(b, t, fmt="cxcywh", eps=eps).sum()
    else:
        fn = {"iou": iou_loss, "giou": giou_loss, "diou": diou_loss, "ciou": ciou_loss}[kind]

        def total_loss(b, t):
            return fn(b, t, fmt="cxcywh", reduction="sum", eps=eps, impl="reference")
    lr = learning_rates(iters)
    err = torch.zeros(iters, dtype=torch.float64)
    out = []
    for s in range(0, anchors.shape[0], chunk):
        b, t = anchors[s : s + chunk].clone(), targets[s : s + chunk]
        for it in range(iters):
            b.requires_grad_(True)
            (grad,) = torch.autograd.grad(total_loss(b, t), b)
            with torch.no_grad():
                iou = box_iou(b, t, fmt="cxcywh", aligned=True, eps=eps).to(b.dtype)
                b = b - lr[it] * (2 - iou)[:, None] * grad
                err[it] += (b.double() - t.double()).abs().sum()
        out.append(b.detach())
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
    `backend`: "auto" (fused kernel if it builds, else torch), "fused" or "torch"."""
    for name in losses:
        if name not in SIM_LOSSES:
            raise ValueError(f"unknown loss {name!r}; accepted: {', '.join(SIM_LOSSES)}")
    if grad_mode not in GRAD_MODES:
        raise ValueError(f"grad_mode={grad_mode!r} is not supported; accepted: {', '.join(GRAD_MODES)}")
    if backend not in ("auto", "fused", "torch"):
        raise ValueError(f"backend={backend!r} is not supported; accepted: 'auto', 'fused', 'torch'")
    lib = None if backend == "torch" else _cpu.library()
    if backend == "fused" and lib is None:
        raise RuntimeError("backend='fused' needs the fused CPU kernels, which are unavailable (no C++ compiler, "
                           "a failed build, or BOXLOSS_CPU_KERNELS=0); use backend='torch' or 'auto'")
    threads = num_threads or torch.get_num_threads()
    anchors, targets = make_cases(n_cases, seed=seed, dtype=dtype)
    result = {"final_error": {}, "error_curve": {}, "seconds": {}}
    for name in losses:
        start = time.perf_counter()
        if lib is not None:
            _, err = _descend_fused(lib, name, anchors, targets, iters, grad_mode, eps, threads)
        else:
            _, err = _descend_torch(name, anchors, targets, iters, grad_mode, eps)
        result["seconds"][name] = time.perf_counter() - start
        result["error_curve"][name] = err.tolist()
        result["final_error"][name] = float(err[-1]) if iters else float("nan")
    result["config"] = {
        "n_cases": int(anchors.shape[0]), "iters": iters, "grad_mode": grad_mode, "dtype": str(dtype).split(".")[-1],
        "seed": seed, "threads": threads, "backend": "fused" if lib is not None else "torch",
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
