"""Alpha-IoU losses (He, Erfani, Ma, Bailey, Chi, Hua, "Alpha-IoU: A Family of Power Intersection over
Union Losses for Bounding Box Regression", NeurIPS 2021; arXiv:2110.13675).

The power alpha is applied to IoU and to each penalty term separately:

    base="iou":  1 - IoU^a
    base="giou": 1 - IoU^a + (|C \\ (B u B_gt)| / |C|)^a
    base="diou": 1 - IoU^a + (rho^2 / c^2)^a
    base="ciou": 1 - IoU^a + (rho^2 / c^2)^a + (beta v)^a

with the GIoU/DIoU/CIoU terms of `overlaps.py`. alpha = 1 gives the base loss; alpha > 1 up-weights the
loss and gradient of high-IoU boxes (the paper's recommendation, and our default, is alpha = 3).

Checked against the authors' released code (Jacobi93/Alpha-IoU utils/general.py `bbox_alpha_iou`): as
there, the GIoU penalty and CIoU's beta * v are each raised to alpha as a whole, and CIoU's trade-off
beta = v / (1 - IoU + v) uses the plain IoU (not IoU^a) and is a constant in backprop. One deliberate
difference: the DIoU/CIoU distance term is the paper's rho^{2a}/c^{2a} = (rho^2/c^2)^a (rho the Euclidean
centre distance -- the paper is not ambiguous here), while the authors' code takes the powers per axis,
(|dx|^2a + |dy|^2a) / (C_w^2a + C_h^2a); the two agree for alpha = 1 (docs/losses.md, tested). The
reference code adds eps inside each power; we do not, so identical boxes give exactly 0, and an
alpha < 1 power has gradient 0 (not infinity) where its base is 0.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._checks import check_choice, check_positive
from ._geometry import box_parts, check_number, safe_pow
from .kernels import fused_box_loss, variant_of
from .iou_losses import _finish
from .overlaps import OVERLAP_KINDS, aligned_overlap, prepare_box_pair

_FOUR_OVER_PI_SQ = 4.0 / math.pi**2


def alpha_iou_per_box(p: Tensor, t: Tensor, base: str, alpha: float, eps: float) -> Tensor:
    """Per-pair alpha-IoU loss of xyxy boxes in the compute dtype."""
    value, iou = aligned_overlap(p, t, "giou" if base == "giou" else "iou", eps)
    loss = 1 - safe_pow(iou, alpha)
    if base == "giou":
        # |C \ U| / |C| = IoU - GIoU; >= 0 exactly, the clamp only removes rounding noise. (Computed
        # directly it would be (|C| - |U|) / |C|, a difference just as prone to cancellation.)
        loss = loss + safe_pow((iou - value).clamp_min(0), alpha)
    elif base in ("diou", "ciou"):
        # The penalties are computed directly, not as IoU - DIoU and DIoU - CIoU: those differences carry
        # an absolute rounding error of ~1 ulp of 1, which a power alpha < 1 would blow up (1e-7 -> 3e-4
        # for alpha = 0.5). Same formulas and eps placement as `overlaps.aligned_overlap`.
        g = box_parts(p, t)
        loss = loss + safe_pow((g.dx * g.dx + g.dy * g.dy) / (g.cw * g.cw + g.ch * g.ch).clamp_min(eps), alpha)
        if base == "ciou":
            dv = torch.atan(g.tw / (g.th + eps)) - torch.atan(g.pw / (g.ph + eps))
            v = _FOUR_OVER_PI_SQ * dv * dv
            with torch.no_grad():
                beta = v / (1 - iou + v).clamp_min(eps)  # plain IoU, constant in backprop (authors' code)
            loss = loss + safe_pow(beta * v, alpha)
    return loss


def alpha_iou_loss(
    pred: Tensor,
    target: Tensor,
    *,
    fmt: str = "xyxy",
    reduction: str = "mean",
    weight: Tensor | None = None,
    avg_factor=None,
    eps: float = 1e-7,
    base: str = "iou",
    alpha: float = 3.0,
    impl: str | None = None,
) -> Tensor:
    """Alpha-IoU loss (He et al., NeurIPS 2021): the power `alpha` applied to the IoU and to each penalty.

    base: "iou" | "giou" | "diou" | "ciou" (formulas in the module docstring; "iou" is 1 - IoU^alpha).
    alpha: the power, > 0 (default 3, the paper's recommendation); alpha = 1 is exactly the base loss.
    Other arguments and the return dtype as for `ciou_loss`.
    impl: "auto" | "fused" | "reference" | None, as for the core losses (`boxloss.boxes.kernels`): the fused CPU
    kernel where available (`boxloss.boxes.kernels`), else the eager reference; same values and gradients either way.
    """
    check_positive("eps", eps)
    check_choice("base", base, OVERLAP_KINDS)
    check_number("alpha", alpha, low=0.0, low_ok=False)
    loss = fused_box_loss(pred, target, "alpha_" + base, fmt=fmt, eps=eps, p0=alpha, variant=variant_of(alpha),
                          impl=impl, reduction=reduction, weight=weight, avg_factor=avg_factor)
    if loss is not None:
        return loss
    p, t = prepare_box_pair(pred, target, fmt)
    return _finish(alpha_iou_per_box(p, t, base, alpha, eps), reduction, weight, avg_factor)
