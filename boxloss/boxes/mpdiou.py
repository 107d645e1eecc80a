"""MPDIoU loss (Ma, Xu, "MPDIoU: A Loss for Efficient and Accurate Bounding Box Regression",
arXiv:2307.07662, 2023).

    L_MPDIoU = 1 - IoU + d1^2 / (w_img^2 + h_img^2) + d2^2 / (w_img^2 + h_img^2)

d1 and d2 are the distances between the top-left corners and between the bottom-right corners of the
two boxes, w_img and h_img the width and height of the input image. Both corners are used as given
(unclamped), so a raw head output with x2 < x1 is still pulled towards the target's corners.

The normaliser is the input image, not the enclosing box: MPDIoU is not scale invariant (scaling the
boxes and the image together leaves it unchanged). We take the image size explicitly as
`img_size=(w_img, h_img)`, in the boxes' units (pixels, or (1, 1) for boxes normalised to the image), or
as a tensor broadcastable to `[..., 2]` for a per-box image size. There is no default: silently
normalising by something else would be a different loss. No code by the authors was found; the formula
matches the YOLO-fork `bbox_iou(..., MPDIoU=True)` given the input size (docs/losses.md).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._checks import check_positive, check_tensor, compute_dtype
from ._geometry import check_number
from .kernels import fused_box_loss
from .iou_losses import _finish
from .overlaps import aligned_overlap, prepare_box_pair


def _img_diag2(img_size, dtype, eps: float):
    """w_img^2 + h_img^2 from `img_size` (a pair of numbers or a tensor `[..., 2]`), checked."""
    if isinstance(img_size, Tensor):
        if img_size.is_complex() or img_size.dtype == torch.bool:
            raise ValueError(f"img_size must be a real tensor, got dtype {img_size.dtype}")
        if img_size.dim() == 0 or img_size.shape[-1] != 2:
            raise ValueError(f"img_size must have shape [..., 2] (width, height), got shape {list(img_size.shape)}")
        size = img_size.to(dtype)
        return (size * size).sum(-1).clamp_min(eps)
    if not isinstance(img_size, (tuple, list)) or len(img_size) != 2:
        raise ValueError(
            f"img_size={img_size!r} is not supported; accepted: (width, height) of the input image in the "
            "boxes' units, e.g. (640, 640), or a tensor [..., 2]"
        )
    for name, value in zip(("img_size[0] (width)", "img_size[1] (height)"), img_size):
        check_number(name, value, low=0.0, low_ok=False)
    return max(float(img_size[0]) ** 2 + float(img_size[1]) ** 2, eps)


def mpdiou_per_box(p: Tensor, t: Tensor, diag2, eps: float) -> tuple[Tensor, Tensor]:
    """(L_MPDIoU, IoU) per pair of xyxy boxes; `diag2` = w_img^2 + h_img^2."""
    _, iou = aligned_overlap(p, t, "iou", eps)
    d = p - t
    d1 = d[..., 0] * d[..., 0] + d[..., 1] * d[..., 1]
    d2 = d[..., 2] * d[..., 2] + d[..., 3] * d[..., 3]
    return 1 - iou + (d1 + d2) / diag2, iou


def mpdiou_loss(
    pred: Tensor,
    target: Tensor,
    *,
    fmt: str = "xyxy",
    reduction: str = "mean",
    weight: Tensor | None = None,
    avg_factor=None,
    eps: float = 1e-7,
    img_size=None,
    impl: str | None = None,
) -> Tensor:
    """MPDIoU loss (Ma & Xu 2023): 1 - IoU + (d1^2 + d2^2) / (w_img^2 + h_img^2).

    img_size: required; (w_img, h_img) of the network input in the boxes' units, or a tensor
    broadcastable to `[..., 2]`. Other arguments and the return dtype as for `ciou_loss`.
    impl: "auto" | "fused" | "reference" | None, as for the core losses (`boxloss.boxes.kernels`): the fused CPU
    kernel where available (`boxloss.boxes.kernels`), else the eager reference; same values and gradients either way.
    """
    if img_size is None:
        raise ValueError(
            "mpdiou_loss needs img_size=(width, height) of the input image in the boxes' units "
            "(e.g. (640, 640) for pixel boxes, (1, 1) for normalised boxes)"
        )
    check_positive("eps", eps)
    check_tensor("pred", pred, last_dim=4)
    check_tensor("target", target, last_dim=4)
    diag2 = _img_diag2(img_size, compute_dtype(pred, target), eps)
    loss = fused_box_loss(pred, target, "mpdiou", fmt=fmt, eps=eps, extra=diag2, impl=impl,
                          reduction=reduction, weight=weight, avg_factor=avg_factor)
    if loss is not None:
        return loss
    p, t = prepare_box_pair(pred, target, fmt)
    loss, _ = mpdiou_per_box(p, t, diag2, eps)
    return _finish(loss, reduction, weight, avg_factor)
