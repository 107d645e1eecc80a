"""Argument checks and reductions shared by every loss in `boxloss.boxes`.

Every check raises `ValueError` naming the argument, the value it got, and what is accepted. Checks look
at types and shapes only, never at tensor values, so they cost no host-device synchronisation and are
traced away by `torch.compile`.
"""

from __future__ import annotations

import torch
from torch import Tensor

REDUCTIONS = ("none", "mean", "sum")


def check_choice(name: str, value, accepted: tuple) -> None:
    if value not in accepted:
        raise ValueError(f"{name}={value!r} is not supported; accepted: {', '.join(map(repr, accepted))}")


def check_tensor(name: str, value, *, last_dim: int | None = None) -> None:
    if not isinstance(value, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if not value.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {value.dtype}; convert with .float()")
    if last_dim is not None and (value.dim() == 0 or value.shape[-1] != last_dim):
        raise ValueError(
            f"{name} must have shape [..., {last_dim}] (one box per row), got shape {list(value.shape)}"
        )


def check_positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    ok = isinstance(value, (int, float)) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name}={value!r} is not supported; accepted: a number {bound}")


def broadcast_shape(a: Tensor, b: Tensor, names: tuple[str, str]) -> torch.Size:
    try:
        return torch.broadcast_shapes(a.shape, b.shape)
    except RuntimeError:
        raise ValueError(
            f"{names[0]} of shape {list(a.shape)} and {names[1]} of shape {list(b.shape)} do not broadcast; "
            "pass tensors of the same shape [..., 4]"
        ) from None


def compute_dtype(*tensors: Tensor) -> torch.dtype:
    """float64 if any input is float64, else float32: losses never compute in fp16/bf16."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def prepare_weight(weight: Tensor | None, loss_shape: torch.Size, dtype: torch.dtype, *, per_box_fold: str):
    """Check `weight` and bring it to `loss_shape`.

    Accepted shapes: `loss_shape` itself, or one more/fewer trailing dim:
    - per_box_fold="mean": loss is per box `[...]`; a per-coordinate weight `[..., 4]` is averaged over its
      last dim (the mmdetection convention for IoU losses).
    - per_box_fold="expand": loss is per element `[..., K]`; a per-row weight `[...]` is broadcast over K.
    """
    if weight is None:
        return None
    if not isinstance(weight, Tensor):
        raise ValueError(f"weight must be a torch.Tensor or None, got {type(weight).__name__}")
    weight = weight.to(dtype)
    if weight.shape == loss_shape:
        return weight
    if per_box_fold == "mean" and weight.shape == loss_shape + (4,):
        return weight.mean(-1)
    if per_box_fold == "expand" and len(loss_shape) > 0 and weight.shape == loss_shape[:-1]:
        return weight.unsqueeze(-1)
    if per_box_fold == "mean":
        accepted = f"{list(loss_shape)} (per box) or {list(loss_shape + (4,))} (per coordinate)"
    else:
        accepted = f"{list(loss_shape)} (per element) or {list(loss_shape[:-1])} (per row)"
    raise ValueError(f"weight has shape {list(weight.shape)}; accepted: {accepted}")


def finish_box_loss(loss: Tensor, reduction: str, weight: Tensor | None, avg_factor) -> Tensor:
    """A per-box loss `[...]` times `weight` (per box, or per coordinate averaged over the 4), reduced."""
    weight = prepare_weight(weight, loss.shape, loss.dtype, per_box_fold="mean")
    if weight is not None:
        loss = loss * weight
    return reduce_loss(loss, reduction, avg_factor)


def reduce_loss(loss: Tensor, reduction: str, avg_factor) -> Tensor:
    """Apply `reduction`; with `avg_factor`, "mean" is `sum / avg_factor` (the mmdetection convention).

    "mean" of an empty loss is a 0 still connected to the graph (sum over nothing, divided by 1), never NaN.
    `avg_factor` with reduction="sum" is an error; with "none" it is ignored, as in mmdetection.
    """
    check_choice("reduction", reduction, REDUCTIONS)
    if reduction == "none":
        return loss
    divisor = sum_divisor(reduction, avg_factor, loss.numel(), loss.dtype)
    return loss.sum() if divisor is None else loss.sum() / divisor


def sum_divisor(reduction: str, avg_factor, count: int, dtype: torch.dtype):
    """What `reduce_loss` divides the sum of `count` losses by for reduction "sum" / "mean": None (no
    division) for "sum"; for "mean" max(count, 1), or with `avg_factor` max(avg_factor, eps) -- a tensor
    avg_factor clamped the same way, in `dtype`. The fused one-pass path divides by the same value."""
    if avg_factor is not None:
        if reduction == "sum":
            raise ValueError('avg_factor cannot be used with reduction="sum"; use reduction="mean"')
        if isinstance(avg_factor, Tensor):
            return avg_factor.to(dtype).clamp_min(torch.finfo(dtype).eps)
        check_positive("avg_factor", avg_factor, allow_zero=True)
        return max(float(avg_factor), torch.finfo(dtype).eps)
    return None if reduction == "sum" else max(count, 1)
