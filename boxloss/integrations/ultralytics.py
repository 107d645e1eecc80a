"""Train Ultralytics YOLO detection models with a boxloss registry box loss in place of CIoU.

    from boxloss.integrations.ultralytics import train
    trainer = train(model="yolo11n.yaml", data="data.yaml", box_loss="siou", epochs=10, imgsz=640)

    python scripts/train_yolo.py --box-loss siou model=yolo11n.yaml data=data.yaml epochs=10

What changes. Ultralytics' detection loss (`ultralytics.utils.loss.v8DetectionLoss`) is

    loss = batch_size * (box * L_box + cls * L_cls + dfl * L_dfl)        (gains box=7.5, cls=0.5, dfl=1.5)
    L_box = sum_i w_i * (1 - CIoU(p_i, t_i)) / S,   w_i = sum_c s_ic,   S = max(sum_ic s_ic, 1)

over the foreground anchors i, with s the task-aligned assigner's target scores. `BoxlossBboxLoss`
replaces only `1 - CIoU` by the registry loss, with the same weights w_i and the same normaliser S:

    L_box = box_loss(p, t, weight=w, avg_factor=S)   (reduction "mean" with avg_factor = sum(w * loss) / S)

The boxes are xyxy in input-image pixels (Ultralytics works in stride units; we multiply both boxes
by each anchor's stride, which leaves every IoU-family loss unchanged and gives the scale-dependent
ones, "mpdiou" and "nwd", pixel units: "mpdiou" gets img_size=(imgsz, imgsz) unless given). The
element-wise losses "smooth_l1", "l1", "balanced_l1" compare the (l, t, r, b) distances from the
anchor in strides, as boxloss' own detector does (boxloss/model/detector.py, ENCODED_LOSSES).

What stays fixed, whatever the box loss: DFL (or the L1 distance term of reg_max=1 heads), the BCE
classification term and its class weights, the gains, the target-score weighting above, and the
assignment rule. Ultralytics' TaskAlignedAssigner ranks candidate anchors by s^0.5 * CIoU^6 of the
predicted boxes (alpha=0.5, beta=6.0); we leave it on CIoU for every loss, so that a comparison changes
the loss, not the rule. (Because the rule scores predictions, which anchors are positive still depends
on the model state, hence indirectly on the loss it was trained with.) End-to-end heads (YOLO26, YOLOv10-style one2one branch) use Ultralytics'
E2ELoss around two of our criteria.

Hooks used (no Ultralytics file is edited or patched): `BoxlossDetectionTrainer.get_model` (a
`DetectionTrainer` subclass) builds a `BoxlossDetectionModel`, whose `init_criterion` returns a
`BoxlossDetectionLoss` (a `v8DetectionLoss` whose `bbox_loss` is a `BoxlossBboxLoss`). Single process
only: Ultralytics' multi-GPU DDP rebuilds the trainer from its overrides, which do not carry box_loss.

Ultralytics is AGPL-3.0; it is an optional extra, never a dependency of boxloss:
pip install -c constraints.txt -e ".[ultralytics]". Weights are never downloaded by this module:
build models from yaml (pretrained=False is the default here), and set YOLO_OFFLINE=1 on offline machines.
"""

from __future__ import annotations

import functools
import os

import torch
from torch import nn
from torch.nn import functional as F

from ..boxes.registry import available_box_losses, get_box_loss
from ..model.detector import ENCODED_LOSSES

INSTALL_HINT = 'pip install -c constraints.txt -e ".[ultralytics]"'

try:
    from ultralytics.models.yolo.detect import DetectionTrainer
    from ultralytics.nn.tasks import DetectionModel
    from ultralytics.utils import RANK
    from ultralytics.utils.loss import BboxLoss, E2ELoss, v8DetectionLoss
    from ultralytics.utils.tal import bbox2dist
except ImportError as exc:  # one line, with what to do
    raise ImportError(f"boxloss.integrations.ultralytics needs the ultralytics package ({exc}); {INSTALL_HINT}") from None

# Environment variables Ultralytics sets for the process during training (deterministic=True); `train()` restores them.
_ENV_SET_BY_ULTRALYTICS = ("PYTHONHASHSEED", "CUBLAS_WORKSPACE_CONFIG")

# Defaults of `train()` that keep a run offline and CPU-friendly; any of them can be overridden.
TRAIN_DEFAULTS = {"pretrained": False, "plots": False, "amp": False}


def build_box_loss(name: str, imgsz: int | None = None, **kwargs) -> nn.Module:
    """The registry loss `name` as used on Ultralytics boxes: "mpdiou" gets img_size=(imgsz, imgsz) if not given.

    Raises ValueError (one line, listing the accepted names) for a name not in the registry.
    """
    if name == "mpdiou" and kwargs.get("img_size") is None and imgsz is not None:
        kwargs["img_size"] = (imgsz, imgsz)
    return get_box_loss(name, **kwargs)


def _imgsz(size) -> int | None:
    """Ultralytics' imgsz (an int, or [h, w]) as one side in pixels."""
    if isinstance(size, (list, tuple)):
        size = max(size)
    return int(size) if size is not None else None


class BoxlossBboxLoss(BboxLoss):
    """Ultralytics' `BboxLoss` with the CIoU term replaced by `box_loss`; the DFL / L1 term is the parent's code.

    `forward` mirrors ultralytics 8.4.190's `BboxLoss.forward` (utils/loss.py): same foreground indexing, the
    same per-anchor weight `target_scores[fg].sum(-1)` and the same division by `target_scores_sum`; its
    DFL / L1 block is copied unchanged (calling the parent would compute a CIoU that is thrown away).
    """

    def __init__(self, reg_max: int, box_loss: nn.Module, box_loss_name: str):
        super().__init__(reg_max)
        self.box_loss = box_loss
        self.box_loss_name = box_loss_name

    def forward(self, pred_dist, pred_bboxes, anchor_points, target_bboxes, target_scores, target_scores_sum,
                fg_mask, imgsz, stride):
        fg = fg_mask.nonzero(as_tuple=True)
        weight = target_scores[fg].sum(-1)  # [n], Ultralytics' [n, 1] without the trailing 1
        if self.box_loss_name in ENCODED_LOSSES:  # (l, t, r, b) from the anchor, in strides
            anchors = anchor_points[fg[1]]
            pred = torch.cat((anchors - pred_bboxes[fg][:, :2], pred_bboxes[fg][:, 2:] - anchors), -1)
            target = torch.cat((anchors - target_bboxes[fg][:, :2], target_bboxes[fg][:, 2:] - anchors), -1)
        else:  # xyxy in input-image pixels
            scale = stride[fg[1]]
            pred, target = pred_bboxes[fg] * scale, target_bboxes[fg] * scale
        loss_iou = self.box_loss(pred, target, weight=weight, avg_factor=target_scores_sum)
        weight = weight.unsqueeze(-1)

        # DFL loss (or L1 for reg_max <= 1): ultralytics 8.4.190's code, unchanged
        if self.dfl_loss:
            target_ltrb = bbox2dist(anchor_points, target_bboxes, self.dfl_loss.reg_max - 1)
            loss_dfl = self.dfl_loss(pred_dist[fg].view(-1, self.dfl_loss.reg_max), target_ltrb[fg]) * weight
            loss_dfl = loss_dfl.sum() / target_scores_sum
        else:
            target_ltrb = bbox2dist(anchor_points, target_bboxes)
            target_ltrb = target_ltrb * stride
            target_ltrb[..., 0::2] /= imgsz[1]
            target_ltrb[..., 1::2] /= imgsz[0]
            pred_dist = pred_dist * stride
            pred_dist[..., 0::2] /= imgsz[1]
            pred_dist[..., 1::2] /= imgsz[0]
            loss_dfl = F.l1_loss(pred_dist[fg], target_ltrb[fg], reduction="none").mean(-1, keepdim=True) * weight
            loss_dfl = loss_dfl.sum() / target_scores_sum
        return loss_iou, loss_dfl


class BoxlossDetectionLoss(v8DetectionLoss):
    """`v8DetectionLoss` whose box term is the registry loss `box_loss`; assigner, BCE and DFL unchanged."""

    def __init__(self, model, tal_topk: int = 10, tal_topk2: int | None = None, *, box_loss: str = "ciou",
                 box_loss_kwargs: dict | None = None):
        super().__init__(model, tal_topk=tal_topk, tal_topk2=tal_topk2)
        module = build_box_loss(box_loss, _imgsz(getattr(self.hyp, "imgsz", None)), **(box_loss_kwargs or {}))
        self.bbox_loss = BoxlossBboxLoss(self.reg_max, module, box_loss).to(self.device)


class BoxlossDetectionModel(DetectionModel):
    """`DetectionModel` whose `init_criterion` returns a `BoxlossDetectionLoss` (inside `E2ELoss` for end-to-end heads).

    Only the name and keyword arguments of the loss are stored on the model, so checkpoints stay plain.
    """

    def __init__(self, cfg="yolo11n.yaml", ch=3, nc=None, verbose=True, *, box_loss: str = "ciou",
                 box_loss_kwargs: dict | None = None):
        self.box_loss_name = box_loss
        self.box_loss_kwargs = dict(box_loss_kwargs or {})
        super().__init__(cfg, ch=ch, nc=nc, verbose=verbose)

    def init_criterion(self):
        loss_fn = functools.partial(BoxlossDetectionLoss, box_loss=self.box_loss_name,
                                    box_loss_kwargs=self.box_loss_kwargs)
        if getattr(self.model[-1], "one2one_cv2", None) is not None:
            return E2ELoss(self, loss_fn)
        return loss_fn(self)


class BoxlossDetectionTrainer(DetectionTrainer):
    """`DetectionTrainer` that builds `BoxlossDetectionModel`s: `BoxlossDetectionTrainer(box_loss="siou", overrides={...})`.

    `box_loss` is checked here (ValueError listing the accepted names) before any data or model is loaded.
    """

    def __init__(self, cfg=None, overrides: dict | None = None, _callbacks=None, *, box_loss: str = "ciou",
                 box_loss_kwargs: dict | None = None):
        from ultralytics.cfg import DEFAULT_CFG

        overrides = dict(overrides or {})
        build_box_loss(box_loss, _imgsz(overrides.get("imgsz", 640)), **(box_loss_kwargs or {}))  # fail early
        self.box_loss_name = box_loss
        self.box_loss_kwargs = dict(box_loss_kwargs or {})
        super().__init__(cfg if cfg is not None else DEFAULT_CFG, overrides, _callbacks)

    def get_model(self, cfg=None, weights=None, verbose: bool = True):
        model = BoxlossDetectionModel(cfg, nc=self.data["nc"], ch=self.data["channels"], verbose=verbose and RANK == -1,
                                      box_loss=self.box_loss_name, box_loss_kwargs=self.box_loss_kwargs)
        model = self.set_model_names_for_load(model)
        if weights:
            model.load(weights)
        return model


def train(model: str = "yolo11n.yaml", data: str | None = None, box_loss: str = "ciou",
          box_loss_kwargs: dict | None = None, callbacks: dict | None = None, **overrides) -> BoxlossDetectionTrainer:
    """Train the Ultralytics detection model `model` (a yaml; no weights are downloaded) on `data` (a YOLO data.yaml).

    `overrides` are Ultralytics training arguments (epochs, imgsz, batch, device, project, name, ...);
    pretrained=False, plots=False and amp=False are the defaults here. Returns the trainer (its
    `best`, `last`, `save_dir`, `metrics`). `callbacks` maps Ultralytics event names ("on_train_start",
    "on_fit_epoch_end", ...) to a function of the trainer. Make a data.yaml from COCO JSON with
    `boxloss.integrations.yolo_data.coco_to_yolo`.
    """
    if data is None:
        raise ValueError("data is required: the path of a YOLO data.yaml (see boxloss.integrations.yolo_data)")
    if not (str(model).endswith((".yaml", ".yml")) or os.path.isfile(str(model))):
        raise ValueError(f"model={model!r}: give a model yaml (e.g. yolo11n.yaml) or an existing weights file; "
                         "this module never downloads weights")
    args = {**TRAIN_DEFAULTS, **overrides, "model": str(model), "data": str(data)}
    # Ultralytics sets torch's thread count (select_device, in the trainer's constructor) and, with
    # deterministic=True, environment variables for the whole process: give the caller's back.
    threads, env = torch.get_num_threads(), {k: os.environ.get(k) for k in _ENV_SET_BY_ULTRALYTICS}
    try:
        trainer = BoxlossDetectionTrainer(overrides=args, box_loss=box_loss, box_loss_kwargs=box_loss_kwargs)
        for event, fn in (callbacks or {}).items():
            trainer.add_callback(event, fn)
        trainer.train()
    finally:
        torch.set_num_threads(threads)
        for key, value in env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return trainer


__all__ = [
    "BoxlossBboxLoss",
    "BoxlossDetectionLoss",
    "BoxlossDetectionModel",
    "BoxlossDetectionTrainer",
    "available_box_losses",
    "build_box_loss",
    "train",
]
