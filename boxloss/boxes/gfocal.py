"""Generalized Focal Loss: Quality Focal Loss (QFL) and Distribution Focal Loss (DFL), and the integral
decoding of a distribution over bins (Li, Wang, Wu, Chen, Hu, Li, Tang, Yang, "Generalized Focal Loss: Learning
Qualified and Distributed Bounding Boxes for Dense Object Detection", NeurIPS 2020; arXiv:2006.04388).

    QFL(x, y) = |y - sigmoid(x)|^beta * BCE(x, y)            y in [0, 1]: the IoU for a positive, 0 for a negative
    DFL(S, y) = -((y_r - y) log S_l + (y - y_l) log S_r)    y_l = floor(y), y_r = y_l + 1, S = softmax(logits)
    integral  = sum_i i * softmax(logits)_i,  i = 0 .. reg_max

QFL is a classification loss on a joint class/quality score: each class logit is trained towards the IoU of
the box (0 for every other class and for negatives), with focal-style modulation by the distance between
the target and the prediction. DFL trains a discrete distribution over the distances {0, 1, ..., reg_max}
(one distribution per box side) to put its mass on the two bins around the continuous target; the box side
is then the distribution's expectation (`integral_decode`). Neither is a box loss of the registry (QFL is
like `sigmoid_focal_loss`, DFL acts on distribution logits, not on boxes).

Numerics: fp32 compute (fp64 stays), BCE with logits and log-softmax (never log of a sigmoid or softmax), so
saturated logits (+-100) give finite values and gradients. Checked against mmdetection's
`quality_focal_loss` / `quality_focal_loss_tensor_target` / `distribution_focal_loss` and ultralytics' `DFLoss`
(docs/losses.md, "Generalized Focal Loss").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ._checks import broadcast_shape, check_tensor, compute_dtype, prepare_weight, reduce_loss
from ._geometry import check_number, safe_pow
from .registry import LossModule


def _dense_quality_targets(targets, logits: Tensor, dtype: torch.dtype) -> Tensor:
    """mmdetection's (labels, scores) form -> dense soft targets `[..., C]`.

    labels `[...]` integer class indices, scores `[...]` the quality (IoU) of each row; a label outside
    [0, C) (mmdetection's background index C) gives an all-zero row. Static shapes, no host sync.
    """
    if len(targets) != 2:
        raise ValueError(
            "targets must be a tensor [..., C] or a pair (labels [...], scores [...]), "
            f"got a sequence of {len(targets)}"
        )
    labels, scores = targets
    integer = isinstance(labels, Tensor) and not (labels.is_floating_point() or labels.is_complex())
    if not integer or labels.dtype == torch.bool:
        raise ValueError("targets[0] (labels) must be an integer tensor of class indices")
    check_tensor("targets[1] (scores)", scores)
    if labels.shape != scores.shape or labels.shape != logits.shape[:-1]:
        raise ValueError(
            f"labels {list(labels.shape)} and scores {list(scores.shape)} must both have the shape of logits without "
            f"its class dim, {list(logits.shape[:-1])}"
        )
    classes = torch.arange(logits.shape[-1], device=labels.device)
    onehot = labels.unsqueeze(-1) == classes
    return onehot.to(dtype) * scores.to(dtype).unsqueeze(-1)


def quality_focal_loss(
    logits: Tensor,
    targets,
    *,
    beta: float = 2.0,
    reduction: str = "mean",
    weight: Tensor | None = None,
    avg_factor=None,
) -> Tensor:
    """Quality Focal Loss |y - sigmoid(x)|^beta * BCE(x, y) on raw logits `[..., C]`.

    targets: soft targets `[..., C]` in [0, 1] (the IoU of the box at its class, 0 elsewhere and for
        negatives), or mmdetection's pair `(labels [...], scores [...])` (label C or any label outside
        [0, C) marks a negative), which is turned into the dense form.
    beta: exponent of the modulating factor >= 0 (the paper's 2; beta = 0 is BCE against soft targets).
    weight: per element `[..., C]` or per row `[...]` (broadcast over classes).
    Returns the loss per element `[..., C]` with reduction="none"; "mean" averages over all elements (pass
    avg_factor = number of positives, as GFL does). mmdetection sums over classes first, so its "none" is
    our `.sum(-1)` and its "mean" is ours times C (docs/losses.md). float32 (float64 for float64 input).
    """
    check_tensor("logits", logits)
    check_number("beta", beta, low=0.0)
    if isinstance(targets, (tuple, list)):
        if logits.dim() == 0:
            raise ValueError("logits must have shape [..., C] (one logit per class)")
        scores = targets[1] if len(targets) == 2 else None
        dtype = compute_dtype(logits, scores) if isinstance(scores, Tensor) else compute_dtype(logits)
        q = _dense_quality_targets(targets, logits, dtype)
    else:
        check_tensor("targets", targets)
        broadcast_shape(logits, targets, ("logits", "targets"))
        dtype = compute_dtype(logits, targets)
        q = targets.to(dtype)
    x, q = torch.broadcast_tensors(logits.to(dtype), q)
    loss = F.binary_cross_entropy_with_logits(x, q, reduction="none")
    if beta != 0:
        loss = loss * safe_pow((q - torch.sigmoid(x)).abs(), beta)
    weight = prepare_weight(weight, loss.shape, dtype, per_box_fold="expand")
    if weight is not None:
        loss = loss * weight
    return reduce_loss(loss, reduction, avg_factor)


def distribution_focal_loss(
    logits: Tensor,
    target: Tensor,
    *,
    target_margin: float = 0.01,
    reduction: str = "mean",
    weight: Tensor | None = None,
    avg_factor=None,
) -> Tensor:
    """Distribution Focal Loss on distribution logits `[..., reg_max + 1]` and continuous targets `[...]`.

    logits: unnormalised scores over the bins 0, 1, ..., reg_max (reg_max = logits.shape[-1] - 1); e.g.
        `[N, 4, reg_max + 1]` for the four sides of N boxes, with target `[N, 4]` (the distances in bin
        units, i.e. divided by the stride). `logits.shape[:-1]` must equal `target.shape`.
    target: clamped to [0, reg_max - target_margin]; the loss is the cross-entropy of the two bins around
        it, weighted by the distance to the other bin: (y_r - y) CE(y_l) + (y - y_l) CE(y_r).
    target_margin: in [0, 1). 0.01 (default) is ultralytics' clamp (`reg_max - 1 - 0.01` with its reg_max
        counting bins); mmdetection's GFL head clamps its targets at reg_max - 0.1 before calling the loss;
        0 is exact (a target of reg_max puts all its weight on the last bin). Only targets within the margin
        of reg_max are affected.
    weight: per element (target's shape) or per row (`target.shape[:-1]`, e.g. per box over its 4 sides).
    Returns `[...]` with reduction="none"; "mean" averages over all elements (sides). ultralytics' DFLoss
    averages over the last dim (the 4 sides): ours `.mean(-1)`. float32 (float64 for float64 input).
    """
    check_tensor("logits", logits)
    check_tensor("target", target)
    if logits.dim() == 0 or logits.shape[-1] < 2:
        raise ValueError(
            f"logits must have shape [..., reg_max + 1] with reg_max >= 1, got shape {list(logits.shape)}"
        )
    if logits.shape[:-1] != target.shape:
        raise ValueError(
            f"logits of shape {list(logits.shape)} need a target of shape {list(logits.shape[:-1])} "
            f"(one distance per distribution), got {list(target.shape)}"
        )
    check_number("target_margin", target_margin, low=0.0)
    if target_margin >= 1:
        raise ValueError(f"target_margin={target_margin!r} is not supported; accepted: a number in [0, 1)")
    reg_max = logits.shape[-1] - 1
    dtype = compute_dtype(logits, target)
    logp = F.log_softmax(logits.to(dtype), dim=-1)
    y = target.to(dtype).clamp(0, reg_max - target_margin)
    left = torch.floor(y).clamp(max=reg_max - 1)  # y = reg_max (margin 0) uses the last pair of bins
    idx = left.long().unsqueeze(-1)
    logp_left = logp.gather(-1, idx).squeeze(-1)
    logp_right = logp.gather(-1, idx + 1).squeeze(-1)
    loss = -((left + 1 - y) * logp_left + (y - left) * logp_right)
    weight = prepare_weight(weight, loss.shape, dtype, per_box_fold="expand")
    if weight is not None:
        loss = loss * weight
    return reduce_loss(loss, reduction, avg_factor)


def integral_decode(logits: Tensor, reg_max: int) -> Tensor:
    """GFL's "integral": the expectation sum_i i * softmax(logits)_i over the bins i = 0 .. reg_max.

    logits `[..., reg_max + 1]` -> `[...]` (reshape a head's `[..., 4 * (reg_max + 1)]` to
    `[..., 4, reg_max + 1]` first). The result lies in [0, reg_max], in bin units (multiply by the stride).
    Same as mmdetection's `Integral` and ultralytics' `DFL` module. float32 (float64 for float64 input).
    """
    check_tensor("logits", logits)
    if not isinstance(reg_max, int) or isinstance(reg_max, bool) or reg_max < 1:
        raise ValueError(f"reg_max={reg_max!r} is not supported; accepted: an integer >= 1")
    if logits.dim() == 0 or logits.shape[-1] != reg_max + 1:
        raise ValueError(
            f"logits must have shape [..., reg_max + 1] = [..., {reg_max + 1}], got {list(logits.shape)}; reshape "
            f"[..., 4 * (reg_max + 1)] to [..., 4, reg_max + 1] first"
        )
    dtype = compute_dtype(logits)
    bins = torch.arange(reg_max + 1, device=logits.device, dtype=dtype)
    return (torch.softmax(logits.to(dtype), dim=-1) * bins).sum(-1)


class QualityFocalLoss(LossModule):
    """`quality_focal_loss` as a module: `QualityFocalLoss(beta=2.0, loss_weight=1.0)`."""

    def __init__(self, *, loss_weight: float = 1.0, **kwargs):
        super().__init__(quality_focal_loss, loss_weight=loss_weight, name="quality_focal", **kwargs)


class DistributionFocalLoss(LossModule):
    """`distribution_focal_loss` as a module: `DistributionFocalLoss(target_margin=0.01, loss_weight=0.25)`."""

    def __init__(self, *, loss_weight: float = 1.0, **kwargs):
        super().__init__(distribution_focal_loss, loss_weight=loss_weight, name="distribution_focal", **kwargs)
