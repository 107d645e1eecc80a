"""EIoU (*Efficient* IoU) and Focal-EIoU losses (Zhang, Ren, Zhang, Jia, Wang, Tan, "Focal and Efficient
IOU Loss for Accurate Bounding Box Regression", Neurocomputing 506, 2022; arXiv:2101.08158).

    L_EIoU       = 1 - IoU + rho^2(b, b_gt) / c^2 + (w - w_gt)^2 / C_w^2 + (h - h_gt)^2 / C_h^2
    L_Focal-EIoU = IoU^gamma * L_EIoU           (IoU^gamma detached: a per-box weight)

rho is the distance between the box centres, C_w and C_h the width and height of the smallest box
enclosing both, c^2 = C_w^2 + C_h^2. EIoU is DIoU plus direct width and height penalties, which replace
CIoU's aspect-ratio term v (v is 0 for every box of the right aspect ratio, however wrong its size).

Not mmdetection's `EIoULoss` (the one with a `smooth_point` argument): that is *Extended* IoU, a
different loss with a different formula. Here "eiou" always means Efficient IoU.

Numerics as in `overlaps.py`: computed in float32 (float64 for float64 input), widths clamped at 0,
eps only bounds denominators from below, identical boxes give exactly 0.
"""

from __future__ import annotations

from torch import Tensor

from ._checks import check_positive
from ._geometry import box_parts, check_number, safe_pow
from .kernels import fused_box_loss, variant_of
from .iou_losses import _finish
from .overlaps import aligned_overlap, prepare_box_pair


def eiou_per_box(p: Tensor, t: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """(L_EIoU, IoU) per pair of xyxy boxes in the compute dtype."""
    diou, iou = aligned_overlap(p, t, "diou", eps)
    g = box_parts(p, t)
    dw, dh = g.pw - g.tw, g.ph - g.th
    loss = 1 - diou + dw * dw / (g.cw * g.cw).clamp_min(eps) + dh * dh / (g.ch * g.ch).clamp_min(eps)
    return loss, iou


def eiou_loss(
    pred: Tensor,
    target: Tensor,
    *,
    fmt: str = "xyxy",
    reduction: str = "mean",
    weight: Tensor | None = None,
    avg_factor=None,
    eps: float = 1e-7,
    impl: str | None = None,
) -> Tensor:
    """Efficient-IoU loss (Zhang et al. 2022), in [0, 4): 1 - IoU + rho^2/c^2 + dw^2/C_w^2 + dh^2/C_h^2.

    Not mmdetection's `EIoULoss` (Extended IoU). Arguments and return dtype as for `ciou_loss`:
    boxes `[..., 4]` in `fmt`, reduction "none" (`[...]`) | "mean" | "sum", weight per box or per
    coordinate, avg_factor divides the sum. Formula and numerics: module docstring, docs/losses.md.
    impl: "auto" | "fused" | "reference" | None, as for the core losses (`boxloss.boxes.kernels`): the fused CPU
    kernel where available (`boxloss.boxes.kernels`), else the eager reference; same values and gradients either way.
    """
    check_positive("eps", eps)
    loss = fused_box_loss(pred, target, "eiou", fmt=fmt, eps=eps, impl=impl,
                          reduction=reduction, weight=weight, avg_factor=avg_factor)
    if loss is not None:
        return loss
    p, t = prepare_box_pair(pred, target, fmt)
    loss, _ = eiou_per_box(p, t, eps)
    return _finish(loss, reduction, weight, avg_factor)


def focal_eiou_loss(
    pred: Tensor,
    target: Tensor,
    *,
    fmt: str = "xyxy",
    reduction: str = "mean",
    weight: Tensor | None = None,
    avg_factor=None,
    eps: float = 1e-7,
    gamma: float = 0.5,
    impl: str | None = None,
) -> Tensor:
    """Focal-EIoU loss IoU^gamma * L_EIoU (Zhang et al. 2022; gamma = 0.5 is the paper's choice).

    IoU^gamma is detached: it re-weights each box's EIoU gradient towards high-overlap boxes and is not
    itself optimised (the paper does not say; this follows the issue's specification, and the public YOLO
    implementations detach it too -- no code by the authors was found, docs/losses.md). Consequence:
    disjoint boxes (IoU = 0) get zero loss and zero gradient;
    pair it with another loss early in training if predictions start far away. gamma = 0 is EIoU.
    `impl` as for `eiou_loss`.
    """
    check_positive("eps", eps)
    check_number("gamma", gamma, low=0.0)
    # gamma = 0: IoU^0 = 1 (0^0 = 1 too), i.e. EIoU
    kind, mode = ("eiou", 0) if gamma == 0 else ("focal_eiou", variant_of(gamma))
    loss = fused_box_loss(pred, target, kind, fmt=fmt, eps=eps, p0=gamma, variant=mode, impl=impl,
                          reduction=reduction, weight=weight, avg_factor=avg_factor)
    if loss is not None:
        return loss
    p, t = prepare_box_pair(pred, target, fmt)
    loss, iou = eiou_per_box(p, t, eps)
    return _finish(safe_pow(iou.detach(), gamma) * loss, reduction, weight, avg_factor)
