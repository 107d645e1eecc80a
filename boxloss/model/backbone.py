"""Backbones: a tiny from-scratch CNN (the default, sized for a 2-core CPU) and torchvision models.

Every backbone returns the feature maps of strides 8, 16 and 32 (C3, C4, C5) and exposes their
channel counts as ``out_channels``.
"""

from __future__ import annotations

import os

import torch
from torch import nn

TORCHVISION_BACKBONES = ("resnet18", "resnet34", "resnet50", "mobilenet_v3_small", "mobilenet_v3_large")
BACKBONES = ("tiny",) + TORCHVISION_BACKBONES


def conv_bn_act(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class ResidualBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity shortcut (ResNet's BasicBlock, no downsampling)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = conv_bn_act(channels, channels)
        self.conv2 = nn.Sequential(nn.Conv2d(channels, channels, 3, 1, 1, bias=False), nn.BatchNorm2d(channels))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.act(x + self.conv2(self.conv1(x)))


class TinyBackbone(nn.Module):
    """Five stride-2 stages (strides 2..32), each a strided 3x3 conv then ``depth[i]`` residual blocks.

    Args:
        widths: channels of the five stages, e.g. ``(16, 32, 64, 128, 192)``.
        depths: residual blocks per stage, e.g. ``(0, 1, 1, 2, 1)``.
    """

    def __init__(self, widths=(16, 32, 64, 128, 192), depths=(0, 1, 1, 2, 1)):
        super().__init__()
        if len(widths) != 5 or len(depths) != 5:
            raise ValueError(f"tiny backbone needs 5 widths and 5 depths, got {list(widths)} and {list(depths)}")
        stages, c_in = [], 3
        for width, depth in zip(widths, depths):
            stages.append(nn.Sequential(conv_bn_act(c_in, width, 2), *[ResidualBlock(width) for _ in range(depth)]))
            c_in = width
        self.stages = nn.ModuleList(stages)
        self.out_channels = list(widths[2:])

    def forward(self, x):
        feats = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i >= 2:
                feats.append(x)
        return feats


class TorchvisionBackbone(nn.Module):
    """A torchvision classification model cut at strides 8, 16, 32 (no weights are downloaded).

    Args:
        name: one of ``TORCHVISION_BACKBONES``.
        weights_path: optional local ``state_dict`` file of the full classification model (e.g. the
            torchvision ImageNet checkpoint copied to this machine); loaded with ``weights_only=True``.
    """

    def __init__(self, name: str, weights_path: str | None = None):
        super().__init__()
        import torchvision
        from torchvision.models.feature_extraction import create_feature_extractor

        model = getattr(torchvision.models, name)(weights=None)
        if weights_path:
            if not os.path.isfile(weights_path):
                raise FileNotFoundError(f"backbone weights file not found: {weights_path}")
            state = torch.load(weights_path, map_location="cpu", weights_only=True)
            state = state.get("model", state) if isinstance(state, dict) else state
            model.load_state_dict(state, strict=False)
        if name.startswith("resnet"):
            nodes = {"layer2": "c3", "layer3": "c4", "layer4": "c5"}
        else:  # mobilenet_v3: the last block of ``features`` at each of strides 8, 16, 32
            last, stride = {}, 1
            for i, block in enumerate(model.features):
                stride *= _stride_of(block)
                if stride in (8, 16, 32):
                    last[f"c{stride.bit_length() - 1}"] = f"features.{i}"
            nodes = {node: key for key, node in last.items()}
        self.body = create_feature_extractor(model, return_nodes=nodes)
        with torch.no_grad():
            feats = self.body(torch.zeros(1, 3, 64, 64))
        self.out_channels = [feats[k].shape[1] for k in ("c3", "c4", "c5")]

    def forward(self, x):
        feats = self.body(x)
        return [feats["c3"], feats["c4"], feats["c5"]]


def _stride_of(module: nn.Module) -> int:
    """The product of the strides of the first conv in each path (enough for mobilenet blocks)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d) and m.stride[0] > 1:
            return m.stride[0]
    return 1


def build_backbone(cfg: dict) -> nn.Module:
    """The backbone named by ``cfg["backbone"]`` ("tiny" or a name in ``TORCHVISION_BACKBONES``)."""
    name = cfg.get("backbone", "tiny")
    if name == "tiny":
        return TinyBackbone(cfg.get("widths", (16, 32, 64, 128, 192)), cfg.get("depths", (0, 1, 1, 2, 1)))
    if name in TORCHVISION_BACKBONES:
        return TorchvisionBackbone(name, cfg.get("backbone_weights"))
    raise ValueError(f"unknown backbone {name!r}; accepted: {', '.join(BACKBONES)}")
