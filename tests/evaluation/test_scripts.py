"""The real thing on the smoke config: compare_losses.py (2 losses x 2 seeds with the full report, then
reuse, re-analysis of the folder with another baseline, then a real resume), and eval_det.py on one of
its checkpoints and on a detections file. About two minutes on 2 CPU cores."""

import csv
import json
import runpy
import warnings
from pathlib import Path

import pytest

from boxloss.engine import load_config, train
from boxloss.engine.sweep import run_dir, run_state
from boxloss.evaluation import STAT_NAMES

ROOT = Path(__file__).resolve().parents[2]
SMOKE = str(ROOT / "configs" / "smoke.yaml")
pytestmark = pytest.mark.slow


def script(name):
    return runpy.run_path(str(ROOT / "scripts" / name))["main"]


def in_range(v):
    return v == -1 or 0.0 <= v <= 1.0


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("cache"))


def common(cache):
    return ["--set", f"data.cache_dir={cache}", "train.progress=false", "train.tensorboard=false", "train.device=cpu"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, cache):
    out = tmp_path_factory.mktemp("sweep")
    main = script("compare_losses.py")
    assert main(["--config", SMOKE, "--losses", "iou,ciou", "--seeds", "2", "--output-dir", str(out), "-q", "--bootstrap", "200",
                 *common(cache)]) == 0
    return out, main


PLOTS = ("ap_per_loss.png", "pr_curves.png", "training_curves.png", "difference_forest.png", "ap_vs_iou.png",
         "tide_errors.png", "tp_iou.png")


def test_smoke_sweep_writes_the_full_report(sweep, capsys):
    out, _ = sweep
    for name in ("report.md", "report.json", "report.csv", "sweep.json", *PLOTS):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    for name in PLOTS:
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    doc = json.loads((out / "report.json").read_text())
    assert doc["schema_version"] == 2 and list(doc["losses"]) == ["iou", "ciou"]
    assert doc["config"]["data"]["image_size"] == 128 and "torch" in doc["versions"] and "hotcoco" in doc["versions"]
    for loss, entry in doc["losses"].items():
        for name in STAT_NAMES:
            assert in_range(entry[name]["mean"]) and len(entry[name]["runs"]) == 2, (loss, name)
        assert entry["train_time_s"]["mean"] > 0 and entry["final_train_loss"]["mean"] > 0
        assert entry["per_class"] and all(in_range(a["mean"]) for a in entry["per_class"].values())
    assert all(r["diagnosis"] for r in doc["runs"])
    rows = list(csv.DictReader(open(out / "report.csv")))
    assert [r["loss"] for r in rows] == ["iou", "ciou"] and all(in_range(float(r["AP_mean"])) for r in rows)
    md = (out / "report.md").read_text()
    assert "| iou | 2 |" in md and "## Per-class AP" in md and "## Runs and training-curve diagnosis" in md
    # the answer first, then the comparison, where it comes from, TIDE and localization
    assert md.index("**Answer** (AP, 16 validation images, 2 seed(s) per loss, baseline **iou**)") < md.index("## Each loss against iou")
    for section in ("## AP per loss", "### Where the differences come from", "## Errors (TIDE)", "## Localization", "difference_forest.png"):
        assert section in md, section
    comparison = doc["comparison"]
    assert comparison["baseline"] == "iou" and comparison["n_comparisons"] == 1 and doc["answer"]
    (row,) = comparison["comparisons"]
    assert row["loss"] == "ciou" and row["n"] == 2 and row["verdict"] in ("better", "worse", "not established")
    ious = {r["seed"]: r for r in doc["runs"] if r["loss"] == "iou"}
    cious = {r["seed"]: r for r in doc["runs"] if r["loss"] == "ciou"}
    # the paired differences are those of the runs' own AP, and the image bootstrap ran per seed
    assert [e["diff"] for e in row["per_seed"]] == pytest.approx([cious[s]["stats"]["AP"] - ious[s]["stats"]["AP"] for s in (0, 1)])
    assert all(e["bootstrap"]["n_bootstrap"] == 200 and e["bootstrap"]["lower"] <= e["bootstrap"]["upper"] for e in row["per_seed"])
    for r in doc["runs"]:
        a = r["analysis"]
        assert set(a["tide"]["dAP"]) == {"Cls", "Loc", "Both", "Dupe", "Bkg", "Miss", "FP", "FN"}
        assert len(a["ap_by_iou"]) == 10 and a["tp_iou"]["all"]["n"] >= 0
    assert set(doc["loss_summary"]) == {"iou", "ciou"}
    for d in (run_dir(out, "iou", 0), run_dir(out, "ciou", 0)):
        result = json.loads((d / "result.json").read_text())
        engine_stats = json.loads((d / "stats.json").read_text())
        # the sweep's own evaluation of the final detections agrees with the engine's last evaluation
        assert {k: result["stats"][k] for k in STAT_NAMES} == pytest.approx({k: engine_stats[k] for k in STAT_NAMES})
        assert len(result["pr"]["0.5"]) == 101


def test_second_pass_reuses_and_prints_the_table(sweep, cache, capsys):
    out, main = sweep
    before = (run_dir(out, "iou", 0) / "result.json").stat().st_mtime_ns
    assert main(["--config", SMOKE, "--losses", "iou,ciou", "--seeds", "2", "--output-dir", str(out), "-q", "--bootstrap", "0",
                 *common(cache)]) == 0
    text = capsys.readouterr().out
    assert "iou seed 0: done, reused" in text and "| loss | seeds | AP |" in text and "**Answer**" in text
    assert (run_dir(out, "iou", 0) / "result.json").stat().st_mtime_ns == before
    # re-analysis of the folder alone (its sweep.json and the runs' config.yaml), with another baseline
    assert main(["--report-only", str(out), "--baseline", "ciou", "--bootstrap", "0"]) == 0
    assert "baseline **ciou**" in capsys.readouterr().out
    doc = json.loads((out / "report.json").read_text())
    assert doc["comparison"]["baseline"] == "ciou" and [r["loss"] for r in doc["comparison"]["comparisons"]] == ["iou"]
    assert (run_dir(out, "iou", 0) / "result.json").stat().st_mtime_ns == before  # nothing retrained or re-evaluated
    assert main(["--report-only", str(out), "--baseline", "diou"]) == 2
    assert "not among the compared losses" in capsys.readouterr().err
    assert main(["--report-only", str(out / "nowhere")]) == 2
    # a changed config is refused, not silently mixed with old runs
    assert main(["--config", SMOKE, "--losses", "iou", "--seeds", "1", "--output-dir", str(out), "-q", *common(cache),
                 "optim.lr=0.02"]) == 1
    assert "different settings" in capsys.readouterr().err


def test_interrupted_run_resumes_from_checkpoint(tmp_path, cache, capsys):
    # Simulate an interruption after epoch 1 of 2: train the run folder for 1 epoch, as the engine would
    # have left it (checkpoint_last.pt of epoch 1, stats.json of epoch 1).
    out = tmp_path / "sweep"
    d = run_dir(out, "giou", 0)
    cfg = load_config(SMOKE, ["train.epochs=1", f"data.cache_dir={cache}", "train.progress=false",
                              "train.tensorboard=false", "train.device=cpu", "loss.box_loss=giou", f"train.output_dir={d}"])
    train(cfg)
    assert run_state(d, epochs=2) == "partial"
    main = script("compare_losses.py")
    assert main(["--config", SMOKE, "--losses", "giou", "--seeds", "1", "--output-dir", str(out), "-q", *common(cache)]) == 0
    assert "resuming from" in capsys.readouterr().out
    log = list(csv.DictReader(open(d / "log.csv")))
    assert sorted({r["epoch"] for r in log}) == ["1", "2"]
    assert len([r for r in log if r["kind"] == "eval"]) == 2  # epoch 1 kept once, epoch 2 appended
    assert json.loads((d / "stats.json").read_text())["epoch"] == 2


def test_only_and_shard_flags_pick_runs(tmp_path, cache, capsys):
    main = script("compare_losses.py")
    out = tmp_path / "sweep"
    assert main(["--config", SMOKE, "--losses", "iou,ciou", "--seeds", "1", "--output-dir", str(out), "--report-only",
                 *common(cache)]) == 1
    assert "still missing: iou seed 0, ciou seed 0" in capsys.readouterr().out
    assert main(["--config", SMOKE, "--losses", "iou", "--only", "loss=ciou", "--output-dir", str(out), *common(cache)]) == 0
    assert "0/3 runs finished" in capsys.readouterr().out  # nothing selected: nothing trained
    assert main(["--config", SMOKE, "--losses", "nope", "--output-dir", str(out)]) == 2
    assert main(["--config", SMOKE, "--shard", "3/2", "--output-dir", str(out)]) == 2


@pytest.mark.parametrize("backend", ["pycocotools", "hotcoco"])
def test_eval_det_reproduces_the_final_evaluation(sweep, tmp_path, backend, capsys):
    out, _ = sweep
    d = run_dir(out, "ciou", 0)
    main = script("eval_det.py")
    assert main(["--checkpoint", str(d / "checkpoint_last.pt"), "--output-dir", str(tmp_path), "--device", "cpu",
                 "--backend", backend]) == 0
    text = capsys.readouterr().out
    assert "(   AP)" in text and "AR100" in text and "class" in text
    assert "TIDE errors at IoU 0.50" in text and "AP (%) per IoU threshold" in text and "IoU of true positives" in text
    stats = json.loads((tmp_path / "stats.json").read_text())
    engine = json.loads((d / "stats.json").read_text())
    assert {k: stats[k] for k in STAT_NAMES} == pytest.approx({k: engine[k] for k in STAT_NAMES}, abs=1e-12)
    assert set(stats["per_class"]) and json.loads((tmp_path / "detections.json").read_text())


def test_eval_det_on_a_detections_file(sweep, tmp_path, capsys):
    out, _ = sweep
    d = run_dir(out, "ciou", 1)
    main = script("eval_det.py")
    # the run folder's config.yaml gives the val split
    assert main(["--detections", str(d / "detections.json"), "--output-dir", str(tmp_path)]) == 0
    assert "TIDE errors" in capsys.readouterr().out
    analysis = json.loads((tmp_path / "analysis.json").read_text())
    report = json.loads((out / "report.json").read_text())
    (run,) = [r for r in report["runs"] if r["loss"] == "ciou" and r["seed"] == 1]
    for key in ("stats", "ap_by_iou"):  # the same numbers as the sweep's report
        assert analysis[key] == pytest.approx(run["analysis"][key], abs=1e-12), key
    assert analysis["tide"]["dAP"] == pytest.approx(run["analysis"]["tide"]["dAP"], abs=1e-12)
    assert analysis["tp_iou"]["all"]["n"] == run["analysis"]["tp_iou"]["all"]["n"]
    assert not (tmp_path / "detections.json").exists()  # nothing to write: the detections are the input
    # outside a run folder: --val-ann is needed, and named
    lone = tmp_path / "lone.json"
    lone.write_text((d / "detections.json").read_text())
    assert main(["--detections", str(lone)]) == 2
    assert "give --val-ann" in capsys.readouterr().err
    lone.write_text('{"not": "a list"}')
    assert main(["--detections", str(lone), "--val-ann", str(lone)]) == 2
    assert "expected a COCO results list" in capsys.readouterr().err


def test_eval_det_errors(tmp_path, sweep, capsys):
    main = script("eval_det.py")
    assert main(["--checkpoint", str(tmp_path / "missing.pt")]) == 2
    out, _ = sweep
    ck = str(run_dir(out, "iou", 0) / "checkpoint_last.pt")
    assert main(["--checkpoint", ck, "--val-ann", "x.json"]) == 2
    assert "both --val-ann and --val-images" in capsys.readouterr().err


def test_jobs_flag_trains_shards_in_parallel_processes(tmp_path, cache, capsys):
    from boxloss.engine.sweep_jobs import threads_per_job

    main = script("compare_losses.py")
    out = tmp_path / "sweep"
    assert main(["--config", SMOKE, "--losses", "iou,ciou", "--seeds", "1", "--output-dir", str(out), "--jobs", "2",
                 *common(cache)]) == 0
    text = capsys.readouterr().out
    assert "2 processes" in text and "runs finished" in text and "| loss | seeds | AP |" in text
    assert (out / "report.md").is_file() and list(json.loads((out / "report.json").read_text())["losses"]) == ["iou", "ciou"]
    for i, loss in enumerate(("iou", "ciou")):  # shard i of 2 trained run i, with cores // 2 threads
        log = (out / f"job{i}.log").read_text()
        assert f"{loss} seed 0" in log and "error" not in log.lower()
        run_cfg = load_config(str(run_dir(out, loss, 0) / "config.yaml"))
        assert run_cfg["train"]["threads"] == threads_per_job(2)
    assert main(["--config", SMOKE, "--jobs", "2", "--shard", "0/2", "--output-dir", str(out)]) == 2
    assert "not together with --shard" in capsys.readouterr().err


def test_bench_train_step_prints_fp32_and_bf16_rates(tmp_path, cache, capsys):
    import yaml

    cfg = yaml.safe_load(Path(SMOKE).read_text())
    cfg["data"]["cache_dir"] = cache
    config = tmp_path / "smoke.yaml"
    config.write_text(yaml.safe_dump(cfg))
    main = script("bench_train_step.py")
    assert main(["--config", str(config), "--batch", "2", "--steps", "2", "--warmup", "1", "--repeats", "1"]) == 0
    batch, threads, fp32, bf16, ratio = capsys.readouterr().out.strip().splitlines()[-1].split()
    assert (batch, threads) == ("2", "1")
    assert float(fp32) > 0 and float(bf16) > 0
    # the ratio is of the unrounded rates, the rates are printed to 0.1: compare loosely
    assert float(ratio.rstrip("x")) == pytest.approx(float(bf16) / float(fp32), rel=0.05, abs=0.01)


def test_eval_det_evaluates_a_bf16_run_in_bf16(tmp_path, cache, capsys):
    cfg = load_config(SMOKE, extra={"data": {"cache_dir": cache}, "train": {
        "amp": "bf16", "epochs": 1, "output_dir": str(tmp_path / "run"), "progress": False, "tensorboard": False,
        "device": "cpu"}})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the emulation warning, on CPUs without native bf16
        train(cfg)
    main = script("eval_det.py")
    engine = json.loads((tmp_path / "run" / "detections.json").read_text())
    assert engine, "the 1-epoch smoke run should give detections to compare"
    for amp, same in (("bf16", True), ("none", False)):  # default = the checkpoint's train.amp (bf16)
        args = ["--checkpoint", str(tmp_path / "run" / "checkpoint_last.pt"), "--output-dir", str(tmp_path / amp),
                "--device", "cpu"] + ([] if amp == "bf16" else ["--amp", amp])
        assert main(args) == 0
        assert (json.loads((tmp_path / amp / "detections.json").read_text()) == engine) is same, amp


def test_variant_flag_errors_are_one_line(tmp_path, capsys):
    main = script("compare_losses.py")
    out = str(tmp_path / "v")
    assert main(["--config", SMOKE, "--losses", "ciou,ciou_dfl", "--variant", "ciou_dfl:model.box_hed=distribution",
                 "--output-dir", out]) == 2
    assert "--variant ciou_dfl: unknown config key model.box_hed" in capsys.readouterr().err
    assert main(["--config", SMOKE, "--losses", "ciou,giou", "--variant", "giou:model.box_head=distribution",
                 "--output-dir", out]) == 2
    assert "the name of a box loss" in capsys.readouterr().err
    assert main(["--config", SMOKE, "--losses", "ciou,dfl", "--output-dir", out]) == 2
    assert "unknown box loss(es) or variant(s) ['dfl']" in capsys.readouterr().err
