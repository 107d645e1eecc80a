"""engine.sweep_progress: the progress block of a running sweep, from hand-written run folders."""

import csv
import json

import pytest

from boxloss.engine.sweep import RESULT, run_dir
from boxloss.engine.sweep_progress import format_progress, progress_key, run_progress

FIELDS = ["kind", "epoch", "step", "time_s", "loss", "AP"]


def write_run(out, loss, seed, rows, finished=False):
    d = run_dir(out, loss, seed)
    d.mkdir(parents=True)
    with open(d / "log.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(rows)
    (d / "checkpoint_last.pt").write_bytes(b"x")
    if finished:
        (d / RESULT).write_text(json.dumps({"stats": {"AP": 0.2}}))
    return d


def test_progress_of_runs_in_flight_and_the_sweep_eta(tmp_path):
    # a finished run of 10 epochs in 600 s; one at epoch 3 after 100 s with 2 epochs done (50 s each)
    write_run(tmp_path, "giou", 0, [{"kind": "train", "epoch": 10, "step": 100, "time_s": 600, "loss": 1.2},
                                    {"kind": "eval", "epoch": 10, "step": 100, "time_s": 600, "AP": 0.21}], finished=True)
    write_run(tmp_path, "ciou", 0, [{"kind": "train", "epoch": 2, "step": 20, "time_s": 90, "loss": 1.9},
                                    {"kind": "eval", "epoch": 2, "step": 20, "time_s": 95, "AP": 0.05},
                                    {"kind": "train", "epoch": 3, "step": 25, "time_s": 100, "loss": 1.75}])
    p = run_progress(run_dir(tmp_path, "ciou", 0), epochs=10)
    assert (p["epoch"], p["loss"], p["ap"], p["ap_epoch"]) == (3, 1.75, 0.05, 2)
    assert p["eta_s"] == pytest.approx(100 / 2 * 8)  # 2 epochs done in 100 s, 8 to go
    runs = [("giou", 0), ("ciou", 0), ("giou", 1)]
    text = format_progress(runs, tmp_path, epochs=10, jobs=2)
    head, line = text.splitlines()
    # left: ciou's 400 s + one queued run of the mean 600 s, two at a time -> 500 s = 8 min
    assert head == "1/3 runs finished, 1 training; sweep ETA ~8 min (mean run 10.0 min, 2 at a time)"
    assert "ciou seed 0" in line and "epoch   3/10" in line and "loss 1.750" in line and "AP 5.0 (epoch 2)" in line
    assert "ETA 6.7 min" in line


def test_key_changes_with_epochs_not_with_losses(tmp_path):
    d = write_run(tmp_path, "iou", 0, [{"kind": "train", "epoch": 1, "step": 5, "time_s": 10, "loss": 2.0}])
    runs = [("iou", 0)]
    before = progress_key(runs, tmp_path, 5)
    with open(d / "log.csv", "a", newline="") as f:
        csv.DictWriter(f, fieldnames=FIELDS).writerow({"kind": "train", "epoch": 1, "step": 10, "time_s": 20, "loss": 1.8})
    assert progress_key(runs, tmp_path, 5) == before
    with open(d / "log.csv", "a", newline="") as f:
        csv.DictWriter(f, fieldnames=FIELDS).writerow({"kind": "train", "epoch": 2, "step": 15, "time_s": 30, "loss": 1.7})
    assert progress_key(runs, tmp_path, 5) != before


def test_nothing_started_yet(tmp_path):
    assert format_progress([("iou", 0), ("iou", 1)], tmp_path, epochs=4) == "0/2 runs finished, 0 training"
