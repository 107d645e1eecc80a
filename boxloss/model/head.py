"""The FCOS head (Tian et al., "FCOS: Fully Convolutional One-Stage Object Detection", ICCV 2019).

Two towers of 3x3 conv + GroupNorm + ReLU, shared across pyramid levels: the classification tower
feeds the class logits; the box tower feeds the box distances and the quality logit (centerness or
IoU, predicted from the box tower as in the FCOS follow-up paper). Box distances ``(l, t, r, b)`` are
in stride units and kept non-negative by ``relu(scale_level * x)`` with one learnable scale per level.

Under autocast (``train.amp``) the towers run in reduced precision but the three prediction convs
run in fp32: a bf16 distance of ~6 strides has a resolution of 1/32 stride. With the default config
(2 towers x 2 convs of 64 channels, 5 classes) those convs are ~4 % of the head's multiply-adds; they
cost 4-9 % of the bf16 training-step rate on CPU (docs/benchmarks.md).
"""

import math

import torch
import torch.nn.functional as F
from torch import nn


def _tower(channels: int, num_convs: int, groups: int) -> nn.Sequential:
    layers = []
    for _ in range(num_convs):
        layers += [nn.Conv2d(channels, channels, 3, padding=1), nn.GroupNorm(groups, channels), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


def _flat(x):
    """``[B, C, H, W] -> [B, H*W, C]`` (a free view for channels-last tensors), made contiguous."""
    return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1, x.shape[1]).contiguous()


class FCOSHead(nn.Module):
    """Returns, for each level, ``cls [B, HW, C]``, ``box [B, HW, 4]`` (stride units) and ``quality [B, HW]``."""

    def __init__(self, channels: int, num_classes: int, num_levels: int = 3, num_convs: int = 2, norm_groups: int = 16,
                 prior_prob: float = 0.01, box_init: float = 2.0):
        super().__init__()
        if channels % norm_groups:
            raise ValueError(f"model.fpn_channels={channels} must be divisible by model.norm_groups={norm_groups}")
        self.cls_tower = _tower(channels, num_convs, norm_groups)
        self.box_tower = _tower(channels, num_convs, norm_groups)
        self.cls_logits = nn.Conv2d(channels, num_classes, 3, padding=1)
        self.box_pred = nn.Conv2d(channels, 4, 3, padding=1)
        self.quality = nn.Conv2d(channels, 1, 3, padding=1)
        self.scales = nn.Parameter(torch.ones(num_levels))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)
        nn.init.constant_(self.cls_logits.bias, -math.log((1 - prior_prob) / prior_prob))
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
        box = F.relu(self.scales[level] * _flat(self.box_pred(b)))
        quality = _flat(self.quality(b)).squeeze(-1)
        return cls, box, quality
