"""engine.sweep_ray (``compare_losses.py --executor ray``) on a local Ray instance of 2 CPUs: the same report as
a local sweep (the real smoke training), and with fake trainers the orchestration: a killed worker is retried
and resumes, a run that raises is reported by name while the other finishes, a restarted sweep retrains
nothing finished, stale locks of dead Ray workers on other nodes are taken over; plus the CLI's wiring."""

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")  # the optional extra: pip install 'boxloss[ray]'

from boxloss.engine import load_config  # noqa: E402
from boxloss.engine.sweep import build_report, plan_runs, run_dir, run_state, run_sweep  # noqa: E402
from boxloss.engine import sweep_ray  # noqa: E402
from boxloss.engine.sweep_ray import ATTEMPT, _capacity, run_ray  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SMOKE = str(ROOT / "configs" / "smoke.yaml")

# The fakes below run in Ray's worker processes, which cannot import this test module: send them by value.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

GT = {
    "images": [{"id": i, "width": 100, "height": 100, "file_name": f"{i}.png"} for i in (5, 6)],
    "categories": [{"id": 3, "name": "circle"}, {"id": 17, "name": "square"}],
    "annotations": [
        {"id": 1, "image_id": 5, "category_id": 3, "bbox": [10, 10, 40, 40], "area": 1600, "iscrowd": 0},
        {"id": 2, "image_id": 6, "category_id": 17, "bbox": [50, 20, 30, 45], "area": 1350, "iscrowd": 0},
    ],
}
BASE = {"train": {"epochs": 3}}


@pytest.fixture(scope="module")
def local_ray():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def sweep_root(cfg):
    return Path(cfg["train"]["output_dir"]).parents[1]


def note_call(cfg):
    """Append (loss, seed, resume, pid) to the sweep folder's calls.jsonl: the spy, across processes."""
    with open(sweep_root(cfg) / "calls.jsonl", "a") as f:
        f.write(json.dumps([cfg["loss"]["box_loss"], cfg["train"]["seed"], cfg["train"]["resume"], os.getpid()]) + "\n")


def calls(out):
    path = Path(out) / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def fake_train(cfg):
    """Writes what the engine writes (as tests/evaluation/test_sweep.py's FakeTrainer)."""
    note_call(cfg)
    d = cfg["train"]["output_dir"]
    os.makedirs(d, exist_ok=True)
    open(os.path.join(d, "checkpoint_last.pt"), "wb").write(b"x")
    with open(os.path.join(d, "log.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["kind", "epoch", "step", "time_s", "cpu_s", "loss", "AP"])
        w.writeheader()
        for e in range(1, 4):
            w.writerow({"kind": "train", "epoch": e, "step": e, "time_s": 10 * e, "cpu_s": 19 * e, "loss": 2.0 / e})
            w.writerow({"kind": "eval", "epoch": e, "step": e, "AP": 0.2 * e})
    shift = 2.0 * cfg["train"]["seed"] + (cfg["loss"]["box_loss"] == "giou")
    dets = [{"image_id": a["image_id"], "category_id": a["category_id"], "score": 0.9,
             "bbox": [a["bbox"][0] + shift, *a["bbox"][1:]]} for a in GT["annotations"]]
    json.dump(dets, open(os.path.join(d, "detections.json"), "w"))
    json.dump({"epoch": cfg["train"]["epochs"], "AP": 0.0}, open(os.path.join(d, "stats.json"), "w"))


def dies_once(cfg):
    """The first attempt of each run writes a checkpoint, then its process is killed; the next one trains."""
    d = Path(cfg["train"]["output_dir"])
    marker = d.parent / f"died-{d.name}"
    if not marker.exists():
        note_call(cfg)
        d.mkdir(parents=True, exist_ok=True)
        (d / "checkpoint_last.pt").write_bytes(b"x")
        marker.write_text("x")
        os._exit(1)  # no exception, no cleanup: as a kill -9 or the OOM killer
    fake_train(cfg)


def giou_raises(cfg):
    if cfg["loss"]["box_loss"] == "giou":
        note_call(cfg)
        raise ValueError("giou diverged (a fake)")
    fake_train(cfg)


def test_capacity_counts_runs_that_fit_on_each_node():
    nodes = [{"Resources": {"CPU": 8.0, "GPU": 2.0}}, {"Resources": {"CPU": 3.0}}]
    assert _capacity(nodes, 2, 0) == 4 + 1
    assert _capacity(nodes, 2, 1) == 2
    assert _capacity(nodes, 1, 0.5) == 4
    assert _capacity(nodes, 16, 0) == 0


@pytest.mark.slow
def test_killed_worker_is_retried_and_resumes_from_its_checkpoint(local_ray, tmp_path):
    runs = plan_runs(["iou", "giou"], 1)
    lines = []
    out = run_ray(BASE, runs, tmp_path, coco_gt=GT, train_fn=dies_once, max_retries=2, poll_s=0.2, log=lines.append)
    for loss in ("iou", "giou"):
        assert out[loss, 0]["status"] == "done" and out[loss, 0]["attempts"] == 2, out
        assert run_state(run_dir(tmp_path, loss, 0)) == "done"
        assert not (run_dir(tmp_path, loss, 0) / ".lock").exists() and not (run_dir(tmp_path, loss, 0) / ATTEMPT).exists()
        assert any(f"{loss} seed 0: done" in line and "after 1 retry (its worker died)" in line for line in lines)
        first, second = [c for c in calls(tmp_path) if c[0] == loss]
        # the retry is another process, and resumes from the checkpoint the killed one left
        assert first[2] is None and second[2] == str(run_dir(tmp_path, loss, 0) / "checkpoint_last.pt")
        assert first[3] != second[3]
    # no retries allowed: the run fails, by name, with the worker's death as its error
    lines.clear()
    out = run_ray(BASE, [("ciou", 0)], tmp_path / "no-retry", coco_gt=GT, train_fn=dies_once, max_retries=0, poll_s=0.2,
                  log=lines.append)
    assert out["ciou", 0]["status"] == "failed" and "worker died in each of 1 attempt(s)" in out["ciou", 0]["error"]
    assert any(line.startswith("[sweep] ciou seed 0: FAILED: ") for line in lines)


def test_a_run_that_raises_is_reported_not_retried_and_the_other_finishes(local_ray, tmp_path):
    lines = []
    out = run_ray(BASE, plan_runs(["iou", "giou"], 1), tmp_path, coco_gt=GT, train_fn=giou_raises, max_retries=2,
                  poll_s=0.2, log=lines.append)
    assert out["iou", 0]["status"] == "done" and run_state(run_dir(tmp_path, "iou", 0)) == "done"
    assert out["giou", 0]["status"] == "failed" and out["giou", 0]["error"] == "ValueError: giou diverged (a fake)"
    assert "[sweep] giou seed 0: FAILED: ValueError: giou diverged (a fake)" in lines
    assert [c[0] for c in calls(tmp_path)].count("giou") == 1  # an exception is not retried
    d = run_dir(tmp_path, "giou", 0)
    assert not (d / ".lock").exists() and not (d / ATTEMPT).exists()  # released on the way out


def no_task(*args):
    raise AssertionError("a task was started for a finished run")


def test_a_restarted_sweep_retrains_nothing_finished_and_resumes_the_rest(local_ray, tmp_path, monkeypatch):
    runs = plan_runs(["iou", "giou"], 2)
    run_sweep(BASE, runs[:3], tmp_path, coco_gt=GT, train_fn=fake_train, log=lambda *a: None)  # 3 of 4 finished
    half = run_dir(tmp_path, "giou", 1)
    half.mkdir(parents=True)
    (half / "checkpoint_last.pt").write_bytes(b"x")  # the 4th interrupted after an epoch
    before = {r: (run_dir(tmp_path, *r) / "result.json").stat().st_mtime_ns for r in runs[:3]}
    n = len(calls(tmp_path))
    out = run_ray(BASE, runs, tmp_path, coco_gt=GT, train_fn=fake_train, poll_s=0.2, log=lambda *a: None)
    assert {r: o["status"] for r, o in out.items()} == {**{r: "reused" for r in runs[:3]}, ("giou", 1): "done"}
    assert calls(tmp_path)[n:] == [["giou", 1, str(half / "checkpoint_last.pt"), calls(tmp_path)[-1][3]]]
    assert {r: (run_dir(tmp_path, *r) / "result.json").stat().st_mtime_ns for r in runs[:3]} == before
    # everything finished: nothing is submitted at all
    n = len(calls(tmp_path))
    monkeypatch.setattr(sweep_ray, "_run_one", no_task)
    out = run_ray(BASE, runs, tmp_path, coco_gt=GT, train_fn=fake_train, poll_s=0.2, log=lambda *a: None)
    assert {o["status"] for o in out.values()} == {"reused"} and len(calls(tmp_path)) == n
    # a changed config is refused as in a local sweep
    with pytest.raises(RuntimeError, match="optim.lr"):
        run_ray({**BASE, "optim": {"lr": 0.5}}, runs, tmp_path, coco_gt=GT, train_fn=fake_train, log=lambda *a: None)


def test_lock_of_a_dead_ray_worker_on_another_node_is_taken_over_others_are_not(local_ray, tmp_path):
    owner = "4242@node-that-left.example"
    taken, busy = run_dir(tmp_path, "iou", 0), run_dir(tmp_path, "giou", 0)
    for d in (taken, busy):
        d.mkdir(parents=True)
        (d / ".lock").write_text(owner)
    # iou's lock was a Ray task's (it recorded itself) on a node no longer in the cluster: taken over
    (taken / ATTEMPT).write_text(json.dumps({"owner": owner, "node": "ab" * 28, "task": "00", "attempts": 1}))
    out = run_ray(BASE, [("iou", 0), ("giou", 0)], tmp_path, coco_gt=GT, train_fn=fake_train, poll_s=0.2,
                  log=lambda *a: None)
    assert out["iou", 0]["status"] == "done" and out["iou", 0]["attempts"] == 1
    # giou's lock is of some other process on another host: left alone, reported with its owner
    assert out["giou", 0]["status"] == "locked" and out["giou", 0]["owner"] == owner
    assert (busy / ".lock").read_text() == owner and run_state(busy) == "new"
    # a lock a Ray task recorded on this cluster's live node, whose process is gone (pid above pid_max)
    d = run_dir(tmp_path, "ciou", 0)
    d.mkdir(parents=True)
    dead = f"{2**22 + 12345}@another-name-of-this-node"
    (d / ".lock").write_text(dead)
    (d / ATTEMPT).write_text(json.dumps({"owner": dead, "node": ray.get_runtime_context().get_node_id(), "task": "00"}))
    out = run_ray(BASE, [("ciou", 0)], tmp_path, coco_gt=GT, train_fn=fake_train, poll_s=0.2, log=lambda *a: None)
    assert out["ciou", 0]["status"] == "done"


def _comparable(doc):
    """report.json / result.json without what differs between two trainings of the same runs: wall and CPU
    time, paths, versions."""
    drop = {"train_time_s", "cpu_time_s", "time_s", "cpu_s", "images_per_s", "run_dir", "output_dir", "versions"}
    if isinstance(doc, dict):
        return {k: _comparable(v) for k, v in doc.items() if k not in drop}
    if isinstance(doc, list):
        return [_comparable(v) for v in doc]
    return doc


@pytest.mark.slow
def test_same_report_as_a_local_sweep_on_the_smoke_config(local_ray, tmp_path):
    import torch

    cfg = load_config(SMOKE, [f"data.cache_dir={tmp_path / 'cache'}", "train.progress=false", "train.tensorboard=false",
                              "train.device=cpu", "train.threads=1"])
    runs = plan_runs(["iou", "ciou"], 1)
    threads = torch.get_num_threads()
    try:
        assert set(run_sweep(cfg, runs, tmp_path / "local", log=lambda *a: None).values()) == {"done"}
    finally:
        torch.set_num_threads(threads)
    ray_cfg = load_config(SMOKE, [f"data.cache_dir={tmp_path / 'cache'}", "train.progress=false",
                                  "train.tensorboard=false", "train.device=cpu"])
    out = run_ray(ray_cfg, runs, tmp_path / "ray", cpus_per_run=1, poll_s=1.0, log=lambda *a: None)
    assert {o["status"] for o in out.values()} == {"done"}
    for loss, seed in runs:
        a, b = (json.loads((run_dir(tmp_path / w, loss, seed) / "result.json").read_text()) for w in ("local", "ray"))
        assert _comparable(a) == _comparable(b), loss
        assert load_config(str(run_dir(tmp_path / "ray", loss, seed) / "config.yaml"))["train"]["threads"] == 1
    reports = [build_report(cfg, runs, tmp_path / w, n_bootstrap=50, log=lambda *a: None) for w in ("local", "ray")]
    a, b = (json.loads(r["json"].read_text()) for r in reports)
    assert a["runs"][0]["stats"]["AP"] >= 0 and a["comparison"]["comparisons"]
    assert _comparable(a) == _comparable(b)


def test_cli_ray_flags(monkeypatch, tmp_path, capsys):
    from boxloss.cli import compare

    base = ["--config", SMOKE, "--losses", "iou,giou", "--seeds", "1", "--output-dir", str(tmp_path / "o")]
    assert compare.main([*base, "--ray-address", "auto"]) == 2
    assert "--ray-address: only with --executor ray" in capsys.readouterr().err
    assert compare.main([*base, "--executor", "ray", "--jobs", "2"]) == 2
    assert "not with --executor ray" in capsys.readouterr().err
    # the wiring: the flags reach run_ray, a failed run is named and the exit status is 1 (no report)
    seen = {}

    def fake_run_ray(cfg, runs, out_dir, **kw):
        seen.update(kw, runs=runs)
        return {("iou", 0): {"status": "done", "error": None}, ("giou", 0): {"status": "failed", "error": "ValueError: x"}}

    monkeypatch.setattr(compare, "run_ray", fake_run_ray)
    assert compare.main([*base, "--executor", "ray", "--cpus-per-run", "3", "--gpus-per-run", "0.5", "--max-retries", "1",
                         "--ray-address", "auto"]) == 1
    assert seen["cpus_per_run"] == 3 and seen["gpus_per_run"] == 0.5 and seen["max_retries"] == 1
    assert seen["address"] == "auto" and seen["runs"] == [("iou", 0), ("giou", 0)] and callable(seen["progress"])
    err = capsys.readouterr().err
    assert "1 of 2 runs failed" in err and "giou seed 0: ValueError: x" in err and len(err.strip().splitlines()) == 1
    # without the ray package: one line naming the extra, nothing written
    monkeypatch.setitem(sys.modules, "ray", None)
    assert compare.main([*base, "--executor", "ray", "--output-dir", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: --executor ray needs Ray, which is not installed: pip install 'boxloss[ray]'"
    assert not (tmp_path / "none").exists()


def test_core_imports_do_not_import_ray():
    code = ("import sys, boxloss.cli.compare, boxloss.engine.sweep_ray, boxloss.engine;"
            "sys.exit('ray' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


def record_niceness(cfg):
    """Writes the worker's niceness beside the run, then trains as fake_train."""
    d = Path(cfg["train"]["output_dir"])
    d.mkdir(parents=True, exist_ok=True)
    (d / "niceness").write_text(str(os.nice(0)))
    fake_train(cfg)


@pytest.mark.slow  # a fresh interpreter that starts its own Ray instance: ~15 s
def test_an_instance_started_by_the_sweep_runs_its_tasks_at_the_drivers_priority(tmp_path):
    """Ray's workers default to niceness 15 and starve next to any other work on the machine; the instance the
    sweep starts for itself runs them at the driver's niceness (and leaves the driver's environment as it was)."""
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps(GT))
    script = f"""
import json, os, sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
import ray
import test_sweep_ray as t
from boxloss.engine.sweep_ray import run_ray
from pycocotools.coco import COCO
coco = COCO({str(gt)!r})
out = run_ray(t.BASE, [("ciou", 0)], {str(tmp_path / "out")!r}, train_fn=t.record_niceness, coco_gt=coco,
              log=lambda *a: None)
print(json.dumps({{"status": out["ciou", 0]["status"], "driver": os.nice(0), "left": os.environ.get("RAY_worker_niceness"),
                   "initialised": ray.is_initialized()}}))
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"status": "done", "driver": os.nice(0), "left": None, "initialised": False}
    assert (run_dir(tmp_path / "out", "ciou", 0) / "niceness").read_text() == str(os.nice(0))
