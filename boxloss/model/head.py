"""The FCOS head (Tian et al., "FCOS: Fully Convolutional One-Stage Object Detection", ICCV 2019).

Two towers of 3x3 conv + GroupNorm + ReLU, shared across pyramid levels: the classification tower
feeds the class logits; the box tower feeds the box distances and the quality logit (centerness or
IoU, predicted from the box tower as in the FCOS follow-up paper; absent with ``quality=False``).
Box distances ``(l, t, r, b)`` are in stride units. Two ways to predict them (``box_head``):

- ``"distances"`` (FCOS): one number per side, kept non-negative by ``relu(scale_level * x)`` with one
  learnable scale per level.
- ``"distribution"`` (GFL: Li et al., "Generalized Focal Loss", NeurIPS 2020): ``reg_max + 1`` logits
  per side, a discrete distribution over the distances ``0, 1, ..., reg_max`` strides; the distance
  is its expectation (``integral_decode``: softmax, then the sum of ``k * p_k``), so it lies in
  ``[0, reg_max]`` strides. The learnable per-level scale multiplies the logits (a temperature per
  level, as GFL's ``Scale``), not the distances: a distance stays the expectation of the
  distribution that the distribution focal loss trains. The box conv starts as GFL's (weights
  N(0, 0.01), bias 0): a near-uniform distribution, ``reg_max / 2`` strides per side.

Under autocast (``train.amp``) the towers run in reduced precision but the three prediction convs
run in fp32: a bf16 distance of ~6 strides has a resolution of 1/32 stride. With the default config
(2 towers x 2 convs of 64 channels, 5 classes) those convs are ~4 % of the head's multiply-adds; they
cost 4-9 % of the bf16 training-step rate on CPU (docs/benchmarks.md).
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..boxes import integral_decode

BOX_HEADS = ("distances", "distribution")


def _tower(channels: int, num_convs: int, groups: int) -> nn.Sequential:
    layers = []
    for _ in range(num_convs):
        layers += [nn.Conv2d(channels, channels, 3, padding=1), nn.GroupNorm(groups, channels), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


def _flat(x):
    """``[B, C, H, W] -> [B, H*W, C]`` (a free view for channels-last tensors), made contiguous."""
    return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1, x.shape[1]).contiguous()


class FCOSHead(nn.Module):
    """Returns, for each level, ``cls [B, HW, C]``, ``box [B, HW, 4]`` (stride units) and ``quality [B, HW]``
    (None with ``quality=False``); with ``box_head="distribution"`` also the box logits
    ``[B, HW, 4, reg_max + 1]`` (the ``box`` distances are their integral)."""

    def __init__(self, channels: int, num_classes: int, num_levels: int = 3, num_convs: int = 2, norm_groups: int = 16,
                 prior_prob: float = 0.01, box_init: float = 2.0, box_head: str = "distances", reg_max: int = 16,
                 quality: bool = True):
        super().__init__()
        if channels % norm_groups:
            raise ValueError(f"model.fpn_channels={channels} must be divisible by model.norm_groups={norm_groups}")
        if box_head not in BOX_HEADS:
            raise ValueError(f"unknown box_head {box_head!r}; accepted: {', '.join(BOX_HEADS)}")
        if isinstance(reg_max, bool) or not isinstance(reg_max, int) or reg_max < 1:
            raise ValueError(f"bad value reg_max={reg_max!r}; accepted: an integer >= 1")
        self.box_head, self.reg_max = box_head, reg_max
        distribution = box_head == "distribution"
        self.cls_tower = _tower(channels, num_convs, norm_groups)
        self.box_tower = _tower(channels, num_convs, norm_groups)
        self.cls_logits = nn.Conv2d(channels, num_classes, 3, padding=1)
        self.box_pred = nn.Conv2d(channels, 4 * (reg_max + 1) if distribution else 4, 3, padding=1)
        # No quality conv at all without a quality branch: an unused parameter would stall DDP.
        self.quality = nn.Conv2d(channels, 1, 3, padding=1) if quality else None
        self.scales = nn.Parameter(torch.ones(num_levels))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)
        nn.init.constant_(self.cls_logits.bias, -math.log((1 - prior_prob) / prior_prob))
        if not distribution:
            nn.init.constant_(self.box_pred.bias, box_init)  # start at box_init strides: relu is alive

    def forward(self, feats):
        out = []
        for level, x in enumerate(feats):
            c, b = self.cls_tower(x), self.box_tower(x)
            if torch.is_autocast_enabled(x.device.type):
                with torch.autocast(x.device.type, enabled=False):
                    out.append(self._predict(c.float(), b.float(), level))
            else:
                out.append(self._predict(c, b, level))
        return out

    def _predict(self, c, b, level: int):
        cls = _flat(self.cls_logits(c))
        if self.box_head == "distribution":
            logits = self.scales[level] * _flat(self.box_pred(b))
            logits = logits.reshape(*logits.shape[:2], 4, self.reg_max + 1)  # [B, HW, 4, reg_max + 1]
            box = integral_decode(logits, self.reg_max)
        else:
            box = F.relu(self.scales[level] * _flat(self.box_pred(b)))
        quality = _flat(self.quality(b)).squeeze(-1) if self.quality is not None else None
        if self.box_head == "distribution":
            return cls, box, quality, logits
        return cls, box, quality
