"""Shape-IoU loss (Zhang, Zhang, "Shape-IoU: More Accurate Metric considering Bounding Box Shape and
Scale", arXiv:2312.17663, 2023), following -- and checked against -- the authors' released code
(malagoutou/Shape-IoU shapeiou.py `shape_iou`).

    ww = 2 w_gt^s / (w_gt^s + h_gt^s),  hh = 2 h_gt^s / (w_gt^s + h_gt^s)         (s = `scale`)
    distance = (hh * dx^2 + ww * dy^2) / c^2
    omega_w  = hh * |w - w_gt| / max(w, w_gt),  omega_h = ww * |h - h_gt| / max(h, h_gt)
    shape    = (1 - exp(-omega_w))^4 + (1 - exp(-omega_h))^4
    L_Shape-IoU = 1 - IoU + distance + shape / 2

(dx, dy) is the offset between the box centres and c the diagonal of the smallest box enclosing both.
The weights come from the *target's* shape: for a wide target (w_gt > h_gt, s > 0) hh < 1 < ww, so a
vertical centre offset and a height error cost more than the same offsets along the long side.

`scale` is "a factor related to the scale of the targets in the dataset"; the paper gives no single
value and the authors' code defaults to scale = 0, where ww = hh = 1 and Shape-IoU is DIoU plus SIoU's
shape cost with theta = 4. We use the same default; ww and hh are not detached (authors' code).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._checks import check_positive
from ._geometry import box_parts, check_number, safe_pow
from .kernels import fused_box_loss, variant_of
from .iou_losses import _finish
from .overlaps import aligned_overlap, prepare_box_pair


def shape_iou_per_box(p: Tensor, t: Tensor, scale: float, eps: float) -> tuple[Tensor, Tensor]:
    """(L_Shape-IoU, IoU) per pair of xyxy boxes in the compute dtype."""
    _, iou = aligned_overlap(p, t, "iou", eps)
    g = box_parts(p, t)
    if scale == 0:
        ww = hh = 1.0
    else:
        sw, sh = safe_pow(g.tw, scale), safe_pow(g.th, scale)
        total = (sw + sh).clamp_min(eps)
        ww, hh = 2 * sw / total, 2 * sh / total
    c2 = (g.cw * g.cw + g.ch * g.ch).clamp_min(eps)
    distance = (hh * (g.dx * g.dx) + ww * (g.dy * g.dy)) / c2
    omega_w = hh * (g.pw - g.tw).abs() / torch.maximum(g.pw, g.tw).clamp_min(eps)
    omega_h = ww * (g.ph - g.th).abs() / torch.maximum(g.ph, g.th).clamp_min(eps)
    shape = torch.expm1(-omega_w) ** 4 + torch.expm1(-omega_h) ** 4  # (1 - exp(-omega))^4
    return 1 - iou + distance + 0.5 * shape, iou


def shape_iou_loss(
    pred: Tensor,
    target: Tensor,
    *,
    fmt: str = "xyxy",
    reduction: str = "mean",
    weight: Tensor | None = None,
    avg_factor=None,
    eps: float = 1e-7,
    scale: float = 0.0,
    impl: str | None = None,
) -> Tensor:
    """Shape-IoU loss (Zhang & Zhang 2023): 1 - IoU + shape-weighted distance + shape cost / 2.

    scale: >= 0, the exponent s of the target-shape weights (default 0: ww = hh = 1, the authors' code
    default). Other arguments and the return dtype as for `ciou_loss`. Formula: module docstring.
    impl: "auto" | "fused" | "reference" | None, as for the core losses (`boxloss.boxes.kernels`): the fused CPU
    kernel where available (`boxloss.boxes.kernels`), else the eager reference; same values and gradients either way.
    """
    check_positive("eps", eps)
    check_number("scale", scale, low=0.0)
    mode = 3 if scale == 0 else variant_of(scale)  # 3: ww = hh = 1, no power
    loss = fused_box_loss(pred, target, "shape_iou", fmt=fmt, eps=eps, p0=scale, variant=mode, impl=impl,
                          reduction=reduction, weight=weight, avg_factor=avg_factor)
    if loss is not None:
        return loss
    p, t = prepare_box_pair(pred, target, fmt)
    loss, _ = shape_iou_per_box(p, t, scale, eps)
    return _finish(loss, reduction, weight, avg_factor)
