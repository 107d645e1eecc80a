"""Sigmoid focal loss (Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017).

    p = sigmoid(x),  p_t = p * t + (1 - p) * (1 - t),  alpha_t = alpha * t + (1 - alpha) * (1 - t)
    FL = alpha_t * (1 - p_t)^gamma * BCE(x, t)

Same definition as `torchvision.ops.sigmoid_focal_loss` (soft targets t in [0, 1] use the same p_t).
The modulating factor is computed in log space,

    1 - p_t = t * sigmoid(-x) + (1 - t) * sigmoid(x)
    (1 - p_t)^gamma = exp(gamma * logaddexp(log t + logsigmoid(-x), log(1 - t) + logsigmoid(x)))

so it never takes a power of a number that rounded to 0: saturated logits (+-100), fp16/bf16 inputs and
gamma < 1 (where d/dq q^gamma is infinite at q = 0) all give finite values and gradients. BCE uses the
stable `binary_cross_entropy_with_logits`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ._checks import broadcast_shape, check_positive, check_tensor, compute_dtype, prepare_weight, reduce_loss


def sigmoid_focal_loss(
    logits: Tensor,
    targets: Tensor,
    *,
    alpha: float = 0.25,
    gamma: float = 2.0,
    reduction: str = "mean",
    weight: Tensor | None = None,
    avg_factor=None,
) -> Tensor:
    """Focal loss on raw logits `[..., C]` against hard (0/1) or soft ([0, 1]) targets of the same shape.

    alpha: weight of positives in [0, 1]; alpha < 0 disables the balance term (alpha_t = 1).
    gamma: focusing parameter >= 0; gamma = 0 is plain (balanced) BCE.
    weight: per element `[..., C]` or per row `[...]` (broadcast over classes).
    reduction="mean" averages over all elements (torchvision's convention); detectors usually pass
    reduction="mean" with avg_factor = number of positives.
    Returns float32 (float64 if an input is float64).
    """
    check_tensor("logits", logits)
    check_tensor("targets", targets)
    broadcast_shape(logits, targets, ("logits", "targets"))
    check_positive("gamma", gamma, allow_zero=True)
    if not isinstance(alpha, (int, float)) or alpha > 1:
        raise ValueError(f"alpha={alpha!r} is not supported; accepted: a number <= 1 (alpha < 0 disables it)")
    dtype = compute_dtype(logits, targets)
    x, t = torch.broadcast_tensors(logits.to(dtype), targets.to(dtype))
    loss = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    if gamma != 0:
        # Clamping t and 1 - t at the smallest normal number keeps log() finite, and so the gradient
        # with respect to soft targets; the value changes by at most tiny * sigmoid(...) ~ 1e-38.
        tiny = torch.finfo(dtype).tiny
        log_one_minus_pt = torch.logaddexp(
            t.clamp_min(tiny).log() + F.logsigmoid(-x), (1 - t).clamp_min(tiny).log() + F.logsigmoid(x)
        )
        loss = loss * torch.exp(gamma * log_one_minus_pt)
    if alpha >= 0:
        loss = (alpha * t + (1 - alpha) * (1 - t)) * loss
    weight = prepare_weight(weight, loss.shape, dtype, per_box_fold="expand")
    if weight is not None:
        loss = loss * weight
    return reduce_loss(loss, reduction, avg_factor)
