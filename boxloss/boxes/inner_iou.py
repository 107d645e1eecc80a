"""Inner-IoU losses (Zhang, Xu, Zhang, "Inner-IoU: More Effective Intersection over Union Loss with
Auxiliary Bounding Box", arXiv:2311.02877, 2023).

Auxiliary "inner" boxes share the centres of the prediction and the target and are `ratio` times their
size; their IoU replaces the IoU term of a base loss, whose penalty terms stay on the real boxes:

    inner box     (x_c -/+ ratio * w / 2, y_c -/+ ratio * h / 2)
    L_Inner-X   = L_X + IoU - IoU_inner          (X = IoU, GIoU, DIoU, CIoU, EIoU, SIoU)

so base="iou" is 1 - IoU_inner. ratio < 1 (smaller auxiliary boxes) speeds up regression of high-IoU
pairs, ratio > 1 helps low-IoU pairs; the paper suggests ratio in [0.5, 1.5]. ratio = 1 is the base loss.
Checked against the authors' released `inner_ciou` / `inner_siou` (malagoutou/Inner-IoU): same inner boxes,
same "base loss with IoU replaced by the inner IoU"; CIoU's alpha inside Inner-CIoU uses the real boxes'
IoU and is a constant in backprop, as there. The default ratio = 0.7 is our choice, not theirs: their
functions default to ratio = 1.0, which is the base loss itself (docs/losses.md).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._checks import check_choice, check_positive
from .eiou import eiou_per_box
from .kernels import fused_box_loss
from .iou_losses import _finish
from .overlaps import aligned_overlap, prepare_box_pair
from .siou import siou_per_box

INNER_IOU_BASES = ("iou", "giou", "diou", "ciou", "eiou", "siou")


def inner_boxes(b: Tensor, ratio: float) -> Tensor:
    """xyxy boxes scaled by `ratio` about their centres (width clamped at 0 first)."""
    x1, y1, x2, y2 = b.unbind(-1)
    cx, cy = 0.5 * (x1 + x2), 0.5 * (y1 + y2)
    hw, hh = 0.5 * ratio * (x2 - x1).clamp_min(0), 0.5 * ratio * (y2 - y1).clamp_min(0)
    return torch.stack((cx - hw, cy - hh, cx + hw, cy + hh), dim=-1)


def _base_per_box(p: Tensor, t: Tensor, base: str, eps: float) -> tuple[Tensor, Tensor]:
    if base == "eiou":
        return eiou_per_box(p, t, eps)
    if base == "siou":
        return siou_per_box(p, t, eps)
    value, iou = aligned_overlap(p, t, base, eps, ciou_alpha="constant")
    return 1 - value, iou


def inner_iou_loss(
    pred: Tensor,
    target: Tensor,
    *,
    fmt: str = "xyxy",
    reduction: str = "mean",
    weight: Tensor | None = None,
    avg_factor=None,
    eps: float = 1e-7,
    base: str = "iou",
    ratio: float = 0.7,
    impl: str | None = None,
) -> Tensor:
    """Inner-IoU loss (Zhang et al. 2023): L_base + IoU - IoU(inner boxes scaled by `ratio`).

    base: "iou" | "giou" | "diou" | "ciou" | "eiou" | "siou" (EIoU is Efficient IoU, `eiou_loss`; SIoU
    with theta = 4). ratio: > 0, the auxiliary boxes' size relative to the real ones (default 0.7).
    Other arguments and the return dtype as for `ciou_loss`.
    impl: "auto" | "fused" | "reference" | None, as for the core losses (`boxloss.boxes.kernels`): the fused CPU
    kernel where available (`boxloss.boxes.kernels`), else the eager reference; same values and gradients either way.
    """
    check_positive("eps", eps)
    check_choice("base", base, INNER_IOU_BASES)
    check_positive("ratio", ratio)
    loss = fused_box_loss(pred, target, "inner_" + base, fmt=fmt, eps=eps, p0=0.5 * ratio, impl=impl,
                          reduction=reduction, weight=weight, avg_factor=avg_factor)
    if loss is not None:
        return loss
    p, t = prepare_box_pair(pred, target, fmt)
    base_loss, iou = _base_per_box(p, t, base, eps)
    _, inner = aligned_overlap(inner_boxes(p, ratio), inner_boxes(t, ratio), "iou", eps)
    return _finish(base_loss + iou - inner, reduction, weight, avg_factor)
