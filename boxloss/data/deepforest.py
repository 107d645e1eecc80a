"""A real detection dataset: DeepForest's hand-labelled NEON tree crowns, tiled into COCO format.

Source. The PyPI wheel ``deepforest==2.1.0`` (MIT licence, Weinstein et al.) ships, in
``deepforest/data/``, four real airborne RGB orthophotos from the National Ecological Observatory
Network (NEON, 10 cm/px) with hand-drawn tree-crown boxes in Pascal-VOC XML:

====================================================  ===========  =====  ===================
image                                                 pixels       boxes  labels
====================================================  ===========  =====  ===================
2019_YELL_2_528000_4978000_image_crop2.png (YELL)     2299x2472    574    Tree
2019_YELL_2_541000_4977000_image_crop.png (YELL)      1249x1035    279    Tree
OSBS_029.png (OSBS)                                   400x400      61     Tree
SOAP_061.png (SOAP)                                   400x400      37     Alive / Dead
====================================================  ===========  =====  ===================

Every label becomes the one category ``tree``. The wheel is the only download: registry access
(``pip download``) is enough, no other network. ``fetch_deepforest_wheel`` gets it and checks its
sha256.

Licence and citation. The package, data files included, is distributed under the MIT licence
(Copyright (c) 2019 Ben Weinstein). The imagery is NEON Airborne Observation Platform data. When
publishing results, cite the annotations' authors and NEON:

- Weinstein, Marconi, Bohlman, Zare, White (2019). Individual tree-crown detection in RGB imagery
  using semi-supervised deep learning neural networks. Remote Sensing 11(11), 1309.
- Weinstein et al. (2020). DeepForest: A Python package for RGB deep learning tree crown
  delineation. Methods in Ecology and Evolution 11(12), 1743-1751.
- NEON (National Ecological Observatory Network), high-resolution orthorectified camera imagery,
  https://www.neonscience.org.

What the conversion does, and why.

- Tiling. The two YELL photos are far larger than a detector input, so every photo is cut into a
  NON-overlapping grid: each axis is divided into ``round(size / tile)`` (at least 1) near-equal
  integer parts, so tiles are about ``tile`` px, every pixel lands in exactly one tile, and no
  pixel can be shared by a training and a validation tile (no leakage through overlap).
- Boxes cut by a tile edge. The part of a box inside a tile is clipped to it. If at least
  ``min_visible`` (0.5) of the box's area is inside, the part is an ordinary box. If less is
  inside, the part is written as a COCO crowd region (``"iscrowd": 1``): dropping it would leave a
  visible, unlabelled piece of tree in the tile, and a detector that finds it would be scored as a
  false positive. COCO evaluation treats a crowd region as an ignore region (it absorbs
  detections, it is never a miss) and ``CocoDetection`` never makes it a training target. A box cut
  exactly in half is an ordinary box in both tiles.
- Slivers. A part thinner than ``min_side`` px (width or height) is dropped and counted.
- Empty tiles. Tiles with no ordinary box are dropped (counted, with the crowd regions and slivers
  they held) unless ``keep_empty``, as in the original converter. In the 2.1.0 photos they are
  treeless grass and dead wood (13 tiles of the big YELL photo), i.e. true negatives: keeping them
  is also sound, but changes the tile list and so the split.
- Split. Tiles, sorted by name, are split train/val by a permutation from
  ``numpy.random.RandomState(seed)`` (``round(val_frac * n)`` tiles to val, default 20 %).

Nothing is dropped silently: ``DeepForestSummary`` counts every source box by its fate and every
part by kind. The same inputs and arguments give byte-identical files (with the same OpenCV build).

Output (``CocoDetection(out / "annotations/train.json", out / "images/train")``)::

    out/images/train/*.png, out/images/val/*.png
    out/annotations/train.json, out/annotations/val.json

Tile file names are ``{photo stem}_x{x0:04d}_y{y0:04d}.png``; each image entry also records
``source_image``, ``tile_x0`` and ``tile_y0`` (its offset in the photo).
"""

import contextlib
import hashlib
import json
import os
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .errors import DatasetError

PACKAGE_SPEC = "deepforest==2.1.0"
WHEEL_NAME = "deepforest-2.1.0-py3-none-any.whl"
WHEEL_SHA256 = "8c2798d8e9be7f0004b194fe207b76c1d9fff6e711b3db67b9508dcd5d00ae54"

# (image, Pascal-VOC xml) pairs inside deepforest/data/.
ANNOTATED = (
    ("2019_YELL_2_528000_4978000_image_crop2.png", "2019_YELL_2_528000_4978000_image_crop2.xml"),
    ("2019_YELL_2_541000_4977000_image_crop.png", "2019_YELL_2_541000_4977000_image_crop.xml"),
    ("OSBS_029.png", "OSBS_029.xml"),
    ("SOAP_061.png", "SOAP_061.xml"),
)
CATEGORIES = [{"id": 1, "name": "tree"}]
LICENSES = [
    {
        "id": 1,
        "name": "MIT (DeepForest package; imagery: NEON; cite Weinstein et al. 2019 and NEON)",
        "url": "https://github.com/weecology/DeepForest/blob/main/LICENSE",
    }
]
SPLITS = ("train", "val")
SIZE_NAMES = ("small", "medium", "large")  # COCO area ranges: < 32^2, < 96^2, >= 96^2
_GET_IT = (
    f"Get it with `python -m pip download {PACKAGE_SPEC} --no-deps --only-binary :all: -d DIR` "
    "or `python scripts/fetch_deepforest.py --output-dir DIR`"
)


class DownloadError(RuntimeError):
    """``pip download`` of the DeepForest wheel failed, or the file is not the expected one."""


# ---------------------------------------------------------------------------------------------
# Fetching


def sha256_of(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_wheel(path: Path) -> Path:
    found = sha256_of(path)
    if found != WHEEL_SHA256:
        raise DownloadError(
            f"{path}: sha256 is {found}, expected {WHEEL_SHA256} ({PACKAGE_SPEC}). The file is "
            "corrupt or not the published wheel: delete it and fetch again."
        )
    return path


def fetch_deepforest_wheel(dest_dir, *, timeout: float = 600.0) -> Path:
    """Download the ``deepforest==2.1.0`` wheel into ``dest_dir`` (if not already there); return its path.

    Runs ``sys.executable -m pip download deepforest==2.1.0 --no-deps --only-binary :all: -d
    dest_dir`` (pip's own index settings, e.g. ``PIP_INDEX_URL``, apply) and checks the file's
    sha256 against ``WHEEL_SHA256``. A wheel already in ``dest_dir`` is checked, not fetched again.

    Raises:
        DownloadError: pip is missing or cannot reach the registry (with pip's last output lines),
            or the file's sha256 is wrong.
    """
    dest = Path(dest_dir)
    wheel = dest / WHEEL_NAME
    if wheel.is_file():
        return _check_wheel(wheel)
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable, "-m", "pip", "download", PACKAGE_SPEC, "--no-deps", "--only-binary", ":all:",
        "-d", str(dest), "--disable-pip-version-check",
    ]  # fmt: skip
    manual = (
        f"Or download {WHEEL_NAME} on a machine that can (`pip download {PACKAGE_SPEC} --no-deps "
        "--only-binary :all: -d DIR`) and pass it with --wheel."
    )
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise DownloadError(
            f"`{' '.join(cmd)}` did not finish in {timeout:.0f} s: the package registry is "
            f"unreachable or very slow. Check the network / PIP_INDEX_URL. {manual}"
        ) from None
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-6:])
        if "No module named pip" in proc.stderr:
            why = f"{sys.executable} has no pip. Install it (`{sys.executable} -m ensurepip`)."
        else:
            why = (
                "pip could not get the package: is the package registry reachable (network, proxy, "
                "PIP_INDEX_URL)?"
            )
        raise DownloadError(
            f"`{' '.join(cmd)}` failed (exit {proc.returncode}). {why} {manual}\npip said:\n{tail}"
        )
    if not wheel.is_file():
        raise DownloadError(
            f"pip download finished but {wheel} is not there (pip said: "
            f"{proc.stdout.strip().splitlines()[-1:]}). {manual}"
        )
    return _check_wheel(wheel)


# ---------------------------------------------------------------------------------------------
# Reading the source


class _Source:
    """Files under ``*/deepforest/data/`` of a wheel (zip), an sdist (tar) or a directory."""

    def __init__(self, path):
        self.path = os.fspath(path)
        self.index = {}
        self._zip = self._tar = None
        if not os.path.exists(self.path):
            raise DatasetError(
                f"{self.path}: no such file or directory (the DeepForest wheel?). {_GET_IT}."
            )
        if os.path.isdir(self.path):
            for root, dirs, files in os.walk(self.path):
                dirs.sort()  # the first match wins: make "first" independent of the file system
                if Path(root).parts[-2:] == ("deepforest", "data"):
                    for name in sorted(files):
                        self.index.setdefault(name, os.path.join(root, name))
        elif zipfile.is_zipfile(self.path):
            self._zip = zipfile.ZipFile(self.path)
            for name in self._zip.namelist():
                if "/deepforest/data/" in "/" + name and not name.endswith("/"):
                    self.index.setdefault(name.rsplit("/", 1)[1], name)
        elif tarfile.is_tarfile(self.path):
            self._tar = tarfile.open(self.path)
            for member in self._tar.getmembers():
                if member.isfile() and "/deepforest/data/" in "/" + member.name:
                    self.index.setdefault(member.name.rsplit("/", 1)[1], member)
        else:
            raise DatasetError(
                f"{self.path}: not a wheel (zip), an sdist (tar) or a directory. Pass the "
                f"{WHEEL_NAME} file, its sdist, or a folder holding deepforest/data/. {_GET_IT}."
            )

    def read(self, name: str) -> bytes:
        if name not in self.index:
            raise DatasetError(
                f"{self.path}: {name} not found under deepforest/data/. Is this the {PACKAGE_SPEC} "
                f"wheel, sdist or package folder? {_GET_IT}."
            )
        ref = self.index[name]
        if self._zip is not None:
            return self._zip.read(ref)
        if self._tar is not None:
            return self._tar.extractfile(ref).read()
        with open(ref, "rb") as f:
            return f.read()

    def close(self) -> None:
        for archive in (self._zip, self._tar):
            if archive is not None:
                archive.close()


def read_voc(xml_bytes: bytes, name: str = "<xml>"):
    """Parse a Pascal-VOC file: ``((width, height), boxes float64 [N, 4] xyxy, labels list[str])``."""
    try:
        root = ET.fromstring(xml_bytes)
        size = root.find("size")
        wh = (int(size.find("width").text), int(size.find("height").text))
    except (ET.ParseError, AttributeError, TypeError, ValueError) as e:
        raise DatasetError(
            f"{name}: not a Pascal-VOC file with <size><width>/<height> ({type(e).__name__}: {e}). "
            "Replace it with the file from the wheel."
        ) from None
    boxes, labels = [], []
    for i, obj in enumerate(root.iter("object")):
        try:
            bndbox = obj.find("bndbox")
            boxes.append([float(bndbox.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax")])
            labels.append((obj.findtext("name") or "").strip())
        except (AttributeError, TypeError, ValueError) as e:
            raise DatasetError(
                f"{name}: <object> number {i}: expected <bndbox> with numeric xmin/ymin/xmax/ymax "
                f"({type(e).__name__}: {e}). Fix or remove this object."
            ) from None
    boxes = np.array(boxes, dtype=np.float64).reshape(-1, 4)
    if not np.isfinite(boxes).all():
        i = int(np.flatnonzero(~np.isfinite(boxes).all(1))[0])
        raise DatasetError(f"{name}: <object> number {i} has a non-finite coordinate. Fix or remove it.")
    return wh, boxes, labels


# ---------------------------------------------------------------------------------------------
# Tiling


def tile_edges(size: int, tile: int) -> list[tuple[int, int]]:
    """Split ``[0, size)`` into ``max(1, round(size / tile))`` near-equal, non-overlapping parts."""
    n = max(1, int(round(size / float(tile))))
    edges = np.round(np.linspace(0, size, n + 1)).astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def cut_boxes(boxes: np.ndarray, window, *, min_visible: float = 0.5, min_side: float = 2.0):
    """The parts of ``boxes`` (xyxy, photo pixels) inside ``window = (x0, y0, x1, y1)``.

    Returns ``(parts, crowd, index, slivers)``: ``parts`` float64 ``[K, 4]`` xyxy in the window's
    own pixels (clipped to it), ``crowd`` bool ``[K]`` (less than ``min_visible`` of the box's
    area inside), ``index`` int ``[K]`` into ``boxes``, and ``slivers``: indices of the boxes whose
    part here is thinner than ``min_side`` (dropped). Boxes not touching the window appear nowhere.
    """
    x0, y0, x1, y1 = window
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    ix0, iy0 = np.maximum(boxes[:, 0], x0), np.maximum(boxes[:, 1], y0)
    ix1, iy1 = np.minimum(boxes[:, 2], x1), np.minimum(boxes[:, 3], y1)
    iw, ih = ix1 - ix0, iy1 - iy0
    touches = (iw > 0) & (ih > 0)
    thick = (iw >= min_side) & (ih >= min_side)
    keep = touches & thick
    index = np.flatnonzero(keep)
    parts = np.stack([ix0, iy0, ix1, iy1], 1)[keep] - np.array([x0, y0, x0, y0], dtype=np.float64)
    crowd = (iw * ih)[keep] < min_visible * areas[keep]
    return parts.reshape(-1, 4), crowd, index, np.flatnonzero(touches & ~thick)


def _size_name(area: float) -> str:
    return "small" if area < 32**2 else ("medium" if area < 96**2 else "large")


# ---------------------------------------------------------------------------------------------
# The summary


def _split_counts() -> dict:
    return {"images": 0, "boxes": 0, "crowd": 0, **{s: 0 for s in SIZE_NAMES}, "slivers_dropped": 0}


@dataclass
class DeepForestSummary:
    """What ``convert_deepforest`` wrote and dropped. ``format()`` gives the text report.

    A *part* is the piece of one source box inside one tile: an ordinary box, a crowd region, or a
    sliver (dropped). Per split (``splits["train"]``, ``splits["val"]``): ``images``, ``boxes``,
    ``crowd``, ``small``/``medium``/``large`` (ordinary boxes by COCO area) and
    ``slivers_dropped``. Every source box is counted once by its fate: ``degenerate`` (zero size
    after clipping to its photo: dropped), ``as_box`` (an ordinary box in at least one written
    tile), ``crowd_only`` (only crowd regions), ``lost`` (nothing written: only slivers, or only in
    dropped empty tiles).
    """

    source: str
    tile: int
    min_visible: float
    min_side: float
    source_images: int = 0
    source_objects: int = 0  # <object> entries in the xml files
    labels: dict = field(default_factory=dict)  # source label -> count (all written as "tree")
    clipped_to_photo: int = 0  # source boxes reaching outside their photo, clipped to it
    degenerate: int = 0
    as_box: int = 0
    crowd_only: int = 0
    lost: int = 0
    grid_tiles: int = 0  # tiles in the grid, before empty ones are dropped
    empty_tiles: dict = field(default_factory=lambda: {"dropped": 0, "crowd": 0, "slivers": 0})
    splits: dict = field(default_factory=lambda: {s: _split_counts() for s in SPLITS})
    paths: dict = field(default_factory=dict)  # train_ann, train_images, val_ann, val_images

    @property
    def dropped(self) -> dict:
        """Everything not written, by reason."""
        slivers = sum(s["slivers_dropped"] for s in self.splits.values()) + self.empty_tiles["slivers"]
        return {
            "degenerate source boxes": self.degenerate,
            f"slivers thinner than {self.min_side:g} px": slivers,
            "crowd regions in dropped empty tiles": self.empty_tiles["crowd"],
        }

    def cli_flags(self) -> str:
        """The dataset flags of ``scripts/train_det.py`` / ``scripts/compare_losses.py``."""
        p = self.paths
        return (
            f"--train-ann {p['train_ann']} --train-images {p['train_images']} "
            f"--val-ann {p['val_ann']} --val-images {p['val_images']}"
        )

    def format(self) -> str:
        labels = ", ".join(f"{k} {v}" for k, v in sorted(self.labels.items()))
        kept = sum(s["images"] for s in self.splits.values())
        lines = [
            f"source: {self.source}",
            f"  {self.source_images} photos, {self.source_objects} boxes (labels: {labels}; "
            f"all -> 'tree'), {self.clipped_to_photo} clipped to their photo, "
            f"{self.degenerate} degenerate (dropped)",
            f"tiles: grid of ~{self.tile} px -> {self.grid_tiles} tiles, {self.empty_tiles['dropped']} "
            f"without boxes dropped, {kept} written",
            f"  parts of boxes: ordinary box if >= {self.min_visible:g} of the box is inside the tile, "
            f"else crowd region (ignored by evaluation); parts under {self.min_side:g} px dropped",
        ]
        for split, s in self.splits.items():
            lines.append(
                f"{split + ':':<6} {s['images']:>4} images, {s['boxes']:>5} boxes "
                f"(small {s['small']}, medium {s['medium']}, large {s['large']}), "
                f"{s['crowd']:>4} crowd regions, {s['slivers_dropped']} slivers dropped"
            )
        lines.append(
            f"source boxes: {self.as_box} written as boxes, {self.crowd_only} only as crowd regions, "
            f"{self.lost} not written at all, {self.degenerate} degenerate"
        )
        lines.append("dropped: " + ", ".join(f"{k} {v}" for k, v in self.dropped.items()))
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Conversion


def _load_photo(src: _Source, img_name: str, xml_name: str):
    (w, h), boxes, labels = read_voc(src.read(xml_name), f"{src.path}: {xml_name}")
    image = cv2.imdecode(np.frombuffer(src.read(img_name), np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise DatasetError(
            f"{src.path}: {img_name}: OpenCV cannot decode this image (corrupt or not an image). "
            "Fetch the wheel again."
        )
    if image.shape[:2] != (h, w):
        raise DatasetError(
            f"{src.path}: {xml_name} says the photo is {w}x{h} (width x height) but {img_name} is "
            f"{image.shape[1]}x{image.shape[0]}: the boxes would land in the wrong place. Pair each "
            "image with its own xml (the `annotated` list)."
        )
    return image, boxes, labels


def _tiles_of_photo(image, boxes, stem, args, summary):
    """Cut one photo; returns its kept tiles and updates the source-level counts."""
    h, w = image.shape[:2]
    clipped = boxes.copy()
    clipped[:, [0, 2]] = clipped[:, [0, 2]].clip(0, w)
    clipped[:, [1, 3]] = clipped[:, [1, 3]].clip(0, h)
    summary.clipped_to_photo += int((clipped != boxes).any(1).sum())
    valid = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    summary.degenerate += int((~valid).sum())
    boxes = clipped[valid]

    fate = np.zeros(len(boxes), np.int8)  # 0 nothing written, 1 crowd somewhere, 2 box somewhere
    tiles = []
    for ty0, ty1 in tile_edges(h, args["tile"]):
        for tx0, tx1 in tile_edges(w, args["tile"]):
            summary.grid_tiles += 1
            parts, crowd, index, slivers = cut_boxes(
                boxes, (tx0, ty0, tx1, ty1), min_visible=args["min_visible"], min_side=args["min_side"]
            )
            if crowd.all() and not args["keep_empty"]:
                summary.empty_tiles["dropped"] += 1
                summary.empty_tiles["crowd"] += len(parts)
                summary.empty_tiles["slivers"] += len(slivers)
                continue
            np.maximum.at(fate, index, np.where(crowd, 1, 2).astype(np.int8))
            tiles.append(
                {
                    "name": f"{stem}_x{tx0:04d}_y{ty0:04d}.png",
                    "window": (tx0, ty0, tx1, ty1),
                    "parts": parts,
                    "crowd": crowd,
                    "slivers": len(slivers),
                }
            )
    summary.as_box += int((fate == 2).sum())
    summary.crowd_only += int((fate == 1).sum())
    summary.lost += int((fate == 0).sum())
    return tiles


def _check_output_dir(out_dir: Path, split_names: dict) -> None:
    """Refuse to mix with files from an earlier conversion that this one would not overwrite."""
    for split, names in split_names.items():
        folder = out_dir / "images" / split
        if folder.is_dir():
            extra = sorted(p.name for p in folder.iterdir() if p.name not in names)
            if extra:
                raise DatasetError(
                    f"{folder}: holds {len(extra)} file(s) this conversion would not write (e.g. "
                    f"{extra[0]}), probably from one with other settings. Delete {out_dir / 'images'} "
                    f"and {out_dir / 'annotations'}, or choose an empty output folder."
                )


def _coco(tiles: list) -> tuple[dict, dict]:
    images, annotations, counts = [], [], _split_counts()
    for t in tiles:
        x0, y0, x1, y1 = t["window"]
        image_id = len(images) + 1
        images.append(
            {
                "id": image_id,
                "file_name": t["name"],
                "width": x1 - x0,
                "height": y1 - y0,
                "license": 1,
                "source_image": t["source"],
                "tile_x0": x0,
                "tile_y0": y0,
            }
        )
        for (bx0, by0, bx1, by1), crowd in zip(t["parts"].tolist(), t["crowd"].tolist()):
            bw, bh = bx1 - bx0, by1 - by0
            area = bw * bh
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": 1,
                    "bbox": [round(bx0, 2), round(by0, 2), round(bw, 2), round(bh, 2)],
                    "area": round(area, 2),
                    "iscrowd": int(crowd),
                }
            )
            counts["crowd" if crowd else "boxes"] += 1
            if not crowd:
                counts[_size_name(area)] += 1
        counts["slivers_dropped"] += t["slivers"]
    counts["images"] = len(images)
    coco = {
        "info": {},
        "licenses": LICENSES,
        "images": images,
        "annotations": annotations,
        "categories": CATEGORIES,
    }
    return coco, counts


def convert_deepforest(
    source,
    out_dir,
    *,
    tile: int = 256,
    min_visible: float = 0.5,
    min_side: float = 2.0,
    val_frac: float = 0.2,
    seed: int = 0,
    keep_empty: bool = False,
    annotated=None,
) -> DeepForestSummary:
    """Tile DeepForest's annotated photos into a COCO train/val dataset under ``out_dir``.

    Args:
        source: the ``deepforest`` wheel (``fetch_deepforest_wheel``), its sdist, or a folder that
            holds ``deepforest/data/`` (an extracted wheel, an installed package).
        out_dir: gets ``images/{train,val}/*.png`` and ``annotations/{train,val}.json``. Files of an
            identical earlier run are overwritten; other files there are an error.
        tile: target tile side in pixels (each axis is cut into ``round(size / tile)`` parts).
        min_visible: a box part with at least this fraction of the box's area is an ordinary box,
            a smaller one a crowd region (ignored in evaluation, never a training target).
        min_side: box parts thinner than this (pixels) are dropped as slivers.
        val_frac: fraction of the kept tiles that go to val (rounded).
        seed: seed of the train/val permutation.
        keep_empty: also write tiles without an ordinary box.
        annotated: ``(image file, VOC xml file)`` names inside ``deepforest/data/``; None means
            the module's ``ANNOTATED`` (the four photos of the 2.1.0 wheel).

    Returns:
        ``DeepForestSummary`` (``.format()`` for text, ``.cli_flags()`` for the training scripts).

    Raises:
        DatasetError: missing or unreadable source, a file missing from it, a bad XML, an XML
            whose size disagrees with its image, or an output folder holding other files.
        ValueError: an argument out of range.
    """
    if not (int(tile) == tile and tile >= 8):
        raise ValueError(f"tile must be an integer >= 8 pixels, got {tile!r}")
    if not 0.0 < min_visible <= 1.0:
        raise ValueError(f"min_visible must be in (0, 1], got {min_visible}")
    if not min_side >= 0.0:
        raise ValueError(f"min_side must be >= 0 pixels, got {min_side}")
    if not 0.0 <= val_frac < 1.0:
        raise ValueError(f"val_frac must be in [0, 1), got {val_frac}")
    out_dir = Path(out_dir)
    args = {"tile": int(tile), "min_visible": min_visible, "min_side": min_side, "keep_empty": keep_empty}
    summary = DeepForestSummary(os.fspath(source), int(tile), float(min_visible), float(min_side))

    tiles, crops = [], {}
    with contextlib.closing(_Source(source)) as src:
        for img_name, xml_name in ANNOTATED if annotated is None else annotated:
            image, boxes, labels = _load_photo(src, img_name, xml_name)
            summary.source_images += 1
            summary.source_objects += len(boxes)
            for label in labels:
                summary.labels[label] = summary.labels.get(label, 0) + 1
            for t in _tiles_of_photo(image, boxes, os.path.splitext(img_name)[0], args, summary):
                t["source"] = img_name
                tiles.append(t)
                x0, y0, x1, y1 = t["window"]
                crops[t["name"]] = image[y0:y1, x0:x1]
    names = [t["name"] for t in tiles]
    if len(set(names)) != len(names):
        raise DatasetError(f"{summary.source}: two annotated images give the same tile names; rename one.")

    tiles.sort(key=lambda t: t["name"])
    perm = np.random.RandomState(seed).permutation(len(tiles))
    val = set(perm[: int(round(val_frac * len(tiles)))].tolist())
    by_split = {
        "train": [t for i, t in enumerate(tiles) if i not in val],
        "val": [t for i, t in enumerate(tiles) if i in val],
    }
    _check_output_dir(out_dir, {s: {t["name"] for t in ts} for s, ts in by_split.items()})

    (out_dir / "annotations").mkdir(parents=True, exist_ok=True)
    for split, split_tiles in by_split.items():
        image_dir = out_dir / "images" / split
        image_dir.mkdir(parents=True, exist_ok=True)
        for t in split_tiles:
            ok, buf = cv2.imencode(".png", crops[t["name"]])
            if not ok:
                raise RuntimeError(f"OpenCV could not encode tile {t['name']}")
            (image_dir / t["name"]).write_bytes(buf.tobytes())
        coco, counts = _coco(split_tiles)
        ann = out_dir / "annotations" / f"{split}.json"
        ann.write_text(json.dumps(coco, separators=(",", ":")))
        summary.splits[split] = counts
        summary.paths[f"{split}_ann"] = str(ann)
        summary.paths[f"{split}_images"] = str(image_dir)
    return summary
