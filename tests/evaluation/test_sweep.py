"""engine.sweep with a fake trainer: planning, sharding, resume, reuse, locks, report from files."""

import csv
import json
import os

import pytest

from boxloss.engine.sweep import (
    acquire_lock, build_report, plan_runs, release_lock, run_dir, run_state, run_sweep, select_runs,
)

GT = {
    "images": [{"id": i, "width": 100, "height": 100, "file_name": f"{i}.png"} for i in (5, 6)],
    "categories": [{"id": 3, "name": "circle"}, {"id": 17, "name": "square"}],
    "annotations": [
        {"id": 1, "image_id": 5, "category_id": 3, "bbox": [10, 10, 40, 40], "area": 1600, "iscrowd": 0},
        {"id": 2, "image_id": 6, "category_id": 17, "bbox": [50, 20, 30, 45], "area": 1350, "iscrowd": 0},
    ],
}


class FakeTrainer:
    """Writes what the engine writes; `stop_after_checkpoint` simulates an interruption."""

    def __init__(self):
        self.calls = []
        self.stop_after_checkpoint = False

    def __call__(self, cfg):
        seed = cfg["train"]["seed"]
        self.calls.append((cfg["loss"]["box_loss"], seed, cfg["train"]["resume"]))
        d = cfg["train"]["output_dir"]
        os.makedirs(d, exist_ok=True)
        open(os.path.join(d, "checkpoint_last.pt"), "wb").write(b"x")
        if self.stop_after_checkpoint:
            raise KeyboardInterrupt
        with open(os.path.join(d, "log.csv"), "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["kind", "epoch", "step", "time_s", "cpu_s", "loss", "AP"])
            w.writeheader()
            for e in range(1, 4):
                for s in range(4):
                    w.writerow({"kind": "train", "epoch": e, "step": (e - 1) * 4 + s + 1, "time_s": 10 * e, "cpu_s": 19 * e, "loss": 2.0 / e + 0.01 * s})
                w.writerow({"kind": "eval", "epoch": e, "step": e * 4, "AP": 0.2 * e})
        shift = 2.0 * seed + (cfg["loss"]["box_loss"] == "giou")
        dets = [{"image_id": a["image_id"], "category_id": a["category_id"], "score": 0.9,
                 "bbox": [a["bbox"][0] + shift, a["bbox"][1], a["bbox"][2], a["bbox"][3]]} for a in GT["annotations"]]
        json.dump(dets, open(os.path.join(d, "detections.json"), "w"))
        json.dump({"epoch": cfg["train"].get("epochs", 3), "AP": 0.0}, open(os.path.join(d, "stats.json"), "w"))


def test_plan_and_select():
    runs = plan_runs(["iou", "giou", "ciou"], 2)
    assert runs == [("iou", 0), ("iou", 1), ("giou", 0), ("giou", 1), ("ciou", 0), ("ciou", 1)]
    assert select_runs(runs, only={"loss": ["ciou"], "seed": [1]}) == [("ciou", 1)]
    assert select_runs(runs, only={"seed": [0]}) == [("iou", 0), ("giou", 0), ("ciou", 0)]
    parts = [select_runs(runs, shard=(i, 4)) for i in range(4)]
    assert sorted(r for p in parts for r in p) == sorted(runs) and sum(map(len, parts)) == len(runs)
    assert plan_runs(["iou"], [3, 7]) == [("iou", 3), ("iou", 7)]
    with pytest.raises(ValueError):
        select_runs(runs, shard=(2, 2))


def test_sweep_trains_evaluates_and_reuses(tmp_path):
    trainer = FakeTrainer()
    runs = plan_runs(["iou", "giou"], 2)
    status = run_sweep({"train": {"epochs": 3}}, runs, tmp_path, coco_gt=GT, train_fn=trainer, log=lambda *a: None)
    assert set(status.values()) == {"done"} and len(trainer.calls) == 4
    result = json.loads((run_dir(tmp_path, "iou", 0) / "result.json").read_text())
    assert result["stats"]["AP"] == pytest.approx(1.0)  # exact boxes
    assert result["train_time_s"] == 30 and result["cpu_time_s"] == 57
    assert result["final_train_loss"] == pytest.approx(2 / 3 + 0.015)
    assert len(result["pr"]["0.5"]) == 101 and result["diagnosis"]
    cfg = json.loads(json.dumps(trainer.calls))  # the trainer saw loss and seed
    assert cfg[0] == ["iou", 0, None]
    # second pass: nothing retrained
    status = run_sweep({"train": {"epochs": 3}}, runs, tmp_path, coco_gt=GT, train_fn=trainer, log=lambda *a: None)
    assert set(status.values()) == {"reused"} and len(trainer.calls) == 4

    out = build_report({"train": {"epochs": 3}}, runs, tmp_path, coco_gt=GT, n_bootstrap=20, log=lambda *a: None)
    for name in ("report.md", "report.json", "report.csv", "ap_per_loss.png", "pr_curves.png", "training_curves.png",
                 "difference_forest.png", "ap_vs_iou.png", "tide_errors.png", "tp_iou.png"):
        assert (tmp_path / name).is_file(), name
    doc = json.loads((tmp_path / "report.json").read_text())
    assert doc["losses"]["iou"]["AP"]["runs"] == pytest.approx([1.0, result_ap(tmp_path, "iou", 1)])
    assert out["summary"]["giou"]["AP"]["mean"] < 1.0
    # recomputed from detections.json: the analysis agrees with result.json; giou (shifted 1 px more) vs iou
    assert [r["analysis"]["stats"]["AP"] for r in doc["runs"] if r["loss"] == "iou"] == doc["losses"]["iou"]["AP"]["runs"]
    (row,) = doc["comparison"]["comparisons"]
    assert row["loss"] == "giou" and row["baseline"] == "iou" and row["seed_level"]["mean"] < 0


def result_ap(d, loss, seed):
    return json.loads((run_dir(d, loss, seed) / "result.json").read_text())["stats"]["AP"]


def test_interrupted_run_resumes_and_trained_run_is_only_evaluated(tmp_path):
    trainer = FakeTrainer()
    trainer.stop_after_checkpoint = True
    with pytest.raises(KeyboardInterrupt):
        run_sweep({}, [("ciou", 0)], tmp_path, coco_gt=GT, train_fn=trainer, log=lambda *a: None)
    d = run_dir(tmp_path, "ciou", 0)
    assert run_state(d) == "partial" and not (d / ".lock").exists()  # lock released on the way out
    trainer.stop_after_checkpoint = False
    run_sweep({}, [("ciou", 0)], tmp_path, coco_gt=GT, train_fn=trainer, log=lambda *a: None)
    assert trainer.calls[-1] == ("ciou", 0, str(d / "checkpoint_last.pt"))
    # trained but not evaluated (e.g. killed during evaluation): evaluation only
    (d / "result.json").unlink()
    n = len(trainer.calls)
    status = run_sweep({}, [("ciou", 0)], tmp_path, coco_gt=GT, train_fn=trainer, log=lambda *a: None)
    assert status[("ciou", 0)] == "evaluated" and len(trainer.calls) == n


def test_intermediate_evaluation_is_not_finished(tmp_path):
    # The engine rewrites stats.json/detections.json at every evaluation: only the last epoch's count.
    d = tmp_path / "r"
    d.mkdir()
    (d / "detections.json").write_text("[]")
    (d / "stats.json").write_text(json.dumps({"epoch": 2, "AP": 0.1}))
    (d / "checkpoint_last.pt").write_bytes(b"x")
    assert run_state(d, epochs=6) == "partial"
    assert run_state(d, epochs=2) == "trained"


def test_changed_config_is_not_silently_reused(tmp_path):
    trainer = FakeTrainer()
    run_sweep({"train": {"epochs": 3}}, [("iou", 0)], tmp_path, coco_gt=GT, train_fn=trainer, log=lambda *a: None)
    with pytest.raises(RuntimeError, match="optim.lr"):
        run_sweep({"train": {"epochs": 3}, "optim": {"lr": 0.1}}, [("iou", 0)], tmp_path, coco_gt=GT, train_fn=trainer,
                  log=lambda *a: None)


def test_report_refuses_unfinished_runs_unless_allowed(tmp_path):
    with pytest.raises(RuntimeError, match="iou seed 0"):
        build_report({}, [("iou", 0)], tmp_path)
    run_sweep({}, [("iou", 0), ("giou", 0)], tmp_path, coco_gt=GT, train_fn=FakeTrainer(), log=lambda *a: None)
    runs = plan_runs(["iou", "giou"], 2)
    with pytest.raises(RuntimeError, match="iou seed 1, giou seed 1"):
        build_report({}, runs, tmp_path)
    out = build_report({}, runs, tmp_path, allow_missing=True, coco_gt=GT, n_bootstrap=0, log=lambda *a: None)
    assert list(out["summary"]) == ["iou", "giou"] and out["summary"]["iou"]["seeds"] == [0]
    assert "Incomplete sweep: 2 of 4 runs finished; missing: iou seed 1, giou seed 1." in out["md"].read_text()


def test_locks(tmp_path):
    d = tmp_path / "run"
    assert acquire_lock(d)
    release_lock(d)
    assert not (d / ".lock").exists()
    import socket

    (d / ".lock").write_text(f"1@{socket.gethostname()}")  # pid 1 is alive: another process holds it
    assert not acquire_lock(d)
    busy = run_dir(tmp_path / "sw", "iou", 0)
    busy.mkdir(parents=True)
    (busy / ".lock").write_text(f"1@{socket.gethostname()}")
    trainer = FakeTrainer()
    status = run_sweep({}, [("iou", 0), ("iou", 1)], tmp_path / "sw", coco_gt=GT, train_fn=trainer, log=lambda *a: None)
    assert status == {("iou", 0): "locked", ("iou", 1): "done"} and len(trainer.calls) == 1
    dead = 2**22 + 12345  # above the default pid_max: no such process
    (d / ".lock").write_text(f"{dead}@{socket.gethostname()}")
    assert acquire_lock(d)  # stale lock taken over
    release_lock(d)


def test_a_config_key_added_since_does_not_invalidate_finished_runs(tmp_path):
    # runs finished before a key joined DEFAULTS have no such key in their fingerprint: it counts as the
    # default value; a run trained with a non-default value of it is still refused
    from boxloss.engine.config import DEFAULTS

    trainer = FakeTrainer()
    cfg = {"train": {"epochs": 3}}
    run_sweep(cfg, [("iou", 0)], tmp_path, coco_gt=GT, train_fn=trainer, log=lambda *a: None)
    path = run_dir(tmp_path, "iou", 0) / "result.json"
    result = json.loads(path.read_text())
    result["fingerprint"]["model"] = {k: v for k, v in DEFAULTS["model"].items() if k != "box_head"}
    path.write_text(json.dumps(result))
    status = run_sweep({**cfg, "model": dict(DEFAULTS["model"])}, [("iou", 0)], tmp_path, coco_gt=GT, train_fn=trainer,
                       log=lambda *a: None)
    assert status == {("iou", 0): "reused"}
    with pytest.raises(RuntimeError, match="model.box_head"):
        run_sweep({**cfg, "model": {**DEFAULTS["model"], "box_head": "distribution"}}, [("iou", 0)], tmp_path, coco_gt=GT,
                  train_fn=trainer, log=lambda *a: None)


def test_variants_are_run_and_named_like_losses(tmp_path):
    from boxloss.engine.sweep import VARIANTS, parse_variants, run_config

    variants = parse_variants(["ciou_dfl:loss.box_loss=ciou,model.box_head=distribution",
                               "ciou_dfl:loss.dfl_weight=0.5", "wide:model.scale_ranges=[32,96],train.epochs=4"])
    assert variants == {"ciou_dfl": {"loss": {"box_loss": "ciou", "dfl_weight": 0.5}, "model": {"box_head": "distribution"}},
                        "wide": {"model": {"scale_ranges": [32, 96]}, "train": {"epochs": 4}}}
    base = {"loss": {"box_loss": "giou"}, "model": {"box_head": "distances"}, "train": {}, VARIANTS: variants}
    cfg = run_config(base, "ciou_dfl", 1, tmp_path / "x")
    assert VARIANTS not in cfg and cfg["loss"] == {"box_loss": "ciou", "dfl_weight": 0.5}
    assert cfg["model"]["box_head"] == "distribution" and cfg["train"]["seed"] == 1
    assert run_config(base, "diou", 0, tmp_path / "y")["loss"]["box_loss"] == "diou"  # a plain loss as before
    assert base[VARIANTS]["ciou_dfl"]["loss"]["box_loss"] == "ciou"  # the base config is not modified
    trainer = FakeTrainer()
    run_sweep({"train": {"epochs": 3}, VARIANTS: {"giou_x": {"loss": {"box_loss": "giou"}}}}, [("giou_x", 0)], tmp_path,
              coco_gt=GT, train_fn=trainer, log=lambda *a: None)
    assert trainer.calls == [("giou", 0, None)] and (run_dir(tmp_path, "giou_x", 0) / "result.json").is_file()
    with pytest.raises(Exception, match="NAME:section.key=value"):
        parse_variants(["no-colon"])
