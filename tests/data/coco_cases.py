"""Hand-made COCO files for the data tests."""

import json

import cv2
import numpy as np


def minimal_coco(**overrides) -> dict:
    """Two 40x30 images, two categories with non-contiguous ids, three valid boxes."""
    data = {
        "info": {},
        "images": [
            {"id": 1, "file_name": "a.png", "width": 40, "height": 30},
            {"id": 2, "file_name": "b.png", "width": 40, "height": 30},
        ],
        "categories": [{"id": 7, "name": "cat"}, {"id": 3, "name": "dog"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 7, "bbox": [1, 2, 10, 5], "area": 50, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 3, "bbox": [20, 10, 8, 12], "area": 96, "iscrowd": 0},
            {"id": 3, "image_id": 2, "category_id": 3, "bbox": [0, 0, 40, 30], "area": 1200, "iscrowd": 0},
        ],
    }
    data.update(overrides)
    return data


def write_coco(tmp_path, data, name="ann.json", images=True):
    """Write ``data`` as json into ``tmp_path`` and, if asked, a noise PNG per image entry."""
    path = tmp_path / name
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    if images:
        rng = np.random.default_rng(0)
        for img in data["images"]:
            pixels = rng.integers(0, 256, (img["height"], img["width"], 3), dtype=np.uint8)
            cv2.imwrite(str(tmp_path / img["file_name"]), pixels)
    return path
