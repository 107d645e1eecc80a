"""End-to-end training on a tiny synthetic set: outputs, resume, non-finite guard, COCO detections."""

import copy
import csv
import json
import os

import pytest
import torch

import boxloss.engine.loop as train_mod  # train_one_epoch builds the per-epoch loaders
from boxloss.data import CocoDetection, build_dataloader, build_val_transforms, letterbox_params
from boxloss.engine import COLUMNS, TrainingError, load_checkpoint, merge_config, predict_coco, train
from boxloss.engine.config import DEFAULTS
from boxloss.evaluation.coco_eval import STAT_NAMES, evaluate_coco
from boxloss.model import Detector


def _rows(run_dir):
    with open(os.path.join(run_dir, "log.csv"), newline="") as f:
        return list(csv.DictReader(f))


def test_training_runs_end_to_end_and_writes_the_run_folder(tiny_cfg):
    result = train(tiny_cfg)
    out = tiny_cfg["train"]["output_dir"]
    for name in ("config.yaml", "log.csv", "checkpoint_last.pt", "checkpoint_best.pt", "detections.json", "stats.json"):
        assert os.path.isfile(os.path.join(out, name)), name
    rows = _rows(out)
    assert tuple(rows[0]) == COLUMNS
    train_rows = [r for r in rows if r["kind"] == "train"]
    eval_rows = [r for r in rows if r["kind"] == "eval"]
    assert len(train_rows) == 4 and len(eval_rows) == 2  # 2 epochs x 2 steps, log_every=1; eval each epoch
    assert all(float(r["loss"]) > 0 and float(r["images_per_s"]) > 0 for r in train_rows)
    assert all(r[name] != "" for r in eval_rows for name in ("val_loss",) + STAT_NAMES)
    times = [float(r["time_s"]) for r in rows]
    assert times == sorted(times)
    ckpt = load_checkpoint(os.path.join(out, "checkpoint_last.pt"))
    assert ckpt["epoch"] == 2 and ckpt["step"] == 4 and ckpt["config"] == tiny_cfg
    stats = json.load(open(os.path.join(out, "stats.json")))
    assert stats["epoch"] == 2 and set(STAT_NAMES) <= set(stats)
    assert result["stats"]["AP"] == stats["AP"] and result["step"] == 4


class _Interrupt(Exception):
    pass


@pytest.mark.parametrize("amp", ["none", "bf16"])  # bf16: CPU autocast (emulated where the CPU lacks it)
def test_resume_after_an_interruption_matches_an_uninterrupted_run(tiny_cfg, tmp_path, monkeypatch, amp):
    cfg = merge_config(tiny_cfg, {"train": {"epochs": 3, "eval_every": 0, "output_dir": str(tmp_path / "straight"),
                                            "amp": amp}})
    train(cfg)
    straight = load_checkpoint(str(tmp_path / "straight" / "checkpoint_last.pt"))

    # Interrupt in the middle of epoch 2 (after its first batch).
    interrupted = merge_config(cfg, {"train": {"output_dir": str(tmp_path / "resumed")}})
    build = train_mod.build_dataloader

    def flaky(*args, **kw):
        loader = build(*args, **kw)
        epoch = kw.get("seed", 0) % 100_003  # the val loader has no seed: epoch 0

        def gen():
            for i, batch in enumerate(loader):
                if epoch == 2 and i == 1:
                    raise _Interrupt
                yield batch

        class Wrapped:
            def __iter__(self):
                return gen()

            def __len__(self):
                return len(loader)

        return Wrapped()

    monkeypatch.setattr(train_mod, "build_dataloader", flaky)
    with pytest.raises(_Interrupt):
        train(interrupted)
    monkeypatch.setattr(train_mod, "build_dataloader", build)
    assert load_checkpoint(str(tmp_path / "resumed" / "checkpoint_last.pt"))["epoch"] == 1

    train(merge_config(interrupted, {"train": {"resume": "last"}}))
    resumed = load_checkpoint(str(tmp_path / "resumed" / "checkpoint_last.pt"))
    assert resumed["epoch"] == 3 and resumed["step"] == straight["step"]
    for key, value in straight["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
    assert resumed["scheduler"] == straight["scheduler"]
    for a, b in zip(straight["optimizer"]["state"].values(), resumed["optimizer"]["state"].values()):
        assert all(torch.equal(a[k], b[k]) for k in a)
    # The interrupted epoch's rows were dropped: each epoch is logged once.
    epochs = [int(r["epoch"]) for r in _rows(tmp_path / "resumed")]
    assert epochs == [int(r["epoch"]) for r in _rows(tmp_path / "straight")]


# Run by test_sigkill_then_resume_gives_the_uninterrupted_result in a child process: scripts/train_det.py's
# main, with a hook that writes MARKER and waits (to be killed) at the KILL_AT-th training step.
_KILLABLE = """
import runpy, sys, time
from boxloss.model import Detector
marker, kill_at = sys.argv[1], int(sys.argv[2])
original, calls = Detector.compute_losses, [0]

def compute_losses(self, *args, **kw):
    if self.training:
        calls[0] += 1
        if calls[0] == kill_at:
            open(marker, "w").close()
            time.sleep(600)
    return original(self, *args, **kw)

Detector.compute_losses = compute_losses
sys.exit(runpy.run_path("scripts/train_det.py")["main"](sys.argv[3:]))
"""


def test_sigkill_then_resume_gives_the_uninterrupted_result(tiny_dict, tmp_path):
    """kill -9 in the middle of epoch 2 (its first step taken, not yet checkpointed), then
    ``train_det.py --resume``: the final checkpoint is bit-identical to an uninterrupted run's."""
    import runpy
    import signal
    import subprocess
    import sys
    import time

    import yaml

    tiny_dict["train"].update(epochs=3, eval_every=0)
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_dict))
    main = runpy.run_path("scripts/train_det.py")["main"]
    assert main(["--config", str(config), "--output-dir", str(tmp_path / "straight")]) == 0  # also makes the data

    marker, killed = tmp_path / "at-step-4", tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", _KILLABLE, str(marker), "4", "--config", str(config),
                             "--output-dir", str(killed)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), proc.communicate(timeout=5) if proc.poll() is not None else "timed out"
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert load_checkpoint(str(killed / "checkpoint_last.pt"))["epoch"] == 1  # epoch 2's first step is lost

    assert main(["--config", str(config), "--output-dir", str(killed), "--resume"]) == 0
    straight = load_checkpoint(str(tmp_path / "straight" / "checkpoint_last.pt"))
    resumed = load_checkpoint(str(killed / "checkpoint_last.pt"))
    assert resumed["epoch"] == 3 and resumed["step"] == straight["step"] == 6
    assert straight["model"].keys() == resumed["model"].keys()
    for key, value in straight["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
    assert resumed["scheduler"] == straight["scheduler"]
    for a, b in zip(straight["optimizer"]["state"].values(), resumed["optimizer"]["state"].values(), strict=True):
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert [int(r["epoch"]) for r in _rows(killed)] == [int(r["epoch"]) for r in _rows(tmp_path / "straight")]
    assert [f for f in os.listdir(killed) if f.startswith(".tmp")] == []


def test_resume_with_a_different_loss_is_refused(tiny_cfg):
    cfg = merge_config(tiny_cfg, {"train": {"epochs": 1, "eval_every": 0}})
    train(cfg)
    with pytest.raises(ValueError, match="different loss settings .*loss.box_loss"):
        train(merge_config(cfg, {"loss": {"box_loss": "giou"}, "train": {"resume": "last", "epochs": 2}}))
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        train(merge_config(cfg, {"train": {"resume": "/nonexistent/ckpt.pt"}}))


def test_resume_accepts_a_checkpoint_from_before_a_new_default_key():
    """A checkpoint saved before model.box_head / model.reg_max existed resumes under their defaults, and
    only under them (the sweep's fingerprint applies the same rule)."""
    from boxloss.engine.trainer import _check_resume_config

    cfg = merge_config(DEFAULTS, {})
    saved = copy.deepcopy(cfg)
    del saved["model"]["box_head"], saved["model"]["reg_max"]
    _check_resume_config(cfg, saved)
    with pytest.raises(ValueError, match=r"different model settings \(model.box_head\)"):
        _check_resume_config(merge_config(cfg, {"model": {"box_head": "distribution"}}), saved)


def _nan_losses(count):
    """A compute_losses that returns NaN for its first ``count`` calls."""
    original, calls = Detector.compute_losses, [0]

    def compute(self, *args, **kw):
        losses = original(self, *args, **kw)
        calls[0] += 1
        if calls[0] <= count:
            losses = {k: v * float("nan") for k, v in losses.items()}
        return losses

    return compute


def test_a_non_finite_loss_is_skipped_and_counted(tiny_cfg, monkeypatch):
    monkeypatch.setattr(Detector, "compute_losses", _nan_losses(1))
    result = train(merge_config(tiny_cfg, {"train": {"eval_every": 0}}))
    assert result["nonfinite_steps"] == 1 and result["step"] == 3


def test_training_stops_after_non_finite_losses_in_a_row(tiny_cfg, monkeypatch):
    monkeypatch.setattr(Detector, "compute_losses", _nan_losses(100))
    cfg = merge_config(tiny_cfg, {"train": {"max_nonfinite": 3, "epochs": 3}})
    with pytest.raises(TrainingError, match="not finite in 3 steps in a row"):
        train(cfg)


class _Oracle(torch.nn.Module):
    """Predicts the (letterboxed) ground truth of each batch, in loader order."""

    def __init__(self, loader):
        super().__init__()
        self.queue = [targets for _, targets in loader]

    def predict(self, images):
        targets = self.queue.pop(0)
        return [{"boxes": t["boxes"], "scores": torch.ones(len(t["boxes"])), "labels": t["labels"]} for t in targets]


def test_predict_coco_maps_back_to_original_pixels_exactly(tiny_cfg):
    from boxloss.engine.trainer import prepare_data_paths

    paths = prepare_data_paths(tiny_cfg)
    ds = CocoDetection(paths["val_ann"], paths["val_images"], build_val_transforms(96))  # 64 px originals -> 96
    assert any(letterbox_params(tuple(t["orig_size"].tolist()), (96, 96))[1] != (0.0, 0.0) for _, t in ds)
    loader = build_dataloader(ds, batch_size=3)
    dets = predict_coco(_Oracle(loader), loader, ds, "cpu")
    assert {"image_id", "category_id", "bbox", "score"} == set(dets[0])
    assert {d["category_id"] for d in dets} <= set(ds.category_ids)
    gt = {a["id"]: a for a in ds.coco.dataset["annotations"]}
    assert len(dets) == len(gt)
    result = evaluate_coco(ds.coco, dets)
    assert result.stats["AP"] == pytest.approx(1.0)


def test_cli_errors_are_one_line(capsys, tmp_path):
    import runpy

    main = runpy.run_path("scripts/train_det.py")["main"]
    cases = [
        (["--config", "configs/smoke.yaml", "--box-loss", "nope"], "error: bad value loss.box_loss='nope'; accepted:"),
        (["--config", str(tmp_path / "missing.yaml")], "error: config file not found"),
        (["--config", "configs/smoke.yaml", "--set", "optim.lr=0"], "error: bad value optim.lr=0; accepted: a number > 0"),
        (["--config", "configs/smoke.yaml", "train.epochs=0"], "error: bad value train.epochs=0"),
        (["--train-ann", str(tmp_path / "a.json"), "--train-images", str(tmp_path), "--val-ann", str(tmp_path / "b.json"),
          "--val-images", str(tmp_path), "--output-dir", str(tmp_path / "run")], "error: data.train_ann: annotation file not found"),
    ]
    for argv, message in cases:
        assert main(argv) == 2
        out, err = capsys.readouterr()
        assert err.startswith(message) and err.count("\n") == 1, err
        assert "Traceback" not in err and out == "", (out, err)  # the line alone: no traceback, no "done:"
    assert not (tmp_path / "run" / "checkpoint_last.pt").exists()  # bad input: nothing was trained


def test_script_exit_status(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "scripts/train_det.py", "--config", "configs/smoke.yaml", "--box-loss", "x"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and proc.stderr.startswith("error: ")


def test_time_budget_stops_training_and_evaluates(tiny_cfg):
    cfg = merge_config(tiny_cfg, {"train": {"epochs": 50, "time_budget_s": 1.5, "eval_every": 10}})
    cfg_cpu = merge_config(cfg, {"train": {"budget_clock": "process", "output_dir": cfg["train"]["output_dir"] + "_cpu"}})
    assert train(cfg_cpu)["step"] < 50 * 2
    result = train(cfg)
    ckpt = load_checkpoint(os.path.join(cfg["train"]["output_dir"], "checkpoint_last.pt"))
    assert ckpt["epoch"] < 50 and result["stats"] is not None
    evals = [r for r in _rows(cfg["train"]["output_dir"]) if r["kind"] == "eval"]
    assert len(evals) >= 1 and int(evals[-1]["epoch"]) == ckpt["epoch"]
