"""compare_losses.py --detector ultralytics:MODEL.yaml: the sweep trains YOLO per (loss, seed) and reports."""

import csv
import json
import os

import pytest
import yaml

from boxloss.cli.compare import main as compare_main
from boxloss.engine.trainer import prepare_data_paths
from boxloss.integrations.sweep_detectors import parse_detector


def test_parse_detector():
    assert parse_detector("boxloss") == ("boxloss", None)
    assert parse_detector("ultralytics:yolov8n.yaml") == ("ultralytics", "yolov8n.yaml")
    for bad in ("ultralytics:yolo11n.pt", "torchvision:fcos", "yolo"):
        with pytest.raises(ValueError, match="accepted: boxloss, ultralytics:MODEL.yaml"):
            parse_detector(bad)


def test_ultralytics_sweep_writes_runs_the_report_reads(tmp_path, capsys):
    pytest.importorskip("ultralytics")
    import torch

    os.environ.setdefault("YOLO_OFFLINE", "1")
    threads = torch.get_num_threads()
    out = tmp_path / "cmp"
    args = ["--config", "configs/smoke.yaml", "--losses", "ciou,siou", "--seeds", "1", "--epochs", "1",
            "--output-dir", str(out), "-q"]
    try:
        assert compare_main(args + ["--detector", "ultralytics:yolo11n.yaml"]) == 0
    finally:
        torch.set_num_threads(threads)  # Ultralytics sets cpu_count - 1
    summary = json.loads((out / "yolo_data/summary.json").read_text())
    assert summary["val"]["images"] == 16 and summary["category_ids"] == [1, 2, 3, 4, 5]
    for loss in ("ciou", "siou"):
        run = out / loss / "seed0"
        detections = json.loads((run / "detections.json").read_text())
        assert detections and all(set(d) == {"image_id", "category_id", "bbox", "score"} for d in detections)
        assert {d["category_id"] for d in detections} <= set(summary["category_ids"])
        val_ann = prepare_data_paths(yaml.safe_load((run / "config.yaml").read_text()))["val_ann"]
        images = {im["id"]: im for im in json.loads(open(val_ann).read())["images"]}
        assert {d["image_id"] for d in detections} <= set(images)  # the dataset's own image ids
        for d in detections:  # xywh in the original image's pixels
            x, y, w, h = d["bbox"]
            im = images[d["image_id"]]
            assert w > 0 and h > 0 and -1 <= x and -1 <= y and x + w <= im["width"] + 1 and y + h <= im["height"] + 1
            assert 0 < d["score"] <= 1
        (row,) = list(csv.DictReader(open(run / "log.csv")))
        assert row["kind"] == "train" and float(row["loss"]) > 0
        result = json.loads((run / "result.json").read_text())
        assert result["fingerprint"]["model"]["detector"] == "ultralytics:yolo11n.yaml"
        assert result["num_detections"] == len(detections)
    assert (out / "report.md").is_file()
    assert compare_main(["--report-only", str(out), "-q"]) == 0  # the run folders carry their config.yaml
    # a variant that changes what YOLO does not read is refused, not silently ignored
    assert compare_main(args + ["--detector", "ultralytics:yolo11n.yaml", "--losses", "ciou,ciou_qfl",
                                "--variant", "ciou_qfl:loss.box_loss=ciou,loss.cls_loss=qfl"]) == 2
    assert "loss.cls_loss do(es) not apply" in capsys.readouterr().err
    # the same folder with boxloss' own detector: refused before training, the runs differ in model.detector
    assert compare_main(args) == 1
    assert "model.detector" in capsys.readouterr().err
    assert compare_main(args + ["--detector", "ultralytics:yolo11n.yaml", "--jobs", "2"]) == 2
