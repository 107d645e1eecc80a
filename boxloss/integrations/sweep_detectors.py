"""The per-loss sweep (compare_losses.py) on another detector: ``--detector ultralytics:MODEL.yaml`` or
``--detector torchvision:NAME``.

    python scripts/compare_losses.py --config configs/smoke.yaml --losses ciou,siou --seeds 2 \
        --detector ultralytics:yolo11n.yaml --output-dir runs/yolo_cmp
    python scripts/compare_losses.py --config configs/smoke.yaml --losses ciou,siou --seeds 2 \
        --detector torchvision:fcos_resnet50_fpn --output-dir runs/fcos_cmp

`make_train_fn(spec)` returns the ``train_fn(cfg)`` that `boxloss.engine.sweep.run_sweep` calls for each
(loss, seed) instead of the engine's ``train``. For Ultralytics it

1. converts the config's COCO data (``data.*``, or the synthetic set) once per sweep into
   ``<output-dir>/yolo_data/`` (`yolo_data.coco_to_yolo`);
2. trains ``MODEL.yaml`` from scratch with `integrations.ultralytics.train` and the run's box loss
   (``loss.box_loss``, with ``loss.args[<loss>]``): epochs = ``train.epochs``, imgsz = ``data.image_size``,
   batch = ``train.batch_size``, seed = the run's seed, into ``<run>/ultralytics/``. The boxloss
   detector's own settings (``model``, ``optim``, ``schedule``, ``loss.weights``) do not apply:
   Ultralytics' defaults do (box gain 7.5, its optimiser choice and schedule);
3. predicts on the validation images with the last weights (conf 0.001, NMS IoU 0.7, at most 100 per
   image: Ultralytics' validation settings, COCO's limit) and writes the run folder's files the sweep
   reads: ``detections.json`` (COCO results, original image and category ids), ``stats.json``
   (``{"epoch": epochs}``) and ``log.csv`` (one train row per epoch from Ultralytics' results.csv:
   loss = box + cls + dfl).

For torchvision (NAME: a builder of `integrations.torchvision`, listed in ``TORCHVISION``) it calls
`torchvision_train.train_torchvision`: the engine's data, seeds, optimiser, schedule and gradient clipping,
torchvision's model from scratch with the run's box loss, then the same three files (that module's
docstring has the details).

The sweep then evaluates and reports as for boxloss' own detector. Interrupted runs start again (no
resume). One process only: not with ``--jobs`` or ``--executor ray``. Ultralytics needs the extra:
pip install -c constraints.txt -e ".[ultralytics]"; torchvision is a core dependency.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from .torchvision import BUILDERS

TORCHVISION = tuple(BUILDERS)  # the NAMEs of torchvision:NAME
DETECTORS = ("boxloss", "ultralytics:MODEL.yaml", "torchvision:NAME")
LOG_FIELDS = ("kind", "epoch", "step", "time_s", "loss", "loss_box", "loss_cls", "loss_dfl")


def parse_detector(spec: str) -> tuple[str, str | None]:
    """"boxloss" -> ("boxloss", None); "ultralytics:yolo11n.yaml" -> ("ultralytics", "yolo11n.yaml");
    "torchvision:fcos_resnet50_fpn" -> ("torchvision", "fcos_resnet50_fpn")."""
    kind, _, arg = (spec or "boxloss").partition(":")
    if kind == "boxloss" and not arg:
        return "boxloss", None
    if kind == "ultralytics" and arg.endswith((".yaml", ".yml")):
        return "ultralytics", arg
    if kind == "torchvision" and arg in TORCHVISION:
        return "torchvision", arg
    raise ValueError(f"--detector {spec!r} is not supported; accepted: {', '.join(DETECTORS)} (NAME: "
                     f"{', '.join(TORCHVISION)}; a model yaml for Ultralytics: weights are never downloaded)")


def _device(device) -> str | None:
    return {None: None, "auto": None, "cpu": "cpu", "cuda": "0"}.get(device, device)


def _yolo_data(cfg: dict, sweep_dir: Path) -> tuple[str, dict]:
    """data.yaml of the sweep (converted once) and the COCO paths it came from."""
    from ..engine.trainer import prepare_data_paths
    from .yolo_data import coco_to_yolo, format_summary

    paths = prepare_data_paths(cfg)
    out = sweep_dir / "yolo_data"
    summary_file = out / "summary.json"
    if not summary_file.is_file():
        summary = coco_to_yolo(out, {"train": (paths["train_ann"], paths["train_images"]),
                                     "val": (paths["val_ann"], paths["val_images"])})
        print(format_summary(summary))
        summary_file.write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return str(out / "data.yaml"), paths


def write_log(results_csv, path) -> None:
    """Ultralytics' results.csv (one row per epoch) as the sweep's log.csv train rows."""
    rows = []
    with open(results_csv, newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            r = {k.strip(): v for k, v in r.items()}
            parts = [float(r[f"train/{k}_loss"]) for k in ("box", "cls", "dfl") if f"train/{k}_loss" in r]
            rows.append({"kind": "train", "epoch": int(float(r["epoch"])), "step": int(float(r["epoch"])),
                         "time_s": r.get("time", ""), "loss": sum(parts),
                         "loss_box": r.get("train/box_loss", ""), "loss_cls": r.get("train/cls_loss", ""),
                         "loss_dfl": r.get("train/dfl_loss", "")})
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=LOG_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def coco_detections(weights, val_ann, val_images, category_ids, *, imgsz: int, device=None) -> list[dict]:
    """Predictions of an Ultralytics checkpoint on every image of `val_ann`, as COCO results (xywh, original ids)."""
    from ultralytics import YOLO

    images = json.loads(Path(val_ann).read_text(encoding="utf-8"))["images"]
    model = YOLO(str(weights))
    out = []
    for im in images:
        (result,) = model.predict(str(Path(val_images) / im["file_name"]), imgsz=imgsz, conf=0.001, iou=0.7,
                                  max_det=100, device=device, verbose=False)
        boxes = result.boxes
        for (x1, y1, x2, y2), score, cls in zip(boxes.xyxy.tolist(), boxes.conf.tolist(), boxes.cls.tolist()):
            out.append({"image_id": im["id"], "category_id": category_ids[int(cls)],
                        "bbox": [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)],
                        "score": round(score, 5)})
    return out


def ultralytics_train_fn(model_yaml: str):
    """`train_fn(cfg)` for `run_sweep`: trains `model_yaml` with the run's box loss and writes the run's files."""

    def train_fn(cfg: dict) -> None:
        from .ultralytics import train

        run = Path(cfg["train"]["output_dir"])
        if cfg["train"].get("resume"):
            raise ValueError(f"{run}: Ultralytics runs of the sweep do not resume; delete the folder to train it again")
        run.mkdir(parents=True, exist_ok=True)
        from ..engine.config import dump_config

        dump_config(cfg, os.fspath(run / "config.yaml"))  # what --report-only reads, as for the engine's runs
        data_yaml, paths = _yolo_data(cfg, run.parents[1])
        loss = cfg["loss"]["box_loss"]
        epochs, imgsz = int(cfg["train"]["epochs"]), int(cfg["data"]["image_size"])
        device = _device(cfg["train"].get("device"))
        trainer = train(model=model_yaml, data=data_yaml, box_loss=loss,
                        box_loss_kwargs=(cfg["loss"].get("args") or {}).get(loss), epochs=epochs, imgsz=imgsz,
                        batch=int(cfg["train"]["batch_size"]), seed=int(cfg["train"]["seed"]),
                        workers=int(cfg["train"].get("workers") or 0), project=os.fspath(run), name="ultralytics",
                        exist_ok=True, val=False, verbose=False, **({"device": device} if device else {}))
        summary = json.loads((run.parents[1] / "yolo_data" / "summary.json").read_text(encoding="utf-8"))
        detections = coco_detections(trainer.last, paths["val_ann"], paths["val_images"], summary["category_ids"],
                                     imgsz=imgsz, device=device)
        (run / "detections.json").write_text(json.dumps(detections), encoding="utf-8")
        write_log(Path(trainer.save_dir) / "results.csv", run / "log.csv")
        (run / "stats.json").write_text(json.dumps({"epoch": epochs, "detector": f"ultralytics:{model_yaml}"}) + "\n",
                                        encoding="utf-8")

    return train_fn


def torchvision_train_fn(name: str):
    """`train_fn(cfg)` for `run_sweep`: trains torchvision ``name`` with the run's box loss and writes the run's files."""

    def train_fn(cfg: dict) -> None:
        from .torchvision_train import train_torchvision

        train_torchvision(cfg, name)

    return train_fn


def make_train_fn(spec: str):
    """The sweep's `train_fn` for `--detector spec`; None for boxloss' own detector (the engine's train)."""
    kind, arg = parse_detector(spec)
    if kind == "boxloss":
        return None
    if kind == "torchvision":
        return torchvision_train_fn(arg)
    return ultralytics_train_fn(arg)
