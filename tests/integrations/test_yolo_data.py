"""COCO JSON -> YOLO labels: class mapping, box normalisation and the counts of what is left out."""

import json

import pytest
import yaml

from boxloss.integrations.yolo_data import coco_to_yolo, format_summary, main, yolo_line


def _write_split(tmp_path, name, images, annotations, categories):
    root = tmp_path / "src"
    for im in images:
        (root / im["file_name"]).parent.mkdir(parents=True, exist_ok=True)
        (root / im["file_name"]).write_bytes(b"jpeg")
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return str(path), str(root)


CATS = [{"id": 7, "name": "kite"}, {"id": 3, "name": "car"}]  # unsorted on purpose: car (3) -> 0, kite (7) -> 1


def test_hand_worked_example(tmp_path):
    images = [{"id": 1, "file_name": "a.jpg", "width": 200, "height": 100},
              {"id": 2, "file_name": "sub/b.jpg", "width": 50, "height": 50}]
    anns = [
        {"id": 1, "image_id": 1, "category_id": 7, "bbox": [20, 10, 40, 30], "iscrowd": 0},  # cx=40/200, cy=25/100
        {"id": 2, "image_id": 1, "category_id": 3, "bbox": [180, 80, 40, 40], "iscrowd": 0},  # clipped to 180..200, 80..100
        {"id": 3, "image_id": 1, "category_id": 3, "bbox": [0, 0, 10, 10], "iscrowd": 1},  # crowd
        {"id": 4, "image_id": 1, "category_id": 3, "bbox": [5, 5, 0, 10], "iscrowd": 0},  # zero width
        {"id": 5, "image_id": 1, "category_id": 3, "bbox": [300, 5, 10, 10]},  # outside the image
        {"id": 6, "image_id": 1, "category_id": 7, "bbox": [1, 2, float("nan"), 3]},  # not finite
    ]
    train = _write_split(tmp_path, "train", images, anns, CATS)
    val = _write_split(tmp_path, "val", images[1:], [], CATS)
    out = tmp_path / "yolo"
    summary = coco_to_yolo(out, {"train": train, "val": val})

    assert summary["names"] == ["car", "kite"] and summary["category_ids"] == [3, 7]
    assert summary["train"] == {"images": 2, "empty_images": 1, "boxes": 2, "crowd": 1, "invalid": 3, "clipped": 1}
    assert summary["val"] == {"images": 1, "empty_images": 1, "boxes": 0, "crowd": 0, "invalid": 0, "clipped": 0}
    lines = (out / "labels/train/a.txt").read_text().splitlines()
    assert lines == ["1 0.200000 0.250000 0.200000 0.300000", "0 0.950000 0.900000 0.100000 0.200000"]
    assert (out / "labels/train/sub/b.txt").read_text() == ""
    link = out / "images/train/sub/b.jpg"
    assert link.is_symlink() and link.resolve() == (tmp_path / "src/sub/b.jpg").resolve()
    data = yaml.safe_load((out / "data.yaml").read_text())
    assert data == {"path": str(out.resolve()), "train": "images/train", "val": "images/val", "names": {0: "car", 1: "kite"}}
    text = format_summary(summary)
    assert "train: images 2, empty_images 1, boxes 2, crowd 1, invalid 3, clipped 1" in text
    assert "0=car (COCO id 3)" in text


def test_yolo_line_status():
    assert yolo_line(2, [0, 0, 10, 20], 10, 20) == ("2 0.500000 0.500000 1.000000 1.000000", "ok")
    assert yolo_line(0, [-5, 0, 10, 20], 10, 20) == ("0 0.250000 0.500000 0.500000 1.000000", "clipped")
    assert yolo_line(0, [0, 0, -1, 5], 10, 20) == (None, "invalid")


def test_errors_name_the_problem(tmp_path):
    images = [{"id": 1, "file_name": "a.jpg", "width": 10, "height": 10}]
    train = _write_split(tmp_path, "train", images, [], CATS)
    other = _write_split(tmp_path, "val", images, [], [{"id": 3, "name": "car"}])
    with pytest.raises(ValueError, match=r"category ids \[7\] differ"):
        coco_to_yolo(tmp_path / "o", {"train": train, "val": other})
    with pytest.raises(ValueError, match="needs a 'val' entry"):
        coco_to_yolo(tmp_path / "o", {"train": train})
    bad = _write_split(tmp_path, "bad", images, [{"id": 9, "image_id": 1, "category_id": 42, "bbox": [1, 1, 2, 2],
                                                  "area": 4, "iscrowd": 0}], CATS)
    with pytest.raises(ValueError, match=r"annotation 9 has category_id 42, which is not in categories"):
        coco_to_yolo(tmp_path / "o", {"train": bad, "val": bad})
    assert main(["only-out"]) == 2
