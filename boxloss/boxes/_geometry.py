"""Per-pair box geometry shared by the newer IoU-family losses (EIoU, SIoU, Wise-IoU, Shape-IoU).

All inputs are xyxy boxes already in the compute dtype (see `overlaps.prepare_box_pair`). Widths and
heights are clamped at 0, as in `overlaps.aligned_overlap`, so a raw head output with x2 < x1 is a box
of zero width rather than a negative one.
"""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor
import torch


class BoxParts(NamedTuple):
    pw: Tensor  # prediction width, clamped at 0
    ph: Tensor  # prediction height
    tw: Tensor  # target width
    th: Tensor  # target height
    dx: Tensor  # centre offset, prediction minus target, along x
    dy: Tensor  # along y
    cw: Tensor  # width of the smallest box enclosing both
    ch: Tensor  # height of the smallest box enclosing both


def box_parts(p: Tensor, t: Tensor) -> BoxParts:
    px1, py1, px2, py2 = p.unbind(-1)
    tx1, ty1, tx2, ty2 = t.unbind(-1)
    return BoxParts(
        pw=(px2 - px1).clamp_min(0),
        ph=(py2 - py1).clamp_min(0),
        tw=(tx2 - tx1).clamp_min(0),
        th=(ty2 - ty1).clamp_min(0),
        dx=0.5 * ((px1 + px2) - (tx1 + tx2)),
        dy=0.5 * ((py1 + py2) - (ty1 + ty2)),
        cw=(torch.maximum(px2, tx2) - torch.minimum(px1, tx1)).clamp_min(0),
        ch=(torch.maximum(py2, ty2) - torch.minimum(py1, ty1)).clamp_min(0),
    )


def safe_pow(x: Tensor, exponent: float) -> Tensor:
    """`x ** exponent` for x >= 0 whose gradient is finite everywhere, 0 included.

    For exponent < 1 the derivative exponent * x^(exponent - 1) is infinite at x = 0; there the value is
    0 and the gradient 0 (the double `torch.where` keeps the unused branch's inf out of the backward).
    """
    if exponent == 1:
        return x
    if float(exponent).is_integer():
        return x ** int(exponent)
    pos = x > 0
    return torch.where(pos, torch.where(pos, x, torch.ones_like(x)) ** exponent, torch.zeros_like(x))


def check_number(name: str, value, *, low: float, low_ok: bool = True) -> None:
    """ValueError unless `value` is a real number >= low (or > low with low_ok=False)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value == value
    ok = ok and (value >= low if low_ok else value > low) and value != float("inf")
    if not ok:
        raise ValueError(f"{name}={value!r} is not supported; accepted: a finite number {'>=' if low_ok else '>'} {low}")
