"""Where a detector loses AP, and how well it localizes: TIDE errors, AP per IoU threshold, IoU of
true positives. These are the measurements on which box losses differ.

All three read one evaluated hotcoco ``COCOeval`` (``CocoEvalResult.evaluator`` of
``evaluate_coco(..., backend="hotcoco")``), so they use COCO's own matching:

- ``tide_breakdown``: hotcoco's ``tide_errors()`` (Bolya et al., "TIDE: A General Toolbox for
  Identifying Object Detection Errors", ECCV 2020) at IoU 0.5 (background threshold 0.1): the AP50
  that fixing each error type would add back — ``Cls`` (right box, wrong class), ``Loc`` (right class,
  0.1 <= IoU < 0.5), ``Both``, ``Dupe`` (a duplicate of a found object), ``Bkg`` (on background),
  ``Miss`` (an object never detected) — plus ``FP`` / ``FN`` (all false positives / negatives), and
  the count of each error. A box loss mostly moves ``Loc``.
- ``ap_per_iou_threshold``: COCO AP at each IoU threshold 0.50, 0.55, ..., 0.95 (all areas, 100
  detections), read from the precision array as COCO's summary reads AP50 and AP75; their mean is AP.
  Losses that localize better lose less AP as the threshold rises.
- ``true_positive_ious``: the IoU of every detection matched at IoU >= 0.5 to a ground-truth box
  (COCO's greedy matching in score order, area all, 100 detections per image), and split by the size of
  the matched object (COCO's area ranges: small < 32², medium < 96², large) — not COCO's per-range
  re-matching, which ignores the other sizes' objects and can pair boxes differently. Summarised by
  ``summarize_ious`` (count, mean, quantiles, a histogram on [0.5, 1]). The sets of true positives differ between detectors, so
  compare these along with AP50, not instead of it.
"""

from __future__ import annotations

import numpy as np

from .coco_eval import CocoEvalResult

TIDE_ERRORS = ("Cls", "Loc", "Both", "Dupe", "Bkg", "Miss")
TIDE_TOTALS = ("FP", "FN")
AREAS = ("all", "small", "medium", "large")
IOU_QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)
IOU_BIN_EDGES = tuple(np.round(np.linspace(0.5, 1.0, 11), 2).tolist())


def _hotcoco_evaluator(result: CocoEvalResult):
    ev = result.evaluator
    if ev is None or not hasattr(ev, "tide_errors"):
        raise ValueError("this analysis needs an evaluation by hotcoco: evaluate_coco(..., backend='hotcoco')")
    return ev


def threshold_key(t: float) -> str:
    """``0.5`` -> ``"0.50"``: the key of an IoU threshold in JSON."""
    return f"{t:.2f}"


def ap_per_iou_threshold(result: CocoEvalResult) -> dict[str, float]:
    """``{"0.50": AP50, "0.55": ..., "0.95": ...}`` (area all, 100 detections); -1 without ground truth."""
    out = {}
    for t_index, t in enumerate(result.iou_thresholds):
        p = result.precision[t_index, :, :, 0, -1]
        out[threshold_key(t)] = float(p[p > -1].mean()) if (p > -1).any() else -1.0
    return out


def tide_breakdown(result: CocoEvalResult, pos_thr: float = 0.5, bg_thr: float = 0.1) -> dict:
    """``{"ap50", "dAP": {Cls, Loc, Both, Dupe, Bkg, Miss, FP, FN}, "counts": {...}, "pos_thr", "bg_thr"}``
    from hotcoco's TIDE (fractions of AP, like every stat here)."""
    te = _hotcoco_evaluator(result).tide_errors(pos_thr=pos_thr, bg_thr=bg_thr)
    return {
        "ap50": float(te["ap_base"]),
        "dAP": {k: float(te["delta_ap"][k]) for k in (*TIDE_ERRORS, *TIDE_TOTALS)},
        "counts": {k: int(te["counts"][k]) for k in TIDE_ERRORS},
        "pos_thr": float(te["pos_thr"]),
        "bg_thr": float(te["bg_thr"]),
    }


def _xywh_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of aligned pairs of COCO ``[x, y, w, h]`` boxes (float64), as COCO's matching computes it."""
    iw = np.clip(np.minimum(a[:, 0] + a[:, 2], b[:, 0] + b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, 1] + a[:, 3], b[:, 1] + b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    inter = iw * ih
    union = a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def true_positive_ious(result: CocoEvalResult, iou_thr: float = 0.5) -> dict[str, np.ndarray]:
    """``{area: IoUs of the true positives at threshold iou_thr}`` for area in ``AREAS``: COCO's matching
    (area all, 100 detections per image, as hotcoco's ``image_diagnostics`` reports it), each match put
    in the size range(s) of its ground-truth box's ``area`` by COCO's inclusive ranges."""
    ev = _hotcoco_evaluator(result)
    if not np.isclose(result.iou_thresholds, iou_thr).any():
        raise ValueError(f"iou_thr={iou_thr} is not one of the evaluated thresholds")
    matches = sorted(ev.image_diagnostics(iou_thr=iou_thr, score_thr=0.0)["dt_match"].items())
    out = {area: np.zeros(0) for area in AREAS}
    if not matches:
        return out
    # load only the matched annotations: building hotcoco's whole ``anns`` dict costs ~0.2 s at 20k detections
    dt_anns = ev.cocoDt.load_anns([d for d, _ in matches])
    gt_anns = ev.cocoGt.load_anns([g for _, g in matches])
    dt = np.array([a["bbox"] for a in dt_anns], dtype=np.float64)
    gt = np.array([a["bbox"] for a in gt_anns], dtype=np.float64)
    gt_area = np.array([a["area"] for a in gt_anns], dtype=np.float64)
    ious = _xywh_iou(dt, gt)
    for label, (lo, hi) in zip(ev.params.areaRngLbl, ev.params.areaRng):
        if label in out:
            out[label] = ious[(gt_area >= lo) & (gt_area <= hi)]
    return out


def summarize_ious(ious: np.ndarray) -> dict:
    """``{"n", "mean", "quantiles": {"0.10": ..}, "histogram": {"edges", "counts"}}`` (mean and
    quantiles None for no true positive)."""
    ious = np.asarray(ious, dtype=np.float64)
    counts, _ = np.histogram(np.clip(ious, IOU_BIN_EDGES[0], IOU_BIN_EDGES[-1]), bins=np.asarray(IOU_BIN_EDGES))
    empty = len(ious) == 0
    return {
        "n": int(len(ious)),
        "mean": None if empty else float(ious.mean()),
        "quantiles": {f"{q:.2f}": None if empty else float(np.quantile(ious, q)) for q in IOU_QUANTILES},
        "histogram": {"edges": list(IOU_BIN_EDGES), "counts": counts.astype(int).tolist()},
    }
