"""The built-in synthetic detection dataset: coloured shapes on cluttered, noisy backgrounds.

Made for comparing box losses where no real data is at hand. What makes it useful for that:

- five classes (``SHAPE_NAMES``) with aspect ratios from 1:4 to 4:1 (what CIoU's extra term targets);
- object sizes from ~10 px to 60 % of the image side, log-uniform, so COCO's small (< 32^2 px),
  medium and large (> 96^2 px) ranges are all populated at the default size of 320;
- several objects per image that overlap and occlude each other; every ground-truth box is the
  box of the object's *visible* pixels (taken from a per-object label map), and objects left
  nearly invisible are dropped and counted;
- textured, noisy backgrounds with thin clutter lines, random colours, mild blur and sensor noise,
  so that box quality, not just detection, decides AP@[.5:.95].

Images are JPEG (fixed quality) under ``out_dir/images/{train,val}/``; ``train.json`` and
``val.json`` are standard COCO files (with ``info``, ``licenses``, ``area``, ``iscrowd``). Image
sides are ``size`` or ``3/4 * size``, so letterboxing is exercised. Every image is drawn from its
own random generator seeded by ``(seed, split, index)``: the same arguments give byte-identical
files (with the same OpenCV build), in any order and with any number of worker processes.
"""

import json
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from .synthetic_shapes import SHAPE_NAMES, shape_mask

JPEG_QUALITY = 92
MIN_VISIBLE_FRACTION = 0.3  # of an object's in-image pixels; below it the object is dropped
MIN_VISIBLE_PIXELS = 12
_SPLITS = {"train": 0, "val": 1}


def _noise_bank(size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Fine Gaussian sensor noise (sigma 5) drawn once; each image takes a random window of it.

    Kept as its positive and negative parts (uint8) so that adding it saturates in OpenCV.
    """
    rng = np.random.default_rng([seed, 1_000_003])
    noise = np.round(rng.normal(0.0, 5.0, (2 * size, 2 * size, 3)))
    return np.clip(noise, 0, 255).astype(np.uint8), np.clip(-noise, 0, 255).astype(np.uint8)


def _background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Smooth colour field + blotchy mid-frequency texture + thin clutter lines (uint8 RGB)."""
    field = rng.integers(0, 256, (3, 3, 3), dtype=np.uint8)
    img = cv2.resize(field, (w, h), interpolation=cv2.INTER_LINEAR).astype(np.int16)
    cell = int(rng.choice([4, 8, 16]))
    blotch = rng.integers(-40, 41, (h // cell + 1, w // cell + 1, 3)).astype(np.float32)
    img += cv2.resize(blotch, (w, h), interpolation=cv2.INTER_LINEAR).astype(np.int16)
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(0, 8))):
        p0 = tuple(int(v) for v in rng.integers(0, (w, h)))
        p1 = tuple(int(v) for v in rng.integers(0, (w, h)))
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        cv2.line(img, p0, p1, color, int(rng.integers(1, 3)), cv2.LINE_AA)
    return img


def _object_color(rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    """A random colour in [36, 219] that differs from the local background mean by >= 80 (L1)."""
    bg = np.array(cv2.mean(background)[:3], np.float32)
    for _ in range(8):
        color = rng.integers(36, 220, 3).astype(np.float32)
        if np.abs(color - bg).sum() >= 80:
            return color
    return np.where(bg > 127, 36.0, 219.0).astype(np.float32)


def _texture(rng: np.random.Generator, color: np.ndarray, w: int, h: int) -> np.ndarray:
    """The object's fill: its colour with a linear shading ramp (at most +-35) in a random direction."""
    angle, amp = rng.uniform(0, 2 * np.pi), rng.uniform(10, 35)
    ramp_x = np.float32(amp * np.cos(angle) / max(w - 1, 1)) * (2 * np.arange(w, dtype=np.float32) - (w - 1))
    ramp_y = np.float32(amp * np.sin(angle) / max(h - 1, 1)) * (2 * np.arange(h, dtype=np.float32) - (h - 1))
    shade = (ramp_x[None, :] + ramp_y[:, None]) * np.float32(np.sqrt(0.5))
    return (color + shade[:, :, None]).astype(np.uint8)  # stays in [0, 255]: colour in [36, 219]


def _place(rng, w, h, placed):
    """Object size, aspect ratio and position; 40 % of objects are put next to an earlier one."""
    lo, hi = 10.0, max(20.0, 0.6 * min(w, h))
    side = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))  # sqrt of the box area
    aspect = float(np.exp(rng.uniform(np.log(0.25), np.log(4.0))))  # width / height
    bw = int(np.clip(round(side * np.sqrt(aspect)), 3, 0.9 * w))
    bh = int(np.clip(round(side / np.sqrt(aspect)), 3, 0.9 * h))
    if placed and rng.random() < 0.4:
        px, py, pw, ph = placed[int(rng.integers(len(placed)))]
        cx = px + pw / 2 + rng.uniform(-0.6, 0.6) * (pw + bw) / 2
        cy = py + ph / 2 + rng.uniform(-0.6, 0.6) * (ph + bh) / 2
    else:
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
    x0 = int(np.clip(round(cx - bw / 2), -bw // 2, w - 1 - bw // 2))
    y0 = int(np.clip(round(cy - bh / 2), -bh // 2, h - 1 - bh // 2))
    return x0, y0, bw, bh


def visible_objects(owner: np.ndarray, drawn: list):
    """Ground truth from the label map: the box of each object's visible pixels.

    Args:
        owner: ``[H, W]`` map of the object on top at each pixel (1-based, 0 = background).
        drawn: per object, in drawing order, ``(class_index, (x0, y0, x1, y1), pixels)``: the
            in-image patch it was drawn into and how many of its pixels landed in the image.

    Returns ``(objects, dropped)``: ``(class_index, [x, y, w, h], visible_pixels)`` for each object
    that kept at least ``MIN_VISIBLE_FRACTION`` of its pixels (and ``MIN_VISIBLE_PIXELS``, 2 px per
    side), and the number of objects dropped as nearly hidden.
    """
    objects, dropped = [], 0
    for obj, (kind, (ix0, iy0, ix1, iy1), pixels) in enumerate(drawn, start=1):
        visible = owner[iy0:iy1, ix0:ix1] == obj
        count = int(visible.sum())
        cols, rows = np.flatnonzero(visible.any(axis=0)), np.flatnonzero(visible.any(axis=1))
        if count < max(MIN_VISIBLE_PIXELS, MIN_VISIBLE_FRACTION * pixels) or len(cols) < 2 or len(rows) < 2:
            dropped += 1
            continue
        x, y = ix0 + int(cols[0]), iy0 + int(rows[0])
        box = [float(x), float(y), float(ix0 + cols[-1] + 1 - x), float(iy0 + rows[-1] + 1 - y)]
        objects.append((kind, box, count))
    return objects, dropped


def render_image(rng: np.random.Generator, w: int, h: int, noise: tuple[np.ndarray, np.ndarray]):
    """Draw one image; returns (RGB uint8 image, objects, number of objects dropped as hidden).

    Each object is ``(class_index, [x, y, width, height] of its visible pixels, visible pixels)``.
    """
    img = _background(rng, w, h)
    owner = np.zeros((h, w), np.int16)  # which object (1-based) is on top at each pixel
    drawn, placed = [], []
    for obj in range(1, int(rng.integers(2, 9)) + 1):
        kind = int(rng.integers(len(SHAPE_NAMES)))
        x0, y0, bw, bh = _place(rng, w, h, placed)
        mask = shape_mask(kind, bw, bh, rng)
        # The part of the patch inside the image.
        ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x0 + bw, w), min(y0 + bh, h)
        m = mask[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0].astype(bool)
        region = img[iy0:iy1, ix0:ix1]
        fill = _texture(rng, _object_color(rng, region), bw, bh)[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0]
        region[m] = fill[m]
        owner[iy0:iy1, ix0:ix1][m] = obj
        drawn.append((kind, (ix0, iy0, ix1, iy1), int(m.sum())))
        placed.append((x0, y0, bw, bh))

    objects, dropped = visible_objects(owner, drawn)
    img = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.4, 1.0)))
    plus, minus = noise
    ox, oy = int(rng.integers(0, plus.shape[1] - w + 1)), int(rng.integers(0, plus.shape[0] - h + 1))
    img = cv2.subtract(cv2.add(img, plus[oy : oy + h, ox : ox + w]), minus[oy : oy + h, ox : ox + w])
    return img, objects, dropped


def _image_size(rng: np.random.Generator, size: int) -> tuple[int, int]:
    """(width, height): square, landscape 4:3 or portrait 3:4, longer side ``size``."""
    short = int(round(size * 0.75))
    return [(size, size), (size, short), (short, size)][int(rng.integers(3))]


def _make_one(job):
    """Render and write image ``index`` of ``split``; returns its (width, height, objects, dropped)."""
    out_dir, split, index, size, seed = job
    rng = np.random.default_rng([seed, _SPLITS[split], index])
    w, h = _image_size(rng, size)
    img, objects, dropped = render_image(rng, w, h, _noise_bank_cached(size, seed))
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    )
    if not ok:
        raise RuntimeError(f"OpenCV could not encode synthetic image {split}/{index}")
    Path(out_dir, "images", split, f"{index:06d}.jpg").write_bytes(buf.tobytes())
    return w, h, objects, dropped


_BANKS: dict = {}


def _noise_bank_cached(size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if (size, seed) not in _BANKS:
        _BANKS.clear()
        _BANKS[(size, seed)] = _noise_bank(size, seed)
    return _BANKS[(size, seed)]


def _coco_json(split: str, results, size: int, seed: int) -> dict:
    images, annotations = [], []
    for index, (w, h, objects, _) in enumerate(results):
        image_id = index + 1
        images.append(
            {"id": image_id, "file_name": f"{split}/{index:06d}.jpg", "width": w, "height": h, "license": 1}
        )
        for kind, box, pixels in objects:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": kind + 1,
                    "bbox": box,
                    "area": float(pixels),  # visible pixels, like COCO's mask area
                    "iscrowd": 0,
                }
            )
    return {
        "info": {
            "description": f"boxloss synthetic shapes, {split} split",
            "version": "1.0",
            "contributor": "boxloss.data.make_synthetic_dataset",
            "generator": {"size": size, "seed": seed, "jpeg_quality": JPEG_QUALITY},
        },
        "licenses": [
            {"id": 1, "name": "CC0 1.0", "url": "https://creativecommons.org/publicdomain/zero/1.0/"}
        ],
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i + 1, "name": n, "supercategory": "shape"} for i, n in enumerate(SHAPE_NAMES)],
    }


def make_synthetic_dataset(
    out_dir, n_train: int, n_val: int, size: int = 320, seed: int = 0, *, workers: int = 0
) -> dict:
    """Write the synthetic dataset to ``out_dir`` and return a summary.

    Args:
        out_dir: folder to create; gets ``images/train``, ``images/val``, ``train.json``, ``val.json``.
            Use ``CocoDetection(out_dir / "train.json", out_dir / "images")``.
        n_train, n_val: number of images per split.
        size: longer image side in pixels (>= 32).
        seed: the same ``(n_train, n_val, size, seed)`` gives byte-identical output.
        workers: processes to draw with (0 = this process); does not change the output.

    Returns:
        ``{"train": path, "val": path, "images": int, "objects": int, "dropped_hidden": int}``, where
        ``dropped_hidden`` counts objects drawn but left nearly invisible by occlusion (not annotated).
    """
    if size < 32:
        raise ValueError(f"size must be at least 32 pixels, got {size}")
    if n_train < 0 or n_val < 0:
        raise ValueError(f"image counts must be >= 0, got n_train={n_train}, n_val={n_val}")
    out_dir = Path(out_dir)
    summary = {"images": 0, "objects": 0, "dropped_hidden": 0}
    for split, n in (("train", n_train), ("val", n_val)):
        (out_dir / "images" / split).mkdir(parents=True, exist_ok=True)
        jobs = [(str(out_dir), split, i, size, seed) for i in range(n)]
        if workers > 0 and n > 1:
            with ProcessPoolExecutor(workers) as pool:
                results = list(pool.map(_make_one, jobs, chunksize=16))
        else:
            results = [_make_one(job) for job in jobs]
        path = out_dir / f"{split}.json"
        path.write_text(json.dumps(_coco_json(split, results, size, seed), separators=(",", ":")))
        summary[split] = str(path)
        summary["images"] += n
        summary["objects"] += sum(len(r[2]) for r in results)
        summary["dropped_hidden"] += sum(r[3] for r in results)
    return summary

