"""`nn.Module` wrappers and the box-loss registry used by the detector and the command line.

    loss = get_box_loss("ciou", loss_weight=2.0, gate_alpha=True)
    loss(pred, target, weight=w, avg_factor=num_pos)

A new loss is one function plus one `register_box_loss` call.
"""

from __future__ import annotations

import inspect
from typing import Callable

from torch import Tensor, nn

from .focal import sigmoid_focal_loss
from .iou_losses import ciou_loss, diou_loss, giou_loss, iou_loss
from .smooth_l1 import l1_loss, smooth_l1_loss

_PER_CALL = ("pred", "target", "logits", "targets", "weight", "avg_factor")


class LossModule(nn.Module):
    """Wraps a functional loss with fixed keyword arguments and a `loss_weight` multiplier.

    `forward(pred, target, weight=None, avg_factor=None)` returns `loss_weight * fn(pred, target, ...)`.
    """

    def __init__(self, fn: Callable[..., Tensor], *, loss_weight: float = 1.0, name: str | None = None, **kwargs):
        super().__init__()
        params = inspect.signature(fn).parameters
        accepted = [k for k in params if k not in _PER_CALL]
        for key in kwargs:
            if key not in accepted:
                raise ValueError(
                    f"{name or fn.__name__} got an unknown argument {key}={kwargs[key]!r}; "
                    f"accepted: loss_weight, {', '.join(accepted)}"
                )
        if not isinstance(loss_weight, (int, float)):
            raise ValueError(f"loss_weight={loss_weight!r} is not supported; accepted: a number")
        self.fn = fn
        self.name = name or fn.__name__
        self.loss_weight = float(loss_weight)
        self.kwargs = kwargs

    def forward(self, pred: Tensor, target: Tensor, weight: Tensor | None = None, avg_factor=None) -> Tensor:
        return self.loss_weight * self.fn(pred, target, weight=weight, avg_factor=avg_factor, **self.kwargs)

    def extra_repr(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items())
        return f"name={self.name!r}, loss_weight={self.loss_weight}" + (f", {args}" if args else "")


_BOX_LOSSES: dict[str, Callable[..., nn.Module]] = {}


def register_box_loss(name: str, factory: Callable[..., nn.Module]) -> None:
    """Register `factory(**kwargs) -> nn.Module` under `name` (lower case, unique)."""
    if name in _BOX_LOSSES:
        raise ValueError(f"box loss {name!r} is already registered")
    _BOX_LOSSES[name] = factory


def _functional(fn: Callable[..., Tensor], name: str) -> Callable[..., nn.Module]:
    return lambda **kwargs: LossModule(fn, name=name, **kwargs)


def available_box_losses() -> list[str]:
    """Names accepted by `get_box_loss`, sorted."""
    return sorted(_BOX_LOSSES)


def get_box_loss(name: str, **kwargs) -> nn.Module:
    """Build the box loss `name` ("smooth_l1", "l1", "iou", "giou", "diou", "ciou", ...) as an nn.Module.

    Keyword arguments are the loss function's own (fmt, reduction, eps, beta, mode, gate_alpha, ...) plus
    `loss_weight`. Unknown names and unknown arguments raise ValueError listing what is accepted.
    """
    if name not in _BOX_LOSSES:
        raise ValueError(f"unknown box loss {name!r}; accepted: {', '.join(available_box_losses())}")
    return _BOX_LOSSES[name](**kwargs)


class SigmoidFocalLoss(LossModule):
    """`sigmoid_focal_loss` as a module: `SigmoidFocalLoss(alpha=0.25, gamma=2.0, loss_weight=1.0)`."""

    def __init__(self, *, loss_weight: float = 1.0, **kwargs):
        super().__init__(sigmoid_focal_loss, loss_weight=loss_weight, name="sigmoid_focal", **kwargs)


for _name, _fn in (
    ("smooth_l1", smooth_l1_loss),
    ("l1", l1_loss),
    ("iou", iou_loss),
    ("giou", giou_loss),
    ("diou", diou_loss),
    ("ciou", ciou_loss),
):
    register_box_loss(_name, _functional(_fn, _name))
