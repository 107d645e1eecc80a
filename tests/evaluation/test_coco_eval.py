"""evaluate_coco: hand-worked AP values, empty detections, non-contiguous ids, validation, backends.

How COCO AP is computed (pycocotools, what the hand arithmetic below follows): per IoU threshold t and
category, detections are sorted by score and greedily matched to unmatched ground truth with IoU >= t;
the precision curve is made monotone (each point takes the max precision to its right) and read at
the 101 recall points 0, 0.01, ..., 1 (the first detection whose recall >= r; 0 if r is never
reached); AP is the mean of those 101 values, then averaged over thresholds 0.50:0.05:0.95 and over
categories that have ground truth.
"""

import math
import warnings

import numpy as np
import pytest

from boxloss.evaluation import STAT_NAMES, evaluate_coco


def gt_dict(annotations, categories=((3, "cat3"),), images=((1, 200, 200),)):
    anns = []
    for i, (image_id, category_id, bbox, *crowd) in enumerate(annotations):
        anns.append(
            {"id": i + 1, "image_id": image_id, "category_id": category_id, "bbox": list(bbox),
             "area": bbox[2] * bbox[3], "iscrowd": crowd[0] if crowd else 0}
        )
    return {
        "images": [{"id": i, "width": w, "height": h, "file_name": f"{i}.png"} for i, w, h in images],
        "categories": [{"id": c, "name": n} for c, n in categories],
        "annotations": anns,
    }


def det(image_id, category_id, bbox, score):
    return {"image_id": image_id, "category_id": category_id, "bbox": list(bbox), "score": score}


def test_one_hit_one_miss():
    # 1 image, 2 medium GT boxes (40x40 and 50x50 px: area in (32^2, 96^2)).
    # d1 equals g1 (IoU 1, a TP at every threshold), d2 overlaps nothing (FP); g2 is never found.
    # Ranked: d1 -> recall 1/2, precision 1; d2 -> recall 1/2, precision 1/2.
    # Recall points 0, 0.01, ..., 0.50 (51 of them) read precision 1; 0.51..1 are never reached: 0.
    # AP = 51/101 at every threshold -> AP = AP50 = AP75 = APm = 51/101; AR = 1/2.
    # No small or large GT -> APs = APl = ARs = ARl = -1 (pycocotools' "no ground truth" value).
    gt = gt_dict([(1, 3, (10, 10, 40, 40)), (1, 3, (100, 100, 50, 50))])
    dets = [det(1, 3, (10, 10, 40, 40), 0.9), det(1, 3, (150, 10, 40, 40), 0.8)]
    s = evaluate_coco(gt, dets).stats
    assert tuple(s) == STAT_NAMES
    for name in ("AP", "AP50", "AP75", "APm"):
        assert s[name] == pytest.approx(51 / 101)
    for name in ("AR1", "AR10", "AR100", "ARm"):
        assert s[name] == pytest.approx(0.5)
    for name in ("APs", "APl", "ARs", "ARl"):
        assert s[name] == -1


def test_ranking_and_iou_thresholds():
    # 3 medium GT (50x50). Scores: d1 (= g1, IoU 1) 0.9; d2 (overlaps nothing) 0.8; d3 0.7 is a 40x40
    # box in the corner of g2: IoU = 1600 / 2500 = 0.64, a TP for t in {0.50, 0.55, 0.60}, FP above.
    # t <= 0.60: recall 1/3, 1/3, 2/3; precision 1, 1/2, 2/3 -> monotone 1, 2/3, 2/3.
    #   r in 0..0.33 (34 points) -> 1; r in 0.34..0.66 (33 points) -> 2/3; r >= 0.67 -> 0.
    #   AP_t = (34 + 33 * 2/3) / 101 = 56/101.
    # t >= 0.65: only d1 is a TP: recall 1/3 -> r in 0..0.33 read 1 -> AP_t = 34/101.
    # AP = (3 * 56/101 + 7 * 34/101) / 10 = 406/1010; AP50 = 56/101; AP75 = 34/101.
    # AR100 = mean over thresholds of final recall = (3 * 2/3 + 7 * 1/3) / 10 = 13/30.
    # AR1 keeps only the top-scored detection per image (d1): recall 1/3 everywhere.
    gt = gt_dict([(1, 3, (10, 10, 50, 50)), (1, 3, (100, 10, 50, 50)), (1, 3, (10, 100, 50, 50))])
    dets = [det(1, 3, (10, 10, 50, 50), 0.9), det(1, 3, (150, 150, 40, 40), 0.8), det(1, 3, (100, 10, 40, 40), 0.7)]
    result = evaluate_coco(gt, dets)
    s = result.stats
    assert s["AP"] == pytest.approx(406 / 1010)
    assert s["AP50"] == pytest.approx(56 / 101)
    assert s["AP75"] == pytest.approx(34 / 101)
    assert s["APm"] == pytest.approx(406 / 1010)
    assert s["AR1"] == pytest.approx(1 / 3)
    assert s["AR10"] == s["AR100"] == pytest.approx(13 / 30)

    recall, precision = result.pr_curve(iou=0.5)
    assert recall.shape == precision.shape == (101,)
    np.testing.assert_allclose(precision, [1.0] * 34 + [2 / 3] * 33 + [0.0] * 34)
    _, precision75 = result.pr_curve(iou=0.75)
    np.testing.assert_allclose(precision75, [1.0] * 34 + [0.0] * 67)
    with pytest.raises(ValueError, match="thresholds"):
        result.pr_curve(iou=0.52)


def test_non_contiguous_category_ids_and_per_class():
    # Category ids 3, 17, 90. Category 3: the one-hit-one-miss case (AP 51/101). Category 17: one GT
    # found exactly (AP 1). Category 90 has no GT: its false positive is not counted, its AP is -1, and
    # it is left out of the mean: AP = (51/101 + 1) / 2 = 152/202.
    cats = ((3, "three"), (17, "seventeen"), (90, "ninety"))
    gt = gt_dict([(1, 3, (10, 10, 40, 40)), (1, 3, (100, 100, 50, 50)), (1, 17, (10, 100, 40, 40))], categories=cats)
    dets = [
        det(1, 3, (10, 10, 40, 40), 0.9), det(1, 3, (150, 10, 40, 40), 0.8),
        det(1, 17, (10, 100, 40, 40), 0.5), det(1, 90, (100, 100, 50, 50), 0.99),
    ]
    result = evaluate_coco(gt, dets)
    assert result.category_ids == [3, 17, 90]
    assert result.per_class == pytest.approx({"three": 51 / 101, "seventeen": 1.0, "ninety": -1.0})
    assert result.stats["AP"] == pytest.approx(152 / 202)
    assert result.pr_curve(0.5, category_id=17)[1] == pytest.approx(np.ones(101))
    # A detection labelled with a contiguous index instead of the dataset's id is caught.
    with pytest.raises(ValueError, match="unknown category_id 1 "):
        evaluate_coco(gt, [det(1, 1, (10, 10, 40, 40), 0.9)])


def test_crowd_boxes_absorb_detections():
    # A detection on a crowd region is neither a TP nor a FP; the crowd box is never a miss:
    # d1 finds g1, d2 lands on the crowd box -> precision 1 up to recall 1 -> AP 1.
    gt = gt_dict([(1, 3, (10, 10, 40, 40)), (1, 3, (100, 100, 60, 60), 1)])
    dets = [det(1, 3, (10, 10, 40, 40), 0.5), det(1, 3, (105, 105, 40, 40), 0.9)]
    assert evaluate_coco(gt, dets).stats["AP"] == pytest.approx(1.0)


@pytest.mark.parametrize("backend", ["pycocotools", "hotcoco"])
def test_empty_detections(backend):
    gt = gt_dict([(1, 3, (10, 10, 40, 40)), (1, 3, (100, 100, 10, 10))])
    with pytest.warns(UserWarning, match="no detections"):
        result = evaluate_coco(gt, [], backend=backend)
    s = result.stats
    assert all(s[k] == 0 for k in ("AP", "AP50", "AP75", "APs", "APm", "AR1", "AR10", "AR100", "ARs", "ARm"))
    assert s["APl"] == s["ARl"] == -1  # no large GT
    assert result.per_class == {"cat3": 0.0}
    assert result.num_detections == 0
    np.testing.assert_array_equal(result.pr_curve(0.5)[1], np.zeros(101))


def test_no_ground_truth_at_all():
    gt = gt_dict([])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = evaluate_coco(gt, [det(1, 3, (0, 0, 5, 5), 0.3)])
    assert all(v == -1 for v in result.stats.values())
    np.testing.assert_array_equal(result.pr_curve(0.5)[1], np.zeros(101))


def test_validation_names_the_problem_and_does_not_mutate():
    gt = gt_dict([(1, 3, (10, 10, 40, 40))])
    with pytest.raises(ValueError, match="unknown image_id 7"):
        evaluate_coco(gt, [det(7, 3, (0, 0, 5, 5), 0.3)])
    with pytest.raises(ValueError, match=r"detections\[0\]\.bbox"):
        evaluate_coco(gt, [det(1, 3, (0, 0, float("nan"), 5), 0.3)])
    with pytest.raises(ValueError, match=r"detections\[0\]\.bbox"):
        evaluate_coco(gt, [det(1, 3, (0, 0, -1, 5), 0.3)])
    with pytest.raises(ValueError, match="missing key"):
        evaluate_coco(gt, [{"image_id": 1, "category_id": 3, "bbox": [0, 0, 1, 1]}])
    with pytest.raises(ValueError, match="backend"):
        evaluate_coco(gt, [], backend="detectron")
    dets = [det(1, 3, (10, 10, 40, 40), 0.9)]
    before = [dict(d) for d in dets]
    evaluate_coco(gt, dets)
    assert dets == before  # pycocotools' loadRes would have added area/id/iscrowd/segmentation


def test_accepts_pycocotools_coco_and_numpy_ids():
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = gt_dict([(1, 3, (10, 10, 40, 40))])
    coco.createIndex()
    d = {"image_id": np.int64(1), "category_id": np.int64(3), "bbox": np.array([10.0, 10, 40, 40]), "score": np.float32(0.5)}
    assert evaluate_coco(coco, [d]).stats["AP"] == pytest.approx(1.0)


def random_case(seed, num_images=25, cats=(3, 17, 90, 91)):
    """Random GT of every size range and jittered / spurious detections with random scores."""
    rng = np.random.default_rng(seed)
    images = [(i + 10, 640, 480) for i in range(num_images)]
    anns, dets = [], []
    for image_id, _, _ in images:
        for _ in range(rng.integers(0, 8)):
            w, h = np.exp(rng.uniform(np.log(8), np.log(200), size=2))
            x, y = rng.uniform(0, 640 - w), rng.uniform(0, 480 - h)
            c = int(rng.choice(cats[:3]))  # category 91 never has ground truth
            anns.append((image_id, c, (x, y, w, h), int(rng.random() < 0.05)))
            for _ in range(rng.integers(0, 3)):
                j = rng.normal(0, 0.15, size=4) * [w, h, w, h]
                dets.append(det(image_id, c, (x + j[0], y + j[1], abs(w + j[2]), abs(h + j[3])), float(rng.random())))
        for _ in range(rng.integers(0, 4)):
            w, h = rng.uniform(5, 150, size=2)
            dets.append(det(image_id, int(rng.choice(cats)), (rng.uniform(0, 500), rng.uniform(0, 350), w, h), float(rng.random())))
    return gt_dict(anns, categories=[(c, f"c{c}") for c in cats], images=images), dets


def assert_same_evaluation(ref, other):
    """The 12 stats, per-class AP and the whole precision array [T, R, K, A, M] equal to 1e-12."""
    for name in STAT_NAMES:
        assert other.stats[name] == pytest.approx(ref.stats[name], abs=1e-12), name
    assert other.per_class == pytest.approx(ref.per_class, abs=1e-12)
    assert other.category_ids == ref.category_ids
    np.testing.assert_allclose(other.iou_thresholds, ref.iou_thresholds, atol=1e-15)
    assert other.precision.shape == ref.precision.shape
    np.testing.assert_allclose(other.precision, ref.precision, atol=1e-12, rtol=0)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_hotcoco_equals_pycocotools_on_random_cases(seed):
    # every size range, crowd boxes, a category without ground truth, ties in nothing in particular
    gt, dets = random_case(seed)
    ref = evaluate_coco(gt, dets, backend="pycocotools")
    fast = evaluate_coco(gt, dets, backend="hotcoco")
    assert 0.05 < ref.stats["AP"] < 0.95  # nontrivial
    assert_same_evaluation(ref, fast)


def test_hotcoco_equals_pycocotools_with_tied_scores_and_many_detections():
    # Equal scores are where two implementations of the greedy matching could diverge (sort
    # stability); >100 detections per image exercises the maxDets cut.
    gt, dets = random_case(7, num_images=6)
    rng = np.random.default_rng(7)
    extra = [det(10 + int(rng.integers(0, 6)), 3, (float(rng.uniform(0, 500)), float(rng.uniform(0, 350)), 30.0, 30.0), 0.5)
             for _ in range(800)]
    tied = [dict(d, score=round(d["score"], 1)) for d in dets] + extra
    assert_same_evaluation(evaluate_coco(gt, tied, backend="pycocotools"), evaluate_coco(gt, tied, backend="hotcoco"))


def test_hotcoco_equals_pycocotools_on_a_real_runs_detections(real_run):
    # A trained detector's detections on the built-in synthetic val split (tests/evaluation/conftest.py)
    gt, dets = real_run
    ref = evaluate_coco(gt, dets, backend="pycocotools")
    fast = evaluate_coco(gt, dets, backend="hotcoco")
    assert len(dets) > 1000 and ref.stats["AP"] > 0.05
    assert_same_evaluation(ref, fast)


def test_to_dict_is_json_ready():
    import json

    gt = gt_dict([(1, 3, (10, 10, 40, 40))])
    d = evaluate_coco(gt, [det(1, 3, (10, 10, 40, 40), 0.9)]).to_dict()
    assert json.loads(json.dumps(d))["stats"]["AP"] == pytest.approx(1.0)
    assert not any(isinstance(v, float) and math.isnan(v) for v in d["stats"].values())
