"""The one-stage detector: backbone -> FPN (strides 8/16/32) -> FCOS head, box loss chosen by name.

    from boxloss.model import build_detector
    model = build_detector({"backbone": "tiny"}, num_classes=5, loss_cfg={"box_loss": "ciou"})
    losses = model(images, targets)      # {"loss", "loss_cls", "loss_box", "loss_ctr"} (+ "loss_dfl")
    detections = model.predict(images)   # [dict(boxes, scores, labels)] per image

Target assignment is static (assign.py), so every box loss trains on the same positives.
"""

from .assign import assign_targets, centerness, make_points
from .backbone import BACKBONES, TinyBackbone, TorchvisionBackbone, build_backbone
from .detector import CLS_LOSSES, ENCODED_LOSSES, QUALITY_KINDS, STRIDES, Detector, build_detector
from .head import BOX_HEADS
from .postprocess import NMS_KINDS, decode, diou_nms, postprocess

__all__ = [
    "BACKBONES",
    "BOX_HEADS",
    "CLS_LOSSES",
    "Detector",
    "ENCODED_LOSSES",
    "NMS_KINDS",
    "QUALITY_KINDS",
    "STRIDES",
    "TinyBackbone",
    "TorchvisionBackbone",
    "assign_targets",
    "build_backbone",
    "build_detector",
    "centerness",
    "decode",
    "diou_nms",
    "make_points",
    "postprocess",
]
