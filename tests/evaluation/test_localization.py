"""evaluation.localization / analysis: TIDE, AP per IoU threshold and IoU of true positives, worked by hand.

The fixture: one 300x300 image, one category, three ground-truth boxes and four detections:

    g1 (10, 10, 40, 40)   medium      d1 = g1                score 0.90  IoU 1
    g2 (100, 100, 20, 20) small       d2 (104, 100, 20, 20)  score 0.80  IoU 320 / 480 = 2/3
    g3 (150, 10, 40, 40)  medium      d4 (170, 10, 40, 40)   score 0.60  IoU 800 / 2400 = 1/3 (a Loc error)
                                      d3 (200, 200, 10, 10)  score 0.95  on background (a Bkg error)

Ranked by score: d3 FP, d1 TP, d2 TP (if t <= 2/3), d4 FP.

- t in 0.50..0.65: recall 0, 1/3, 2/3, 2/3 with precision 0, 1/2, 2/3, 1/2; interpolated precision is
  2/3 for the 67 recall points 0..0.66 and 0 above: AP_t = 67 * (2/3) / 101.
- t in 0.70..0.95: only d1 is a TP: recall 1/3 reached at precision 1/2: 34 points (0..0.33) read 1/2:
  AP_t = 17 / 101.
- TIDE at 0.5: fixing the Loc error turns d4 into a TP of g3: precision 0, 1/2, 2/3, 3/4 at recall 0,
  1/3, 2/3, 1 -> 3/4 at every recall point: AP50 = 0.75, dAP Loc = 0.75 - AP50. Fixing the background
  error removes d3: precision 1, 1, 2/3 at recall 1/3, 2/3, 2/3 -> 1 for 67 points: AP50 = 67 / 101.
"""

import numpy as np
import pytest

from boxloss.evaluation.analysis import analyse_detections, format_analysis
from boxloss.evaluation.coco_eval import evaluate_coco
from boxloss.evaluation.localization import ap_per_iou_threshold, summarize_ious, tide_breakdown, true_positive_ious

GT = {
    "info": {},
    "images": [{"id": 1, "width": 300, "height": 300, "file_name": "1.png"}],
    "categories": [{"id": 7, "name": "thing"}],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 7, "bbox": [10, 10, 40, 40], "area": 1600, "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": 7, "bbox": [100, 100, 20, 20], "area": 400, "iscrowd": 0},
        {"id": 3, "image_id": 1, "category_id": 7, "bbox": [150, 10, 40, 40], "area": 1600, "iscrowd": 0},
    ],
}
DETS = [
    {"image_id": 1, "category_id": 7, "bbox": [10, 10, 40, 40], "score": 0.90},
    {"image_id": 1, "category_id": 7, "bbox": [104, 100, 20, 20], "score": 0.80},
    {"image_id": 1, "category_id": 7, "bbox": [200, 200, 10, 10], "score": 0.95},
    {"image_id": 1, "category_id": 7, "bbox": [170, 10, 40, 40], "score": 0.60},
]
LOW = 67 * (2 / 3) / 101  # AP_t for t <= 0.65
HIGH = 17 / 101  # AP_t for t >= 0.70


def test_ap_per_iou_threshold_hand_worked():
    result = evaluate_coco(GT, DETS)
    ap = ap_per_iou_threshold(result)
    assert list(ap) == ["0.50", "0.55", "0.60", "0.65", "0.70", "0.75", "0.80", "0.85", "0.90", "0.95"]
    assert [ap[t] for t in ("0.50", "0.55", "0.60", "0.65")] == pytest.approx([LOW] * 4)
    assert [ap[t] for t in ("0.70", "0.75", "0.80", "0.85", "0.90", "0.95")] == pytest.approx([HIGH] * 6)
    # the curve is what COCO's summary reads: its mean is AP, its ends AP50 and AP75
    assert np.mean(list(ap.values())) == pytest.approx(result.stats["AP"])
    assert ap["0.50"] == pytest.approx(result.stats["AP50"]) and ap["0.75"] == pytest.approx(result.stats["AP75"])


def test_tide_hand_worked():
    tide = tide_breakdown(evaluate_coco(GT, DETS))
    assert tide["ap50"] == pytest.approx(LOW)
    assert tide["dAP"]["Loc"] == pytest.approx(0.75 - LOW)
    assert tide["dAP"]["Bkg"] == pytest.approx(67 / 101 - LOW)
    assert tide["dAP"]["Cls"] == tide["dAP"]["Both"] == tide["dAP"]["Dupe"] == 0.0
    assert tide["counts"]["Loc"] == 1 and tide["counts"]["Bkg"] == 1 and tide["counts"]["Cls"] == 0


def test_true_positive_ious_hand_worked():
    ious = true_positive_ious(evaluate_coco(GT, DETS))
    assert sorted(ious["all"]) == pytest.approx([2 / 3, 1.0])
    assert ious["small"] == pytest.approx([2 / 3])
    assert ious["medium"] == pytest.approx([1.0])
    assert len(ious["large"]) == 0
    s = summarize_ious(ious["all"])
    assert s["n"] == 2 and s["mean"] == pytest.approx(5 / 6) and s["quantiles"]["0.50"] == pytest.approx(5 / 6)
    # bins [0.5, 0.55), ..., [0.95, 1.0]: 2/3 falls in [0.65, 0.7), 1.0 in the last (closed) bin
    assert s["histogram"]["counts"] == [0, 0, 0, 1, 0, 0, 0, 0, 0, 1]
    empty = summarize_ious(ious["large"])
    assert empty["n"] == 0 and empty["mean"] is None and sum(empty["histogram"]["counts"]) == 0


def test_analysis_needs_hotcoco_and_prints_every_part():
    with pytest.raises(ValueError, match="hotcoco"):
        tide_breakdown(evaluate_coco(GT, DETS, backend="pycocotools"))
    summary = analyse_detections(GT, DETS).summary
    assert summary["stats"]["AP50"] == pytest.approx(LOW) and summary["tp_iou"]["all"]["n"] == 2
    text = format_analysis(summary)
    assert "Loc" in text and "0.95" in text and "small" in text
    assert f"{100 * (0.75 - LOW):5.1f}" in text  # the Loc dAP50 in points


def test_analysis_of_no_detections_is_defined():
    with pytest.warns(UserWarning, match="no detections"):
        summary = analyse_detections(GT, []).summary
    assert summary["stats"]["AP"] == 0.0 and summary["tp_iou"]["all"]["n"] == 0
    assert all(v == 0.0 for v in summary["ap_by_iou"].values())
    assert summary["tide"]["counts"]["Miss"] == 3


def reference_true_positive_ious(result, t_index=0):
    """The same from COCO's per-image evaluation records (``evalImgs``: per category, area range and
    image, the ground-truth id each detection matched at each threshold): slow, but COCO's own."""
    ev = result.evaluator
    ranges = [list(map(float, r)) for r in ev.params.areaRng]
    out = {a: [] for a in ev.params.areaRngLbl}
    gt_anns, dt_anns = ev.cocoGt.anns, ev.cocoDt.anns
    for entry in ev.eval_imgs:
        if entry is None or int(entry["maxDet"]) != 100:
            continue
        label = ev.params.areaRngLbl[ranges.index(list(map(float, entry["aRng"])))]
        for d, g, ignored in zip(entry["dtIds"], entry["dtMatches"][t_index], entry["dtIgnore"][t_index]):
            if g and not ignored:
                a, b = np.array(dt_anns[d]["bbox"]), np.array(gt_anns[int(g)]["bbox"])
                iw = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
                ih = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
                out[label].append(iw * ih / (a[2] * a[3] + b[2] * b[3] - iw * ih))
    return {k: np.sort(v) for k, v in out.items()}


@pytest.mark.parametrize("case", ["real", "crowded"])
def test_true_positive_ious_follow_cocos_matching(case, real_run):
    """The matches behind the IoUs are COCO's: on a real run's detections, and with more than 100
    detections per image (the maxDets cut), crowd boxes and every size range."""
    if case == "real":
        gt, dets = real_run
    else:
        from test_coco_eval import det, random_case

        gt, dets = random_case(7, num_images=6)
        rng = np.random.default_rng(7)
        dets = dets + [det(10 + int(rng.integers(0, 6)), 3, (float(rng.uniform(0, 500)), float(rng.uniform(0, 350)), 30.0, 30.0),
                           float(rng.uniform(0.5, 1))) for _ in range(800)]
    result = evaluate_coco(gt, dets)
    ours, ref = true_positive_ious(result), reference_true_positive_ious(result)
    assert len(ours["all"]) > 5
    np.testing.assert_allclose(np.sort(ours["all"]), ref["all"], atol=1e-12)
    # per size: the all-area matches split by their object's size (no box here lies on a range boundary),
    # not COCO's per-range re-matching, whose matches can differ (it ignores the other sizes' objects)
    np.testing.assert_allclose(np.sort(np.concatenate([ours[a] for a in ("small", "medium", "large")])), ref["all"], atol=1e-12)
    for area in ("small", "medium", "large"):
        assert len(ours[area]) == len(ref[area]), area  # the same number of true positives per size
