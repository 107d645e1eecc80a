"""Box formats and conversions. The one home of box format math in boxloss.

Formats (last dim 4):
- ``xyxy``:   (x1, y1, x2, y2), corners; x2 >= x1 and y2 >= y1 for a valid box.
- ``xywh``:   (x1, y1, w, h), top-left corner and size (the COCO json convention).
- ``cxcywh``: (cx, cy, w, h), centre and size.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._checks import check_choice, check_tensor

BOX_FORMATS = ("xyxy", "xywh", "cxcywh")


def _to_xyxy(boxes: Tensor, fmt: str) -> Tensor:
    if fmt == "xyxy":
        return boxes
    a, b, c, d = boxes.unbind(-1)
    if fmt == "xywh":
        return torch.stack((a, b, a + c, b + d), dim=-1)
    return torch.stack((a - 0.5 * c, b - 0.5 * d, a + 0.5 * c, b + 0.5 * d), dim=-1)


def _from_xyxy(boxes: Tensor, fmt: str) -> Tensor:
    if fmt == "xyxy":
        return boxes
    x1, y1, x2, y2 = boxes.unbind(-1)
    if fmt == "xywh":
        return torch.stack((x1, y1, x2 - x1, y2 - y1), dim=-1)
    return torch.stack((0.5 * (x1 + x2), 0.5 * (y1 + y2), x2 - x1, y2 - y1), dim=-1)


def box_convert(boxes: Tensor, in_fmt: str, out_fmt: str) -> Tensor:
    """Convert boxes `[..., 4]` from `in_fmt` to `out_fmt` (each one of xyxy | xywh | cxcywh).

    Same semantics as `torchvision.ops.box_convert`, with batch dimensions. Returns a new tensor of the
    same shape and dtype (the input itself when the formats are equal).
    """
    check_tensor("boxes", boxes, last_dim=4)
    check_choice("in_fmt", in_fmt, BOX_FORMATS)
    check_choice("out_fmt", out_fmt, BOX_FORMATS)
    if in_fmt == out_fmt:
        return boxes
    return _from_xyxy(_to_xyxy(boxes, in_fmt), out_fmt)


def to_xyxy(boxes: Tensor, fmt: str) -> Tensor:
    """Shorthand for `box_convert(boxes, fmt, "xyxy")`."""
    return box_convert(boxes, fmt, "xyxy")
