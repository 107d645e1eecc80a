"""The synthetic dataset generator: determinism, COCO validity, and the properties it promises."""

import contextlib
import io
import json

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from boxloss.data import SHAPE_NAMES, check_coco_annotations, make_synthetic_dataset
from boxloss.data.synthetic import _noise_bank, render_image, visible_objects


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_arguments_give_identical_bytes(tmp_path):
    make_synthetic_dataset(tmp_path / "a", 5, 3, size=64, seed=11)
    make_synthetic_dataset(tmp_path / "b", 5, 3, size=64, seed=11)
    make_synthetic_dataset(tmp_path / "c", 5, 3, size=64, seed=11, workers=2)
    a = _files(tmp_path / "a")
    assert len(a) == 5 + 3 + 2
    assert a == _files(tmp_path / "b") == _files(tmp_path / "c")
    make_synthetic_dataset(tmp_path / "d", 5, 3, size=64, seed=12)
    assert _files(tmp_path / "d")["train.json"] != a["train.json"]


def test_json_is_complete_and_clean(synthetic_dir):
    for split, n in (("train", 8), ("val", 4)):
        data = json.loads((synthetic_dir / f"{split}.json").read_text())
        assert set(data) == {"info", "licenses", "images", "annotations", "categories"}
        assert [c["name"] for c in data["categories"]] == list(SHAPE_NAMES)
        assert len(data["images"]) == n
        assert all(a["iscrowd"] == 0 and a["area"] > 0 for a in data["annotations"])
        for img in data["images"]:
            assert (
                img["file_name"].startswith(f"{split}/")
                and (synthetic_dir / "images" / img["file_name"]).is_file()
            )
        report = check_coco_annotations(
            synthetic_dir / f"{split}.json", synthetic_dir / "images", verify_images=True
        )
        assert not report.fixes and report.num_boxes == len(data["annotations"]) > n


def test_pycocotools_scores_ground_truth_as_perfect(synthetic_dir):
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(synthetic_dir / "val.json"))
        dets = [
            dict(image_id=a["image_id"], category_id=a["category_id"], bbox=a["bbox"], score=1.0)
            for a in gt.anns.values()
        ]
        evaluator = COCOeval(gt, gt.loadRes(dets), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    assert evaluator.stats[0] == pytest.approx(1.0)


def test_rendered_objects_cover_sizes_aspects_and_overlaps():
    """60 images at 320 px: COCO small/medium/large, aspect 1:4..4:1, overlaps, occlusion drops."""
    noise = _noise_bank(320, 0)
    boxes, kinds, overlaps, dropped = [], set(), 0, 0
    for i in range(60):
        img, objects, n_dropped = render_image(np.random.default_rng([0, 0, i]), 320, 240, noise)
        assert img.shape == (240, 320, 3) and img.dtype == np.uint8
        assert img.std() > 20  # textured, not flat
        b = np.array([box for _, box, _ in objects]).reshape(-1, 4)
        assert np.all(b[:, :2] >= 0) and np.all(b[:, 0] + b[:, 2] <= 320) and np.all(b[:, 1] + b[:, 3] <= 240)
        assert all(1 <= pixels <= w * h for (_, (_, _, w, h), pixels) in objects)
        x1, y1, x2, y2 = b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
        iw = np.minimum(x2[:, None], x2[None]) - np.maximum(x1[:, None], x1[None])
        ih = np.minimum(y2[:, None], y2[None]) - np.maximum(y1[:, None], y1[None])
        overlaps += int(np.triu((iw > 0) & (ih > 0), 1).sum())
        boxes.append(b)
        kinds |= {kind for kind, _, _ in objects}
        dropped += n_dropped
    b = np.concatenate(boxes)
    side, aspect = np.sqrt(b[:, 2] * b[:, 3]), b[:, 2] / b[:, 3]
    assert (
        (side < 32).mean() > 0.2 and (side > 96).mean() > 0.05 and ((side >= 32) & (side <= 96)).mean() > 0.2
    )
    assert aspect.min() <= 1 / 3.5 and aspect.max() >= 3.5
    assert overlaps > 30 and dropped > 0
    assert kinds == set(range(len(SHAPE_NAMES)))


def test_boxes_are_the_visible_extent():
    """Object 1 (a 10x10 square) is half covered by object 2 and object 3 is hidden by object 4."""
    owner = np.zeros((20, 30), np.int16)
    owner[0:10, 0:10] = 1
    owner[0:10, 5:15] = 2
    owner[12:16, 20:24] = 3
    owner[11:17, 19:25] = 4
    drawn = [
        (0, (0, 0, 10, 10), 100),
        (1, (5, 0, 15, 10), 100),
        (2, (20, 12, 24, 16), 16),
        (3, (19, 11, 25, 17), 36),
    ]
    objects, dropped = visible_objects(owner, drawn)
    assert objects == [
        (0, [0.0, 0.0, 5.0, 10.0], 50),
        (1, [5.0, 0.0, 10.0, 10.0], 100),
        (3, [19.0, 11.0, 6.0, 6.0], 36),
    ]
    assert dropped == 1


@pytest.mark.parametrize("kwargs", [dict(size=16), dict(n_train=-1)])
def test_bad_arguments(tmp_path, kwargs):
    args = dict(out_dir=tmp_path, n_train=1, n_val=1, size=64, seed=0) | kwargs
    with pytest.raises(ValueError):
        make_synthetic_dataset(**args)
