"""Shared fixtures for the boxes tests: random valid boxes and the list of IoU-family losses."""

import torch

from boxloss.boxes import ciou_loss, diou_loss, giou_loss, iou_loss, mpdiou_loss, wiou_v3_loss

IOU_FAMILY = {"iou": iou_loss, "giou": giou_loss, "diou": diou_loss, "ciou": ciou_loss}
# the two kinds whose kernels read the extra input, with a fixed one: a single value, and one per box
EXTRA_INPUT_LOSSES = {
    "wiou_v3": lambda p, t, **kw: wiou_v3_loss(p, t, iou_mean=0.4, **kw),
    "mpdiou": lambda p, t, **kw: mpdiou_loss(p, t, img_size=(160.0, 120.0), **kw),
}


def random_boxes(n, *, dtype=torch.float64, seed=0, scale=100.0, min_size=1.0, max_size=50.0):
    """`n` valid xyxy boxes with corners in [0, scale] and sides in [min_size, max_size]."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g, dtype=torch.float64) * scale
    wh = min_size + torch.rand(n, 2, generator=g, dtype=torch.float64) * (max_size - min_size)
    return torch.cat([xy, xy + wh], dim=-1).to(dtype)


def overlapping_pairs(n, *, dtype=torch.float64, seed=0):
    """Targets and predictions jittered around them, so most pairs overlap (the regime losses live in)."""
    g = torch.Generator().manual_seed(seed + 1)
    target = random_boxes(n, seed=seed)
    size = (target[:, 2:] - target[:, :2]).repeat(1, 2)
    pred = target + 0.3 * size * torch.randn(n, 4, generator=g, dtype=torch.float64)
    pred = torch.cat([torch.minimum(pred[:, :2], pred[:, 2:] - 0.5), pred[:, 2:]], dim=-1)
    return pred.to(dtype), target.to(dtype)
