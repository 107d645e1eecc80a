"""Smooth L1 loss (Girshick, "Fast R-CNN", ICCV 2015).

    x = |pred - target|
    loss = 0.5 * x^2 / beta   if x < beta
           x - 0.5 * beta      otherwise

Quadratic near zero so the gradient shrinks as the error does, linear further out so outliers do not
dominate (as L2 would). It equals Huber(delta=beta) / beta; as beta -> 0 it becomes L1, and `beta=0` is
L1 exactly, computed without the x^2/beta branch so that no 0/0 reaches the gradient (the gradient at
x = 0 is 0, the subgradient `torch.abs` uses).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._checks import broadcast_shape, check_positive, check_tensor, compute_dtype, prepare_weight, reduce_loss
from .kernels import fused_smooth_l1


def smooth_l1_loss(
    pred: Tensor,
    target: Tensor,
    *,
    beta: float = 1.0,
    reduction: str = "mean",
    weight: Tensor | None = None,
    avg_factor=None,
    impl: str | None = None,
) -> Tensor:
    """Element-wise Smooth L1 between `pred` and `target` of any broadcastable shape (usually `[..., 4]`).

    `weight`: same shape as the loss (per coordinate) or the loss shape without its last dim (per box).
    "mean" averages over all elements, like `torch.nn.functional.smooth_l1_loss`.
    Returns float32 (float64 if an input is float64).
    `impl`: "auto" | "fused" | "reference" (None: the module default), as for the IoU losses; the fused
    kernel runs on CPU (an unweighted sum / mean in one pass computing the loss, its sum and its gradient;
    otherwise one pass forward, one backward), other devices use the reference path.
    """
    check_tensor("pred", pred)
    check_tensor("target", target)
    if pred.shape != target.shape:  # torch.broadcast_shapes costs ~40 us per call: skip it when equal
        broadcast_shape(pred, target, ("pred", "target"))
    check_positive("beta", beta, allow_zero=True)
    dtype = compute_dtype(pred, target)
    plain = weight is None and avg_factor is None and reduction != "none"  # the kernel takes the sum / mean
    loss = fused_smooth_l1(pred, target, beta, impl=impl, reduction=reduction if plain else "none")
    if loss is not None and plain:
        return loss
    if loss is None:
        diff = (pred.to(dtype) - target.to(dtype)).abs()
        if beta == 0:
            loss = diff
        else:
            loss = torch.where(diff < beta, (0.5 / beta) * diff * diff, diff - 0.5 * beta)
    weight = prepare_weight(weight, loss.shape, dtype, per_box_fold="expand")
    if weight is not None:
        loss = loss * weight
    return reduce_loss(loss, reduction, avg_factor)


def l1_loss(
    pred: Tensor, target: Tensor, *, reduction: str = "mean", weight=None, avg_factor=None, impl=None
) -> Tensor:
    """L1 loss |pred - target|: `smooth_l1_loss` with beta=0."""
    return smooth_l1_loss(
        pred, target, beta=0.0, reduction=reduction, weight=weight, avg_factor=avg_factor, impl=impl
    )
