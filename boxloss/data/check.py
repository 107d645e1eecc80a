"""Check a COCO detection annotation file up front, so that nothing is silently lost.

Two kinds of problem:

- structural errors stop everything with a ``DatasetError`` naming file, field and index: not JSON,
  missing ``images``/``annotations``/``categories``, ids that are not integers or not unique, a bbox
  that is not 4 finite numbers, an annotation pointing to an unknown image or category, an image
  without a positive integer width/height, an image file missing from ``image_dir``;
- fixable box problems are fixed and counted by reason (see ``report.REASONS``): boxes partly
  outside the image are clipped, boxes with zero/negative size or entirely outside are skipped,
  missing ``area``/``iscrowd`` are filled in, annotation ids < 1 are shifted.

``CocoDetection`` runs the same function, so training sees the same report as
``scripts/check_dataset.py``.
"""

import json
import math
import os
from collections import Counter
from pathlib import Path

import numpy as np

from .errors import DatasetError
from .image_io import read_image
from .report import DatasetReport

MAX_ERRORS = 200  # structural errors collected before giving up
MAX_EXAMPLES = 3  # example annotations listed per fix reason


# Exact type checks (JSON gives int, float, bool, str, ...): bool is not a number here.
def _is_int(v) -> bool:
    return type(v) is int


def _is_number(v) -> bool:
    return (type(v) is float or type(v) is int) and math.isfinite(v)


def load_json(path) -> dict:
    """Read an annotation file; a missing file or invalid JSON is a ``DatasetError``."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: annotation file not found. Check the path.")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise DatasetError(
            f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg}). "
            "Fix the file or re-export it."
        ) from None
    except UnicodeDecodeError as e:
        raise DatasetError(
            f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); is this a JSON file?"
        ) from None


class _Errors:
    """Collects structural error messages, each ``source: field: problem. advice``."""

    def __init__(self, source: str):
        self.source, self.messages = source, []

    def add(self, where: str, problem: str, advice: str) -> None:
        if len(self.messages) < MAX_ERRORS:
            self.messages.append(f"{self.source}: {where}: {problem}. {advice}")

    def raise_if_any(self) -> None:
        if self.messages:
            raise DatasetError.from_errors(self.messages)


def _where(section: str, i: int, item) -> str:
    has_id = isinstance(item, dict) and _is_int(item.get("id"))
    return f"{section}[{i}] (id {item['id']})" if has_id else f"{section}[{i}]"


def _check_ids(errors: _Errors, section: str, items: list) -> dict:
    """Check each entry is an object with a unique integer id; returns id -> first index."""
    seen = {}
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            errors.add(
                f"{section}[{i}]",
                f"expected an object, got {type(item).__name__}",
                "Fix or remove this entry",
            )
        elif not _is_int(item.get("id")):
            errors.add(
                f"{section}[{i}].id",
                f"expected an integer id, got {item.get('id')!r}",
                "Give every entry an integer id",
            )
        elif item["id"] in seen:
            errors.add(
                f"{section}[{i}].id",
                f"duplicate id {item['id']} (also {section}[{seen[item['id']]}])",
                f"Ids in '{section}' must be unique; renumber them",
            )
        else:
            seen[item["id"]] = i
    return seen


def _check_structure(data, errors: _Errors) -> None:
    if not isinstance(data, dict):
        errors.add(
            "top level",
            f"expected a JSON object, got {type(data).__name__}",
            "Is this a COCO annotation file?",
        )
        errors.raise_if_any()
    for key in ("images", "annotations", "categories"):
        if key not in data:
            errors.add(
                key,
                f"missing '{key}' list",
                "A COCO detection file needs 'images', 'annotations' and 'categories' "
                "(an empty list is fine)",
            )
        elif not isinstance(data[key], list):
            errors.add(
                key, f"expected a list, got {type(data[key]).__name__}", "Fix the file's top-level structure"
            )
    errors.raise_if_any()

    cat_ids = _check_ids(errors, "categories", data["categories"])
    for i, cat in enumerate(data["categories"]):
        if isinstance(cat, dict) and not isinstance(cat.get("name"), str):
            errors.add(
                f"{_where('categories', i, cat)}.name",
                f"expected a string, got {cat.get('name')!r}",
                "Give every category a name",
            )
    image_ids = _check_ids(errors, "images", data["images"])
    for i, img in enumerate(data["images"]):
        if not isinstance(img, dict):
            continue
        where = _where("images", i, img)
        if not isinstance(img.get("file_name"), str) or not img.get("file_name"):
            errors.add(
                f"{where}.file_name",
                f"expected a file name, got {img.get('file_name')!r}",
                "Give every image its file name",
            )
        for key in ("width", "height"):
            if not (_is_int(img.get(key)) and img[key] > 0):
                errors.add(
                    f"{where}.{key}",
                    f"expected a positive integer, got {img.get(key)!r}",
                    "Write the image's pixel size into the json",
                )
    _check_ids(errors, "annotations", data["annotations"])
    for i, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict):
            continue
        where = _where("annotations", i, ann)
        bbox = ann.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
            errors.add(
                f"{where}.bbox",
                f"expected 4 finite numbers [x, y, width, height], got {bbox!r}",
                "Fix or remove this annotation",
            )
        if not _is_int(ann.get("image_id")) or ann["image_id"] not in image_ids:
            errors.add(
                f"{where}.image_id",
                f"no image with id {ann.get('image_id')!r}",
                "Add the image to 'images' or remove the annotation",
            )
        if not _is_int(ann.get("category_id")) or ann["category_id"] not in cat_ids:
            errors.add(
                f"{where}.category_id",
                f"no category with id {ann.get('category_id')!r}",
                "Add the category to 'categories' or remove the annotation",
            )
        if "iscrowd" in ann and ann["iscrowd"] not in (0, 1):
            errors.add(f"{where}.iscrowd", f"expected 0 or 1, got {ann['iscrowd']!r}", "Fix this annotation")
    errors.raise_if_any()


def _clean_annotations(data: dict, fixes: Counter, examples: dict) -> list:
    """Clip, skip and fill; returns the kept annotations (copies)."""
    sizes = {img["id"]: (img["width"], img["height"]) for img in data["images"]}

    def note(reason, i, ann):
        fixes[reason] += 1
        refs = examples.setdefault(reason, [])
        if len(refs) < MAX_EXAMPLES:
            refs.append(f"annotations[{i}] (id {ann['id']}, image {ann['image_id']})")

    kept = []
    for i, ann in enumerate(data["annotations"]):
        x, y, w, h = (float(v) for v in ann["bbox"])
        if w <= 0 or h <= 0:
            note("nonpositive_size", i, ann)
            continue
        img_w, img_h = sizes[ann["image_id"]]
        x1, y1 = min(max(x, 0.0), img_w), min(max(y, 0.0), img_h)
        x2, y2 = min(max(x + w, 0.0), img_w), min(max(y + h, 0.0), img_h)
        if x2 <= x1 or y2 <= y1:
            note("outside", i, ann)
            continue
        ann = dict(ann)
        if (x1, y1, x2, y2) != (x, y, x + w, y + h):
            note("clipped", i, ann)
            ann["bbox"] = [x1, y1, x2 - x1, y2 - y1]
        if not (_is_number(ann.get("area")) and ann["area"] >= 0):
            note("filled_area", i, ann)
            ann["area"] = (x2 - x1) * (y2 - y1)
        if "iscrowd" not in ann:
            note("filled_iscrowd", i, ann)
        ann["iscrowd"] = int(ann.get("iscrowd", 0))
        kept.append(ann)

    low = min((ann["id"] for ann in kept), default=1)
    if low < 1:  # COCOeval stores matched gt ids and tests them for truth: id 0 never matches.
        for ann in kept:
            ann["id"] += 1 - low
        fixes["renumbered_id"] = len(kept)
        examples["renumbered_id"] = [f"new id = old id + {1 - low}"]
    return kept


def _check_files(data: dict, image_dir, errors: _Errors, verify_images: bool, apply_exif: bool) -> None:
    for i, img in enumerate(data["images"]):
        path = os.path.join(image_dir, img["file_name"])
        if not os.path.isfile(path):
            errors.add(
                f"{_where('images', i, img)}.file_name",
                f"{img['file_name']!r} not found in {image_dir}",
                "Fix the path or point to the right image directory",
            )
        elif verify_images:
            try:
                read_image(path, (img["height"], img["width"]), apply_exif=apply_exif)
            except DatasetError as e:
                errors.add(_where("images", i, img), str(e), "Fix the image or its entry")
    errors.raise_if_any()


def check_coco_annotations(
    ann, image_dir=None, *, verify_images: bool = False, apply_exif: bool = True
) -> DatasetReport:
    """Validate and clean a COCO detection annotation file; return a ``DatasetReport``.

    Args:
        ann: path to the json file, or an already loaded dict (reported as ``<dict>``).
        image_dir: if given, every image's ``file_name`` must exist under it.
        verify_images: also decode every image and compare its size with the json (slow).
        apply_exif: how images are decoded when verifying (see ``read_image``).

    Raises:
        DatasetError: on structural errors (all of them are in ``err.errors``).
    """
    if isinstance(ann, dict):
        source, data = "<dict>", ann
    else:
        source, data = os.fspath(ann), load_json(ann)
    errors = _Errors(source)
    _check_structure(data, errors)
    if image_dir is not None:
        _check_files(data, image_dir, errors, verify_images, apply_exif)

    fixes, examples = Counter(), {}
    annotations = _clean_annotations(data, fixes, examples)
    clean = {
        "info": data.get("info", {}),
        "licenses": data.get("licenses", []),
        "images": data["images"],
        "annotations": annotations,
        "categories": data["categories"],
    }
    boxes = [a for a in annotations if not a["iscrowd"]]
    counts = Counter(a["category_id"] for a in boxes)
    categories = {c["id"]: c["name"] for c in sorted(data["categories"], key=lambda c: c["id"])}
    with_boxes = {a["image_id"] for a in boxes}
    return DatasetReport(
        source=source,
        num_images=len(data["images"]),
        num_annotations=len(data["annotations"]),
        num_boxes=len(boxes),
        num_crowd=len(annotations) - len(boxes),
        num_images_without_boxes=sum(img["id"] not in with_boxes for img in data["images"]),
        categories=categories,
        class_counts={c: counts.get(c, 0) for c in categories},
        fixes=fixes,
        examples=examples,
        box_wh=np.array([a["bbox"][2:] for a in boxes], dtype=np.float64).reshape(-1, 2),
        clean=clean,
    )
