"""One sweep run on a torchvision detector: train from scratch with the run's box loss, predict, write the run folder.

    from boxloss.integrations.torchvision_train import train_torchvision
    train_torchvision(cfg, "fcos_resnet50_fpn")   # cfg: a run config of run_sweep (loss.box_loss, train.seed, ...)

This is what ``compare_losses.py --detector torchvision:NAME`` runs per (loss, seed) (`sweep_detectors`).
Everything but the detector is the engine's, so only the box loss differs between runs and, for the same
seed, the data each detector sees is the boxloss detector's:

- data: `trainer.build_datasets(cfg)` (the config's COCO data or the synthetic set, `build_train_transforms`
  when ``data.augment``, letterboxed to ``data.image_size``); the batches of an epoch come from the engine's
  sampler and loader seeds (``train.seed``, ``train.seed * 100_003 + epoch``), so order and augmentation
  match an engine run of the same seed;
- model: ``torchvision.models.detection.NAME(weights=None, weights_backbone=None)`` through our builders
  (`integrations.torchvision`), the box loss ``loss.box_loss`` with ``loss.args[<loss>]`` and
  ``loss_weight=loss.weights[<loss>]``. Labels are torchvision's convention: 1..K, 0 is background
  (num_classes = K + 1; FCOS and RetinaNet then carry one class that is never positive, as torchvision's
  COCO recipe does). ``min_size = max_size = data.image_size``: the letterboxed square goes in unresized;
  the model normalises with its ImageNet mean/std. Weights are seeded by ``train.seed``;
- optimiser: the config's (`engine.optim.build_optimizer` / `build_scheduler` / `warmup_factor`, per-step
  warm-up, per-epoch schedule) with ``train.clip_grad``. Chosen over torchvision's reference recipe (SGD
  0.01, momentum 0.9, wd 1e-4) because the run's fingerprint records ``optim`` and ``schedule``: what a
  report says was trained is what was trained, and ``--set optim.lr=...`` works as for the engine.
  configs/smoke.yaml is that SGD recipe; DEFAULTS (AdamW 0.002) is the boxloss detector's tuned one;
- prediction: the val split through `engine.inference.predict_coco` (letterbox undone, the dataset's
  image and category ids), score threshold ``SCORE_THRESH`` = 0.001 (as the Ultralytics path; not
  ``model.score_thresh``: RetinaNet's and FCOS's sigmoid scores start near their 0.01 prior and stay
  under 0.05 for a while, which left short runs with no detection at all), at most
  ``model.max_detections`` per image; NMS is torchvision's own (IoU 0.6 FCOS, 0.5 RetinaNet and Faster R-CNN).

Writes into ``train.output_dir``: ``config.yaml``, ``log.csv`` (the engine's columns: a train row every
``train.log_every`` steps; loss_box = the box term, loss_cls = the classification term, loss_ctr = FCOS
centerness; ``loss`` sums every term, the RPN's included), ``detections.json`` and, last, ``stats.json``
(``{"epoch": epochs, "detector": ...}``: `run_sweep` counts the run as trained only then). No checkpoint:
an interrupted run starts again. CPU or one CUDA device (``train.device``); fp32 only.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import time
from pathlib import Path

import torch
from torch import nn

from . import torchvision as tv

logger = logging.getLogger(__name__)

SCORE_THRESH = 0.001  # of the predictions written to detections.json (module docstring)
DETECTORS = tv.BUILDERS  # NAME of --detector torchvision:NAME -> builder (nothing downloaded)
# The classification, box and centerness terms of each family's loss dict (the rest goes into "loss" only).
_TERMS = {"loss_cls": ("classification", "loss_classifier"), "loss_box": ("bbox_regression", "loss_box_reg"),
          "loss_ctr": ("bbox_ctrness",)}


def check_name(name: str) -> str:
    if name not in DETECTORS:
        raise ValueError(f"unknown torchvision detector {name!r}; accepted: {', '.join(DETECTORS)}")
    return name


def build_model(name: str, cfg: dict, num_labels: int) -> nn.Module:
    """``NAME`` with the run's box loss, ``num_labels`` + 1 classes, sized for ``data.image_size``."""
    loss = cfg["loss"]["box_loss"]
    loss_kwargs = {**((cfg["loss"].get("args") or {}).get(loss) or {}),
                   "loss_weight": float((cfg["loss"].get("weights") or {}).get(loss, 1.0))}
    size, m = int(cfg["data"]["image_size"]), cfg["model"]
    post = ({"box_score_thresh": SCORE_THRESH, "box_detections_per_img": m["max_detections"]}
            if name.startswith("fasterrcnn") else
            {"score_thresh": SCORE_THRESH, "detections_per_img": m["max_detections"]})
    return DETECTORS[check_name(name)](loss, loss_kwargs=loss_kwargs, num_classes=num_labels + 1, min_size=size,
                                       max_size=size, **post)


class _Predictor(nn.Module):
    """The ``predict(images)`` that `engine.inference.predict_coco` calls: uint8 batch in, dataset labels out."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> list[dict]:
        out = []
        for det in self.model(list(images.float().div(255))):
            keep = det["labels"] > 0  # label 0 (background) is never a class of the dataset
            out.append({"boxes": det["boxes"][keep], "scores": det["scores"][keep], "labels": det["labels"][keep] - 1})
        return out


def _to_model(images: torch.Tensor, targets: list[dict], device) -> tuple[list, list]:
    """A collated uint8 batch as torchvision's inputs: float 0..1 images, boxes (xyxy px) and labels 1..K."""
    images = images.to(device).float().div(255)
    return list(images), [{"boxes": t["boxes"].to(device), "labels": t["labels"].to(device) + 1} for t in targets]


def _train_epoch(model, cfg, optimizer, scheduler, train_ds, sampler, epoch, state, log, clock) -> None:
    from ..data import build_dataloader
    from ..engine.loop import TrainingError
    from ..engine.optim import warmup_factor

    t = cfg["train"]
    sampler.set_epoch(epoch)
    loader = build_dataloader(train_ds, t["batch_size"], sampler=sampler, num_workers=t["workers"],
                              seed=t["seed"] * 100_003 + epoch, drop_last=len(train_ds) >= t["batch_size"])
    sched_lrs = [g["lr"] for g in optimizer.param_groups]
    window, steps, images_seen, started = {}, 0, 0, time.perf_counter()
    model.train()
    for i, (images, targets) in enumerate(loader):
        for g, lr in zip(optimizer.param_groups, sched_lrs):
            g["lr"] = lr * warmup_factor(state["step"], cfg)
        losses = model(*_to_model(images, targets, state["device"]))
        loss = sum(losses.values())
        if not torch.isfinite(loss):
            raise TrainingError(f"non-finite loss at epoch {epoch} step {state['step']} "
                               f"({ {k: float(v) for k, v in losses.items()} }); lower optim.lr or train.clip_grad")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if t["clip_grad"] > 0:
            nn.utils.clip_grad_norm_(model.parameters(), t["clip_grad"])
        optimizer.step()
        state["step"] += 1
        terms = {"loss": float(loss.detach())}
        for key, names in _TERMS.items():
            terms[key] = sum(float(losses[n].detach()) for n in names if n in losses)
        for k, v in terms.items():
            window[k] = window.get(k, 0.0) + v
        steps, images_seen = steps + 1, images_seen + len(images)
        if steps == t["log_every"] or i + 1 == len(loader):
            log.log({"kind": "train", "epoch": epoch, "step": state["step"], "time_s": time.perf_counter() - clock[0],
                     "cpu_s": time.process_time() - clock[1], "lr": optimizer.param_groups[0]["lr"],
                     "images_per_s": images_seen / max(time.perf_counter() - started, 1e-9),
                     **{k: v / steps for k, v in window.items()}})
            window, steps, images_seen, started = {}, 0, 0, time.perf_counter()
    for g, lr in zip(optimizer.param_groups, sched_lrs):  # the schedule steps on the un-warmed rates
        g["lr"] = lr
    if scheduler is not None:
        scheduler.step()


def train_torchvision(cfg: dict, name: str) -> dict:
    """Train torchvision ``name`` for the run config ``cfg`` and write its run folder (module docstring).

    Returns ``{"output_dir", "epochs", "step", "elapsed_s", "num_detections"}``. Raises ValueError for an
    unknown detector or box loss (before any data is read) and for ``train.resume`` (not supported).
    """
    from torch.utils.data import DistributedSampler

    from ..engine.config import DEFAULTS, dump_config, merge_config
    from ..engine.inference import predict_coco
    from ..engine.logger import RunLogger
    from ..engine.optim import build_optimizer, build_scheduler
    from ..engine.trainer import build_datasets, resolve_device, seed_everything
    from ..data import build_dataloader

    cfg = copy.deepcopy(cfg)
    cfg.get("model", {}).pop("detector", None)  # the sweep's fingerprint entry, not an engine key
    cfg = merge_config(DEFAULTS, cfg)  # an unknown loss.box_loss: ConfigError listing the accepted ones
    t = cfg["train"]
    check_name(name)
    if cfg["schedule"]["name"] == "plateau":
        raise ValueError("schedule.name=plateau is not supported with a torchvision detector; accepted: "
                         "none, step, multistep, exponential, cosine, cosine_restarts")
    run = Path(t["output_dir"])
    if t.get("resume"):
        raise ValueError(f"{run}: torchvision runs of the sweep do not resume; delete the folder to train it again")
    run.mkdir(parents=True, exist_ok=True)
    for stale in ("stats.json", "detections.json", "log.csv"):  # an interrupted earlier attempt starts again
        (run / stale).unlink(missing_ok=True)
    device = resolve_device(t["device"])
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(t["threads"] or max(1, min(2, os.cpu_count() or 1)))
    try:
        seed_everything(t["seed"])
        train_ds, val_ds, _ = build_datasets(cfg)
        model = build_model(name, cfg, len(train_ds.category_ids)).to(device)
        optimizer = build_optimizer(model, cfg)
        scheduler = build_scheduler(optimizer, cfg)
        dump_config(cfg, os.fspath(run / "config.yaml"))
        sampler = DistributedSampler(train_ds, num_replicas=1, rank=0, shuffle=True, seed=t["seed"])
        log, clock, state = RunLogger(os.fspath(run), tensorboard=False), (time.perf_counter(), time.process_time()), \
            {"step": 0, "device": device}
        try:
            for epoch in range(1, t["epochs"] + 1):
                _train_epoch(model, cfg, optimizer, scheduler, train_ds, sampler, epoch, state, log, clock)
                logger.info("%s epoch %d/%d: step %d, %.0f s", name, epoch, t["epochs"], state["step"],
                            time.perf_counter() - clock[0])
        finally:
            log.close()
        val_loader = build_dataloader(val_ds, cfg["eval"]["batch_size"], num_workers=t["workers"])
        detections = predict_coco(_Predictor(model), val_loader, val_ds, device)
    finally:
        torch.set_num_threads(threads)
    (run / "detections.json").write_text(json.dumps(detections), encoding="utf-8")
    (run / "stats.json").write_text(json.dumps({"epoch": t["epochs"], "step": state["step"],
                                                "detector": f"torchvision:{name}"}) + "\n", encoding="utf-8")
    return {"output_dir": os.fspath(run), "epochs": t["epochs"], "step": state["step"],
            "elapsed_s": time.perf_counter() - clock[0], "num_detections": len(detections)}


__all__ = ["DETECTORS", "SCORE_THRESH", "build_model", "check_name", "train_torchvision"]
