"""COCO evaluation and error analysis of a trained detector checkpoint, or of a detections file.

    boxloss-eval --checkpoint runs/smoke/checkpoint_best.pt
    boxloss-eval --checkpoint ck.pt --val-ann val.json --val-images images/ --backend pycocotools
    boxloss-eval --detections runs/cmp/ciou/seed0/detections.json      # its run's val split
    boxloss-eval --detections dets.json --val-ann val.json              # any COCO results file

(``python scripts/eval_det.py`` and ``python -m boxloss.cli.evaluate`` are the same command.)

Loads the checkpoint safely (``torch.load(weights_only=True)``), rebuilds the detector from the config
stored in it, runs inference on the validation split (the checkpoint's own, or --val-ann/--val-images;
its category ids must be the training set's), maps the detections back to the dataset's image and
category ids in original pixels, and evaluates them with hotcoco (default) or pycocotools (the
reference; the same numbers). With ``--detections`` instead, a COCO results file is evaluated against
``--val-ann``, or against the val split of the run folder it lies in (its ``config.yaml``).

Prints the 12 COCO stats, a per-class AP table and the error analysis on which box losses differ
(``boxloss.evaluation.analysis``): TIDE's dAP50 per error type (Cls, Loc, Both, Dupe, Bkg, Miss, FP,
FN), AP at each IoU threshold 0.50:0.05:0.95, and the IoU of true positives per size range. Writes
``detections.json`` (checkpoint mode), ``stats.json`` (12 stats as fractions, -1 = no ground truth in that
size range, plus ``per_class``) and ``analysis.json`` (layout in ``boxloss/evaluation/analysis.py``)
into --output-dir (default: ``eval_<checkpoint name>/`` beside the checkpoint, or beside the
detections file). No detections at all gives AP 0 with a warning.
"""

import argparse
import json
import logging
import os
import sys

import torch

from boxloss.data import CocoDetection, DatasetError, build_dataloader, build_val_transforms, check_coco_annotations
from boxloss.engine import load_checkpoint, predict_coco
from boxloss.engine.amp import autocast_dtype
from boxloss.engine.config import DEFAULTS, ConfigError, load_config, merge_config
from boxloss.engine.trainer import prepare_data_paths, resolve_device
from boxloss.evaluation import BACKENDS, STAT_NAMES, evaluate_coco
from boxloss.evaluation.analysis import analyse_detections, format_analysis
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
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="checkpoint_best.pt / checkpoint_last.pt of a training run")
    source.add_argument("--detections", help="a COCO results json (list of {image_id, category_id, bbox, score}) to evaluate "
                                             "instead of running a model")
    p.add_argument("--val-ann", help="COCO json to evaluate on (default: the checkpoint's, or the run folder's, validation split)")
    p.add_argument("--val-images", help="image folder of --val-ann (not needed with --detections)")
    p.add_argument("--backend", choices=BACKENDS, default=None,
                   help="COCO evaluator of the 12 stats (default: the config's eval.backend, normally hotcoco; pycocotools "
                        "gives the same numbers); the error analysis always uses hotcoco")
    p.add_argument("--output-dir", help="where detections.json, stats.json and analysis.json go "
                                        "(default: eval_<name>/ beside the checkpoint or detections file)")
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


def detections_and_gt(args):
    """(detections, ground-truth dict, config or None) for --detections: the file, and --val-ann or the
    val split of the run folder the file lies in."""
    path = args.detections
    try:
        with open(path, encoding="utf-8") as f:
            detections = json.load(f)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(detections, list):
        raise ValueError(f"{path}: expected a COCO results list [{{image_id, category_id, bbox, score}}, ...], "
                         f"got a {type(detections).__name__}")
    cfg = None
    if args.val_ann:
        val_ann = args.val_ann
    else:
        run_cfg = os.path.join(os.path.dirname(os.path.abspath(path)), "config.yaml")
        if not os.path.isfile(run_cfg):
            raise ValueError(f"{path}: give --val-ann (no config.yaml of a training run beside the file to find its val split)")
        cfg = load_config(run_cfg)
        val_ann = prepare_data_paths(cfg)["val_ann"]
    report = check_coco_annotations(val_ann, args.val_images)  # the same cleaned ground truth training evaluates on
    logging.info("%s", report.summary())
    return detections, report.clean, cfg


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    try:
        if args.detections:
            detections, coco_gt, cfg = detections_and_gt(args)
            backend = args.backend or (cfg["eval"]["backend"] if cfg else "hotcoco")
        else:
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
            coco_gt, backend = dataset.coco, args.backend or cfg["eval"]["backend"]
        result = evaluate_coco(coco_gt, detections, backend=backend)
        analysis = analyse_detections(coco_gt, detections).summary
    except (ConfigError, DatasetError, ValueError, FileNotFoundError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    source = args.detections or args.checkpoint
    out_dir = args.output_dir or os.path.join(os.path.dirname(os.path.abspath(source)),
                                              "eval_" + os.path.splitext(os.path.basename(source))[0])
    os.makedirs(out_dir, exist_ok=True)
    written = ["stats.json", "analysis.json"]
    if not args.detections:
        with open(os.path.join(out_dir, "detections.json"), "w") as f:
            json.dump(detections, f)
        written.insert(0, "detections.json")
    stats = {**result.stats, "per_class": result.per_class, "num_detections": result.num_detections,
             "num_images": result.num_images, "backend": result.backend, "source": os.path.abspath(source)}
    with open(os.path.join(out_dir, "stats.json"), "w") as f:
        json.dump(stats, f, indent=1)
    with open(os.path.join(out_dir, "analysis.json"), "w") as f:
        json.dump(analysis, f, indent=1)

    print(f"{result.num_detections} detections on {result.num_images} images ({result.backend})")
    for name in STAT_NAMES:
        print(f" Average {'Precision' if name.startswith('AP') else 'Recall   '}  ({name:>5}) {STAT_LINES[name]} = {result.stats[name]:.3f}")
    print()
    print(format_per_class(result.per_class))
    print()
    print(format_analysis(analysis))
    print(f"\nwrote {', '.join(written)} into {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
