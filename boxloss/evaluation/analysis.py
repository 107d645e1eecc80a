"""One detector's detections, analysed: COCO stats, per-class AP, TIDE errors, AP per IoU threshold
and the IoU of true positives (``localization.py`` defines each), as one JSON-ready dict.

    from boxloss.evaluation.analysis import analyse_detections, format_analysis
    analysis = analyse_detections(coco_gt, detections)      # evaluated once, by hotcoco
    print(format_analysis(analysis.summary))                # what scripts/eval_det.py prints
    analysis.result                                         # the CocoEvalResult (for bootstrap comparisons)

``summary`` layout (fractions in [0, 1]; -1 = no ground truth, as COCO)::

    {"stats": {"AP": .., 12 COCO stats}, "per_class": {name: AP},
     "ap_by_iou": {"0.50": .., ..., "0.95": ..},
     "tide": {"ap50", "dAP": {Cls, Loc, Both, Dupe, Bkg, Miss, FP, FN}, "counts": {...}, "pos_thr", "bg_thr"},
     "tp_iou": {"all" | "small" | "medium" | "large": {"n", "mean", "quantiles": {"0.10": ..}, "histogram": {"edges", "counts"}}},
     "num_detections", "num_images", "backend"}
"""

from __future__ import annotations

from dataclasses import dataclass

from .coco_eval import CocoEvalResult, evaluate_coco
from .localization import AREAS, TIDE_ERRORS, TIDE_TOTALS, ap_per_iou_threshold, summarize_ious, tide_breakdown, true_positive_ious


@dataclass
class RunAnalysis:
    """``summary``: the JSON-ready dict above; ``result``: the hotcoco-evaluated ``CocoEvalResult``."""

    summary: dict
    result: CocoEvalResult


def analyse_detections(coco_gt, detections) -> RunAnalysis:
    """Evaluate ``detections`` (COCO result dicts, dataset ids, original pixels) against ``coco_gt``
    (pycocotools ``COCO`` or the ground-truth dict) with hotcoco, and run every analysis on it."""
    result = evaluate_coco(coco_gt, detections, backend="hotcoco")
    ious = true_positive_ious(result)
    summary = {
        "stats": dict(result.stats),
        "per_class": dict(result.per_class),
        "ap_by_iou": ap_per_iou_threshold(result),
        "tide": tide_breakdown(result),
        "tp_iou": {area: summarize_ious(ious[area]) for area in AREAS},
        "num_detections": result.num_detections,
        "num_images": result.num_images,
        "backend": result.backend,
    }
    return RunAnalysis(summary, result)


def _pct(v) -> str:
    return "n/a" if v is None or v < 0 else f"{100 * v:.1f}"


def _iou(v) -> str:
    return "—" if v is None else f"{v:.3f}"


def format_analysis(summary: dict) -> str:
    """Three small text tables: TIDE dAP50, AP per IoU threshold, IoU of true positives per size."""
    tide = summary["tide"]
    keys = (*TIDE_ERRORS, *TIDE_TOTALS)
    lines = [f"TIDE errors at IoU {tide['pos_thr']:.2f}: AP50 {_pct(tide['ap50'])}; the AP50 points that fixing each error type would add",
             "  " + "  ".join(f"{k:>5}" for k in keys),
             "  " + "  ".join(f"{100 * tide['dAP'][k]:5.1f}" for k in keys),
             "  " + "  ".join(f"{tide['counts'].get(k, ''):>5}" for k in keys) + "   (count of each error)",
             "",
             "AP (%) per IoU threshold (area all):"]
    thresholds = list(summary["ap_by_iou"])
    lines.append("  " + "  ".join(f"{t:>5}" for t in thresholds))
    lines.append("  " + "  ".join(f"{_pct(v):>5}" for v in summary["ap_by_iou"].values()))
    lines += ["", "IoU of true positives (matched at IoU >= 0.5, 100 detections per image):",
              f"  {'area':<7} {'n':>6} {'mean':>6} {'p10':>6} {'p50':>6} {'p90':>6}"]
    for area, s in summary["tp_iou"].items():
        q = s["quantiles"]
        lines.append(f"  {area:<7} {s['n']:>6} {_iou(s['mean']):>6} {_iou(q['0.10']):>6} {_iou(q['0.50']):>6} {_iou(q['0.90']):>6}")
    return "\n".join(lines)
