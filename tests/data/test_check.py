"""The annotation checker: one bad-annotation fixture per failure kind, with the exact outcome."""

import copy

import pytest
from coco_cases import minimal_coco, write_coco

from boxloss.data import CocoDetection, DatasetError, check_coco_annotations


def _error(tmp_path, data, image_dir=None) -> DatasetError:
    path = write_coco(tmp_path, data, images=False)
    with pytest.raises(DatasetError) as info:
        check_coco_annotations(path, image_dir)
    return info.value


def _ann(data, i):
    return data["annotations"][i]


# ---------------------------------------------------------------- structural errors: stop


def test_not_json(tmp_path):
    path = tmp_path / "ann.json"
    path.write_text('{"images": [}')
    with pytest.raises(DatasetError) as info:
        check_coco_annotations(path)
    assert str(info.value) == (
        f"{path}: not valid JSON (line 1, column 13: Expecting value). Fix the file or re-export it."
    )


def test_missing_file(tmp_path):
    with pytest.raises(DatasetError, match="annotation file not found"):
        check_coco_annotations(tmp_path / "nope.json")


@pytest.mark.parametrize("key", ["images", "annotations", "categories"])
def test_missing_top_level_list(tmp_path, key):
    data = minimal_coco()
    del data[key]
    err = _error(tmp_path, data)
    assert str(err) == (
        f"{tmp_path / 'ann.json'}: {key}: missing '{key}' list. A COCO detection file needs "
        "'images', 'annotations' and 'categories' (an empty list is fine)"
    )


@pytest.mark.parametrize(
    "bbox",
    [
        [1, 2, 3],
        [1, 2, 3, float("nan")],
        [1, 2, 3, float("inf")],
        [1, 2, "3", 4],
        [1, 2, True, 4],
        None,
        "1 2 3 4",
    ],
)
def test_bbox_not_four_finite_numbers(tmp_path, bbox):
    data = minimal_coco()
    _ann(data, 1)["bbox"] = bbox
    err = _error(tmp_path, data)
    assert str(err) == (
        f"{tmp_path / 'ann.json'}: annotations[1] (id 2).bbox: expected 4 finite numbers "
        f"[x, y, width, height], got {bbox!r}. Fix or remove this annotation"
    )


def test_missing_bbox(tmp_path):
    data = minimal_coco()
    del _ann(data, 0)["bbox"]
    assert "annotations[0] (id 1).bbox: expected 4 finite numbers [x, y, width, height], got None" in str(
        _error(tmp_path, data)
    )


def test_unknown_image(tmp_path):
    data = minimal_coco()
    _ann(data, 2)["image_id"] = 99
    assert str(_error(tmp_path, data)) == (
        f"{tmp_path / 'ann.json'}: annotations[2] (id 3).image_id: no image with id 99. "
        "Add the image to 'images' or remove the annotation"
    )


def test_unknown_category(tmp_path):
    data = minimal_coco()
    _ann(data, 0)["category_id"] = 1
    assert str(_error(tmp_path, data)) == (
        f"{tmp_path / 'ann.json'}: annotations[0] (id 1).category_id: no category with id 1. "
        "Add the category to 'categories' or remove the annotation"
    )


def test_duplicate_image_id(tmp_path):
    data = minimal_coco()
    data["images"][1]["id"] = 1
    data["annotations"] = []
    assert str(_error(tmp_path, data)) == (
        f"{tmp_path / 'ann.json'}: images[1].id: duplicate id 1 (also images[0]). "
        "Ids in 'images' must be unique; renumber them"
    )


def test_duplicate_annotation_id(tmp_path):
    data = minimal_coco()
    _ann(data, 2)["id"] = 1
    assert str(_error(tmp_path, data)) == (
        f"{tmp_path / 'ann.json'}: annotations[2].id: duplicate id 1 (also annotations[0]). "
        "Ids in 'annotations' must be unique; renumber them"
    )


def test_bad_image_size_field(tmp_path):
    data = minimal_coco()
    data["images"][0]["width"] = 0
    assert "images[0] (id 1).width: expected a positive integer, got 0" in str(_error(tmp_path, data))


def test_all_structural_errors_are_collected(tmp_path):
    data = minimal_coco()
    _ann(data, 0)["category_id"] = 1
    _ann(data, 1)["bbox"] = [0, 0, 1]
    _ann(data, 2)["image_id"] = 5
    err = _error(tmp_path, data)
    assert len(err.errors) == 3
    assert str(err).endswith("(and 2 more error(s); scripts/check_dataset.py lists them all)")
    assert isinstance(err, ValueError)


def test_missing_image_file(tmp_path):
    data = minimal_coco()
    write_coco(tmp_path, data)
    (tmp_path / "b.png").unlink()
    with pytest.raises(DatasetError) as info:
        check_coco_annotations(tmp_path / "ann.json", tmp_path)
    assert str(info.value) == (
        f"{tmp_path / 'ann.json'}: images[1] (id 2).file_name: 'b.png' not found in {tmp_path}. "
        "Fix the path or point to the right image directory"
    )


def test_dataset_raises_the_checkers_error(tmp_path):
    data = minimal_coco()
    _ann(data, 2)["image_id"] = 99
    path = write_coco(tmp_path, data)
    with pytest.raises(DatasetError, match=r"annotations\[2\] \(id 3\)\.image_id: no image with id 99"):
        CocoDetection(path, tmp_path)


# ---------------------------------------------------------------- fixable problems: fix and count


def _report(data):
    report = check_coco_annotations(copy.deepcopy(data))
    return report, {a["id"]: a for a in report.clean["annotations"]}


def test_clean_file_has_no_fixes():
    report, _ = _report(minimal_coco())
    assert not report.fixes and report.num_boxes == 3 and report.num_skipped == 0


def test_partly_outside_is_clipped():
    data = minimal_coco()
    _ann(data, 0)["bbox"] = [-4, 25, 10, 10]  # image is 40x30
    report, anns = _report(data)
    assert report.fixes == {"clipped": 1}
    assert anns[1]["bbox"] == [0.0, 25.0, 6.0, 5.0]
    assert report.examples["clipped"] == ["annotations[0] (id 1, image 1)"]


@pytest.mark.parametrize("wh", [(0, 5), (5, 0), (-3, 5), (5, -1)])
def test_nonpositive_size_is_skipped(wh):
    data = minimal_coco()
    _ann(data, 1)["bbox"] = [5, 5, *wh]
    report, anns = _report(data)
    assert report.fixes == {"nonpositive_size": 1}
    assert 2 not in anns and report.num_boxes == 2 and report.num_skipped == 1


@pytest.mark.parametrize("bbox", [[40, 5, 3, 3], [-10, 5, 10, 3], [5, 30, 3, 3], [5, -7, 3, 6]])
def test_entirely_outside_is_skipped(bbox):
    data = minimal_coco()
    _ann(data, 2)["bbox"] = bbox
    report, anns = _report(data)
    assert report.fixes == {"outside": 1}
    assert 3 not in anns


def test_missing_area_and_iscrowd_are_filled():
    data = minimal_coco()
    del _ann(data, 0)["area"]
    del _ann(data, 1)["iscrowd"]
    _ann(data, 2)["area"] = float("nan")
    report, anns = _report(data)
    assert report.fixes == {"filled_area": 2, "filled_iscrowd": 1}
    assert anns[1]["area"] == 50.0 and anns[2]["iscrowd"] == 0 and anns[3]["area"] == 1200.0


def test_annotation_id_zero_is_shifted():
    data = minimal_coco()
    for i, ann in enumerate(data["annotations"]):
        ann["id"] = i  # 0, 1, 2 as Roboflow exports write them
    report, anns = _report(data)
    assert report.fixes == {"renumbered_id": 3}
    assert sorted(anns) == [1, 2, 3]


def test_crowd_boxes_are_kept_but_not_counted_as_training_boxes():
    data = minimal_coco()
    _ann(data, 2)["iscrowd"] = 1
    report, anns = _report(data)
    assert report.num_boxes == 2 and report.num_crowd == 1 and anns[3]["iscrowd"] == 1
    assert report.num_images_without_boxes == 1


def test_input_dict_is_not_modified():
    data = minimal_coco()
    _ann(data, 0)["bbox"] = [-4, 25, 10, 10]
    del _ann(data, 1)["area"]
    before = copy.deepcopy(data)
    check_coco_annotations(data)
    assert data == before


def test_dataset_sees_the_same_report(tmp_path):
    data = minimal_coco()
    _ann(data, 0)["bbox"] = [-4, 25, 10, 10]
    _ann(data, 1)["bbox"] = [5, 5, 0, 5]
    path = write_coco(tmp_path, data)
    dataset = CocoDetection(path, tmp_path)
    assert dataset.report.fixes == check_coco_annotations(path).fixes == {"clipped": 1, "nonpositive_size": 1}
    assert 2 not in dataset.coco.anns  # skipped boxes are not evaluated either


def test_report_text():
    data = minimal_coco()
    _ann(data, 0)["bbox"] = [-4, 25, 10, 10]
    text = check_coco_annotations(data).format()
    assert text.splitlines()[0] == (
        "<dict>: 2 images, 3 annotations -> 3 training boxes in 2 classes, 0 crowd, "
        "0 images without boxes; fixed: clipped 1"
    )
    assert "boxes per class:" in text and "      7  cat " in text and "      3  dog " in text
    assert "box size sqrt(w*h) in pixels" in text and "aspect ratio w:h:" in text
    assert "box partly outside the image -> clipped to the image" in text


def test_shifted_ids_make_cocoeval_count_perfect_detections_as_perfect():
    """With a ground-truth id of 0, pycocotools scores perfect detections at AP 0.25 here, not 1."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    data = minimal_coco()
    for i, ann in enumerate(data["annotations"]):
        ann["id"] = i
    gt = COCO()
    gt.dataset = check_coco_annotations(data).clean
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        dets = gt.loadRes(
            [
                dict(image_id=a["image_id"], category_id=a["category_id"], bbox=a["bbox"], score=1.0)
                for a in data["annotations"]
            ]
        )
        evaluator = COCOeval(gt, dets, "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    assert evaluator.stats[0] == pytest.approx(1.0)
