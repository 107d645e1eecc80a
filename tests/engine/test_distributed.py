"""DDP: torchrun with 2 CPU processes (gloo) trains, logs and checkpoints on rank 0, and gathers the
detections of both ranks for evaluation (the same detections as one process on the final weights)."""

import json
import os
import subprocess
import sys

import pytest
import torch
import yaml

from boxloss.data import CocoDetection, build_dataloader, build_val_transforms
from boxloss.engine import load_checkpoint, predict_coco
from boxloss.model import build_detector



@pytest.mark.slow
def test_torchrun_two_processes_gloo(tmp_path, tiny_dict):
    cfg = tiny_dict
    cfg["data"]["synthetic"]["val"] = 7  # odd: the DistributedSampler pads with a repeat, which must not count twice
    cfg["model"]["score_thresh"] = 0.0
    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533",
         "scripts/train_det.py", "--config", str(path), "--box-loss", "giou", "-q"],
        capture_output=True, text=True, env=env, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "run"
    ckpt = load_checkpoint(str(out / "checkpoint_last.pt"))
    assert ckpt["epoch"] == 2 and ckpt["step"] == 2  # 16 images / (2 ranks x 8) = 1 step per epoch
    assert (out / "checkpoint_best.pt").is_file() and (out / "stats.json").is_file()
    rows = (out / "log.csv").read_text().splitlines()
    assert sum(r.startswith("train,") for r in rows) == 2 and sum(r.startswith("eval,") for r in rows) == 2

    # Detections gathered from both ranks == one process predicting with the final weights.
    dets = json.loads((out / "detections.json").read_text())
    from boxloss.engine.trainer import synthetic_dir
    from boxloss.engine import load_config

    data = synthetic_dir(load_config(str(path)))
    ds = CocoDetection(data / "val.json", data / "images", build_val_transforms(64))
    model = build_detector(ckpt["config"]["model"], 5, ckpt["config"]["loss"])
    model.load_state_dict(ckpt["model"])
    single = predict_coco(model, build_dataloader(ds, batch_size=8), ds, "cpu")
    assert len({d["image_id"] for d in dets}) == len(ds) == 7
    assert len(dets) == len(single)
    key = lambda d: (d["image_id"], -d["score"], d["category_id"])  # noqa: E731
    for a, b in zip(sorted(dets, key=key)[:50], sorted(single, key=key)[:50]):
        assert a["image_id"] == b["image_id"] and a["score"] == pytest.approx(b["score"], abs=1e-3)
