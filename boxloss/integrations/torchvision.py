"""torchvision FCOS, RetinaNet and Faster R-CNN with the box-regression loss picked from our registry by name.

    from boxloss.integrations.torchvision import fcos_resnet50_fpn, with_box_loss
    model = fcos_resnet50_fpn(box_loss="ciou", num_classes=6)                 # weights=None: nothing downloaded
    model = with_box_loss(torchvision.models.detection.retinanet_resnet50_fpn_v2(num_classes=6), "siou")

`with_box_loss(model, name, **loss_kwargs)` swaps, in place, the part of the model that computes the
box loss for a subclass that calls `get_box_loss(name, **loss_kwargs)`; the new part shares the old
one's parameters and state-dict keys, so weights load and save as before. Only the box-regression
term changes; each detector's own normalisation is reproduced exactly:

- FCOS (`FCOSHead.compute_loss` hard-codes GIoU): `loss(pred_boxes[fg], gt_boxes[fg]) / max(1, num_fg)`
  over the batch; classification (focal) and centerness (BCE) terms are torchvision's code, unchanged.
- RetinaNet (`RetinaNetRegressionHead._loss_type`: "l1" by default, "giou" in the v2 model): per image
  `loss / max(1, num_fg)`, then the mean over images.
- Faster R-CNN (`roi_heads.fastrcnn_loss`: Smooth L1, beta=1/9): the RoI head's box loss on the sampled
  positives, `sum / number of sampled RoIs` as torchvision does. The RPN keeps its Smooth L1 (as in
  mmdetection's IoU-loss Faster R-CNN configs, which replace only the second stage's loss). Because
  that normaliser counts negatives too, IoU losses come out small here; mmdetection uses loss_weight=10
  for GIoU in Faster R-CNN (pass `loss_weight=10.0`). Masks and keypoints are not supported.

IoU-family losses compare decoded xyxy boxes in image pixels; the element-wise losses ("smooth_l1", "l1",
"balanced_l1") compare the box coder's encoded targets (FCOS: (l, t, r, b) / anchor size; RetinaNet and
Faster R-CNN: (dx, dy, dw, dh)), like the losses torchvision offers for them. Matching (FCOS centre
sampling, anchor IoU matching, RoI sampling) is torchvision's, whatever the loss.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn
from torchvision.models import detection
from torchvision.models.detection.fcos import FCOS, FCOSHead
from torchvision.models.detection.faster_rcnn import FasterRCNN
from torchvision.models.detection.retinanet import RetinaNet, RetinaNetRegressionHead
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.ops.focal_loss import sigmoid_focal_loss

from ..boxes.registry import get_box_loss
from ..model.detector import ENCODED_LOSSES


class _BoxLossMixin:
    def _set_box_loss(self, box_loss: str, loss_kwargs: dict) -> None:
        self.box_loss_name = box_loss
        self.box_loss = get_box_loss(box_loss, **loss_kwargs)  # ValueError listing the names if unknown


class BoxlossFCOSHead(_BoxLossMixin, FCOSHead):
    """`FCOSHead` whose `compute_loss` uses the registry loss `box_loss` instead of GIoU; shares `head`'s modules."""

    def __init__(self, head: FCOSHead, box_loss: str, **loss_kwargs):
        nn.Module.__init__(self)  # not FCOSHead.__init__: keep head's submodules (same parameters and keys)
        self.box_coder = head.box_coder
        self.classification_head = head.classification_head
        self.regression_head = head.regression_head
        self._set_box_loss(box_loss, loss_kwargs)

    def compute_loss(self, targets: list[dict[str, Tensor]], head_outputs: dict[str, Tensor], anchors: list[Tensor],
                     matched_idxs: list[Tensor]) -> dict[str, Tensor]:
        # torchvision 0.29's FCOSHead.compute_loss, with the box term replaced
        cls_logits = head_outputs["cls_logits"]
        bbox_regression = head_outputs["bbox_regression"]
        bbox_ctrness = head_outputs["bbox_ctrness"]
        all_gt_classes_targets, all_gt_boxes_targets = [], []
        for targets_per_image, matched_idxs_per_image in zip(targets, matched_idxs):
            if len(targets_per_image["labels"]) == 0:
                gt_classes_targets = targets_per_image["labels"].new_zeros((len(matched_idxs_per_image),))
                gt_boxes_targets = targets_per_image["boxes"].new_zeros((len(matched_idxs_per_image), 4))
            else:
                gt_classes_targets = targets_per_image["labels"][matched_idxs_per_image.clip(min=0)]
                gt_boxes_targets = targets_per_image["boxes"][matched_idxs_per_image.clip(min=0)]
            gt_classes_targets[matched_idxs_per_image < 0] = -1  # background
            all_gt_classes_targets.append(gt_classes_targets)
            all_gt_boxes_targets.append(gt_boxes_targets)
        all_gt_boxes_targets, all_gt_classes_targets, anchors = (
            torch.stack(all_gt_boxes_targets), torch.stack(all_gt_classes_targets), torch.stack(anchors))
        foreground_mask = all_gt_classes_targets >= 0
        num_foreground = foreground_mask.sum().item()

        gt_classes_targets = torch.zeros_like(cls_logits)
        gt_classes_targets[foreground_mask, all_gt_classes_targets[foreground_mask]] = 1.0
        loss_cls = sigmoid_focal_loss(cls_logits, gt_classes_targets, reduction="sum")

        bbox_reg_targets = self.box_coder.encode(anchors, all_gt_boxes_targets)
        avg = max(1, num_foreground)
        if self.box_loss_name in ENCODED_LOSSES:
            loss_bbox_reg = self.box_loss(bbox_regression[foreground_mask], bbox_reg_targets[foreground_mask],
                                          avg_factor=avg)
        else:
            pred_boxes = self.box_coder.decode(bbox_regression, anchors)
            loss_bbox_reg = self.box_loss(pred_boxes[foreground_mask], all_gt_boxes_targets[foreground_mask],
                                          avg_factor=avg)

        if len(bbox_reg_targets) == 0:
            gt_ctrness_targets = bbox_reg_targets.new_zeros(bbox_reg_targets.size()[:-1])
        else:
            left_right = bbox_reg_targets[:, :, [0, 2]]
            top_bottom = bbox_reg_targets[:, :, [1, 3]]
            gt_ctrness_targets = torch.sqrt((left_right.min(dim=-1)[0] / left_right.max(dim=-1)[0])
                                            * (top_bottom.min(dim=-1)[0] / top_bottom.max(dim=-1)[0]))
        pred_centerness = bbox_ctrness.squeeze(dim=2)
        loss_bbox_ctrness = nn.functional.binary_cross_entropy_with_logits(
            pred_centerness[foreground_mask], gt_ctrness_targets[foreground_mask], reduction="sum")
        return {"classification": loss_cls / avg, "bbox_regression": loss_bbox_reg,
                "bbox_ctrness": loss_bbox_ctrness / avg}


class BoxlossRetinaNetRegressionHead(_BoxLossMixin, RetinaNetRegressionHead):
    """`RetinaNetRegressionHead` whose loss is the registry loss `box_loss`; shares `head`'s modules."""

    def __init__(self, head: RetinaNetRegressionHead, box_loss: str, **loss_kwargs):
        nn.Module.__init__(self)
        self.conv = head.conv
        self.bbox_reg = head.bbox_reg
        self.box_coder = head.box_coder
        self._loss_type = head._loss_type  # unused here; kept for code that reads it
        self._set_box_loss(box_loss, loss_kwargs)

    def compute_loss(self, targets, head_outputs, anchors, matched_idxs):
        # torchvision 0.29's RetinaNetRegressionHead.compute_loss with `_box_loss` replaced
        losses = []
        for targets_per_image, regression, anchors_per_image, matched in zip(
                targets, head_outputs["bbox_regression"], anchors, matched_idxs):
            fg = torch.where(matched >= 0)[0]
            gt = targets_per_image["boxes"][matched[fg]]
            regression, anchors_per_image = regression[fg, :], anchors_per_image[fg, :]
            if self.box_loss_name in ENCODED_LOSSES:
                pred, target = regression, self.box_coder.encode_single(gt, anchors_per_image)
            else:
                pred, target = self.box_coder.decode_single(regression, anchors_per_image), gt
            losses.append(self.box_loss(pred, target, avg_factor=max(1, fg.numel())))
        return sum(losses) / max(1, len(targets))


class BoxlossRoIHeads(_BoxLossMixin, RoIHeads):
    """Faster R-CNN's `RoIHeads` with `fastrcnn_loss`'s Smooth L1 replaced by the registry loss `box_loss`.

    Built from an existing `RoIHeads` (same modules, thresholds and sampler settings). Box branch only.
    """

    def __init__(self, heads: RoIHeads, box_loss: str, **loss_kwargs):
        if heads.has_mask() or heads.has_keypoint():
            raise ValueError("with_box_loss supports Faster R-CNN's box branch only, not Mask or Keypoint R-CNN")
        super().__init__(
            heads.box_roi_pool, heads.box_head, heads.box_predictor,
            heads.proposal_matcher.high_threshold, heads.proposal_matcher.low_threshold,
            heads.fg_bg_sampler.batch_size_per_image, heads.fg_bg_sampler.positive_fraction,
            heads.box_coder.weights, heads.score_thresh, heads.nms_thresh, heads.detections_per_img)
        self._set_box_loss(box_loss, loss_kwargs)

    def box_loss_terms(self, class_logits: Tensor, box_regression: Tensor, proposals: list[Tensor],
                       labels: list[Tensor], regression_targets: list[Tensor], matched_gt: list[Tensor]):
        """`fastrcnn_loss` (cross-entropy, and the box loss on positives divided by the number of sampled RoIs)."""
        labels = torch.cat(labels, dim=0)
        classification_loss = nn.functional.cross_entropy(class_logits, labels)
        pos = torch.where(labels > 0)[0]
        labels_pos = labels[pos]
        deltas = box_regression.reshape(class_logits.shape[0], box_regression.size(-1) // 4, 4)[pos, labels_pos]
        if self.box_loss_name in ENCODED_LOSSES:
            pred, target = deltas, torch.cat(regression_targets, dim=0)[pos]
        else:
            pred = self.box_coder.decode_single(deltas, torch.cat(proposals, dim=0)[pos])
            target = torch.cat(matched_gt, dim=0)[pos]
        return classification_loss, self.box_loss(pred, target, avg_factor=labels.numel())

    def forward(self, features, proposals, image_shapes, targets: Optional[list[dict[str, Tensor]]] = None):
        if not self.training:
            return super().forward(features, proposals, image_shapes, targets)
        if targets is None:
            raise ValueError("targets are needed in training mode")
        proposals, matched_idxs, labels, regression_targets = self.select_training_samples(proposals, targets)
        matched_gt = [t["boxes"][m] if t["boxes"].numel() else t["boxes"].new_zeros((len(m), 4))
                      for t, m in zip(targets, matched_idxs)]
        box_features = self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        class_logits, box_regression = self.box_predictor(box_features)
        loss_classifier, loss_box_reg = self.box_loss_terms(class_logits, box_regression, proposals, labels,
                                                            regression_targets, matched_gt)
        return [], {"loss_classifier": loss_classifier, "loss_box_reg": loss_box_reg}


def with_box_loss(model: nn.Module, box_loss: str, **loss_kwargs) -> nn.Module:
    """Make torchvision `model` (FCOS, RetinaNet, Faster R-CNN) train with the registry loss `box_loss`; in place.

    `loss_kwargs` go to `get_box_loss` (loss_weight, eps, beta, ...). Returns `model`. Raises ValueError for
    an unknown loss name (listing the accepted ones) or an unsupported model.
    """
    if isinstance(model, FCOS):
        model.head = BoxlossFCOSHead(model.head, box_loss, **loss_kwargs)
    elif isinstance(model, RetinaNet):
        model.head.regression_head = BoxlossRetinaNetRegressionHead(model.head.regression_head, box_loss,
                                                                    **loss_kwargs)
    elif isinstance(model, FasterRCNN):
        model.roi_heads = BoxlossRoIHeads(model.roi_heads, box_loss, **loss_kwargs)
    else:
        raise ValueError(f"with_box_loss supports torchvision FCOS, RetinaNet and Faster R-CNN models, "
                         f"not {type(model).__name__}")
    return model


def _builder(name: str):
    build = getattr(detection, name)

    def make(box_loss: str, *, weights=None, weights_backbone=None, loss_kwargs: dict | None = None,
             **kwargs) -> nn.Module:
        get_box_loss(box_loss, **(loss_kwargs or {}))  # fail before building a ResNet-50
        model = build(weights=weights, weights_backbone=weights_backbone, **kwargs)
        return with_box_loss(model, box_loss, **(loss_kwargs or {}))

    make.__name__ = name
    make.__doc__ = (f"`torchvision.models.detection.{name}(weights=None, weights_backbone=None, **kwargs)` trained "
                    "with the registry loss `box_loss` (`loss_kwargs` go to get_box_loss). Nothing is downloaded "
                    "unless weights are given.")
    return make


fcos_resnet50_fpn = _builder("fcos_resnet50_fpn")
retinanet_resnet50_fpn = _builder("retinanet_resnet50_fpn")
retinanet_resnet50_fpn_v2 = _builder("retinanet_resnet50_fpn_v2")
fasterrcnn_resnet50_fpn = _builder("fasterrcnn_resnet50_fpn")
fasterrcnn_resnet50_fpn_v2 = _builder("fasterrcnn_resnet50_fpn_v2")
fasterrcnn_mobilenet_v3_large_fpn = _builder("fasterrcnn_mobilenet_v3_large_fpn")

# Every builder by name: the NAMEs of `compare_losses.py --detector torchvision:NAME`.
BUILDERS = {b.__name__: b for b in (fcos_resnet50_fpn, retinanet_resnet50_fpn, retinanet_resnet50_fpn_v2,
                                    fasterrcnn_resnet50_fpn, fasterrcnn_resnet50_fpn_v2,
                                    fasterrcnn_mobilenet_v3_large_fpn)}

__all__ = [
    "BUILDERS",
    "BoxlossFCOSHead",
    "BoxlossRetinaNetRegressionHead",
    "BoxlossRoIHeads",
    "fasterrcnn_mobilenet_v3_large_fpn",
    "fasterrcnn_resnet50_fpn",
    "fasterrcnn_resnet50_fpn_v2",
    "fcos_resnet50_fpn",
    "retinanet_resnet50_fpn",
    "retinanet_resnet50_fpn_v2",
    "with_box_loss",
]
