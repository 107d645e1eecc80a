"""The one-stage detector: backbone -> FPN (P3-P5) -> FCOS head, with its losses and post-processing.

Losses (all divided by the number of positives, averaged over processes under DDP):

- ``loss_cls``: sigmoid focal loss (or plain BCE) over every point and class, one-hot targets; or,
  with ``cls_loss="qfl"`` / ``"vfl"`` (quality focal loss, GFL; varifocal loss, VFNet), soft targets:
  at a positive, its class's target is the detached IoU of its predicted box with its ground truth
  (0 for every other class and at negatives). Those targets depend on the box predictions, hence on
  the box loss (docs/protocol.md, "Classification targets that depend on the box loss").
- ``loss_box``: the registry box loss named in the config, on positives only. ``smooth_l1`` and
  ``l1`` compare the encoded distances ``(l, t, r, b) / stride``; every other loss (the IoU family)
  compares the decoded xyxy boxes (widths are >= 0 because the distances are). With
  ``box_head="distribution"`` the distances are the integral of the predicted distributions.
- ``loss_ctr``: BCE of the quality logit against the centerness of the positive (or, with
  ``quality="iou"``, against the detached IoU of the predicted box); 0 with ``quality="none"`` (no
  quality branch, as GFL and VFNet, whose classification score is the quality).
- ``loss_dfl`` (only with ``box_head="distribution"``): the distribution focal loss of each side's
  distribution against the target distance in strides, clamped to ``[0, reg_max - 0.01]``, averaged
  over the 4 sides of the positives.

``loss = cls_weight * loss_cls + loss_box (its weight is inside the loss module) + ctr_weight * loss_ctr``
``(+ dfl_weight * loss_dfl)``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..boxes import (box_iou, distribution_focal_loss, get_box_loss, quality_focal_loss, sigmoid_focal_loss,
                     varifocal_loss)
from .assign import assign_targets, centerness, make_points, scale_bounds
from .backbone import build_backbone
from .fpn import FPN
from .head import BOX_HEADS, FCOSHead
from .postprocess import NMS_KINDS, decode, postprocess

STRIDES = (8, 16, 32)
ENCODED_LOSSES = ("smooth_l1", "l1", "balanced_l1")  # compared on (l, t, r, b) / stride; the rest on decoded xyxy boxes
CLS_LOSSES = ("focal", "bce", "qfl", "vfl")
IOU_TARGET_CLS_LOSSES = ("qfl", "vfl")  # classification target of a positive: the IoU of its predicted box
QUALITY_KINDS = ("centerness", "iou", "none")
DFL_EPS = 0.01  # DFL targets are clamped to [0, reg_max - DFL_EPS] (ultralytics' 0.01; mmdetection's GFL: 0.1)
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def _num_positives(num_pos: Tensor) -> Tensor:
    """Positives per process, averaged over processes under DDP (so every rank divides alike); >= 1."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        num_pos = num_pos.clone()
        torch.distributed.all_reduce(num_pos)
        num_pos = num_pos / torch.distributed.get_world_size()
    return num_pos.clamp(min=1.0)


class Detector(nn.Module):
    """FCOS-style detector whose box loss is picked by name from ``boxloss.boxes``.

    ``detector(images, targets)`` returns the loss dict ``{"loss", "loss_cls", "loss_box", "loss_ctr"}``
    (and ``"loss_dfl"`` with ``box_head="distribution"``; in train and eval mode); ``detector(images)``
    and ``detector.predict(images)`` return detections.
    ``images`` are uint8 (or float 0..255) ``[B, 3, H, W]`` as ``boxloss.data`` gives them;
    targets are dicts with ``boxes`` (xyxy input pixels) and ``labels`` (0..C-1).
    """

    def __init__(self, num_classes: int, *, backbone: nn.Module, fpn_channels: int = 64, head_convs: int = 2,
                 norm_groups: int = 16, box_loss: str = "ciou", box_loss_args: dict | None = None,
                 box_weight: float = 1.0, cls_loss: str = "focal", focal_alpha: float = 0.25,
                 focal_gamma: float = 2.0, cls_weight: float = 1.0, ctr_weight: float = 1.0,
                 quality: str = "centerness", center_radius: float = 1.5, scale_ranges=(64, 128),
                 score_thresh: float = 0.05, pre_nms_top_k: int = 1000, nms: str = "nms", nms_iou: float = 0.6,
                 max_detections: int = 100, box_head: str = "distances", reg_max: int = 16, dfl_weight: float = 0.25):
        super().__init__()
        for key, value, accepted in (("cls_loss", cls_loss, CLS_LOSSES), ("quality", quality, QUALITY_KINDS),
                                     ("nms", nms, NMS_KINDS), ("box_head", box_head, BOX_HEADS)):
            if value not in accepted:
                raise ValueError(f"unknown {key} {value!r}; accepted: {', '.join(accepted)}")
        if len(scale_ranges) != len(STRIDES) - 1:
            raise ValueError(f"scale_ranges needs {len(STRIDES) - 1} boundaries, got {list(scale_ranges)}")
        if isinstance(dfl_weight, bool) or not isinstance(dfl_weight, (int, float)) or not dfl_weight >= 0:
            raise ValueError(f"bad value dfl_weight={dfl_weight!r}; accepted: a number >= 0")
        self.num_classes = num_classes
        self.backbone = backbone
        self.fpn = FPN(backbone.out_channels, fpn_channels)
        self.head = FCOSHead(fpn_channels, num_classes, len(STRIDES), head_convs, norm_groups, box_head=box_head,
                             reg_max=reg_max, quality=quality != "none")
        self.box_head, self.reg_max, self.dfl_weight = box_head, reg_max, dfl_weight
        self.box_loss_name = box_loss
        self.box_loss = get_box_loss(box_loss, loss_weight=box_weight, **(box_loss_args or {}))
        self.cls_loss, self.focal_alpha, self.focal_gamma = cls_loss, focal_alpha, focal_gamma
        self.cls_weight, self.ctr_weight, self.quality = cls_weight, ctr_weight, quality
        self.center_radius, self.scale_ranges = center_radius, list(scale_ranges)
        self.post = dict(score_thresh=score_thresh, pre_nms_top_k=pre_nms_top_k, nms=nms, nms_iou=nms_iou,
                         max_detections=max_detections)
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1) * 255, persistent=False)
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1) * 255, persistent=False)

    def _head(self, images: Tensor):
        x = (images.float() - self.mean) / self.std
        outputs = self.head(self.fpn(self.backbone(x)))
        sizes = [(-(-images.shape[-2] // s), -(-images.shape[-1] // s)) for s in STRIDES]
        return outputs, sizes

    def forward(self, images: Tensor, targets: list[dict] | None = None):
        outputs, sizes = self._head(images)
        if targets is None:
            return self._predict(outputs, sizes, images.shape[-2:])
        return self.compute_losses(outputs, sizes, targets)

    @torch.no_grad()
    def predict(self, images: Tensor) -> list[dict]:
        """Detections ``[dict(boxes [K, 4] xyxy input pixels, scores [K], labels [K] int64)]``, K <= max_detections."""
        outputs, sizes = self._head(images)
        return self._predict(outputs, sizes, images.shape[-2:])

    @torch.no_grad()
    def losses_and_predictions(self, images: Tensor, targets: list[dict]):
        """One forward pass giving both the loss dict (detached) and the detections (for validation)."""
        outputs, sizes = self._head(images)
        losses = {k: v.detach() for k, v in self.compute_losses(outputs, sizes, targets).items()}
        return losses, self._predict(outputs, sizes, images.shape[-2:])

    def _predict(self, outputs, sizes, image_size):
        points, strides = make_points(sizes, STRIDES, outputs[0][0].device)
        counts = [h * w for h, w in sizes]
        return postprocess(outputs, points.split(counts), strides.split(counts), tuple(image_size), **self.post)

    def compute_losses(self, outputs, sizes, targets: list[dict]) -> dict:
        cls = torch.cat([o[0] for o in outputs], dim=1).float()  # [B, P, C]
        dist = torch.cat([o[1] for o in outputs], dim=1).float()  # [B, P, 4], stride units
        qual = torch.cat([o[2] for o in outputs], dim=1).float() if self.quality != "none" else None  # [B, P]
        device = cls.device
        points, strides = make_points(sizes, STRIDES, device)
        lo, hi = scale_bounds(sizes, self.scale_ranges, device)

        cls_t, ltrb_t, gt_boxes = [], [], []
        for t in targets:
            boxes, labels = t["boxes"].to(device).float(), t["labels"].to(device)
            matched, ltrb = assign_targets(points, strides, lo, hi, boxes, self.center_radius)
            onehot = torch.zeros_like(cls[0])
            pos = matched >= 0
            onehot[pos, labels[matched[pos]]] = 1.0
            cls_t.append(onehot)
            ltrb_t.append(ltrb)
            gt_boxes.append(boxes[matched.clamp(min=0)] if len(boxes) else points.new_zeros(len(points), 4))
        cls_t, ltrb_t, gt_boxes = torch.stack(cls_t), torch.stack(ltrb_t), torch.stack(gt_boxes)
        pos = cls_t.sum(-1) > 0  # [B, P]
        num_pos = _num_positives(pos.sum().float())

        if self.cls_loss == "focal":
            loss_cls = sigmoid_focal_loss(cls, cls_t, alpha=self.focal_alpha, gamma=self.focal_gamma,
                                          reduction="sum") / num_pos
        elif self.cls_loss == "bce":  # BCE is the focal loss with gamma = 0 and no alpha balance
            loss_cls = sigmoid_focal_loss(cls, cls_t, alpha=-1, gamma=0.0, reduction="sum") / num_pos

        pstrides = strides.expand_as(pos)[pos]
        pred_dist, tgt_ltrb = dist[pos], ltrb_t[pos]
        pred_boxes = decode(points.expand(pos.shape[0], -1, -1)[pos], pstrides, pred_dist)
        if self.box_loss_name in ENCODED_LOSSES:
            loss_box = self.box_loss(pred_dist, tgt_ltrb / pstrides[:, None], avg_factor=num_pos)
        else:
            loss_box = self.box_loss(pred_boxes, gt_boxes[pos], avg_factor=num_pos)

        if self.cls_loss in IOU_TARGET_CLS_LOSSES:
            loss_cls = self._iou_target_cls_loss(cls, cls_t, pos, pred_boxes, gt_boxes[pos], num_pos)

        if self.quality == "none":
            loss_ctr = cls.new_zeros(())
        else:
            if self.quality == "centerness":
                qual_t = centerness(tgt_ltrb)
            else:
                qual_t = box_iou(pred_boxes.detach(), gt_boxes[pos], aligned=True).clamp(min=0)
            loss_ctr = sigmoid_focal_loss(qual[pos], qual_t, alpha=-1, gamma=0.0, reduction="sum") / num_pos
        loss = self.cls_weight * loss_cls + loss_box + self.ctr_weight * loss_ctr
        out = {"loss": loss, "loss_cls": loss_cls, "loss_box": loss_box, "loss_ctr": loss_ctr}
        if self.box_head == "distribution":
            logits = torch.cat([o[3] for o in outputs], dim=1).float()  # [B, P, 4, reg_max + 1]
            dfl_t = (tgt_ltrb / pstrides[:, None]).clamp(0, self.reg_max - DFL_EPS)
            # mean over the 4 sides of every positive (GFL: avg_factor 4 x positives)
            out["loss_dfl"] = distribution_focal_loss(logits[pos], dfl_t, target_margin=DFL_EPS, reduction="mean",
                                                      avg_factor=4 * num_pos)
            out["loss"] = loss + self.dfl_weight * out["loss_dfl"]
        return out

    def _iou_target_cls_loss(self, cls, onehot, pos, pred_boxes, gt_boxes, num_pos):
        """QFL / VFL with the IoU-valued targets of GFL / VFNet: at a positive, its ground-truth class's target
        is the IoU of its predicted box with its box, detached (no gradient reaches the box branch through the
        target); every other class and every negative has target 0."""
        iou = box_iou(pred_boxes.detach(), gt_boxes, aligned=True).clamp(min=0)
        targets = torch.zeros_like(onehot)
        targets[pos] = onehot[pos] * iou[:, None]
        if self.cls_loss == "qfl":
            return quality_focal_loss(cls, targets, reduction="sum") / num_pos
        return varifocal_loss(cls, targets, reduction="sum") / num_pos


MODEL_KEYS = ("backbone", "backbone_weights", "widths", "depths", "fpn_channels", "head_convs", "norm_groups",
              "quality", "center_radius", "scale_ranges", "score_thresh", "pre_nms_top_k", "nms", "nms_iou",
              "max_detections", "box_head", "reg_max", "detector")
LOSS_KEYS = ("box_loss", "weights", "args", "cls_loss", "focal_alpha", "focal_gamma", "cls_weight", "ctr_weight",
             "dfl_weight")


def build_detector(model_cfg: dict, num_classes: int, loss_cfg: dict | None = None) -> Detector:
    """A ``Detector`` from the ``model:`` (and optionally ``loss:``) config sections.

    ``model_cfg`` may also carry a ``loss`` sub-dict (the evaluation helper passes one dict); keys:
    see ``configs/default.yaml`` and docs/protocol.md. ``loss_cfg["weights"][box_loss]`` is the box
    loss weight (1.0 when absent) and ``loss_cfg["args"][box_loss]`` its keyword arguments.
    """
    model_cfg = dict(model_cfg)
    loss_cfg = dict(loss_cfg or model_cfg.pop("loss", None) or {})
    unknown = sorted(set(model_cfg) - set(MODEL_KEYS)) + sorted(set(loss_cfg) - set(LOSS_KEYS))
    if unknown:
        raise ValueError(f"unknown model/loss key(s) {', '.join(unknown)}; accepted: {', '.join(MODEL_KEYS + LOSS_KEYS)}")
    if model_cfg.get("detector", "boxloss") != "boxloss":
        raise ValueError(f"model.detector={model_cfg['detector']!r}: this builds boxloss' own detector; other detectors "
                         "are trained per run by compare_losses.py --detector (docs/integrations.md)")
    box_loss = loss_cfg.get("box_loss", "ciou")
    kw = {k: model_cfg[k] for k in ("fpn_channels", "head_convs", "norm_groups", "quality", "center_radius",
                                    "scale_ranges", "score_thresh", "pre_nms_top_k", "nms", "nms_iou",
                                    "max_detections", "box_head", "reg_max") if k in model_cfg}
    kw.update({k: loss_cfg[k] for k in ("cls_loss", "focal_alpha", "focal_gamma", "cls_weight", "ctr_weight",
                                        "dfl_weight") if k in loss_cfg})
    return Detector(
        num_classes,
        backbone=build_backbone(model_cfg),
        box_loss=box_loss,
        box_loss_args=(loss_cfg.get("args") or {}).get(box_loss),
        box_weight=float((loss_cfg.get("weights") or {}).get(box_loss, 1.0)),
        **kw,
    )
