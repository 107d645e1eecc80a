"""Static FCOS target assignment: which feature-map points are positives, and for which box.

A point (the centre of a feature-map cell, in input pixels) is a positive for a ground-truth box when

1. it lies inside the box and within ``radius * stride`` of the box centre (centre sampling,
   FCOS "imprv"), and
2. its largest distance to the box sides, ``max(l, t, r, b)``, is inside its level's scale range
   (e.g. P3: [0, 64], P4: [64, 128], P5: [128, inf) pixels);

when several boxes qualify, the smallest (by area) wins. The assignment looks only at the ground
truth and the point grid, never at predictions, so every box loss trains on exactly the same
positives: comparing losses changes the loss and nothing else.
"""

from __future__ import annotations

import torch
from torch import Tensor


def make_points(sizes: list[tuple[int, int]], strides: list[int], device=None) -> tuple[Tensor, Tensor]:
    """Cell centres of every level, concatenated: ``points [P, 2]`` (x, y pixels) and ``strides [P]``."""
    points, point_strides = [], []
    for (h, w), s in zip(sizes, strides):
        ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) * s
        xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) * s
        y, x = torch.meshgrid(ys, xs, indexing="ij")
        points.append(torch.stack([x.reshape(-1), y.reshape(-1)], dim=1))
        point_strides.append(torch.full((h * w,), float(s), device=device))
    return torch.cat(points), torch.cat(point_strides)


def scale_bounds(sizes: list[tuple[int, int]], ranges: list[float], device=None) -> tuple[Tensor, Tensor]:
    """Per point lower/upper bound of ``max(l, t, r, b)``; ``ranges`` are the boundaries between levels."""
    edges = [0.0] + [float(r) for r in ranges] + [float("inf")]
    lo = torch.cat([torch.full((h * w,), edges[i], device=device) for i, (h, w) in enumerate(sizes)])
    hi = torch.cat([torch.full((h * w,), edges[i + 1], device=device) for i, (h, w) in enumerate(sizes)])
    return lo, hi


@torch.no_grad()
def assign_targets(points: Tensor, strides: Tensor, lo: Tensor, hi: Tensor, boxes: Tensor, radius: float = 1.5):
    """Assign one image's ground truth to the points.

    Args:
        points: ``[P, 2]`` cell centres; strides, lo, hi: ``[P]`` (see ``make_points``, ``scale_bounds``).
        boxes: ``[K, 4]`` xyxy ground truth in input pixels.
        radius: centre-sampling radius in strides (<= 0 disables centre sampling).

    Returns:
        ``matched [P]``: index of the assigned box, -1 for background, and ``ltrb [P, 4]``: the
        distances from each point to the sides of its box in pixels (zeros for background).
    """
    num_points = points.shape[0]
    if boxes.numel() == 0:
        return torch.full((num_points,), -1, dtype=torch.long, device=points.device), points.new_zeros(num_points, 4)
    x, y = points[:, 0:1], points[:, 1:2]  # [P, 1]
    x1, y1, x2, y2 = boxes.unbind(-1)  # [K]
    ltrb = torch.stack([x - x1, y - y1, x2 - x, y2 - y], dim=-1)  # [P, K, 4]
    ok = ltrb.amin(dim=-1) > 0
    if radius > 0:
        cx, cy, r = (x1 + x2) / 2, (y1 + y2) / 2, radius * strides[:, None]
        ok &= ((x - cx).abs() < r) & ((y - cy).abs() < r)
    reach = ltrb.amax(dim=-1)
    ok &= (reach >= lo[:, None]) & (reach <= hi[:, None])
    area = ((x2 - x1) * (y2 - y1)).expand(num_points, -1)
    cost = torch.where(ok, area, torch.full_like(area, float("inf")))
    best, matched = cost.min(dim=1)
    matched = torch.where(torch.isfinite(best), matched, torch.full_like(matched, -1))
    ltrb = ltrb[torch.arange(num_points, device=points.device), matched.clamp(min=0)]
    return matched, torch.where(matched[:, None] >= 0, ltrb, torch.zeros_like(ltrb))


def centerness(ltrb: Tensor) -> Tensor:
    """FCOS centerness ``sqrt(min(l, r)/max(l, r) * min(t, b)/max(t, b))`` of distances ``[..., 4]``."""
    lr, tb = ltrb[..., 0::2], ltrb[..., 1::2]
    ratio = (lr.amin(-1) / lr.amax(-1).clamp(min=1e-6)) * (tb.amin(-1) / tb.amax(-1).clamp(min=1e-6))
    return ratio.clamp(min=0).sqrt()
