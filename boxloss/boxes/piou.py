"""Powerful-IoU (PIoU) and PIoU v2 (Liu et al., "Powerful-IoU: More straightforward and faster bounding box
regression loss with a nonmonotonic focusing mechanism", Neural Networks 170, 2024).

    P = (dw1 / w_gt + dw2 / w_gt + dh1 / h_gt + dh2 / h_gt) / 4      target-size-adaptive penalty
    f(x) = 1 - exp(-x^2)
    L_PIoU   = 1 - IoU + f(P)                                        in [0, 2]

    q = exp(-P) in (0, 1],   u(x) = 3 x exp(-x^2)                    nonmonotonic attention
    L_PIoUv2 = u(lambda q) * L_PIoU                                  (lambda = 1.3 by default)

dw1, dw2 (dh1, dh2) are the absolute distances between the left and right (top and bottom) edges of the
prediction and the target, normalised by the *target's* width (height): unlike penalties normalised by the
enclosing box (DIoU, CIoU), P cannot be reduced by enlarging the prediction, the paper's motivation.
f'(P) = 2 P exp(-P^2) is 0 at P = 0, largest at P = 1/sqrt(2) and small again for very large P. v2's
attention u(lambda q) peaks at q = 1 / (sqrt(2) lambda) (P = ln(sqrt(2) lambda) = 0.609 for lambda = 1.3):
medium-quality pairs get the largest weight, near-perfect and very poor pairs (P -> infinity, q -> 0) smaller
ones (u = 0.72 at P = 0 against 1.29 at the peak, for lambda = 1.3).

Follows the authors' released code (fppccc/Powerful-IoU `YOLOv8/piou.py`): nothing is detached (the
attention u(lambda q) is differentiated), the loss is `L_v1 = 1 - iou - exp(-P**2) + 1` and
`3 x exp(-x**2) * L_v1`. Our differences: widths clamped at 0 for the IoU and the target's size, eps only as a
lower bound of the target's width and height (identical boxes give exactly 0), and the edge distances are
taken between the corners as given (|x1 - x1_gt| + |x2 - x2_gt|), so a prediction with x2 < x1 is pulled to
the target's corners; the authors sort each box's corners first (min/max), which for an inverted prediction
measures its mirror image. The two agree for every valid box (docs/losses.md, "PIoU").
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._checks import check_choice, check_positive
from ._geometry import check_number
from .iou_losses import _finish
from .overlaps import aligned_overlap, prepare_box_pair

PIOU_VERSIONS = (1, 2)


def piou_per_box(p: Tensor, t: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """(L_PIoU, P) per pair of xyxy boxes in the compute dtype."""
    _, iou = aligned_overlap(p, t, "iou", eps)
    d = (p - t).abs()
    tw = (t[..., 2] - t[..., 0]).clamp_min(0).clamp_min(eps)
    th = (t[..., 3] - t[..., 1]).clamp_min(0).clamp_min(eps)
    penalty = 0.25 * ((d[..., 0] + d[..., 2]) / tw + (d[..., 1] + d[..., 3]) / th)
    return (1 - iou) - torch.expm1(-penalty * penalty), penalty


def piou_loss(
    pred: Tensor,
    target: Tensor,
    *,
    fmt: str = "xyxy",
    reduction: str = "mean",
    weight: Tensor | None = None,
    avg_factor=None,
    eps: float = 1e-7,
    version: int = 1,
    lam: float = 1.3,
) -> Tensor:
    """Powerful-IoU loss (Liu et al. 2024). version=1: 1 - IoU + 1 - exp(-P^2), in [0, 2];
    version=2: u(lam * exp(-P)) * L_PIoU with u(x) = 3 x exp(-x^2) (lam > 0; the paper's 1.3; ignored by v1).

    P = (|x1 - x1_gt| + |x2 - x2_gt|) / (4 w_gt) + (|y1 - y1_gt| + |y2 - y2_gt|) / (4 h_gt).
    Other arguments and the return dtype as for `ciou_loss`. Scale and translation invariant. Identical
    boxes give exactly 0. v2 is not monotone in the error by design (very poor pairs are down-weighted).
    """
    check_positive("eps", eps)
    check_choice("version", version, PIOU_VERSIONS)
    check_number("lam", lam, low=0.0, low_ok=False)
    p, t = prepare_box_pair(pred, target, fmt)
    loss, penalty = piou_per_box(p, t, eps)
    if version == 2:
        x = lam * torch.exp(-penalty)
        loss = 3 * x * torch.exp(-x * x) * loss
    return _finish(loss, reduction, weight, avg_factor)


def piou_v2_loss(
    pred: Tensor,
    target: Tensor,
    *,
    fmt: str = "xyxy",
    reduction: str = "mean",
    weight: Tensor | None = None,
    avg_factor=None,
    eps: float = 1e-7,
    lam: float = 1.3,
) -> Tensor:
    """PIoU v2: `piou_loss(..., version=2, lam=lam)` (the registry's "piou_v2")."""
    return piou_loss(
        pred, target, fmt=fmt, reduction=reduction, weight=weight, avg_factor=avg_factor, eps=eps, version=2, lam=lam
    )
