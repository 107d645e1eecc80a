"""Varifocal Loss (Zhang, Wang, Dayoub, Sünderhauf, "VarifocalNet: An IoU-aware Dense Object Detector",
CVPR 2021; arXiv:2008.13367).

    p = sigmoid(x), q = the IoU-aware classification target (the IoU with the ground-truth box at the
    object's class, 0 elsewhere and for negatives)

    VFL(p, q) = -q (q log p + (1 - q) log(1 - p))        q > 0   (positives, weighted by their own target)
              = -alpha p^gamma log(1 - p)                 q = 0   (negatives, focal down-weighting)

Asymmetric on purpose: only negatives are down-weighted by p^gamma; positives, rare already, keep their
full gradient and high-IoU positives weigh more (q as weight). `iou_weighted=False` weights positives by 1.

Computed as BCE-with-logits(x, q) times that weight, the weight's p^gamma as exp(gamma * logsigmoid(x)), so
saturated logits (+-100) give finite values and gradients (also for gamma < 1). p^gamma is differentiated,
as in the authors' code (mmdetection's `varifocal_loss`) and ultralytics' `VarifocalLoss`; RT-DETR's
criterion detaches it. The differences between these are in docs/losses.md, "Varifocal Loss".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ._checks import broadcast_shape, check_tensor, compute_dtype, prepare_weight, reduce_loss
from ._geometry import check_number
from .registry import LossModule


def varifocal_loss(
    logits: Tensor,
    targets: Tensor,
    *,
    alpha: float = 0.75,
    gamma: float = 2.0,
    iou_weighted: bool = True,
    reduction: str = "mean",
    weight: Tensor | None = None,
    avg_factor=None,
) -> Tensor:
    """Varifocal loss on raw logits `[..., C]` against IoU-aware targets `[..., C]` in [0, 1].

    Elements with target q > 0 are positives: BCE against q, weighted by q (by 1 if `iou_weighted=False`).
    Elements with q = 0 are negatives: BCE against 0 weighted by alpha * sigmoid(x)^gamma.
    alpha: weight of the negatives, >= 0 (0.75, the paper's); gamma: focusing exponent >= 0 (2).
    weight: per element `[..., C]` or per row `[...]` (broadcast over classes).
    reduction="mean" averages over all elements (detectors pass avg_factor, e.g. the number of positives
    or the sum of the positives' targets). Returns float32 (float64 for float64 input).
    """
    check_tensor("logits", logits)
    check_tensor("targets", targets)
    broadcast_shape(logits, targets, ("logits", "targets"))
    check_number("alpha", alpha, low=0.0)
    check_number("gamma", gamma, low=0.0)
    if not isinstance(iou_weighted, bool):
        raise ValueError(f"iou_weighted={iou_weighted!r} is not supported; accepted: True, False")
    dtype = compute_dtype(logits, targets)
    x, q = torch.broadcast_tensors(logits.to(dtype), targets.to(dtype))
    loss = F.binary_cross_entropy_with_logits(x, q, reduction="none")
    negative = alpha * torch.exp(gamma * F.logsigmoid(x)) if gamma != 0 else torch.full_like(x, float(alpha))
    positive = q if iou_weighted else torch.ones_like(q)
    loss = loss * torch.where(q > 0, positive, negative)
    weight = prepare_weight(weight, loss.shape, dtype, per_box_fold="expand")
    if weight is not None:
        loss = loss * weight
    return reduce_loss(loss, reduction, avg_factor)


class VarifocalLoss(LossModule):
    """`varifocal_loss` as a module: `VarifocalLoss(alpha=0.75, gamma=2.0, iou_weighted=True, loss_weight=1.0)`."""

    def __init__(self, *, loss_weight: float = 1.0, **kwargs):
        super().__init__(varifocal_loss, loss_weight=loss_weight, name="varifocal", **kwargs)
