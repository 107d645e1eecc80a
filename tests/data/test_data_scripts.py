"""scripts/check_dataset.py and scripts/make_synthetic.py, called through their main()."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

from coco_cases import minimal_coco, write_coco

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_check_dataset_prints_the_report(synthetic_dir, capsys):
    rc = _load("check_dataset").main(
        ["--ann", str(synthetic_dir / "val.json"), "--images", str(synthetic_dir / "images")]
    )
    out = capsys.readouterr().out
    assert rc == 0
    assert out.startswith(f"{synthetic_dir / 'val.json'}: 4 images, ")
    for line in (
        "boxes per class:",
        "box size sqrt(w*h) in pixels",
        "aspect ratio w:h:",
        "problems fixed: none",
    ):
        assert line in out


def test_check_dataset_reports_fixes(tmp_path, capsys):
    data = minimal_coco()
    data["annotations"][0]["bbox"] = [35, 2, 10, 5]
    data["annotations"][1]["bbox"] = [5, 5, -1, 5]
    rc = _load("check_dataset").main(["--ann", str(write_coco(tmp_path, data))])
    out = capsys.readouterr().out
    assert rc == 0
    assert "       1  box partly outside the image -> clipped to the image" in out
    assert "       1  zero or negative width/height -> skipped" in out


def test_check_dataset_structural_error_is_one_clean_line_and_nonzero(tmp_path):
    data = minimal_coco()
    data["annotations"][1]["image_id"] = 9
    path = write_coco(tmp_path, data, images=False)
    proc = subprocess.run(
        [sys.executable, str(SCRIPTS / "check_dataset.py"), "--ann", str(path)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr == (
        f"error: {path}: annotations[1] (id 2).image_id: no image with id 9. "
        "Add the image to 'images' or remove the annotation\n"
    )


def test_make_synthetic(tmp_path, capsys):
    out = tmp_path / "syn"
    argv = ["--out", str(out), "--train", "3", "--val", "2", "--size", "64", "--seed", "1"]
    assert _load("make_synthetic").main(argv) == 0
    assert capsys.readouterr().out.startswith("wrote 5 images, ")
    assert len(json.loads((out / "train.json").read_text())["images"]) == 3
    assert sorted(p.name for p in (out / "images" / "val").iterdir()) == ["000000.jpg", "000001.jpg"]
    assert _load("make_synthetic").main(["--out", str(out), "--size", "8"]) == 1
    assert capsys.readouterr().err == "error: size must be at least 32 pixels, got 8\n"
