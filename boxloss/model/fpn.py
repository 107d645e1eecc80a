"""A light feature pyramid (Lin et al., "Feature Pyramid Networks for Object Detection", CVPR 2017).

Lateral 1x1 convs bring C3..C5 to one width, a top-down pass adds each upsampled coarser map, and a
3x3 conv smooths each sum: P3, P4, P5 at strides 8, 16, 32.
"""

import torch.nn.functional as F
from torch import nn


class FPN(nn.Module):
    def __init__(self, in_channels: list[int], channels: int):
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in in_channels)
        self.output = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=1) for _ in in_channels)

    def forward(self, feats):
        laterals = [conv(f) for conv, f in zip(self.lateral, feats)]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(laterals[i], size=laterals[i - 1].shape[-2:], mode="nearest")
        return [conv(x) for conv, x in zip(self.output, laterals)]
