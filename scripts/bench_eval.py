#!/usr/bin/env python
"""How long the evaluation of one run takes: pycocotools vs hotcoco, and the analyses on top.

    python scripts/bench_eval.py --detections runs/default_sweep/ciou/seed0/detections.json \\
        --other runs/default_sweep/giou/seed0/detections.json

Times, each the median of --repeats runs in this process (after one warm-up): the 12 COCO stats by
pycocotools (the reference) and by hotcoco, with their ratio; the analyses of
``boxloss.evaluation.analysis`` on hotcoco's evaluation (TIDE, AP per IoU threshold, IoU of true
positives); the whole ``analyse_detections`` (evaluation + analyses); and, with ``--other``, one
image-bootstrap comparison of the two runs (``--bootstrap`` resamples). Ground truth: --val-ann, or the
val split of the run folder the detections lie in.
"""

import argparse
import json
import os
import statistics
import sys
import time
import warnings

from boxloss.data import check_coco_annotations
from boxloss.engine.config import load_config
from boxloss.engine.trainer import prepare_data_paths
from boxloss.evaluation import analyse_detections, evaluate_coco
from boxloss.evaluation.comparison import bootstrap_difference
from boxloss.evaluation.localization import ap_per_iou_threshold, tide_breakdown, true_positive_ious


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--detections", required=True, help="a run's detections.json (COCO results)")
    p.add_argument("--other", help="a second run's detections.json on the same images, for the bootstrap timing")
    p.add_argument("--val-ann", help="ground truth (default: the val split of the run folder of --detections)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (default 1000, as compare_losses.py)")
    return p.parse_args(argv)


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def ground_truth(args) -> dict:
    ann = args.val_ann
    if not ann:
        cfg = load_config(os.path.join(os.path.dirname(os.path.abspath(args.detections)), "config.yaml"))
        ann = prepare_data_paths(cfg)["val_ann"]
    return check_coco_annotations(ann).clean


def main(argv=None) -> int:
    args = parse_args(argv)
    gt = ground_truth(args)
    dets = json.load(open(args.detections))
    warnings.simplefilter("ignore")
    rows = []
    t_ref = median_time(lambda: evaluate_coco(gt, dets, backend="pycocotools"), args.repeats)
    t_hot = median_time(lambda: evaluate_coco(gt, dets, backend="hotcoco"), args.repeats)
    rows += [("COCO stats, pycocotools", t_ref, "1.00x"), ("COCO stats, hotcoco", t_hot, f"{t_ref / t_hot:.1f}x faster")]
    result = evaluate_coco(gt, dets, backend="hotcoco")
    rows.append(("TIDE (hotcoco)", median_time(lambda: tide_breakdown(result), args.repeats), ""))
    rows.append(("AP per IoU threshold", median_time(lambda: ap_per_iou_threshold(result), args.repeats), ""))
    rows.append(("IoU of true positives", median_time(lambda: true_positive_ious(result), args.repeats), ""))
    rows.append(("analyse_detections (all of it)", median_time(lambda: analyse_detections(gt, dets), args.repeats), ""))
    if args.other:
        a, b = analyse_detections(gt, dets), analyse_detections(gt, json.load(open(args.other)))
        t = median_time(lambda: bootstrap_difference(a, b, "AP", args.bootstrap), max(1, args.repeats // 2))
        rows.append((f"image bootstrap of ΔAP, {args.bootstrap} resamples", t, ""))
    print(f"{len(gt['images'])} images, {len(gt['annotations'])} boxes, {len(dets)} detections; median of {args.repeats}")
    print(f"{'step':<44} {'seconds':>9}  ratio")
    for name, t, ratio in rows:
        print(f"{name:<44} {t:9.4f}  {ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
