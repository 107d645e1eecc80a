"""IoU, GIoU, DIoU and CIoU between boxes, aligned or pairwise.

For boxes B (predicted) and B_gt, with C the smallest box enclosing both:

    IoU  = |B ∩ B_gt| / |B ∪ B_gt|                                    (Yu et al., UnitBox, 2016)
    GIoU = IoU - |C \\ (B ∪ B_gt)| / |C|                               (Rezatofighi et al., CVPR 2019)
    DIoU = IoU - rho^2(b, b_gt) / c^2                                 (Zheng et al., AAAI 2020)
    CIoU = DIoU - alpha * v,  v = 4/pi^2 (atan(w_gt/h_gt) - atan(w/h))^2,
                              alpha = v / ((1 - IoU) + v)             (Zheng et al., AAAI 2020)

rho is the distance between the box centres and c the diagonal of C.

Numerics (see docs/losses.md):
- computed in float32 (float64 if an input is float64), whatever the input dtype, so fp16 boxes with
  coordinates up to 1e4 (areas up to 1e8, far past fp16's 65504) are exact;
- widths and heights are clamped at 0 (a box with x2 < x1 has zero area), so raw head outputs give
  finite values and gradients;
- `eps` only bounds denominators from below (`union.clamp_min(eps)`), it is never added: identical boxes
  give exactly IoU = GIoU = DIoU = CIoU = 1.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._checks import broadcast_shape, check_choice, check_positive, check_tensor, compute_dtype
from .formats import BOX_FORMATS, _to_xyxy

OVERLAP_KINDS = ("iou", "giou", "diou", "ciou")

_FOUR_OVER_PI_SQ = 4.0 / math.pi**2


def prepare_box_pair(a: Tensor, b: Tensor, fmt: str, names=("pred", "target")) -> tuple[Tensor, Tensor]:
    """Check a pair of box tensors and return them as xyxy in the compute dtype (fp32 or fp64)."""
    check_tensor(names[0], a, last_dim=4)
    check_tensor(names[1], b, last_dim=4)
    check_choice("fmt", fmt, BOX_FORMATS)
    broadcast_shape(a, b, names)
    dtype = compute_dtype(a, b)
    return _to_xyxy(a.to(dtype), fmt), _to_xyxy(b.to(dtype), fmt)


def aligned_overlap(
    p: Tensor, t: Tensor, kind: str, eps: float, *, ciou_alpha: str = "differentiable"
) -> tuple[Tensor, Tensor]:
    """Aligned overlap of xyxy boxes `p`, `t` (already in the compute dtype). Returns (value, iou).

    `ciou_alpha`: "differentiable" (the true derivative, used by `box_iou`), "constant" (alpha detached,
    the CIoU paper's and every major library's loss), or "gated" (constant, and 0 where IoU < 0.5: the
    journal version of CIoU, Zheng et al. TCYB 2021, as in mmdetection).
    """
    px1, py1, px2, py2 = p.unbind(-1)
    tx1, ty1, tx2, ty2 = t.unbind(-1)
    pw, ph = (px2 - px1).clamp_min(0), (py2 - py1).clamp_min(0)
    tw, th = (tx2 - tx1).clamp_min(0), (ty2 - ty1).clamp_min(0)
    iw = (torch.minimum(px2, tx2) - torch.maximum(px1, tx1)).clamp_min(0)
    ih = (torch.minimum(py2, ty2) - torch.maximum(py1, ty1)).clamp_min(0)
    inter = iw * ih
    union = pw * ph + tw * th - inter
    iou = inter / union.clamp_min(eps)
    if kind == "iou":
        return iou, iou

    cw = (torch.maximum(px2, tx2) - torch.minimum(px1, tx1)).clamp_min(0)
    ch = (torch.maximum(py2, ty2) - torch.minimum(py1, ty1)).clamp_min(0)
    if kind == "giou":
        c_area = (cw * ch).clamp_min(eps)
        return iou - (c_area - union) / c_area, iou

    c2 = (cw * cw + ch * ch).clamp_min(eps)
    dx = (px1 + px2) - (tx1 + tx2)
    dy = (py1 + py2) - (ty1 + ty2)
    rho2 = 0.25 * (dx * dx + dy * dy)
    diou = iou - rho2 / c2
    if kind == "diou":
        return diou, iou

    dv = torch.atan(tw / (th + eps)) - torch.atan(pw / (ph + eps))
    v = _FOUR_OVER_PI_SQ * dv * dv
    if ciou_alpha == "differentiable":
        alpha = v / (1 - iou + v).clamp_min(eps)
    else:
        with torch.no_grad():
            alpha = v / (1 - iou + v).clamp_min(eps)
            if ciou_alpha == "gated":
                alpha = alpha * (iou >= 0.5).to(alpha.dtype)
    return diou - alpha * v, iou


def box_iou(
    a: Tensor, b: Tensor, *, kind: str = "iou", fmt: str = "xyxy", aligned: bool = False, eps: float = 1e-7
) -> Tensor:
    """IoU-family similarity between two sets of boxes.

    Args:
        a: boxes `[..., N, 4]`; b: boxes `[..., M, 4]` (batch dims broadcast).
        kind: "iou" | "giou" | "diou" | "ciou" (formulas in this module's docstring).
        fmt: box format of both inputs, "xyxy" | "xywh" | "cxcywh".
        aligned: False gives the pairwise matrix `[..., N, M]`; True compares a[..., i] with b[..., i]
            (shapes must broadcast) and gives `[..., N]`. `box_iou(a, b).diagonal(dim1=-2, dim2=-1)` equals
            `box_iou(a, b, aligned=True)` (same arithmetic, bit for bit).
        eps: lower bound of denominators (union, enclosing area, squared diagonal).

    Returns float32 (float64 for float64 input). The gradient is the true derivative, CIoU's alpha
    included (unlike `ciou_loss`, where alpha is a constant), matching `torchvision.ops.complete_box_iou`.
    Values lie in [0, 1] for IoU, [-1, 1] for GIoU, (-1, 1] for DIoU and [-1.5, 1] for CIoU.
    """
    check_choice("kind", kind, OVERLAP_KINDS)
    check_positive("eps", eps)
    if not aligned:
        for name, boxes in (("a", a), ("b", b)):
            check_tensor(name, boxes, last_dim=4)
            if boxes.dim() < 2:
                raise ValueError(
                    f"{name} must have shape [..., N, 4] for pairwise box_iou, got {list(boxes.shape)}; "
                    "use aligned=True to compare boxes one to one"
                )
        a, b = a.unsqueeze(-2), b.unsqueeze(-3)
    p, t = prepare_box_pair(a, b, fmt, names=("a", "b"))
    return aligned_overlap(p, t, kind, eps)[0]
