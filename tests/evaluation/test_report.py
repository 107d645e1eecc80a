"""report.write_report / summarize_runs and plots.write_plots on hand-made run results."""

import csv
import json

import numpy as np
import pytest

from boxloss.evaluation import STAT_NAMES
from boxloss.evaluation.plots import epoch_curves, write_plots
from boxloss.evaluation.report import format_table, summarize_runs, write_report


def fake_run(loss, seed, ap, epochs=4):
    stats = {name: ap for name in STAT_NAMES}
    stats["APl"] = stats["ARl"] = -1.0  # no large ground truth
    log = []
    for e in range(1, epochs + 1):
        log += [{"kind": "train", "epoch": e, "step": (e - 1) * 5 + s, "loss": 2.0 / e} for s in range(1, 6)]
        log.append({"kind": "eval", "epoch": e, "step": e * 5, "AP": ap * e / epochs, "val_loss": 2.5 / e})
    pr = {"0.5": list(np.linspace(1, 0, 101)), "0.75": list(np.linspace(0.8, 0, 101))}
    return {"loss": loss, "seed": seed, "stats": stats, "per_class": {"circle": ap + 0.1, "square": ap - 0.1},
            "pr": pr, "train_time_s": 10.0 + seed, "final_train_loss": 0.5, "log": log}


RUNS = [fake_run("giou", 0, 0.30), fake_run("giou", 1, 0.34), fake_run("ciou", 1, 0.40), fake_run("ciou", 0, 0.36)]


def test_summarize_mean_std_over_seeds():
    s = summarize_runs(RUNS)
    assert list(s) == ["giou", "ciou"]
    assert s["giou"]["AP"]["mean"] == pytest.approx(0.32)
    assert s["giou"]["AP"]["std"] == pytest.approx(np.std([0.30, 0.34], ddof=1))
    assert s["ciou"]["AP"]["runs"] == pytest.approx([0.36, 0.40])  # seed order
    assert s["ciou"]["seeds"] == [0, 1]
    assert s["giou"]["APl"] == {"mean": -1.0, "std": None, "runs": [-1.0, -1.0]}
    assert s["giou"]["per_class"]["circle"]["mean"] == pytest.approx(0.42)
    assert s["giou"]["train_time_s"]["mean"] == pytest.approx(10.5)
    one = summarize_runs([fake_run("iou", 0, 0.2)])
    assert one["iou"]["AP"]["std"] is None


def test_table_in_percent():
    table = format_table(summarize_runs(RUNS))
    assert "| giou | 2 | 32.0 ± 2.8 |" in table
    assert "**38.0 ± 2.8**" in table  # best mean AP in bold
    assert "n/a" in table  # APl without ground truth


def test_write_report_files(tmp_path):
    write_plots(RUNS, tmp_path)
    out = write_report(RUNS, tmp_path, config={"train": {"epochs": 4}}, versions={"torch": "x"})
    doc = json.loads((tmp_path / "report.json").read_text())
    assert set(doc) >= {"losses", "config", "versions", "runs"}
    assert doc["losses"]["ciou"]["AP"]["mean"] == pytest.approx(0.38)
    assert set(doc["losses"]["ciou"]) >= set(STAT_NAMES) | {"train_time_s", "final_train_loss", "per_class"}
    assert doc["config"] == {"train": {"epochs": 4}}
    assert all(r["diagnosis"] for r in doc["runs"])  # computed from the logs
    rows = list(csv.DictReader(open(tmp_path / "report.csv")))
    assert [r["loss"] for r in rows] == ["giou", "ciou"]
    assert float(rows[0]["AP_mean"]) == pytest.approx(0.32) and rows[0]["APl_std"] == ""
    md = out["md"].read_text()
    for needle in ("| loss | seeds | AP |", "## Per-class AP", "| circle |", "healthy", "![", "pr_curves.png", "epochs: 4"):
        assert needle in md


def test_plots_are_pngs(tmp_path):
    paths = write_plots(RUNS, tmp_path)
    assert [p.name for p in paths] == ["ap_per_loss.png", "pr_curves.png", "training_curves.png"]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000


def test_plots_survive_missing_parts(tmp_path):
    bare = [{"loss": "iou", "seed": 0, "stats": {n: 0.0 for n in STAT_NAMES}}]
    assert len(write_plots(bare, tmp_path)) == 3
    write_report(bare, tmp_path, versions={})


def test_epoch_curves_average_train_steps_and_skip_missing_ap():
    rows = [
        {"kind": "train", "epoch": "1", "loss": "2.0"}, {"kind": "train", "epoch": "1", "loss": "1.0"},
        {"kind": "eval", "epoch": "1", "AP": "0.25"}, {"kind": "eval", "epoch": "2", "AP": "-1"},
    ]
    train, ap = epoch_curves(rows)
    assert train == {1.0: 1.5} and ap == {1.0: 0.25}
