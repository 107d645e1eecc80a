"""Detections in COCO result format, and validation (loss + COCO metrics) of a model on a loader."""

from __future__ import annotations

import torch

from ..data import unletterbox_boxes
from ..evaluation.coco_eval import STAT_NAMES, evaluate_coco
from .distributed import all_gather_objects, all_reduce_sum, is_main_process


def _unwrap(model):
    return model.module if hasattr(model, "module") else model


def _to_coco(det: dict, target: dict, dataset) -> list[dict]:
    boxes = unletterbox_boxes(det["boxes"].float().cpu(), target["scale"], target["pad"], target["orig_size"])
    xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1).tolist()
    return [
        {"image_id": int(target["image_id"]), "category_id": int(dataset.label_to_category_id[int(label)]),
         "bbox": [round(v, 3) for v in box], "score": round(float(score), 5)}
        for box, score, label in zip(xywh, det["scores"].tolist(), det["labels"].tolist())
    ]


@torch.no_grad()
def run_inference(model, loader, dataset, device, *, with_loss: bool = False, amp_dtype=None):
    """Detections (COCO format, original pixels) of this process's share of ``loader``, gathered
    from all processes, and optionally the mean validation losses.

    Returns ``(detections, losses)``: on rank 0 the full list with one entry per image even when a
    ``DistributedSampler`` padded the split with repeats; ``losses`` is a dict of floats averaged over
    images (or None). Other ranks get ``([], losses)``.
    """
    model = _unwrap(model)
    was_training = model.training
    model.eval()
    per_image, sums, count = {}, {}, 0
    for images, targets in loader:
        images = images.to(device, non_blocking=True)
        with torch.autocast(device_type=images.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            if with_loss:
                losses, dets = model.losses_and_predictions(images, targets)
                for k, v in losses.items():
                    sums[k] = sums.get(k, 0.0) + float(v) * len(images)
                count += len(images)
            else:
                dets = model.predict(images)
        for det, target in zip(dets, targets):
            per_image[int(target["image_id"])] = _to_coco(det, target, dataset)
    model.train(was_training)

    losses = None
    if with_loss:
        keys = sorted(sums)
        total = all_reduce_sum(torch.tensor([sums[k] for k in keys] + [count], dtype=torch.float64))
        losses = {k: float(total[i] / max(float(total[-1]), 1.0)) for i, k in enumerate(keys)}
    gathered = all_gather_objects(per_image)
    if not is_main_process():
        return [], losses
    merged = {}
    for part in gathered:
        for image_id, dets in part.items():
            merged.setdefault(image_id, dets)  # repeats padded in by DistributedSampler are identical
    return [d for image_id in sorted(merged) for d in merged[image_id]], losses


def predict_coco(model, loader, dataset, device, *, amp_dtype=None) -> list[dict]:
    """COCO-format detections ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}``.

    Boxes are in the original image's pixels (``unletterbox_boxes`` undoes the letterbox; use a
    loader with ``build_val_transforms`` so that the mapping is exact), category ids are the
    dataset's own. Under DDP every rank runs its share and rank 0 returns the full list (others []).
    ``amp_dtype``: run the model under autocast in that dtype (as the trainer's evaluation does for
    ``train.amp``); None: fp32.
    """
    return run_inference(model, loader, dataset, device, amp_dtype=amp_dtype)[0]


def evaluate_detections(coco_gt, detections: list[dict], backend: str = "hotcoco") -> dict:
    """The 12 COCO stats (AP, AP50, ..., ARl) as a dict of floats, from
    ``boxloss.evaluation.coco_eval.evaluate_coco`` (the one home of COCO metrics; no detections
    at all gives 0s with a warning there)."""
    result = evaluate_coco(coco_gt, detections, backend=backend)
    return {name: float(result.stats[name]) for name in STAT_NAMES}
