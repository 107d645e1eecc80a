"""From head outputs to detections: decoding, score threshold, per-level top-k, class-aware NMS.

``nms="nms"`` uses ``torchvision.ops.batched_nms``. ``nms="diou"`` is DIoU-NMS (Zheng et al.,
"Distance-IoU Loss", AAAI 2020, Sec. 4.3): a lower-scored box is suppressed when
``IoU - rho^2/c^2 > threshold``, so heavily overlapping boxes whose centres are far apart (two
objects side by side) both survive.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import batched_nms

from ..boxes import box_iou

NMS_KINDS = ("nms", "diou")


def decode(points: Tensor, strides: Tensor, dist: Tensor) -> Tensor:
    """xyxy boxes from cell centres ``[..., 2]``, strides ``[...]`` and distances ``[..., 4]`` in stride units."""
    d = dist * strides[..., None]
    return torch.cat([points - d[..., :2], points + d[..., 2:]], dim=-1)


def diou_nms(boxes: Tensor, scores: Tensor, labels: Tensor, iou_threshold: float) -> Tensor:
    """Class-aware greedy DIoU-NMS; returns kept indices sorted by decreasing score."""
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.long, device=boxes.device)
    order = scores.argsort(descending=True)
    boxes, labels = boxes[order], labels[order]
    # Boxes of different classes never suppress each other.
    overlap = box_iou(boxes, boxes, kind="diou") > iou_threshold
    overlap &= labels[:, None] == labels[None, :]
    overlap = overlap.cpu()
    keep = torch.ones(len(order), dtype=torch.bool)
    for i in range(len(order)):
        if keep[i]:
            keep[i + 1 :] &= ~overlap[i, i + 1 :]
    return order[keep.to(order.device)]


@torch.no_grad()
def postprocess(level_outputs, level_points, level_strides, image_size, *, score_thresh=0.05, pre_nms_top_k=1000,
                nms="nms", nms_iou=0.6, max_detections=100) -> list[dict]:
    """Detections per image: ``dict(boxes [K, 4] xyxy input pixels, scores [K], labels [K] int64)``.

    Scores are ``sqrt(sigmoid(cls) * sigmoid(quality))`` (the FCOS / torchvision convention), or
    ``sigmoid(cls)`` when the head has no quality branch (``quality`` None: ``model.quality: none``, as
    GFL and VFNet, whose class score is trained to be the IoU). ``level_outputs`` are the head's
    ``(cls, dist, quality[, box_logits])`` per level; ``dist`` is in stride units.
    """
    batch = level_outputs[0][0].shape[0]
    h, w = image_size
    results = []
    for i in range(batch):
        boxes_all, scores_all, labels_all = [], [], []
        for (cls, dist, quality, *_), points, strides in zip(level_outputs, level_points, level_strides):
            if quality is None:
                scores = torch.sigmoid(cls[i].float())
            else:
                scores = (torch.sigmoid(cls[i].float()) * torch.sigmoid(quality[i].float())[:, None]).sqrt()
            num_classes = scores.shape[1]
            flat = scores.flatten()
            keep = torch.nonzero(flat > score_thresh).squeeze(1)
            if keep.numel() > pre_nms_top_k:
                keep = keep[flat[keep].topk(pre_nms_top_k).indices]
            idx, label = keep // num_classes, keep % num_classes
            boxes_all.append(decode(points[idx], strides[idx], dist[i, idx].float()))
            scores_all.append(flat[keep])
            labels_all.append(label)
        boxes, scores, labels = torch.cat(boxes_all), torch.cat(scores_all), torch.cat(labels_all)
        boxes = torch.stack([boxes[:, 0].clamp(0, w), boxes[:, 1].clamp(0, h), boxes[:, 2].clamp(0, w),
                             boxes[:, 3].clamp(0, h)], dim=1)
        if nms == "diou":
            keep = diou_nms(boxes, scores, labels, nms_iou)
        else:
            keep = batched_nms(boxes, scores, labels, nms_iou)
        keep = keep[:max_detections]
        results.append({"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep].long()})
    return results
