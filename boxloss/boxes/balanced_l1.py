"""Balanced L1 loss (Pang, Chen, Shi, Feng, Ouyang, Lin, "Libra R-CNN: Towards Balanced Learning for Object
Detection", CVPR 2019).

With x = |pred - target| and b = e^(gamma / alpha) - 1:

    L_b(x) = alpha / b * (b x + 1) * ln(b x / beta + 1) - alpha x      if x < beta
             gamma x + gamma / b - alpha beta                           otherwise

The paper derives it from the gradient it wants: alpha ln(b x + 1) for inliers (x < 1) and the constant
gamma for outliers, so that the many small, accurate (inlier) errors get a larger gradient than in
Smooth L1 while outliers stay clipped at gamma; alpha ln(b + 1) = gamma makes the gradient continuous at
x = 1, which fixes b. beta is mmdetection's generalisation of the switch point (the paper has 1): the value
stays continuous at x = beta for any beta, the gradient only for beta = 1 (for beta != 1 it jumps there;
tests/boxes/test_more_box_losses.py pins both). Matches mmdetection's `balanced_l1_loss` (alpha 0.5,
gamma 1.5, beta 1.0), element-wise like `smooth_l1_loss`; ln(. + 1) is computed as log1p.

Numerics: fp32 compute (fp64 stays); the log branch is evaluated at min(x, beta), so it stays finite where
it is not used (no NaN gradient leaks through `torch.where` for huge errors); the gradient at x = 0 is 0.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._checks import broadcast_shape, check_tensor, compute_dtype, prepare_weight, reduce_loss
from ._geometry import check_number


def balanced_l1_loss(
    pred: Tensor,
    target: Tensor,
    *,
    alpha: float = 0.5,
    gamma: float = 1.5,
    beta: float = 1.0,
    reduction: str = "mean",
    weight: Tensor | None = None,
    avg_factor=None,
) -> Tensor:
    """Element-wise Balanced L1 between `pred` and `target` of any broadcastable shape (usually `[..., 4]`).

    alpha > 0: inlier gradient scale (0.5); gamma > 0: outlier gradient (1.5); beta > 0: switch point (1.0).
    weight: same shape as the loss (per coordinate) or without its last dim (per box, broadcast).
    "mean" averages over all elements, as `smooth_l1_loss`. Like Smooth L1 in the detector, it compares
    *encoded* distances, not boxes. Returns float32 (float64 if an input is float64).
    """
    check_tensor("pred", pred)
    check_tensor("target", target)
    if pred.shape != target.shape:
        broadcast_shape(pred, target, ("pred", "target"))
    check_number("alpha", alpha, low=0.0, low_ok=False)
    check_number("gamma", gamma, low=0.0, low_ok=False)
    check_number("beta", beta, low=0.0, low_ok=False)
    b = math.exp(gamma / alpha) - 1
    dtype = compute_dtype(pred, target)
    diff = (pred.to(dtype) - target.to(dtype)).abs()
    small = diff.clamp(max=beta)
    inlier = (alpha / b) * (b * small + 1) * torch.log1p(b * small / beta) - alpha * small
    outlier = gamma * diff + (gamma / b - alpha * beta)
    loss = torch.where(diff < beta, inlier, outlier)
    weight = prepare_weight(weight, loss.shape, dtype, per_box_fold="expand")
    if weight is not None:
        loss = loss * weight
    return reduce_loss(loss, reduction, avg_factor)
