"""Normalized Gaussian Wasserstein Distance (Wang, Xu, Yang, Yu, "A Normalized Gaussian Wasserstein Distance
for Tiny Object Detection", arXiv:2110.13389, 2021).

A box (cx, cy, w, h) is modelled as the 2D Gaussian N((cx, cy), diag(w^2/4, h^2/4)). The 2-Wasserstein
distance between two such Gaussians has a closed form,

    W2^2 = (cx1 - cx2)^2 + (cy1 - cy2)^2 + ((w1 - w2)^2 + (h1 - h2)^2) / 4,

and the NWD normalises it to a similarity in (0, 1]:

    NWD = exp(-sqrt(W2^2) / C),        nwd_loss = 1 - NWD.

Unlike IoU, NWD changes smoothly with the centre offset even where the boxes do not overlap (IoU is 0 for
every disjoint pair), and a one-pixel shift costs the same for a 4-pixel and a 40-pixel box (IoU punishes
the tiny box far more): the constant C, in the boxes' units, sets the scale instead of the box size. The
paper takes C as the average absolute size of the dataset's objects (12.8 pixels for AI-TOD, the default of
the authors' mmdetection code); there is no default here, because a C that does not match the data's scale
silently changes the loss.

Numerics: fp32 compute (fp64 stays); widths and heights clamped at 0 as in the other losses; the square root
is taken only of positive values (a double `torch.where`), so identical boxes give exactly NWD = 1, loss 0,
and a zero (not NaN) gradient. The authors' code adds eps under the square root instead (loss ~2.5e-5 for
identical boxes with C = 12.8). 1 - exp(-d/C) is computed as -expm1(-d/C).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._checks import check_tensor
from ._geometry import box_parts, check_number
from .iou_losses import _finish
from .overlaps import prepare_box_pair


def _check_constant(constant, where: str) -> float:
    if constant is None:
        raise ValueError(
            f"{where} needs constant=C, the normalising size in the boxes' units (the paper: the dataset's average "
            "absolute object size, e.g. 12.8 for AI-TOD in pixels)"
        )
    check_number("constant", constant, low=0.0, low_ok=False)
    return float(constant)


def _wasserstein(p: Tensor, t: Tensor) -> Tensor:
    """sqrt(W2^2) per pair of xyxy boxes in the compute dtype; 0 with a zero gradient where W2^2 = 0."""
    g = box_parts(p, t)
    dw, dh = g.pw - g.tw, g.ph - g.th
    w2 = g.dx * g.dx + g.dy * g.dy + 0.25 * (dw * dw + dh * dh)
    pos = w2 > 0
    return torch.where(pos, torch.where(pos, w2, torch.ones_like(w2)).sqrt(), torch.zeros_like(w2))


def nwd_similarity(
    a: Tensor, b: Tensor, *, constant: float | None = None, fmt: str = "xyxy", aligned: bool = False
) -> Tensor:
    """NWD = exp(-W2 / constant) between two sets of boxes, in (0, 1] (1 for identical boxes).

    a: `[..., N, 4]`, b: `[..., M, 4]`; aligned=False gives the pairwise matrix `[..., N, M]`, aligned=True
    compares a[..., i] with b[..., i] (shapes broadcast) and gives `[..., N]`; the pairwise diagonal equals
    the aligned result bit for bit. `constant` is required (see the module docstring). As `box_iou`, for
    label assignment or evaluation; `nwd_loss` is 1 - this. Returns float32 (float64 for float64 input).
    """
    c = _check_constant(constant, "nwd_similarity")
    if not aligned:
        for name, boxes in (("a", a), ("b", b)):
            check_tensor(name, boxes, last_dim=4)
            if boxes.dim() < 2:
                raise ValueError(
                    f"{name} must have shape [..., N, 4] for pairwise nwd_similarity, got {list(boxes.shape)}; "
                    "use aligned=True to compare boxes one to one"
                )
        a, b = a.unsqueeze(-2), b.unsqueeze(-3)
    p, t = prepare_box_pair(a, b, fmt, names=("a", "b"))
    return torch.exp(-_wasserstein(p, t) / c)


def nwd_loss(
    pred: Tensor,
    target: Tensor,
    *,
    constant: float | None = None,
    fmt: str = "xyxy",
    reduction: str = "mean",
    weight: Tensor | None = None,
    avg_factor=None,
) -> Tensor:
    """NWD loss 1 - exp(-W2(pred, target) / constant), in [0, 1) (Wang et al. 2021).

    constant: required, > 0, in the boxes' units (the paper: the dataset's average absolute object size;
        12.8 in the authors' AI-TOD code). `get_box_loss("nwd")` without it raises ValueError.
    pred, target: boxes `[..., 4]` in `fmt`; weight per box `[...]` or per coordinate `[..., 4]`;
    reduction and avg_factor as for `ciou_loss`. Not scale invariant (C is absolute); translation
    invariant. Returns float32 (float64 for float64 input).
    """
    c = _check_constant(constant, "nwd_loss")
    p, t = prepare_box_pair(pred, target, fmt)
    loss = -torch.expm1(-_wasserstein(p, t) / c)
    return _finish(loss, reduction, weight, avg_factor)
