#!/usr/bin/env python
"""Peer check: torchvision's FCOS (random init) on the same data, image size and wall-clock budget.

    python scripts/peer_fcos.py --config configs/default.yaml --budget-s 900 --output-dir runs/peer_fcos
    python scripts/peer_fcos.py --config configs/default.yaml --budget-s 1400 --clock process  # shared machine

Trains ``torchvision.models.detection.FCOS`` with a ResNet-18 + FPN backbone (weights=None,
weights_backbone=None; P3-P7 as in the paper, 4-conv GroupNorm head towers, GIoU loss) on the
config's training split with the same augmentation and letterbox size as ``train_det.py``, with
AdamW and a cosine schedule over the time budget, and evaluates COCO AP on the val split after every
epoch and at the end of the budget. ``--amp bf16`` trains and evaluates the whole model under CPU
bf16 autocast (torchvision then decodes boxes and computes its GIoU loss in bf16 too). Writes ``log.csv`` (kind, epoch, step, time_s, loss,
images_per_s, AP...) like the engine. Used for the "Detector training" section of docs/benchmarks.md.
"""

import argparse
import csv
import math
import os
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as scripts/train_det.py: no spinning on a shared CPU

import torch

from boxloss.data import CocoDetection, build_dataloader, build_train_transforms, build_val_transforms
from boxloss.engine import evaluate_detections, load_config, predict_coco
from boxloss.engine.trainer import prepare_data_paths


class TorchvisionFCOS(torch.nn.Module):
    """torchvision FCOS behind the ``predict(images)`` interface of ``boxloss.model.Detector``."""

    def __init__(self, num_classes: int, size: int, fpn_channels: int):
        super().__init__()
        from torchvision.models.detection import FCOS
        from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
        from torchvision.ops.feature_pyramid_network import LastLevelP6P7

        backbone = resnet_fpn_backbone(backbone_name="resnet18", weights=None, trainable_layers=5,
                                       returned_layers=[2, 3, 4], extra_blocks=LastLevelP6P7(256, 256))
        if fpn_channels != 256:  # a narrower FPN and head, for a cheaper peer
            backbone.fpn = type(backbone.fpn)([128, 256, 512], fpn_channels,
                                              extra_blocks=LastLevelP6P7(fpn_channels, fpn_channels))
            backbone.out_channels = fpn_channels
        self.model = FCOS(backbone, num_classes, min_size=size, max_size=size)

    def forward(self, images, targets):
        imgs = [im.float() / 255 for im in images]
        tg = [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets]
        losses = self.model(imgs, tg)
        return {"loss": sum(losses.values()), **losses}

    @torch.no_grad()
    def predict(self, images):
        out = self.model([im.float() / 255 for im in images])
        return [{"boxes": o["boxes"], "scores": o["scores"], "labels": o["labels"]} for o in out]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="configs/default.yaml")
    p.add_argument("--budget-s", type=float, default=900.0)
    p.add_argument("--clock", choices=("wall", "process"), default="wall",
                   help="budget clock: wall seconds, or CPU seconds of this process (as train.budget_clock)")
    p.add_argument("--output-dir", default="runs/peer_fcos")
    p.add_argument("--fpn-channels", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=20, help="linear warmup steps (few: the peer makes few steps on a CPU)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--amp", choices=("none", "bf16"), default="none",
                   help="bf16 autocast on the CPU, as train_det.py's train.amp=bf16 (same speed-up for the peer)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = load_config(args.config)
    paths = prepare_data_paths(cfg)
    size = cfg["data"]["image_size"]
    train_ds = CocoDetection(paths["train_ann"], paths["train_images"], build_train_transforms(size))
    val_ds = CocoDetection(paths["val_ann"], paths["val_images"], build_val_transforms(size))
    model = TorchvisionFCOS(len(train_ds.category_ids), size, args.fpn_channels)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    warmup = args.warmup
    os.makedirs(args.output_dir, exist_ok=True)
    f = open(os.path.join(args.output_dir, "log.csv"), "w", newline="")
    cols = ["kind", "epoch", "step", "time_s", "cpu_s", "lr", "loss", "images_per_s", "AP", "AP50", "AP75"]
    log = csv.DictWriter(f, cols, extrasaction="ignore")
    log.writeheader()
    start, start_cpu, step, epoch, done, stats = time.perf_counter(), time.process_time(), 0, 0, False, None
    clock = (lambda: time.process_time() - start_cpu) if args.clock == "process" else (lambda: time.perf_counter() - start)
    val_loader = build_dataloader(val_ds, 16, num_workers=args.workers)

    autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.amp == "bf16")  # noqa: E731

    def evaluate():
        with autocast():
            dets = predict_coco(model, val_loader, val_ds, "cpu")
        stats = evaluate_detections(val_ds.coco, dets)
        log.writerow({"kind": "eval", "epoch": epoch, "step": step, "time_s": f"{time.perf_counter() - start:.1f}",
                      "cpu_s": f"{time.process_time() - start_cpu:.1f}",
                      **{k: f"{stats[k]:.4f}" for k in ("AP", "AP50", "AP75")}})
        f.flush()
        print(f"epoch {epoch} step {step} {time.perf_counter() - start:.0f}s AP {stats['AP']:.4f} AP50 {stats['AP50']:.4f}",
              flush=True)
        return stats

    while not done:
        epoch += 1
        loader = build_dataloader(train_ds, args.batch_size, shuffle=True, num_workers=args.workers, seed=epoch,
                                  drop_last=True)
        model.train()
        t0, n0, n_epoch = time.perf_counter(), 0, 0
        for images, targets in loader:
            elapsed = clock()
            if elapsed >= args.budget_s:
                done = True
                break
            frac = min(1.0, elapsed / args.budget_s)
            lr = args.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * frac))) * min(1.0, (step + 1) / warmup)
            for g in opt.param_groups:
                g["lr"] = lr
            with autocast():
                losses = model(images, targets)
            opt.zero_grad()
            losses["loss"].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            opt.step()
            step += 1
            n_epoch += 1
            n0 += len(images)
            if step % 10 == 0:
                rate = n0 / (time.perf_counter() - t0)
                log.writerow({"kind": "train", "epoch": epoch, "step": step, "time_s": f"{time.perf_counter() - start:.1f}",
                              "cpu_s": f"{time.process_time() - start_cpu:.1f}",
                              "lr": f"{lr:.3g}", "loss": f"{float(losses['loss'].detach()):.4f}", "images_per_s": f"{rate:.2f}"})
                f.flush()
                t0, n0 = time.perf_counter(), 0
        if n_epoch or stats is None:  # an epoch cut before its first step was evaluated at the end of the last
            model.eval()
            stats = evaluate()
    print(f"final AP {stats['AP']:.4f} after {step} steps, {time.perf_counter() - start:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
