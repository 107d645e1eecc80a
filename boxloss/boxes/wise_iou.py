"""Wise-IoU v1 and v3 (Tong, Chen, Xu, Yu, "Wise-IoU: Bounding Box Regression Loss with Dynamic
Focusing Mechanism", arXiv:2301.10051, 2023), following the authors' released code (Instinct323/wiou
iou.py `IouLoss`, checked; docs/losses.md lists the differences).

    v1:  L = R * L_IoU,  L_IoU = 1 - IoU,  R = exp(rho^2 / (W_g^2 + H_g^2)*)
    v3:  L = r * R * L_IoU,  beta = L_IoU* / mean(L_IoU),  r = beta / (delta * a^(beta - delta))

rho is the distance between the box centres, W_g and H_g the size of the smallest box enclosing both;
`*` marks a value detached from the graph (the authors' `.detach()`). R lies in [1, e]. a = 1.9 and
delta = 3 are the paper's and the code's defaults (`IouLoss(alpha=1.9, delta=3)`; the YOLO
snippet `WIoU_Scale` in the ultralytics forks calls them gamma and delta).

mean(L_IoU) is a running mean over training, which is state: `WIoUv3Loss` keeps it in a persistent
buffer `iou_mean` (so it is in `state_dict` and resumes with a checkpoint) and updates it, in training
mode only, as in the authors' code:

    iou_mean <- (1 - m) * iou_mean + m * (batch mean of L_IoU*),   starting from iou_mean = 1,

*before* scaling the current batch (the current batch is already part of the mean it is scaled by).
The momentum is m = 1 - 0.05^(1 / (n t)) for n batches per epoch and t epochs (after t epochs the
initial value keeps weight 0.05); `wiou_momentum(n, t)` computes it. The default, 1 - 0.05^(1/(890*34)),
is the `IouLoss(890, 34)` of the authors' iou.py example; set yours.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
from torch import Tensor

from ._checks import check_positive, prepare_weight
from ._geometry import box_parts, check_number
from .kernels import fused_box_loss
from .iou_losses import _finish, iou_loss
from .overlaps import aligned_overlap, prepare_box_pair
from .registry import LossModule


def wiou_momentum(batches_per_epoch: int, epochs: float) -> float:
    """Running-mean momentum 1 - 0.05^(1 / (batches_per_epoch * epochs)) (Tong et al. 2023, section 3.4)."""
    check_number("batches_per_epoch", batches_per_epoch, low=0.0, low_ok=False)
    check_number("epochs", epochs, low=0.0, low_ok=False)
    return 1.0 - 0.05 ** (1.0 / (batches_per_epoch * epochs))


WIOU_DEFAULT_MOMENTUM = wiou_momentum(890, 34)


def _wiou_v1_parts(pred: Tensor, target: Tensor, fmt: str, eps: float) -> tuple[Tensor, Tensor]:
    """(L_IoU, R_WIoU) per pair."""
    check_positive("eps", eps)
    p, t = prepare_box_pair(pred, target, fmt)
    _, iou = aligned_overlap(p, t, "iou", eps)
    g = box_parts(p, t)
    c2 = (g.cw * g.cw + g.ch * g.ch).clamp_min(eps).detach()
    # rho <= c whenever the target is a valid box (both centres lie in the enclosing box), so the cap at 1
    # only acts when both boxes are inverted (x2 < x1), where exp would otherwise overflow to inf.
    return 1 - iou, torch.exp(((g.dx * g.dx + g.dy * g.dy) / c2).clamp_max(1))


def _check_iou_mean(iou_mean, eps: float):
    """`iou_mean` checked and bounded below by eps: a detached 0-dim tensor (never synced) or a float."""
    if isinstance(iou_mean, Tensor):
        if iou_mean.dim() != 0 or not iou_mean.is_floating_point():
            raise ValueError(f"iou_mean must be a float or a 0-dim floating tensor, got {iou_mean!r}")
        return iou_mean.detach().clamp_min(eps)
    check_number("iou_mean", iou_mean, low=0.0)
    return max(float(iou_mean), eps)


def _focusing(l_iou: Tensor, iou_mean, alpha: float, delta: float) -> Tensor:
    """v3's non-monotonic focusing coefficient r = beta / (delta * alpha^(beta - delta)), beta detached;
    `iou_mean` as returned by `_check_iou_mean` (the value the fused kernels get too)."""
    if isinstance(iou_mean, Tensor):
        iou_mean = iou_mean.to(l_iou.dtype)
    beta = l_iou.detach() / iou_mean
    return beta / (delta * torch.exp((beta - delta) * math.log(alpha)))


def wiou_v1_loss(
    pred: Tensor,
    target: Tensor,
    *,
    fmt: str = "xyxy",
    reduction: str = "mean",
    weight: Tensor | None = None,
    avg_factor=None,
    eps: float = 1e-7,
    impl: str | None = None,
) -> Tensor:
    """Wise-IoU v1 (Tong et al. 2023): exp(rho^2 / (W_g^2 + H_g^2)*) * (1 - IoU), in [0, e).

    The enclosing-box diagonal is detached (authors' code), so R pulls centres together without pushing
    the enclosing box to grow. Arguments and return dtype as for `ciou_loss`.
    impl: "auto" | "fused" | "reference" | None, as for the core losses (`boxloss.boxes.kernels`): the fused CPU
    kernel where available (`boxloss.boxes.kernels`), else the eager reference; same values and gradients either way.
    """
    check_positive("eps", eps)
    loss = fused_box_loss(pred, target, "wiou_v1", fmt=fmt, eps=eps, impl=impl,
                          reduction=reduction, weight=weight, avg_factor=avg_factor)
    if loss is not None:
        return loss
    l_iou, r = _wiou_v1_parts(pred, target, fmt, eps)
    return _finish(r * l_iou, reduction, weight, avg_factor)


def _check_focusing(alpha, delta) -> None:
    check_number("alpha", alpha, low=0.0, low_ok=False)
    check_number("delta", delta, low=0.0, low_ok=False)


def wiou_v3_loss(
    pred: Tensor,
    target: Tensor,
    *,
    fmt: str = "xyxy",
    reduction: str = "mean",
    weight: Tensor | None = None,
    avg_factor=None,
    eps: float = 1e-7,
    iou_mean: float | Tensor = 1.0,
    alpha: float = 1.9,
    delta: float = 3.0,
    impl: str | None = None,
) -> Tensor:
    """Wise-IoU v3 (Tong et al. 2023) for a given running mean `iou_mean` of L_IoU = 1 - IoU.

    This function is stateless: training code should use `WIoUv3Loss` (registry name "wiou_v3"), which
    keeps and updates the running mean. `iou_mean` is a float >= 0 or a 0-dim tensor (never synced to the
    host); alpha > 0 and delta > 0 shape the focusing curve (r = 1 where beta = delta).
    Other arguments and the return dtype as for `ciou_loss`.
    impl: "auto" | "fused" | "reference" | None, as for the core losses (`boxloss.boxes.kernels`): the fused CPU
    kernel where available (`boxloss.boxes.kernels`), else the eager reference; same values and gradients either way.
    """
    _check_focusing(alpha, delta)
    check_positive("eps", eps)
    mean = _check_iou_mean(iou_mean, eps)
    loss = fused_box_loss(
        pred, target, "wiou_v3", fmt=fmt, eps=eps, p1=math.log(alpha), p2=delta, extra=mean, impl=impl,
        reduction=reduction, weight=weight, avg_factor=avg_factor,
    )
    if loss is not None:
        return loss
    l_iou, r = _wiou_v1_parts(pred, target, fmt, eps)
    loss = _focusing(l_iou, mean, alpha, delta) * r * l_iou
    return _finish(loss, reduction, weight, avg_factor)


class WIoUv3Loss(LossModule):
    """Wise-IoU v3 with its running mean of L_IoU as a persistent buffer `iou_mean` (in `state_dict`).

        loss = WIoUv3Loss(momentum=wiou_momentum(len(loader), 30))   # or get_box_loss("wiou_v3", ...)
        loss(pred, target, weight=None, avg_factor=None)

    In training mode each call first updates `iou_mean` with the batch mean of L_IoU (weighted by
    `weight` when given, so zero-weight boxes do not count), then computes the loss with it; in eval
    mode `iou_mean` is left alone. Under torch.distributed the batch sum and count are all-reduced
    before the update, so every rank holds the same `iou_mean` (the mean over all ranks' boxes). A
    batch with no boxes (on every rank) leaves `iou_mean` unchanged. Tensor ops only: no host sync.

    In training mode under torch.distributed every rank must call it equally often (the all-reduce is a
    collective, like DDP's own). Move the module with the model (`model.to(device)`) so the buffer lives
    on the boxes' device. The buffer stays float32 (or float64) through `.half()` / `.to(torch.bfloat16)`:
    in fp16 an update of m ~ 1e-4 times the mean would round away and the mean would never move.
    """

    def __init__(self, *, loss_weight: float = 1.0, momentum: float = WIOU_DEFAULT_MOMENTUM, **kwargs):
        if "iou_mean" in kwargs:
            raise ValueError(
                "iou_mean is WIoUv3Loss's running state, not an argument; load it with load_state_dict, "
                "or call wiou_v3_loss(..., iou_mean=...) directly"
            )
        check_number("momentum", momentum, low=0.0, low_ok=False)
        if momentum > 1:
            raise ValueError(f"momentum={momentum!r} is not supported; accepted: a number in (0, 1]")
        super().__init__(wiou_v3_loss, loss_weight=loss_weight, name="wiou_v3", **kwargs)
        _check_focusing(kwargs.get("alpha", 1.9), kwargs.get("delta", 3.0))
        self.momentum = float(momentum)
        self.register_buffer("iou_mean", torch.ones(()), persistent=True)

    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        if self.iou_mean.dtype not in (torch.float32, torch.float64):
            self.iou_mean = self.iou_mean.float()
        return self

    @torch.no_grad()
    def _update(self, l_iou: Tensor, weight: Tensor | None) -> None:
        l_iou = l_iou.detach()
        w = prepare_weight(weight, l_iou.shape, l_iou.dtype, per_box_fold="mean")
        if w is None:
            stats = torch.stack([l_iou.sum(), torch.full_like(l_iou.sum(), l_iou.numel())])
        else:
            stats = torch.stack([(w * l_iou).sum(), w.sum()])
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(stats)  # sum over ranks
        batch_mean = stats[0] / stats[1].clamp_min(torch.finfo(stats.dtype).tiny)
        old = self.iou_mean.to(stats.dtype)
        new = torch.where(stats[1] > 0, (1 - self.momentum) * old + self.momentum * batch_mean, old)
        self.iou_mean.copy_(new)

    def forward(self, pred: Tensor, target: Tensor, weight: Tensor | None = None, avg_factor=None) -> Tensor:
        kw = self.kwargs
        if self.training:
            # L_IoU = 1 - IoU for the update, without a graph (the fused kernels or the reference, per `impl`);
            # the same values the loss below computes internally
            with torch.no_grad():
                l_iou = iou_loss(pred, target, fmt=kw.get("fmt", "xyxy"), reduction="none", eps=kw.get("eps", 1e-7),
                                 impl=kw.get("impl"))
            self._update(l_iou, weight)
        loss = wiou_v3_loss(pred, target, weight=weight, avg_factor=avg_factor, iou_mean=self.iou_mean, **kw)
        return self.loss_weight * loss

    def extra_repr(self) -> str:
        return super().extra_repr() + f", momentum={self.momentum:.6g}"
