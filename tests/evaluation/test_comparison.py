"""evaluation.comparison and verdict: paired seed-level statistics, Holm, verdicts, the image bootstrap."""

import numpy as np
import pytest

from boxloss.evaluation.analysis import RunAnalysis, analyse_detections
from boxloss.evaluation.comparison import compare_to_baseline, summarize_losses
from boxloss.evaluation.localization import AREAS, TIDE_ERRORS, TIDE_TOTALS
from boxloss.evaluation.verdict import answer_paragraphs

THRESHOLDS = [f"{t:.2f}" for t in np.linspace(0.5, 0.95, 10)]


def fake_summary(ap: float, slope: float = 0.5, loc: float = 0.05, tp_iou: float = 0.75) -> dict:
    """A run analysis with AP ``ap``: AP per threshold falling linearly around it, TIDE and TP IoU."""
    offsets = np.linspace(1, -1, 10) * slope * ap
    by_iou = {t: float(ap + o) for t, o in zip(THRESHOLDS, offsets)}
    stats = {"AP": ap, "AP50": by_iou["0.50"], "AP75": by_iou["0.75"]}
    tide = {"ap50": by_iou["0.50"], "dAP": {k: 0.01 for k in (*TIDE_ERRORS, *TIDE_TOTALS)}, "counts": {k: 1 for k in TIDE_ERRORS},
            "pos_thr": 0.5, "bg_thr": 0.1}
    tide["dAP"]["Loc"] = loc
    iou = {"n": 10, "mean": tp_iou, "quantiles": {"0.50": tp_iou}, "histogram": {"edges": [0.5, 1.0], "counts": [10]}}
    return {"stats": stats, "ap_by_iou": by_iou, "tide": tide, "tp_iou": {a: dict(iou) for a in AREAS}, "num_images": 200}


def runs(values: dict) -> dict:
    """``{loss: [AP per seed]}`` -> analyses without evaluators (for n_bootstrap=0)."""
    return {(loss, s): RunAnalysis(fake_summary(ap), None) for loss, aps in values.items() for s, ap in enumerate(aps)}


def by_loss(comparison):
    return {r["loss"]: r for r in comparison["comparisons"]}


def test_identical_runs_give_zero_and_no_verdict():
    aps = [0.20, 0.22, 0.19]
    c = compare_to_baseline(runs({"giou": aps, "ciou": aps}), ["giou", "ciou"], "giou", n_bootstrap=0)
    row = by_loss(c)["ciou"]
    assert row["seed_level"]["mean"] == 0.0 and row["seed_level"]["lower"] == row["seed_level"]["upper"] == 0.0
    assert row["verdict"] == "not established" and row["seeds_needed"] is None


def test_clearly_worse_loss_is_worse_and_others_not_established():
    analyses = runs({"giou": [0.200, 0.220, 0.190, 0.210], "smooth_l1": [0.150, 0.171, 0.139, 0.160],
                     "ciou": [0.204, 0.218, 0.195, 0.209]})
    c = compare_to_baseline(analyses, ["giou", "smooth_l1", "ciou"], "giou", n_bootstrap=0)
    rows = by_loss(c)
    assert rows["smooth_l1"]["verdict"] == "worse"
    assert rows["smooth_l1"]["seed_level"]["mean"] == pytest.approx(-0.05)
    assert rows["smooth_l1"]["corrected"]["upper"] < 0
    assert rows["ciou"]["verdict"] == "not established"
    assert rows["ciou"]["seeds_needed"] > 4 and rows["ciou"]["mde"] > abs(rows["ciou"]["seed_level"]["mean"])
    assert c["n_comparisons"] == 2 and c["baseline"] == "giou"
    # Holm: the smaller p is tested at alpha / 2, the larger at alpha
    levels = sorted(r["holm_level"] for r in rows.values())
    assert levels == pytest.approx([0.025, 0.05])
    # where it comes from: the fake AP curves fall with the threshold in proportion to AP
    loc = rows["smooth_l1"]["localization"]
    assert loc["AP@0.50"]["mean"] == pytest.approx(-0.075) and loc["AP@0.95"]["mean"] == pytest.approx(-0.025)


def test_holm_can_keep_a_significant_looking_comparison_undecided():
    # two comparisons with the same moderate evidence: each alone passes 0.05, Holm needs 0.025 first
    # differences 0.010, 0.020, 0.015: mean 0.015, sd 0.005, t = 5.196 with 2 df -> p = 0.035
    analyses = runs({"base": [0.20, 0.21, 0.22], "a": [0.21, 0.23, 0.235], "b": [0.21, 0.23, 0.235]})
    c = compare_to_baseline(analyses, ["base", "a", "b"], "base", n_bootstrap=0)
    for row in c["comparisons"]:
        assert 0.025 < row["seed_level"]["p"] < 0.05
        assert row["p_holm"] == pytest.approx(2 * row["seed_level"]["p"])
        assert row["verdict"] == "not established"


def test_one_seed_covers_only_evaluation_noise():
    c = compare_to_baseline(runs({"giou": [0.2], "ciou": [0.3]}), ["giou", "ciou"], "giou", n_bootstrap=0)
    row = by_loss(c)["ciou"]
    assert row["verdict"] == "not established" and "one seed" in row["reason"]
    text = " ".join(answer_paragraphs(c, summarize_losses(runs({"giou": [0.2], "ciou": [0.3]}), ["giou", "ciou"])))
    assert "only evaluation-set noise is covered" in text


def test_missing_seed_pairs_only_common_seeds_and_unknown_baseline_fails():
    analyses = runs({"giou": [0.2, 0.21, 0.22], "ciou": [0.25, 0.26]})
    row = by_loss(compare_to_baseline(analyses, ["giou", "ciou"], "giou", n_bootstrap=0))["ciou"]
    assert row["seeds"] == [0, 1] and row["n"] == 2
    with pytest.raises(ValueError, match="baseline 'diou'"):
        compare_to_baseline(analyses, ["giou", "ciou"], "diou")


def test_answer_names_the_verdicts_with_numbers():
    analyses = runs({"giou": [0.200, 0.220, 0.190, 0.210], "smooth_l1": [0.150, 0.171, 0.139, 0.160],
                     "ciou": [0.204, 0.218, 0.195, 0.209]})
    c = compare_to_baseline(analyses, ["giou", "smooth_l1", "ciou"], "giou", n_bootstrap=0)
    text = "\n".join(answer_paragraphs(c, summarize_losses(analyses, ["giou", "smooth_l1", "ciou"]), 200))
    assert "worse than the baseline: **smooth_l1** by -5.0 points" in text
    assert "Not established" in text and "ciou +0.1" in text and "seeds would detect it" in text
    # ciou has the highest mean (20.65 vs giou 20.5), but that is not called a win
    assert "Highest mean AP: ciou (20.6" in text and "not a winner" in text
    assert "200 validation images" in text


def test_summarize_losses_interval_and_pooled_histogram():
    s = summarize_losses(runs({"giou": [0.1, 0.2, 0.3]}), ["giou"])["giou"]
    assert s["metric"]["mean"] == pytest.approx(0.2) and s["metric"]["lower"] < 0.1 < 0.3 < s["metric"]["upper"]
    assert s["metric_runs"] == [0.1, 0.2, 0.3]
    assert s["tp_iou"]["all"]["histogram"]["counts"] == [30]
    assert s["tide"]["Loc"]["mean"] == pytest.approx(0.05)


def test_image_bootstrap_on_real_evaluations():
    # Two "losses" on 30 images: b localizes every box worse than a. The bootstrap interval of the
    # AP difference excludes 0 and agrees in sign with the difference.
    rng = np.random.default_rng(0)
    images = [{"id": i, "width": 200, "height": 200, "file_name": f"{i}.png"} for i in range(1, 31)]
    anns, dets_a, dets_b = [], [], []
    for img in images:
        for _ in range(3):
            x, y, w, h = *rng.uniform(0, 120, 2), *rng.uniform(20, 60, 2)
            anns.append({"id": len(anns) + 1, "image_id": img["id"], "category_id": 1, "bbox": [x, y, w, h],
                         "area": w * h, "iscrowd": 0})
            score = float(rng.random())
            dets_a.append({"image_id": img["id"], "category_id": 1, "bbox": [x + 0.02 * w, y, w, h], "score": score})
            dets_b.append({"image_id": img["id"], "category_id": 1, "bbox": [x + 0.15 * w, y + 0.1 * h, w, h], "score": score})
    gt = {"info": {}, "images": images, "categories": [{"id": 1, "name": "box"}], "annotations": anns}
    analyses = {("a", 0): analyse_detections(gt, dets_a), ("b", 0): analyse_detections(gt, dets_b)}
    row = by_loss(compare_to_baseline(analyses, ["a", "b"], "a", n_bootstrap=200))["b"]
    boot = row["per_seed"][0]["bootstrap"]
    assert boot["n_images"] == 30 and boot["n_bootstrap"] == 200
    assert boot["diff"] == pytest.approx(row["per_seed"][0]["diff"])
    assert boot["upper"] < 0 and row["bootstrap_excluding_zero"] == 1
    assert row["localization"]["TP IoU"]["mean"] < 0  # b's true positives overlap less
