"""The DeepForest converter (boxloss.data.deepforest) on a hand-made source with hand-worked tiles.

No network, no 20 MB wheel: the source is a tiny ``deepforest/data/`` folder written here. One test
converts the real wheel when ``BOXLOSS_DEEPFOREST_WHEEL`` points to it (skipped otherwise).
"""

import contextlib
import importlib.util
import io
import json
import os
import subprocess
import tarfile
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from boxloss.data import (
    CocoDetection,
    DatasetError,
    DownloadError,
    check_coco_annotations,
    convert_deepforest,
    fetch_deepforest_wheel,
)
from boxloss.data import deepforest as df

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "fetch_deepforest.py"
ANNOTATED = (("a.png", "a.xml"), ("b.png", "b.xml"), ("c.png", "c.xml"))
TILE = 100

# Photo -> (width, height, [(label, xmin, ymin, xmax, ymax)]), with tile=100:
#   a: 200x200 -> 2x2 tiles of 100; b: 200x100 -> 2x1; c: 120x120 -> round(1.2) = 1 tile.
PHOTOS = {
    "a": (200, 200, [
        ("Tree", 10, 10, 40, 50),     # A: inside tile (0, 0)
        ("Tree", 72, 20, 112, 60),    # B: cut 70/30 by x=100: box left (28 of 40 px), crowd right
        ("Tree", 90, 70, 110, 90),    # C: cut 50/50: an ordinary box on both sides
        ("Tree", 99, 5, 130, 15),     # D: 1 px left of x=100 (sliver, dropped), 30/31 right (box)
        ("Tree", 99, 80, 101, 95),    # H: 1 px on each side: two slivers, the box is lost
        ("Tree", 50, 50, 50, 60),     # E: zero width: degenerate
        ("Tree", 190, -5, 210, 30),   # F: outside the photo: clipped to 190,0,200,30
        ("Dead", 80, 80, 120, 120),   # X: 25 % in each of 4 tiles: crowd in all, never a box
        ("Tree", 10, 150, 50, 190),   # I: inside tile (0, 100)
    ]),
    "b": (200, 100, [
        ("Tree", 20, 20, 60, 60),     # G: inside tile (0, 0)
        ("Tree", 70, 40, 105, 80),    # K: 30/35 left (box); 5/35 right (crowd, in a tile with no box)
    ]),
    "c": (120, 120, [("Alive", 10, 10, 110, 110)]),  # L: 100x100, COCO "large"
}  # fmt: skip

# Hand-worked result: tile file -> [(bbox xywh in the tile, iscrowd)] in source order.
# Tiles (100, 100) of a and (100, 0) of b hold only crowd regions: dropped as empty.
EXPECTED_TILES = {
    "a_x0000_y0000.png": [([10, 10, 30, 40], 0), ([72, 20, 28, 40], 0), ([90, 70, 10, 20], 0),
                          ([80, 80, 20, 20], 1)],
    "a_x0100_y0000.png": [([0, 20, 12, 40], 1), ([0, 70, 10, 20], 0), ([0, 5, 30, 10], 0),
                          ([90, 0, 10, 30], 0), ([0, 80, 20, 20], 1)],
    "a_x0000_y0100.png": [([80, 0, 20, 20], 1), ([10, 50, 40, 40], 0)],
    "b_x0000_y0000.png": [([20, 20, 40, 40], 0), ([70, 40, 30, 40], 0)],
    "c_x0000_y0000.png": [([10, 10, 100, 100], 0)],
}  # fmt: skip
SLIVERS = {"a_x0000_y0000.png": 2, "a_x0100_y0000.png": 1}  # D and H left of x=100; H right of it
VAL_TILE = "a_x0100_y0000.png"  # numpy.random.RandomState(0).permutation(5)[0] == 2 (a frozen stream)


def _voc(width, height, objects) -> str:
    objs = "".join(
        f"<object><name>{label}</name><difficult>0</difficult><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin>"
        f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
        for label, x0, y0, x1, y1 in objects
    )
    size = f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>"
    return f"<annotation>{size}{objs}</annotation>"


def _photo(width, height, seed) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.fixture
def source(tmp_path) -> Path:
    """``tmp_path/src/deepforest/data/`` with the photos and VOC files of ``PHOTOS``."""
    data = tmp_path / "src" / "deepforest" / "data"
    data.mkdir(parents=True)
    for seed, (stem, (w, h, objects)) in enumerate(PHOTOS.items()):
        cv2.imwrite(str(data / f"{stem}.png"), _photo(w, h, seed))
        (data / f"{stem}.xml").write_text(_voc(w, h, objects))
    (data / "unrelated.csv").write_text("not used\n")
    return tmp_path / "src"


def _convert(src, out, **kw):
    kw.setdefault("tile", TILE)
    return convert_deepforest(src, out, annotated=ANNOTATED, **kw)


def _files(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _by_tile(out: Path) -> dict:
    """tile file -> (split, image entry, [(bbox, iscrowd)]) over both splits."""
    result = {}
    for split in ("train", "val"):
        data = json.loads((out / "annotations" / f"{split}.json").read_text())
        for img in data["images"]:
            anns = [(a["bbox"], a["iscrowd"]) for a in data["annotations"] if a["image_id"] == img["id"]]
            result[img["file_name"]] = (split, img, anns)
    return result


def test_tiles_boxes_and_crowd_regions_are_as_worked_by_hand(source, tmp_path):
    out = tmp_path / "out"
    _convert(source, out)
    tiles = _by_tile(out)
    assert {name: anns for name, (_, _, anns) in tiles.items()} == EXPECTED_TILES
    assert sorted((out / "images" / "train").iterdir()) == sorted(
        out / "images" / "train" / n for n in EXPECTED_TILES if n != VAL_TILE
    )
    assert [p.name for p in (out / "images" / "val").iterdir()] == [VAL_TILE]
    for name, (split, img, _) in tiles.items():
        assert split == ("val" if name == VAL_TILE else "train")
        stem, x0, y0 = name[0], img["tile_x0"], img["tile_y0"]
        w, h, _ = PHOTOS[stem]
        assert img["source_image"] == f"{stem}.png"
        assert (img["width"], img["height"]) == ((120, 120) if stem == "c" else (100, 100))
        pixels = cv2.imread(str(out / "images" / split / name))  # channel order as written
        photo = _photo(w, h, "abc".index(stem))[y0 : y0 + img["height"], x0 : x0 + img["width"]]
        assert np.array_equal(pixels, photo)  # lossless crop of the photo

    for split in ("train", "val"):
        data = json.loads((out / "annotations" / f"{split}.json").read_text())
        assert data["info"] == {} and data["categories"] == [{"id": 1, "name": "tree"}]
        assert data["licenses"][0]["id"] == 1 and "MIT" in data["licenses"][0]["name"]
        assert [a["id"] for a in data["annotations"]] == list(range(1, len(data["annotations"]) + 1))
        for a in data["annotations"]:
            assert a["category_id"] == 1 and a["area"] == a["bbox"][2] * a["bbox"][3]


def test_summary_counts_every_box_and_part(source, tmp_path):
    s = _convert(source, tmp_path / "out")
    assert (s.source_images, s.source_objects) == (3, 12)
    assert s.labels == {"Tree": 10, "Dead": 1, "Alive": 1}
    assert (s.clipped_to_photo, s.degenerate) == (1, 1)  # F; E
    assert (s.as_box, s.crowd_only, s.lost) == (9, 1, 1)  # X only crowd; H only slivers
    assert s.as_box + s.crowd_only + s.lost + s.degenerate == s.source_objects
    assert s.grid_tiles == 7
    assert s.empty_tiles == {"dropped": 2, "crowd": 2, "slivers": 0}
    # val is tile (100, 0) of a: C, D, F small (200, 300, 300 px^2); crowd B, X; sliver H.
    assert s.splits["val"] == {
        "images": 1, "boxes": 3, "crowd": 2, "small": 3, "medium": 0, "large": 0, "slivers_dropped": 1
    }  # fmt: skip
    # train: C small; A 1200, B 1120, I 1600, G 1600, K 1200 medium; L large; crowd X, X; slivers D, H.
    assert s.splits["train"] == {
        "images": 4, "boxes": 7, "crowd": 2, "small": 1, "medium": 5, "large": 1, "slivers_dropped": 2
    }  # fmt: skip
    assert s.dropped == {
        "degenerate source boxes": 1,
        "slivers thinner than 2 px": 3,
        "crowd regions in dropped empty tiles": 2,
    }
    text = s.format()
    line = "train:    4 images,     7 boxes (small 1, medium 5, large 1),    2 crowd regions, 2 slivers"
    assert line in text
    assert "source boxes: 9 written as boxes, 1 only as crowd regions, 1 not written at all" in text
    out = tmp_path / "out"
    assert s.cli_flags() == (
        f"--train-ann {out / 'annotations' / 'train.json'} --train-images {out / 'images' / 'train'} "
        f"--val-ann {out / 'annotations' / 'val.json'} --val-images {out / 'images' / 'val'}"
    )


def test_keep_empty_writes_the_crowd_only_tiles(source, tmp_path):
    s = _convert(source, tmp_path / "out", keep_empty=True)
    tiles = _by_tile(tmp_path / "out")
    assert len(tiles) == 7 and s.empty_tiles["dropped"] == 0
    assert tiles["a_x0100_y0100.png"][2] == [([0, 0, 20, 20], 1)]
    assert tiles["b_x0100_y0000.png"][2] == [([0, 40, 5, 40], 1)]
    assert s.crowd_only == 1 and s.lost == 1


def test_min_visible_and_min_side_move_parts_between_kinds(source, tmp_path):
    s = _convert(source, tmp_path / "hi", min_visible=0.75)  # B (70 %) and C (50 %) become crowd
    tiles = _by_tile(tmp_path / "hi")
    assert tiles["a_x0000_y0000.png"][2][1:3] == [([72, 20, 28, 40], 1), ([90, 70, 10, 20], 1)]
    assert s.crowd_only == 3  # B, C, X
    s = _convert(source, tmp_path / "thin", min_side=1)  # the 1-px parts of D and H are kept
    assert s.dropped["slivers thinner than 1 px"] == 0 and s.lost == 0
    assert ([99, 5, 1, 10], 1) in _by_tile(tmp_path / "thin")["a_x0000_y0000.png"][2]


def test_same_inputs_give_identical_bytes_from_dir_wheel_and_sdist(source, tmp_path):
    _convert(source, tmp_path / "a")
    _convert(source, tmp_path / "b")
    reference = _files(tmp_path / "a")
    assert len(reference) == 5 + 2 and reference == _files(tmp_path / "b")
    _convert(source, tmp_path / "a")  # rerun into the same folder: overwrites with the same bytes
    assert _files(tmp_path / "a") == reference

    wheel = tmp_path / "deepforest-0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for p in sorted((source / "deepforest" / "data").iterdir()):
            zf.write(p, f"deepforest/data/{p.name}")
    sdist = tmp_path / "deepforest-0.tar.gz"
    with tarfile.open(sdist, "w:gz") as tf:
        tf.add(source / "deepforest", "deepforest-0/src/deepforest")
    for archive in (wheel, sdist):
        _convert(archive, tmp_path / archive.name.split(".")[-1])
        assert _files(tmp_path / archive.name.split(".")[-1]) == reference

    _convert(source, tmp_path / "seed3", seed=3)  # val: tile index 3 (b) instead of 2
    val = json.loads(_files(tmp_path / "seed3")["annotations/val.json"])
    assert [img["file_name"] for img in val["images"]] == ["b_x0000_y0000.png"]


def test_output_loads_checks_and_evaluates(source, tmp_path):
    out = tmp_path / "out"
    _convert(source, out)
    for split, boxes, crowd in (("train", 7, 2), ("val", 3, 2)):
        ann, images = out / "annotations" / f"{split}.json", out / "images" / split
        report = check_coco_annotations(ann, images, verify_images=True)
        assert not report.fixes and (report.num_boxes, report.num_crowd) == (boxes, crowd)
        ds = CocoDetection(ann, images)
        assert sum(len(ds[i][1]["boxes"]) for i in range(len(ds))) == boxes  # crowd: never a target

    # A detection on a crowd region is absorbed, not a false positive: ground truth scores AP 1.
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(out / "annotations" / "val.json"))  # val: 3 boxes, 2 crowd regions
        dets = [
            dict(image_id=a["image_id"], category_id=1, bbox=a["bbox"], score=1.0) for a in gt.anns.values()
        ]  # crowd regions included
        ev = COCOeval(gt, gt.loadRes(dets), "bbox")
        ev.evaluate(), ev.accumulate(), ev.summarize()
    assert ev.stats[0] == pytest.approx(1.0)


# --- errors -------------------------------------------------------------------------------------


def test_missing_and_unreadable_sources_say_what_to_do(source, tmp_path):
    missing = tmp_path / "nope.whl"
    with pytest.raises(DatasetError, match=r"nope\.whl: no such file or directory .*pip download deepforest"):
        _convert(missing, tmp_path / "out")
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(DatasetError, match=r"notes\.txt: not a wheel \(zip\), an sdist \(tar\) or a dir"):
        _convert(text, tmp_path / "out")
    with pytest.raises(DatasetError, match=r"src: zz\.xml not found under deepforest/data/\. Is this the"):
        convert_deepforest(source, tmp_path / "out", annotated=[("zz.png", "zz.xml")])
    assert not (tmp_path / "out").exists()


def test_xml_size_disagreeing_with_its_image_is_an_error(source, tmp_path):
    with pytest.raises(DatasetError) as err:
        convert_deepforest(source, tmp_path / "out", annotated=[("a.png", "b.xml")], tile=TILE)
    assert str(err.value) == (
        f"{source}: b.xml says the photo is 200x100 (width x height) but a.png is 200x200: the boxes "
        "would land in the wrong place. Pair each image with its own xml (the `annotated` list)."
    )


def test_bad_xml_and_bad_image_name_the_file(source, tmp_path):
    data = source / "deepforest" / "data"
    (data / "bad.xml").write_text("<annotation><size><width>4</width></size>")
    with pytest.raises(DatasetError, match=r"src: bad\.xml: not a Pascal-VOC file"):
        convert_deepforest(source, tmp_path / "out", annotated=[("a.png", "bad.xml")])
    no_coords = _voc(200, 200, []).replace("</annotation>", "<object><bndbox/></object></annotation>")
    (data / "obj.xml").write_text(no_coords)
    with pytest.raises(DatasetError, match=r"obj\.xml: <object> number 0: expected <bndbox> with numeric"):
        convert_deepforest(source, tmp_path / "out", annotated=[("a.png", "obj.xml")])
    (data / "junk.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match=r"junk\.png: OpenCV cannot decode this image"):
        convert_deepforest(source, tmp_path / "out", annotated=[("junk.png", "a.xml")])


def test_output_folder_with_other_tiles_is_refused(source, tmp_path):
    out = tmp_path / "out"
    _convert(source, out)
    message = r"images/train: holds 2 file\(s\) this conversion would not write \(e\.g\. a_x0000_y0100\.png\)"
    with pytest.raises(DatasetError, match=message):
        _convert(source, out, tile=200)


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"tile": 4}, "tile must be an integer >= 8"),
        ({"min_visible": 0.0}, r"min_visible must be in \(0, 1\]"),
        ({"min_side": -1.0}, "min_side must be >= 0"),
        ({"val_frac": 1.0}, r"val_frac must be in \[0, 1\)"),
    ],
)
def test_bad_arguments(source, tmp_path, kw, message):
    with pytest.raises(ValueError, match=message):
        _convert(source, tmp_path / "out", **kw)


# --- fetching (subprocess.run replaced: no network) ---------------------------------------------


def _fake_pip(monkeypatch, returncode=0, stderr="", content=b"wheel bytes", calls=None):
    def run(cmd, **kwargs):
        if calls is not None:
            calls.append(cmd)
        if returncode == 0:
            dest = Path(cmd[cmd.index("-d") + 1])
            (dest / df.WHEEL_NAME).write_bytes(content)
        return subprocess.CompletedProcess(cmd, returncode, "", stderr)

    monkeypatch.setattr(df.subprocess, "run", run)


def test_fetch_runs_pip_download_and_checks_the_hash(monkeypatch, tmp_path):
    calls = []
    _fake_pip(monkeypatch, calls=calls, content=b"the wheel")
    monkeypatch.setattr(df, "WHEEL_SHA256", df.hashlib.sha256(b"the wheel").hexdigest())
    path = fetch_deepforest_wheel(tmp_path / "dl")
    assert path == tmp_path / "dl" / "deepforest-2.1.0-py3-none-any.whl" and path.read_bytes() == b"the wheel"
    assert calls[0][:10] == [
        df.sys.executable, "-m", "pip", "download", "deepforest==2.1.0", "--no-deps",
        "--only-binary", ":all:", "-d", str(tmp_path / "dl"),
    ]  # fmt: skip
    assert fetch_deepforest_wheel(tmp_path / "dl") == path and len(calls) == 1  # already there: no pip


def test_fetch_wrong_hash_is_an_error(monkeypatch, tmp_path):
    _fake_pip(monkeypatch, content=b"something else")
    with pytest.raises(DownloadError, match=r"sha256 is [0-9a-f]{64}, expected 8c2798d8.*delete it and"):
        fetch_deepforest_wheel(tmp_path)


def test_fetch_without_registry_says_so(monkeypatch, tmp_path):
    stderr = "ERROR: Could not find a version that satisfies the requirement deepforest==2.1.0\n"
    _fake_pip(monkeypatch, returncode=1, stderr=stderr)
    with pytest.raises(DownloadError) as err:
        fetch_deepforest_wheel(tmp_path)
    message = str(err.value)
    assert "failed (exit 1). pip could not get the package: is the package registry reachable" in message
    assert "pass it with --wheel" in message and message.endswith(stderr.strip())

    def timeout(cmd, **kwargs):
        raise subprocess.TimeoutExpired(cmd, kwargs["timeout"])

    monkeypatch.setattr(df.subprocess, "run", timeout)
    with pytest.raises(DownloadError, match=r"did not finish in 5 s: the package registry is unreachable"):
        fetch_deepforest_wheel(tmp_path, timeout=5)


# --- the script and the real wheel --------------------------------------------------------------


def _script():
    spec = importlib.util.spec_from_file_location("fetch_deepforest", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_script_converts_and_prints_the_flags(source, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(df, "ANNOTATED", ANNOTATED)  # the script converts the default list
    out = tmp_path / "out"
    assert _script().main(["--wheel", str(source), "--output-dir", str(out), "--tile", "100"]) == 0
    text = capsys.readouterr().out
    assert "train:    4 images,     7 boxes" in text
    assert f"--train-ann {out / 'annotations' / 'train.json'} --train-images {out / 'images' / 'train'}" in (
        text
    )
    assert _script().main(["--wheel", str(tmp_path / "nope.whl"), "--output-dir", str(out)]) == 1
    assert capsys.readouterr().err.startswith(f"error: {tmp_path / 'nope.whl'}: no such file or directory")


def test_real_wheel_if_available(tmp_path):
    """Set BOXLOSS_DEEPFOREST_WHEEL to the downloaded deepforest-2.1.0 wheel to run this."""
    wheel = os.environ.get("BOXLOSS_DEEPFOREST_WHEEL")
    if not wheel or not os.path.isfile(wheel):
        pytest.skip("BOXLOSS_DEEPFOREST_WHEEL not set to the deepforest-2.1.0 wheel (missing file, not a failure)")
    s = convert_deepforest(wheel, tmp_path)
    assert (s.source_images, s.source_objects, s.degenerate, s.lost) == (4, 951, 0, 0)
    assert s.labels == {"Tree": 914, "Dead": 28, "Alive": 9}
    assert (s.as_box, s.crowd_only, s.grid_tiles, s.empty_tiles["dropped"]) == (937, 14, 118, 13)
    assert [s.splits[k]["images"] for k in ("train", "val")] == [84, 21]
    assert [s.splits[k]["boxes"] for k in ("train", "val")] == [775, 163]
    assert [s.splits[k]["crowd"] for k in ("train", "val")] == [211, 51]
    for split in ("train", "val"):
        ann, images = tmp_path / "annotations" / f"{split}.json", tmp_path / "images" / split
        report = check_coco_annotations(ann, images, verify_images=True)
        assert not report.fixes and report.num_boxes == s.splits[split]["boxes"]
