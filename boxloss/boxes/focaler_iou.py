"""Focaler-IoU losses (Zhang, Zhang, "Focaler-IoU: More Focused Intersection over Union Loss",
arXiv:2401.10525, 2024).

The IoU is remapped linearly onto [d, u], so that the loss concentrates on a chosen band of samples:

    IoU_focaler = 0                        IoU < d
                  (IoU - d) / (u - d)      d <= IoU <= u
                  1                        IoU > u

    L_Focaler-IoU = 1 - IoU_focaler
    L_Focaler-X   = L_X + IoU - IoU_focaler        (X = GIoU, DIoU, CIoU, EIoU, SIoU)

i.e. the base loss with its IoU term replaced by the remapped IoU; the penalty terms stay on the real boxes.
Raising d focuses on easy (high-IoU) samples, lowering u on hard ones; the authors' default d = 0, u = 0.95
makes every pair with IoU > 0.95 count as perfect (its IoU term then has zero gradient). With d = 0, u = 1
the loss is the base loss.

Following the paper's equation, CIoU's alpha inside Focaler-CIoU uses the real IoU (and is a constant in
backprop, as in `ciou_loss`). The authors' released code is a single line, `iou = ((iou - d) / (u -
d)).clamp(0, 1)`, meant to be placed in ultralytics' `bbox_iou`, where it also changes the IoU that CIoU's
alpha is computed from; the two differ only for base="ciou" (docs/losses.md, "Focaler-IoU").
"""

from __future__ import annotations

from torch import Tensor

from ._checks import check_choice, check_positive
from ._geometry import check_number
from .inner_iou import INNER_IOU_BASES, _base_per_box
from .iou_losses import _finish
from .overlaps import aligned_overlap, prepare_box_pair

FOCALER_IOU_BASES = INNER_IOU_BASES  # ("iou", "giou", "diou", "ciou", "eiou", "siou")


def focaler_iou(iou: Tensor, d: float, u: float) -> Tensor:
    """The Focaler remapping clamp((IoU - d) / (u - d), 0, 1)."""
    return ((iou - d) / (u - d)).clamp(0, 1)


def focaler_iou_loss(
    pred: Tensor,
    target: Tensor,
    *,
    fmt: str = "xyxy",
    reduction: str = "mean",
    weight: Tensor | None = None,
    avg_factor=None,
    eps: float = 1e-7,
    base: str = "iou",
    d: float = 0.0,
    u: float = 0.95,
) -> Tensor:
    """Focaler-IoU loss (Zhang & Zhang 2024): L_base + IoU - clamp((IoU - d) / (u - d), 0, 1).

    base: "iou" (1 - IoU_focaler) | "giou" | "diou" | "ciou" | "eiou" (Efficient IoU) | "siou" (theta = 4).
    d, u: the interval the IoU is stretched over, 0 <= d < u <= 1 (the paper's default d = 0, u = 0.95).
    Other arguments and the return dtype as for `ciou_loss`. Identical boxes give exactly 0.
    """
    check_positive("eps", eps)
    check_choice("base", base, FOCALER_IOU_BASES)
    check_number("d", d, low=0.0)
    check_number("u", u, low=0.0, low_ok=False)
    if not (d < u <= 1):
        raise ValueError(f"d={d!r}, u={u!r} is not supported; accepted: 0 <= d < u <= 1")
    p, t = prepare_box_pair(pred, target, fmt)
    if base == "iou":
        _, iou = aligned_overlap(p, t, "iou", eps)
        loss = 1 - focaler_iou(iou, d, u)
    else:
        base_loss, iou = _base_per_box(p, t, base, eps)
        loss = base_loss + (iou - focaler_iou(iou, d, u))
    return _finish(loss, reduction, weight, avg_factor)
