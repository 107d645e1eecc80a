"""SIoU loss (Gevorgyan, "SIoU Loss: More Powerful Learning for Bounding Box Regression",
arXiv:2205.12740, 2022).

    L_SIoU = 1 - IoU + (Delta + Omega) / 2

    angle cost     Lambda = 1 - 2 sin^2(arcsin(x) - pi/4),  x = sin(alpha) = |dy| / sigma
    distance cost  Delta  = sum_{t=x,y} (1 - exp(-gamma rho_t)),  gamma = 2 - Lambda,
                            rho_x = (dx / C_w)^2, rho_y = (dy / C_h)^2
    shape cost     Omega  = sum_{t=w,h} (1 - exp(-omega_t))^theta,
                            omega_w = |w - w_gt| / max(w, w_gt), omega_h = |h - h_gt| / max(h, h_gt)

(dx, dy) is the offset between the box centres, sigma = sqrt(dx^2 + dy^2), C_w, C_h the size of the
smallest box enclosing both (as in the paper's figure 4 and the reference implementations), theta = 4.
Checked against the most-used implementation (no code by the paper's author was found): meituan/YOLOv6
yolov6/utils/figure_iou.py, `IOUloss(iou_type="siou")` -- same formula (docs/losses.md).

The angle cost is computed in closed form. 1 - 2 sin^2(u) = cos(2u), so Lambda = cos(2 arcsin(x) - pi/2)
= sin(2 alpha) = 2 |dx| |dy| / sigma^2. This is exactly the paper's value; it also equals the reference
code's choice of the smaller of the two angles to the axes (sin 2alpha is symmetric about pi/4), and it
has no arcsin, sin or sqrt, whose gradients are NaN or infinite at zero centre distance (a classic NaN
source in published SIoU code). sigma^2 is clamped below by eps only as a denominator.

Distance-cost sign: the distance cost must grow with the centre distance (exp(-gamma rho) with gamma in
[1, 2] and rho >= 0). YOLOv6 writes it as `gamma = angle_cost - 2` (negative) and `2 - exp(gamma * rho)`;
published code that keeps the paper's positive `gamma = 2 - angle_cost` with that same `2 - exp(gamma *
rho)` computes exp(+gamma rho), which makes the loss *fall* as the prediction moves away;
tests/boxes/test_newer_losses.py guards ours with a monotonicity property test.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._checks import check_positive
from ._geometry import box_parts, check_number, safe_pow
from .kernels import fused_box_loss, variant_of
from .iou_losses import _finish
from .overlaps import aligned_overlap, prepare_box_pair


def siou_per_box(p: Tensor, t: Tensor, eps: float, theta: float = 4.0) -> tuple[Tensor, Tensor]:
    """(L_SIoU, IoU) per pair of xyxy boxes in the compute dtype."""
    _, iou = aligned_overlap(p, t, "iou", eps)
    g = box_parts(p, t)
    dx2, dy2 = g.dx * g.dx, g.dy * g.dy
    angle = 2 * g.dx.abs() * g.dy.abs() / (dx2 + dy2).clamp_min(eps)  # Lambda = sin(2 alpha), in [0, 1]
    gamma = 2 - angle
    rho_x = dx2 / (g.cw * g.cw).clamp_min(eps)
    rho_y = dy2 / (g.ch * g.ch).clamp_min(eps)
    distance = -torch.expm1(-gamma * rho_x) - torch.expm1(-gamma * rho_y)  # sum of 1 - exp(-gamma rho)
    omega_w = (g.pw - g.tw).abs() / torch.maximum(g.pw, g.tw).clamp_min(eps)
    omega_h = (g.ph - g.th).abs() / torch.maximum(g.ph, g.th).clamp_min(eps)
    shape = safe_pow(-torch.expm1(-omega_w), theta) + safe_pow(-torch.expm1(-omega_h), theta)
    return 1 - iou + 0.5 * (distance + shape), iou


def siou_loss(
    pred: Tensor,
    target: Tensor,
    *,
    fmt: str = "xyxy",
    reduction: str = "mean",
    weight: Tensor | None = None,
    avg_factor=None,
    eps: float = 1e-7,
    theta: float = 4.0,
    impl: str | None = None,
) -> Tensor:
    """SIoU loss (Gevorgyan 2022), in [0, 3): 1 - IoU + (distance cost + shape cost) / 2.

    theta: exponent of the shape cost (the paper tunes it in [2, 6] and uses 4); must be >= 1 so that
    the gradient stays finite where the prediction has the target's size.
    Other arguments and the return dtype as for `ciou_loss`. Formula and numerics: module docstring.
    impl: "auto" | "fused" | "reference" | None, as for the core losses (`boxloss.boxes.kernels`): the fused CPU
    kernel where available (`boxloss.boxes.kernels`), else the eager reference; same values and gradients either way.
    """
    check_positive("eps", eps)
    check_number("theta", theta, low=1.0)
    loss = fused_box_loss(pred, target, "siou", fmt=fmt, eps=eps, p0=theta, variant=variant_of(theta), impl=impl,
                          reduction=reduction, weight=weight, avg_factor=avg_factor)
    if loss is not None:
        return loss
    p, t = prepare_box_pair(pred, target, fmt)
    loss, _ = siou_per_box(p, t, eps, theta)
    return _finish(loss, reduction, weight, avg_factor)
