"""CocoDetection: a generated set round-trips through loading and augmentation."""

import cv2
import numpy as np
import pytest
import torch
from coco_cases import minimal_coco, write_coco

from boxloss.data import (
    CocoDetection,
    DatasetError,
    build_train_transforms,
    build_val_transforms,
    unletterbox_boxes,
)


def _gt_xyxy(dataset, ann_ids):
    boxes = [dataset.coco.anns[int(i)]["bbox"] for i in ann_ids]
    return torch.tensor([[x, y, x + w, y + h] for x, y, w, h in boxes], dtype=torch.float32).reshape(-1, 4)


def _check_target(dataset, image, target, size):
    boxes, labels = target["boxes"], target["labels"]
    assert image.dtype == torch.uint8 and image.shape == (3, size, size)
    assert boxes.dtype == torch.float32 and labels.dtype == torch.int64
    assert boxes.shape == (len(labels), 4) and target["ann_ids"].shape == labels.shape
    assert torch.all(boxes[:, 2] - boxes[:, 0] >= 1) and torch.all(boxes[:, 3] - boxes[:, 1] >= 1)
    assert torch.all(boxes >= 0) and torch.all(boxes <= size)
    # Labels stay aligned with their boxes: each box's annotation has the label's category.
    for ann_id, label in zip(target["ann_ids"].tolist(), labels.tolist()):
        ann = dataset.coco.anns[ann_id]
        assert ann["image_id"] == target["image_id"]
        assert dataset.label_to_category_id[label] == ann["category_id"]
        assert dataset.category_ids[label] == ann["category_id"]
    num_gt = sum(not a["iscrowd"] for a in dataset.coco.imgToAnns[target["image_id"]])
    assert len(labels) + target["num_dropped"] == num_gt


def test_val_round_trip_maps_back_to_original_boxes(synthetic_dir):
    dataset = CocoDetection(synthetic_dir / "val.json", synthetic_dir / "images", build_val_transforms(96))
    assert dataset.class_names == ["rectangle", "ellipse", "triangle", "cross", "ring"]
    assert dataset.category_ids == [1, 2, 3, 4, 5]
    for i in range(len(dataset)):
        image, target = dataset[i]
        _check_target(dataset, image, target, 96)
        orig_h, orig_w = target["orig_size"].tolist()
        assert max(orig_h, orig_w) == 128 and target["size"].tolist() == [96, 96]
        back = unletterbox_boxes(target["boxes"], target["scale"], target["pad"], target["orig_size"])
        assert torch.allclose(back, _gt_xyxy(dataset, target["ann_ids"]), atol=1e-3)


def test_train_round_trip_keeps_boxes_valid_and_aligned(synthetic_dir):
    transforms = build_train_transforms(96, seed=0)
    dataset = CocoDetection(synthetic_dir / "train.json", synthetic_dir / "images", transforms)
    for _ in range(3):  # several random draws per image
        for i in range(len(dataset)):
            _check_target(dataset, *dataset[i], 96)


def test_train_transforms_are_seeded(synthetic_dir):
    def draw(seed):
        dataset = CocoDetection(
            synthetic_dir / "train.json", synthetic_dir / "images", build_train_transforms(96, seed=seed)
        )
        return [dataset[i] for i in range(3)]

    a, b, c = draw(1), draw(1), draw(2)
    assert all(torch.equal(x[0], y[0]) and torch.equal(x[1]["boxes"], y[1]["boxes"]) for x, y in zip(a, b))
    assert not all(torch.equal(x[0], z[0]) for x, z in zip(a, c))


def test_without_transforms_image_is_the_file(synthetic_dir):
    dataset = CocoDetection(synthetic_dir / "val.json", synthetic_dir / "images")
    image, target = dataset[0]
    file_name = dataset.coco.imgs[target["image_id"]]["file_name"]
    bgr = cv2.imread(str(synthetic_dir / "images" / file_name))
    assert torch.equal(image, torch.from_numpy(bgr[:, :, ::-1].transpose(2, 0, 1).copy()))  # RGB
    assert torch.equal(target["boxes"], _gt_xyxy(dataset, target["ann_ids"]))
    assert target["scale"].tolist() == [1.0, 1.0] and target["pad"].tolist() == [0.0, 0.0]


def test_category_mapping_crowd_and_empty_images(tmp_path):
    data = minimal_coco()
    data["categories"].append({"id": 42, "name": "bird"})
    data["annotations"].append(
        {"id": 9, "image_id": 2, "category_id": 42, "bbox": [5, 5, 9, 9], "area": 81, "iscrowd": 1}
    )
    data["images"].append({"id": 5, "file_name": "c.png", "width": 40, "height": 30})
    dataset = CocoDetection(write_coco(tmp_path, data), tmp_path, build_val_transforms(64))
    assert dataset.category_ids == [3, 7, 42] and dataset.class_names == ["dog", "cat", "bird"]
    assert dataset.label_to_category_id == {0: 3, 1: 7, 2: 42}
    assert dataset.category_id_to_label == {3: 0, 7: 1, 42: 2}
    assert dataset.ids == [1, 2, 5]
    _, t1 = dataset[0]
    assert t1["labels"].tolist() == [1, 0]  # cat (id 7), dog (id 3)
    _, t2 = dataset[1]
    assert t2["labels"].tolist() == [0]  # the crowd bird is not a training target...
    assert dataset.coco.anns[9]["iscrowd"] == 1  # ...but stays in the evaluation ground truth
    image, t3 = dataset[2]  # no annotations: kept as a negative
    assert image.shape == (3, 64, 64) and t3["boxes"].shape == (0, 4) and t3["labels"].shape == (0,)


def test_boxes_lost_in_augmentation_are_counted(tmp_path):
    data = minimal_coco()
    data["annotations"][0]["bbox"] = [0, 0, 1, 1]  # 1 px at 40x30 -> 0.4 px at 16x16
    dataset = CocoDetection(write_coco(tmp_path, data), tmp_path, build_val_transforms(16))
    _, target = dataset[0]
    assert target["num_dropped"] == 1 and target["ann_ids"].tolist() == [2]


def test_unreadable_image_is_an_error_naming_it(tmp_path):
    dataset = CocoDetection(write_coco(tmp_path, minimal_coco()), tmp_path)
    (tmp_path / "a.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match=rf"{tmp_path / 'a.png'}: OpenCV cannot decode this file"):
        dataset[0]
    (tmp_path / "b.png").unlink()
    with pytest.raises(DatasetError, match=rf"{tmp_path / 'b.png'}: image file not found"):
        dataset[1]


def test_image_size_must_match_the_json(tmp_path):
    data = minimal_coco()
    path = write_coco(tmp_path, data)
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((31, 40, 3), np.uint8))
    with pytest.raises(
        DatasetError, match=r"a.png: image is 40x31 \(width x height\) but the annotation file says 40x30"
    ):
        CocoDetection(path, tmp_path)[0]
    with pytest.raises(DatasetError, match="image is 40x31"):  # the checker finds it up front when asked
        CocoDetection(path, tmp_path, verify_images=True)


def test_exif_rotation(tmp_path):
    """A JPEG stored 40x30 with EXIF orientation 6 (rotate 90) displays as 30x40."""
    from PIL import Image

    data = minimal_coco()
    data["images"] = data["images"][:1]
    data["annotations"] = data["annotations"][:1]
    path = write_coco(tmp_path, data, images=False)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (40, 30), (200, 10, 10)).save(tmp_path / "a.png", format="JPEG", exif=exif)
    with pytest.raises(
        DatasetError, match="Width and height are swapped: the file probably carries an EXIF rotation"
    ):
        CocoDetection(path, tmp_path)[0]
    image, _ = CocoDetection(path, tmp_path, apply_exif=False)[0]  # boxes drawn on stored pixels
    assert image.shape == (3, 30, 40)
    data["images"][0].update(width=30, height=40)
    data["annotations"][0]["bbox"] = [1, 2, 5, 10]
    path = write_coco(tmp_path, data, images=False)
    image, _ = CocoDetection(path, tmp_path)[0]  # boxes drawn on the displayed (rotated) view
    assert image.shape == (3, 40, 30)
