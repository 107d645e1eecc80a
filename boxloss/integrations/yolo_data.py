"""COCO JSON -> YOLO labels and data.yaml, for training Ultralytics models on boxloss data.

    summary = coco_to_yolo(out_dir, {"train": ("data/syn/train.json", "data/syn/images"),
                                     "val": ("data/syn/val.json", "data/syn/images")})
    python -m boxloss.integrations.yolo_data OUT train=data/syn/train.json:data/syn/images val=...

Layout written (Ultralytics finds a label by replacing the last /images/ of the image path by /labels/):

    OUT/images/<split>/<file_name>        symlink to IMAGE_ROOT/<file_name>
    OUT/labels/<split>/<file_name stem>.txt   one line per box: "class cx cy w h", normalised to [0, 1]
    OUT/data.yaml                         path: OUT, train: images/train, val: images/val, names: {0: ..., }

Class mapping: the categories of the first split, sorted by COCO category id, become classes 0..K-1
(so COCO ids 1, 2, 5 map to 0, 1, 2); `names` keeps their COCO names. Every split must have the same
categories. Boxes: [x, y, w, h] in pixels are clipped to the image, then cx = (x + w/2) / W,
cy = (y + h/2) / H, w / W, h / H. Nothing is dropped silently; per split the summary counts:

    images, empty_images (no label line; written as empty files, i.e. background images), boxes (written),
    crowd (iscrowd=1: YOLO labels have no ignore regions, so they are left out), invalid (non-finite,
    w <= 0 or h <= 0, or nothing left inside the image after clipping: left out), clipped (partly outside
    the image: written clipped).

Ultralytics has `ultralytics.data.converter.convert_coco`, but it writes to a new numbered folder,
copies no images, leaves crowd boxes out without counting them and maps COCO's 91 ids to 80 by
default; this module is small, needs no Ultralytics and reports what it leaves out.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import yaml

COUNT_KEYS = ("images", "empty_images", "boxes", "crowd", "invalid", "clipped")


def _categories(coco: dict, path) -> list[dict]:
    cats = sorted(coco.get("categories", []), key=lambda c: c["id"])
    if not cats:
        raise ValueError(f"{path} has no categories; a YOLO data.yaml needs at least one class")
    return cats


def yolo_line(cls: int, bbox, width: float, height: float) -> tuple[str | None, str]:
    """One label line for a COCO `bbox` [x, y, w, h] in a `width` x `height` image, and its status.

    Status: "ok", "clipped" (partly outside, written clipped) or "invalid" (line is None).
    """
    x, y, w, h = (float(v) for v in bbox)
    if not all(math.isfinite(v) for v in (x, y, w, h)) or w <= 0 or h <= 0:
        return None, "invalid"
    x1, y1, x2, y2 = max(x, 0.0), max(y, 0.0), min(x + w, width), min(y + h, height)
    if x2 <= x1 or y2 <= y1:
        return None, "invalid"
    status = "clipped" if (x1, y1, x2, y2) != (x, y, x + w, y + h) else "ok"
    cx, cy, bw, bh = (x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height
    return f"{cls} {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f}", status


def _convert_split(out_dir: Path, split: str, json_path, image_root, class_of: dict) -> dict:
    coco = json.loads(Path(json_path).read_text())
    missing = sorted({c["id"] for c in coco.get("categories", [])} ^ set(class_of))
    if missing:
        raise ValueError(f"{json_path}: category ids {missing} differ from the first split's; every split needs the same categories")
    images = {im["id"]: im for im in coco["images"]}
    lines: dict[int, list[str]] = {i: [] for i in images}
    counts = dict.fromkeys(COUNT_KEYS, 0)
    for ann in coco.get("annotations", []):
        if ann["image_id"] not in images:
            raise ValueError(f"{json_path}: annotation {ann.get('id')} refers to image_id {ann['image_id']}, which is not in images")
        if ann.get("iscrowd", 0):
            counts["crowd"] += 1
            continue
        if ann.get("category_id") not in class_of:
            raise ValueError(f"{json_path}: annotation {ann.get('id')} has category_id {ann.get('category_id')!r}, "
                             f"which is not in categories (ids {sorted(class_of)}); fix the annotation or add the category")
        im = images[ann["image_id"]]
        line, status = yolo_line(class_of[ann["category_id"]], ann["bbox"], im["width"], im["height"])
        if line is None:
            counts["invalid"] += 1
            continue
        counts["clipped"] += status == "clipped"
        counts["boxes"] += 1
        lines[im["id"]].append(line)
    for image_id, im in images.items():
        name = Path(im["file_name"])
        if "images" in name.parts or name.is_absolute():
            raise ValueError(f"{json_path}: file_name {im['file_name']!r} must be relative and have no 'images' folder "
                             "(Ultralytics finds labels by replacing the last /images/ of the path)")
        link = out_dir / "images" / split / name
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        os.symlink((Path(image_root) / name).resolve(), link)
        label = out_dir / "labels" / split / name.with_suffix(".txt")
        label.parent.mkdir(parents=True, exist_ok=True)
        label.write_text("".join(f"{line}\n" for line in lines[image_id]))
        counts["images"] += 1
        counts["empty_images"] += not lines[image_id]
    return counts


def coco_to_yolo(out_dir, splits: dict[str, tuple]) -> dict:
    """Write YOLO labels, image symlinks and data.yaml under `out_dir` for `splits` {name: (coco_json, image_root)}.

    Returns {"data": path of data.yaml, "names": [class names in class order], "category_ids": [COCO id of
    each class], split: {counts, see the module docstring}}. Needs "train" and "val" splits.
    """
    for need in ("train", "val"):
        if need not in splits:
            raise ValueError(f"splits needs a {need!r} entry (name -> (coco_json, image_root)); got {sorted(splits)}")
    out_dir = Path(out_dir).resolve()
    first = next(iter(splits.values()))[0]
    cats = _categories(json.loads(Path(first).read_text()), first)
    class_of = {c["id"]: k for k, c in enumerate(cats)}
    summary = {"names": [c["name"] for c in cats], "category_ids": [c["id"] for c in cats]}
    for split, (json_path, image_root) in splits.items():
        summary[split] = _convert_split(out_dir, split, json_path, image_root, class_of)
    data = {"path": str(out_dir), **{s: f"images/{s}" for s in splits},
            "names": {k: c["name"] for k, c in enumerate(cats)}}
    (out_dir / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    summary["data"] = str(out_dir / "data.yaml")
    return summary


def format_summary(summary: dict) -> str:
    """The counts of `coco_to_yolo` as one line per split."""
    rows = [f"{s}: " + ", ".join(f"{k} {v[k]}" for k in COUNT_KEYS) for s, v in summary.items() if isinstance(v, dict)]
    classes = ", ".join(f"{k}={n} (COCO id {i})" for k, (n, i) in enumerate(zip(summary["names"], summary["category_ids"])))
    return "\n".join([f"classes: {classes}", *rows, f"data.yaml: {summary['data']}"])


def main(argv=None) -> int:
    """python -m boxloss.integrations.yolo_data OUT SPLIT=COCO_JSON:IMAGE_ROOT ... (train= and val= required)."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 3 or any("=" not in a or ":" not in a for a in argv[1:]):
        print("usage: python -m boxloss.integrations.yolo_data OUT train=TRAIN.json:IMAGE_ROOT val=VAL.json:IMAGE_ROOT",
              file=sys.stderr)
        return 2
    splits = {}
    for arg in argv[1:]:
        name, spec = arg.split("=", 1)
        json_path, root = spec.rsplit(":", 1)
        splits[name] = (json_path, root)
    print(format_summary(coco_to_yolo(argv[0], splits)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
