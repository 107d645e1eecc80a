"""IoU-family box-regression losses on aligned (prediction, target) pairs.

    iou_loss  = 1 - IoU   (mode="linear", Yu et al. 2016 use "log": -ln IoU; "square": 1 - IoU^2)
    giou_loss = 1 - GIoU  (Rezatofighi et al., CVPR 2019)
    diou_loss = 1 - IoU + rho^2/c^2              (Zheng et al., AAAI 2020)
    ciou_loss = 1 - IoU + rho^2/c^2 + alpha * v  (Zheng et al., AAAI 2020)

The overlap formulas and numerics are in `overlaps.py`. Common arguments:

    pred, target: boxes `[..., 4]` in format `fmt` ("xyxy" | "xywh" | "cxcywh"); shapes broadcast.
    reduction:    "none" (loss `[...]`) | "mean" | "sum".
    weight:       per box `[...]`, or per coordinate `[..., 4]` (averaged over the 4 coordinates).
    avg_factor:   with reduction="mean", the loss is sum / avg_factor (e.g. the number of positives).
    eps:          lower bound of denominators; identical boxes still give exactly 0.
    impl:         "auto" | "fused" | "reference", or None for the module default (`kernels.set_default_impl`,
                  "auto"): fused forward+backward kernels (C++ on CPU, Triton on CUDA) where available, else
                  the eager reference; same values and gradients either way (see `boxloss.boxes.kernels`).

Returns float32 (float64 if an input is float64) whatever the input dtype; gradients reach the inputs
in their own dtype.
"""

from __future__ import annotations

from torch import Tensor

from ._checks import check_choice, check_positive
from ._checks import finish_box_loss as _finish
from .kernels import fused_overlap_loss
from .overlaps import aligned_overlap, prepare_box_pair

IOU_MODES = ("linear", "log", "square")


def _overlap_loss(pred, target, kind, fmt, eps, **kw):
    check_positive("eps", eps)
    p, t = prepare_box_pair(pred, target, fmt)
    return aligned_overlap(p, t, kind, eps, **kw)


def iou_loss(
    pred: Tensor,
    target: Tensor,
    *,
    fmt: str = "xyxy",
    mode: str = "linear",
    reduction: str = "mean",
    weight: Tensor | None = None,
    avg_factor=None,
    eps: float = 1e-7,
    impl: str | None = None,
) -> Tensor:
    """IoU loss. mode="linear": 1 - IoU; "log": -ln(max(IoU, eps)) (UnitBox); "square": 1 - IoU^2."""
    check_choice("mode", mode, IOU_MODES)
    check_positive("eps", eps)
    loss = fused_overlap_loss(pred, target, "iou", fmt=fmt, eps=eps, mode=mode, impl=impl,
                              reduction=reduction, weight=weight, avg_factor=avg_factor)
    if loss is not None:
        return loss
    _, iou = _overlap_loss(pred, target, "iou", fmt, eps)
    if mode == "linear":
        loss = 1 - iou
    elif mode == "square":
        loss = 1 - iou * iou
    else:
        loss = -iou.clamp_min(eps).log()
    return _finish(loss, reduction, weight, avg_factor)


def giou_loss(
    pred, target, *, fmt="xyxy", reduction="mean", weight=None, avg_factor=None, eps=1e-7, impl=None
) -> Tensor:
    """GIoU loss 1 - GIoU, in [0, 2]; non-zero gradient for disjoint boxes."""
    check_positive("eps", eps)
    loss = fused_overlap_loss(pred, target, "giou", fmt=fmt, eps=eps, impl=impl,
                              reduction=reduction, weight=weight, avg_factor=avg_factor)
    if loss is not None:
        return loss
    giou, _ = _overlap_loss(pred, target, "giou", fmt, eps)
    return _finish(1 - giou, reduction, weight, avg_factor)


def diou_loss(
    pred, target, *, fmt="xyxy", reduction="mean", weight=None, avg_factor=None, eps=1e-7, impl=None
) -> Tensor:
    """DIoU loss 1 - IoU + rho^2/c^2, in [0, 2); pulls centres together directly."""
    check_positive("eps", eps)
    loss = fused_overlap_loss(pred, target, "diou", fmt=fmt, eps=eps, impl=impl,
                              reduction=reduction, weight=weight, avg_factor=avg_factor)
    if loss is not None:
        return loss
    diou, _ = _overlap_loss(pred, target, "diou", fmt, eps)
    return _finish(1 - diou, reduction, weight, avg_factor)


def ciou_loss(
    pred: Tensor,
    target: Tensor,
    *,
    fmt: str = "xyxy",
    reduction: str = "mean",
    weight: Tensor | None = None,
    avg_factor=None,
    eps: float = 1e-7,
    gate_alpha: bool = False,
    grad_mode: str = "exact",
    impl: str | None = None,
) -> Tensor:
    """CIoU loss 1 - IoU + rho^2/c^2 + alpha * v, in [0, 2.5).

    alpha = v / ((1 - IoU) + v) is a constant in backprop, as in the paper's code, torchvision,
    mmdetection and ultralytics. `gate_alpha=True` sets alpha = 0 where IoU < 0.5 (the journal version,
    Zheng et al., "Enhancing Geometric Factors...", IEEE TCYB 2021; mmdetection's CIoULoss).

    `grad_mode` (fused path): "exact" (default) is the true derivative of v through atan(w/h); "paper" is
    the DIoU paper's choice (Zheng et al. 2020, after eq. 12) of dropping the factor 1/(w^2+h^2) from
    dv/dw and dv/dh, which bounds the step for boxes with w, h << 1. Values are identical in both modes;
    only the gradient differs. The reference path implements "exact" only and raises for "paper"; under
    torch.compile the fused kernel runs (as a custom op), so "paper" compiles.
    """
    check_positive("eps", eps)
    loss = fused_overlap_loss(
        pred, target, "ciou", fmt=fmt, eps=eps, alpha_mode="gated" if gate_alpha else "constant",
        grad_mode=grad_mode, impl=impl,
        reduction=reduction, weight=weight, avg_factor=avg_factor,
    )
    if loss is not None:
        return loss
    if grad_mode == "paper":
        raise ValueError(
            'grad_mode="paper" needs the fused path; it is not available with impl="reference" '
            "or where no fused kernel applies (no C++ compiler, float64 on CUDA, ...)"
        )
    ciou, _ = _overlap_loss(pred, target, "ciou", fmt, eps, ciou_alpha="gated" if gate_alpha else "constant")
    return _finish(1 - ciou, reduction, weight, avg_factor)
