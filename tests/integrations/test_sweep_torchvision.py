"""compare_losses.py --detector torchvision:NAME: a torchvision detector trained per (loss, seed), evaluated, reported."""

import csv
import json

import pytest

from boxloss.cli.compare import main as compare_main
from boxloss.engine.config import load_config
from boxloss.engine.sweep import _val_coco, evaluate_run, run_config, run_state
from boxloss.engine.trainer import prepare_data_paths
from boxloss.integrations.sweep_detectors import TORCHVISION, make_train_fn, parse_detector
from boxloss.integrations.torchvision_train import DETECTORS, train_torchvision

# 16 train / 8 val synthetic images of 64 px, one epoch of two batches: seconds per run on 2 cores
TINY = ["data.image_size=64", "data.synthetic.train=16", "data.synthetic.val=8", "data.synthetic.size=64",
        "train.epochs=1", "train.log_every=1"]


def _cfg():
    return load_config("configs/smoke.yaml", TINY)


@pytest.fixture(scope="module")
def fcos_run(tmp_path_factory):
    cfg = _cfg()
    d = tmp_path_factory.mktemp("tv") / "giou" / "seed0"
    make_train_fn("torchvision:fcos_resnet50_fpn")(run_config(cfg, "giou", 0, d))
    return cfg, d


def test_train_fn_writes_a_run_the_sweep_evaluates(fcos_run):
    cfg, d = fcos_run
    assert run_state(d, epochs=1) == "trained"
    assert json.loads((d / "stats.json").read_text()) == {"epoch": 1, "step": 2, "detector": "torchvision:fcos_resnet50_fpn"}
    rows = list(csv.DictReader(open(d / "log.csv")))
    assert [(r["kind"], r["epoch"], r["step"]) for r in rows] == [("train", "1", "1"), ("train", "1", "2")]
    assert all(float(r["loss_box"]) > 0 and float(r["loss_ctr"]) > 0 and float(r["loss"]) > float(r["loss_box"])
               for r in rows)
    assert load_config(str(d / "config.yaml"))["loss"]["box_loss"] == "giou"  # --report-only reads it back

    gt = json.loads(open(prepare_data_paths(cfg)["val_ann"]).read())
    sizes = {im["id"]: (im["width"], im["height"]) for im in gt["images"]}
    assert len(sizes) == 8
    detections = json.loads((d / "detections.json").read_text())
    per_image = {}
    for det in detections:
        per_image[det["image_id"]] = per_image.get(det["image_id"], 0) + 1
        x, y, w, h = det["bbox"]
        width, height = sizes[det["image_id"]]  # the dataset's own image ids ...
        assert 0 <= x and 0 <= y and w >= 0 and h >= 0 and x + w <= width + 1e-3 and y + h <= height + 1e-3
        assert 0.001 <= det["score"] <= 1
    assert {det["category_id"] for det in detections} <= {c["id"] for c in gt["categories"]}  # ... and category ids
    assert set(per_image) == set(sizes) and max(per_image.values()) <= 100  # model.max_detections

    result = evaluate_run(d, _val_coco(cfg), loss="giou", seed=0, cfg=run_config(cfg, "giou", 0, d))
    assert 0.0 <= result["stats"]["AP"] <= 1.0 and result["num_detections"] == len(detections)
    assert result["final_train_loss"] == pytest.approx(sum(float(r["loss"]) for r in rows) / 2, rel=1e-4)


def test_same_seed_same_detections(fcos_run, tmp_path):
    cfg, d = fcos_run
    out = train_torchvision(run_config(cfg, "giou", 0, tmp_path / "again"), "fcos_resnet50_fpn")
    assert out["step"] == 2
    assert (tmp_path / "again" / "detections.json").read_text() == (d / "detections.json").read_text()


def test_unknown_detector_and_loss_are_one_line_errors(tmp_path):
    assert TORCHVISION == tuple(DETECTORS)
    with pytest.raises(ValueError, match="accepted: boxloss, ultralytics:MODEL.yaml, torchvision:NAME") as err:
        parse_detector("torchvision:fcos_resnet18")
    assert "\n" not in str(err.value) and all(name in str(err.value) for name in TORCHVISION)
    assert parse_detector("torchvision:retinanet_resnet50_fpn") == ("torchvision", "retinanet_resnet50_fpn")
    with pytest.raises(ValueError, match="unknown torchvision detector 'fcos'; accepted: fcos_resnet50_fpn, "):
        train_torchvision(run_config(_cfg(), "giou", 0, tmp_path / "a"), "fcos")
    with pytest.raises(ValueError, match=r"loss.box_loss='nope'; accepted: .*\bciou\b") as err:
        train_torchvision(run_config(_cfg(), "nope", 0, tmp_path / "b"), "fcos_resnet50_fpn")
    assert "\n" not in str(err.value) and not (tmp_path / "b").exists()  # refused before anything is written


def test_compare_cli_refuses_unknown_names(tmp_path, capsys):
    args = ["--config", "configs/smoke.yaml", "--seeds", "1", "--output-dir", str(tmp_path), "-q"]
    assert compare_main(args + ["--losses", "giou", "--detector", "torchvision:yolo"]) == 2
    assert "torchvision:NAME (NAME: fcos_resnet50_fpn" in capsys.readouterr().err
    assert compare_main(args + ["--losses", "giou,nope", "--detector", "torchvision:fcos_resnet50_fpn"]) == 2
    assert "unknown box loss(es) or variant(s) ['nope']" in capsys.readouterr().err
    assert compare_main(args + ["--losses", "giou", "--detector", "torchvision:fcos_resnet50_fpn", "--jobs", "2"]) == 2


@pytest.mark.slow
def test_compare_two_losses_end_to_end(tmp_path):
    """Faster R-CNN (labels 1..K, background 0) through the whole command: train, evaluate, report."""
    out = tmp_path / "cmp"
    args = ["--config", "configs/smoke.yaml", "--losses", "giou,ciou", "--seeds", "1", "--output-dir", str(out),
            "-q", "--bootstrap", "0", "--detector", "torchvision:fasterrcnn_mobilenet_v3_large_fpn", "--set", *TINY]
    assert compare_main(args) == 0
    doc = json.loads((out / "report.json").read_text())
    assert set(doc["losses"]) == {"giou", "ciou"}
    assert sorted((r["loss"], r["seed"]) for r in doc["runs"]) == [("ciou", 0), ("giou", 0)]
    cats = {c["id"] for c in json.loads(open(prepare_data_paths(_cfg())["val_ann"]).read())["categories"]}
    for loss in ("giou", "ciou"):
        result = json.loads((out / loss / "seed0" / "result.json").read_text())
        assert 0.0 <= result["stats"]["AP"] <= 1.0 and result["num_detections"] > 0
        assert result["fingerprint"]["model"]["detector"] == "torchvision:fasterrcnn_mobilenet_v3_large_fpn"
        assert result["fingerprint"]["loss"]["box_loss"] == loss
        detections = json.loads((out / loss / "seed0" / "detections.json").read_text())
        assert {d["category_id"] for d in detections} <= cats
    # the same folder again: every run is reused (fingerprints match), nothing retrains
    mtimes = [(out / loss / "seed0" / "detections.json").stat().st_mtime_ns for loss in ("giou", "ciou")]
    assert compare_main(args) == 0
    assert [(out / loss / "seed0" / "detections.json").stat().st_mtime_ns for loss in ("giou", "ciou")] == mtimes
