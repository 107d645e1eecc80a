#!/usr/bin/env python
"""COCO evaluation of a trained detector checkpoint on a validation split.

    python scripts/eval_det.py --checkpoint runs/smoke/checkpoint_best.pt
    python scripts/eval_det.py --checkpoint ck.pt --val-ann val.json --val-images images/ --backend faster-coco-eval

Loads the checkpoint safely (``torch.load(weights_only=True)``), rebuilds the detector from the config
stored in it, runs inference on the validation split (the checkpoint's own, or --val-ann/--val-images;
its category ids must be the training set's), maps the detections back to the dataset's image and
category ids in original pixels, and evaluates them with pycocotools (the reference) or
faster-coco-eval (same numbers, faster). Prints the 12 COCO stats and a per-class AP table; writes
``detections.json`` and ``stats.json`` (12 stats as fractions, -1 = no ground truth in that size range,
plus ``per_class``) into --output-dir (default: ``eval_<checkpoint name>/`` beside the checkpoint).
No detections at all gives AP 0 with a warning.
"""

import argparse
import os

# set before torch loads OpenMP (as scripts/train_det.py): on a shared CPU, spinning OpenMP threads
# that wait for each other while descheduled cost 3-5x in throughput; an explicit value wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import json
import logging
import sys

import torch

from boxloss.data import CocoDetection, DatasetError, build_dataloader, build_val_transforms
from boxloss.engine import load_checkpoint, predict_coco
from boxloss.engine.amp import autocast_dtype
from boxloss.engine.config import DEFAULTS, ConfigError, merge_config
from boxloss.engine.trainer import prepare_data_paths, resolve_device
from boxloss.evaluation import STAT_NAMES, evaluate_coco
from boxloss.model import build_detector

STAT_LINES = {
    "AP": "AP @[IoU=0.50:0.95 | area=   all | maxDets=100]", "AP50": "AP @[IoU=0.50      | area=   all | maxDets=100]",
    "AP75": "AP @[IoU=0.75      | area=   all | maxDets=100]", "APs": "AP @[IoU=0.50:0.95 | area= small | maxDets=100]",
    "APm": "AP @[IoU=0.50:0.95 | area=medium | maxDets=100]", "APl": "AP @[IoU=0.50:0.95 | area= large | maxDets=100]",
    "AR1": "AR @[IoU=0.50:0.95 | area=   all | maxDets=  1]", "AR10": "AR @[IoU=0.50:0.95 | area=   all | maxDets= 10]",
    "AR100": "AR @[IoU=0.50:0.95 | area=   all | maxDets=100]", "ARs": "AR @[IoU=0.50:0.95 | area= small | maxDets=100]",
    "ARm": "AR @[IoU=0.50:0.95 | area=medium | maxDets=100]", "ARl": "AR @[IoU=0.50:0.95 | area= large | maxDets=100]",
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="checkpoint_best.pt / checkpoint_last.pt of a training run")
    p.add_argument("--val-ann", help="COCO json to evaluate on (default: the checkpoint's validation split)")
    p.add_argument("--val-images", help="image folder of --val-ann")
    p.add_argument("--backend", choices=("pycocotools", "faster-coco-eval"), default=None,
                   help="COCO evaluator (default: the checkpoint config's eval.backend, normally pycocotools)")
    p.add_argument("--output-dir", help="where detections.json and stats.json go (default: eval_<name>/ beside the checkpoint)")
    p.add_argument("--batch-size", type=int, default=None, help="inference batch size (default: eval.batch_size)")
    p.add_argument("--device", default="auto", help="cpu | cuda | auto")
    p.add_argument("--workers", type=int, default=0, help="data loader workers")
    p.add_argument("--amp", choices=("none", "bf16", "fp16"), default=None,
                   help="autocast dtype (default: the checkpoint config's train.amp, as its training evaluated)")
    return p.parse_args(argv)


def load_model(path, device):
    """(model in eval mode, resolved config, category ids it was trained with) from a checkpoint."""
    ckpt = load_checkpoint(path, map_location="cpu")
    for key in ("model", "config", "num_classes"):
        if key not in ckpt:
            raise ValueError(f"{path}: not a boxloss training checkpoint (no '{key}' entry)")
    cfg = merge_config(DEFAULTS, ckpt["config"])
    model = build_detector(cfg["model"], ckpt["num_classes"], cfg["loss"])
    model.load_state_dict(ckpt["model"])
    # the training's memory format too: under bf16 the conv kernels (and their rounding) depend on it
    memory_format = torch.channels_last if cfg["train"]["channels_last"] else torch.contiguous_format
    return model.to(device, memory_format=memory_format).eval(), cfg, ckpt.get("category_ids")


def val_dataset(cfg, val_ann=None, val_images=None):
    if bool(val_ann) != bool(val_images):
        raise ValueError("give both --val-ann and --val-images, or neither (the checkpoint's validation split)")
    if not val_ann:
        paths = prepare_data_paths(cfg)
        val_ann, val_images = paths["val_ann"], paths["val_images"]
    return CocoDetection(val_ann, val_images, build_val_transforms(cfg["data"]["image_size"]))


def format_per_class(per_class: dict) -> str:
    width = max([len(name) for name in per_class] + [5])
    lines = [f"{'class':<{width}}  AP (%)"]
    for name, ap in per_class.items():
        lines.append(f"{name:<{width}}  {'n/a' if ap < 0 else f'{100 * ap:6.2f}'}")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    try:
        device = resolve_device(args.device)
        model, cfg, category_ids = load_model(args.checkpoint, device)
        dataset = val_dataset(cfg, args.val_ann, args.val_images)
        if category_ids is not None and list(dataset.category_ids) != list(category_ids):
            raise DatasetError(f"the validation categories {dataset.category_ids} differ from those the model was trained "
                               f"on {list(category_ids)}: labels would map to the wrong category ids")
        loader = build_dataloader(dataset, args.batch_size or cfg["eval"]["batch_size"], num_workers=args.workers)
        amp_dtype = autocast_dtype(args.amp or cfg["train"]["amp"], device)
        with torch.inference_mode():
            detections = predict_coco(model, loader, dataset, device, amp_dtype=amp_dtype)
        result = evaluate_coco(dataset.coco, detections, backend=args.backend or cfg["eval"]["backend"])
    except (ConfigError, DatasetError, ValueError, FileNotFoundError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    out_dir = args.output_dir or os.path.join(os.path.dirname(os.path.abspath(args.checkpoint)),
                                              "eval_" + os.path.splitext(os.path.basename(args.checkpoint))[0])
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "detections.json"), "w") as f:
        json.dump(detections, f)
    stats = {**result.stats, "per_class": result.per_class, "num_detections": result.num_detections,
             "num_images": result.num_images, "backend": result.backend, "checkpoint": os.path.abspath(args.checkpoint)}
    with open(os.path.join(out_dir, "stats.json"), "w") as f:
        json.dump(stats, f, indent=1)

    print(f"{result.num_detections} detections on {result.num_images} images ({result.backend})")
    for name in STAT_NAMES:
        print(f" Average {'Precision' if name.startswith('AP') else 'Recall   '}  ({name:>5}) {STAT_LINES[name]} = {result.stats[name]:.3f}")
    print()
    print(format_per_class(result.per_class))
    print(f"\nwrote {out_dir}/detections.json and stats.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
