"""A resumable sweep: one detector per (box loss, seed), everything else identical, then a report.

    from boxloss.engine.sweep import plan_runs, run_sweep, build_report
    runs = plan_runs(["giou", "ciou"], seeds=3)                 # [("giou", 0), ("giou", 1), ...]
    run_sweep(cfg, runs, "runs/cmp")                             # trains + evaluates what is missing
    build_report(cfg, runs, "runs/cmp")                          # report.md/json/csv + PNGs

Layout: ``out_dir/<loss>/seed<k>/`` is the engine's output directory of one run (``config.yaml``,
``log.csv``, ``checkpoint_last.pt``, ``detections.json``, ``stats.json``); the sweep adds ``result.json``
there (its own COCO evaluation, hotcoco by default, of the final ``detections.json``: 12 stats, per-class AP,
PR curves, time, final loss) once the run is finished. Hence:

- resumable: a run with ``result.json`` is reused as is; a run whose training finished but was not yet
  evaluated is only evaluated; an interrupted run resumes from its ``checkpoint_last.pt`` through the
  engine's own resume; a run never started starts;
- spreadable over processes or GPUs: each process takes a disjoint part with ``select_runs`` (``shard
  (i, n)`` takes every n-th run starting at i, ``only`` picks runs by loss/seed); a ``.lock`` file
  in the run directory (pid@host) keeps two processes off the same run, and a lock left by a dead
  process on this host is taken over; after all parts are done, ``build_report`` (``--report-only`` in
  the script) writes the report from the files alone.
"""

from __future__ import annotations

import copy
import json
import os
import socket
import time
from pathlib import Path

from ..evaluation.coco_eval import evaluate_coco
from ..evaluation.diagnosis import as_float, diagnose_run
from ..evaluation.plots import write_plots
from ..evaluation.report import collect_versions, write_report

PR_IOUS = (0.5, 0.75)
RESULT = "result.json"


def plan_runs(losses, seeds) -> list[tuple[str, int]]:
    """All (loss, seed) pairs, loss-major; ``seeds`` is a count (0..n-1) or an explicit list."""
    seeds = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    return [(loss, seed) for loss in losses for seed in seeds]


def select_runs(runs, *, only: dict | None = None, shard: tuple[int, int] | None = None) -> list[tuple[str, int]]:
    """The part of ``runs`` one process should do.

    Args:
        only: e.g. ``{"loss": ["ciou"], "seed": [1]}``; a run is kept if it matches every key given.
        shard: ``(i, n)``, 0 <= i < n: keep runs number i, i + n, i + 2n, ... of ``runs``.
    """
    runs = list(runs)
    out = runs
    if only:
        losses, seeds = only.get("loss"), only.get("seed")
        out = [(l, s) for l, s in out if (not losses or l in losses) and (not seeds or s in seeds)]
    if shard is not None:
        i, n = shard
        if not (n >= 1 and 0 <= i < n):
            raise ValueError(f"shard must be i/n with 0 <= i < n, got {i}/{n}")
        out = [r for k, r in enumerate(runs) if k % n == i and r in out]
    return out


def run_dir(out_dir, loss: str, seed: int) -> Path:
    return Path(out_dir) / loss / f"seed{seed}"


VARIANTS = "variants"  # key of the base config holding the sweep's named variants (not an engine setting)


def parse_variants(specs) -> dict:
    """``["ciou_dfl:loss.box_loss=ciou,model.box_head=distribution", "ciou_dfl:loss.dfl_weight=0.5"]`` ->
    ``{"ciou_dfl": {"loss": {"box_loss": "ciou", "dfl_weight": 0.5}, "model": {"box_head": "distribution"}}}``:
    named config changes a sweep compares like box losses (a spec's ``KEY=VALUE`` pairs are separated
    by commas before the next ``section.key=``; repeating a name adds to it)."""
    import re

    from .config import ConfigError, parse_override

    out: dict = {}
    for spec in specs or ():
        name, sep, rest = spec.partition(":")
        name = name.strip()
        if not sep or not re.fullmatch(r"[A-Za-z0-9_.+-]+", name) or not rest.strip():
            raise ConfigError(f"--variant {spec!r}: expected NAME:section.key=value[,section.key=value...], "
                              "NAME of letters, digits and _ . + -")
        changes = out.setdefault(name, {})
        for item in re.split(r",(?=\s*[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_.]*=)", rest):
            override = parse_override(item.strip())
            _merge_dicts(changes, override)
    return out


def _merge_dicts(base: dict, new: dict) -> None:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge_dicts(base[key], value)
        else:
            base[key] = copy.deepcopy(value)


def run_config(base_cfg: dict, loss: str, seed: int, directory, resume=None) -> dict:
    """The base config with only ``loss.box_loss``, ``train.seed``, ``train.output_dir`` and
    ``train.resume`` changed; for a name of the base config's ``variants``, that variant's changes
    instead of ``loss.box_loss`` (a variant is the base config plus its own changes)."""
    cfg = copy.deepcopy(base_cfg)
    variants = cfg.pop(VARIANTS, None) or {}
    if loss in variants:
        _merge_dicts(cfg, variants[loss])
    else:
        cfg.setdefault("loss", {})["box_loss"] = loss
    train = cfg.setdefault("train", {})
    train["seed"] = int(seed)
    train["output_dir"] = os.fspath(directory)
    train["resume"] = None if resume is None else os.fspath(resume)
    return cfg


def run_state(directory, epochs: int | None = None) -> str:
    """``done`` (result.json), ``trained`` (the engine's final evaluation is written: ``stats.json`` of
    epoch ``epochs`` — the engine rewrites it at every evaluation), ``partial`` (a checkpoint or an
    earlier evaluation, not finished) or ``new``."""
    d = Path(directory)
    if (d / RESULT).is_file():
        return "done"
    if (d / "stats.json").is_file() and (d / "detections.json").is_file():
        try:
            epoch = json.loads((d / "stats.json").read_text(encoding="utf-8")).get("epoch")
        except (json.JSONDecodeError, OSError):
            epoch = None
        if epochs is None or (epoch is not None and epoch >= epochs):
            return "trained"
    if (d / "checkpoint_last.pt").is_file():
        return "partial"
    return "new"


FINGERPRINT_SECTIONS = ("data", "model", "loss", "optim", "schedule")
FINGERPRINT_TRAIN = ("epochs", "batch_size", "seed", "amp", "clip_grad")


def fingerprint(cfg: dict) -> dict:
    """The parts of a run's config that change its result (not paths, device, workers, progress)."""
    out = {k: cfg.get(k) for k in FINGERPRINT_SECTIONS}
    out["train"] = {k: cfg.get("train", {}).get(k) for k in FINGERPRINT_TRAIN}
    return json.loads(json.dumps(out, default=str))


# --- locking: one process per run directory -----------------------------------------------------


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def acquire_lock(directory) -> bool:
    """Create ``directory/.lock`` (pid@host); False if another live process holds it."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    lock = d / ".lock"
    me = f"{os.getpid()}@{socket.gethostname()}"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            owner = lock.read_text().strip() if lock.exists() else ""
            pid, _, host = owner.partition("@")
            if host == socket.gethostname() and pid.isdigit() and not _pid_alive(int(pid)):
                lock.unlink(missing_ok=True)  # left by a dead process on this machine
                continue
            return owner == me
        with os.fdopen(fd, "w") as f:
            f.write(me)
        return True
    return False


def release_lock(directory) -> None:
    lock = Path(directory) / ".lock"
    if lock.is_file() and lock.read_text().strip() == f"{os.getpid()}@{socket.gethostname()}":
        lock.unlink()


# --- one run -------------------------------------------------------------------------------------


def read_log(path) -> list[dict]:
    """Rows of a ``log.csv`` as dicts of strings ([] if the file is missing)."""
    import csv

    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def train_summary(log_rows) -> dict:
    """``{"train_time_s", "cpu_time_s", "final_train_loss"}`` of a run's log (None where absent).

    ``train_time_s``: the largest ``time_s`` (the engine's wall clock of the whole run, resumed parts
    summed, periodic validation included; it grows with the machine's load). ``cpu_time_s``: the
    largest ``cpu_s`` (the process's CPU seconds; steadier under load; absent from older logs).
    ``final_train_loss``: the mean loss of the last epoch's train rows (less noisy than one step's).
    """
    def largest(key):
        values = [v for v in (as_float(r.get(key)) for r in log_rows) if v is not None]
        return max(values) if values else None

    train = [r for r in log_rows if r.get("kind") == "train"]
    losses = [as_float(r.get("loss")) for r in train if train and r.get("epoch") == train[-1].get("epoch")]
    losses = [v for v in losses if v is not None]
    return {"train_time_s": largest("time_s"), "cpu_time_s": largest("cpu_s"),
            "final_train_loss": sum(losses) / len(losses) if losses else None}


def evaluate_run(directory, coco_gt, *, loss: str, seed: int, backend: str = "hotcoco", cfg: dict | None = None) -> dict:
    """Evaluate a finished run's ``detections.json`` and write ``result.json`` (with the run config's
    ``fingerprint`` when ``cfg`` is given); returns the result dict."""
    d = Path(directory)
    detections = json.loads((d / "detections.json").read_text(encoding="utf-8"))
    ev = evaluate_coco(coco_gt, detections, backend=backend)
    log = read_log(d / "log.csv")
    result = {
        "loss": loss,
        "seed": seed,
        "stats": ev.stats,
        "per_class": ev.per_class,
        "pr": {str(iou): ev.pr_curve(iou)[1].tolist() for iou in PR_IOUS},
        **train_summary(log),
        "diagnosis": diagnose_run(log),
        "run_dir": os.fspath(d),
        "num_detections": ev.num_detections,
        "fingerprint": None if cfg is None else fingerprint(cfg),
    }
    tmp = d / (RESULT + ".tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    tmp.replace(d / RESULT)  # atomic: a result.json is always complete
    return result


def load_run(directory) -> dict:
    """A finished run's result dict (``result.json``) with its ``log`` rows attached and its
    diagnosis recomputed from them."""
    d = Path(directory)
    result = json.loads((d / RESULT).read_text(encoding="utf-8"))
    result["log"] = read_log(d / "log.csv")
    if result["log"]:  # today's rules and columns, not those of when it was evaluated
        result["diagnosis"] = diagnose_run(result["log"])
        result.update(train_summary(result["log"]))
    return result


def _train(cfg: dict):
    """The engine's ``train(cfg)``: trains into ``train.output_dir``, resuming from ``train.resume``."""
    from . import train

    return train(cfg)


def run_sweep(base_cfg: dict, runs, out_dir, *, coco_gt=None, backend: str = "hotcoco", train_fn=None, log=print) -> dict:
    """Train and evaluate every run of ``runs`` that is not done yet.

    Args:
        base_cfg: the experiment config (``engine.config.load_config``); only ``loss.box_loss``,
            ``train.seed``, ``train.output_dir`` and ``train.resume`` change per run (``run_config``).
        runs: (loss, seed) pairs, e.g. ``select_runs(plan_runs(...), shard=(0, 2))``.
        out_dir: the sweep directory.
        coco_gt: ground truth for the evaluation (pycocotools ``COCO`` or dict); by default the
            config's validation split (``data.val_ann``, or the synthetic set's).
        train_fn: ``fn(cfg)`` that trains one run into ``cfg["train"]["output_dir"]``, resuming from
            ``cfg["train"]["resume"]`` when set (default: the engine's ``train``); tests pass a fake.

    Returns:
        ``{(loss, seed): "done" | "reused" | "evaluated" | "locked"}``.
    """
    train_fn = train_fn or _train
    epochs = base_cfg.get("train", {}).get("epochs")
    if base_cfg.get("train", {}).get("eval_every") == 0:
        raise ValueError("train.eval_every=0 never evaluates, and the sweep needs each run's final evaluation; "
                         "set train.eval_every >= 1 (the last epoch is always evaluated)")
    status = {}
    for loss, seed in runs:
        d = run_dir(out_dir, loss, seed)
        cfg = run_config(base_cfg, loss, seed, d)
        state = run_state(d, epochs)
        if state == "done":
            check_reusable(d, cfg)
            status[loss, seed] = "reused"
            log(f"[sweep] {loss} seed {seed}: done, reused ({d})")
            continue
        if not acquire_lock(d):
            status[loss, seed] = "locked"
            log(f"[sweep] {loss} seed {seed}: another process holds {d / '.lock'}, skipped")
            continue
        try:
            state = run_state(d, epochs)  # again: another process may have finished it meanwhile
            if state == "done":
                check_reusable(d, cfg)
                status[loss, seed] = "reused"
                continue
            if state in ("new", "partial"):
                resume = d / "checkpoint_last.pt" if state == "partial" else None
                log(f"[sweep] {loss} seed {seed}: {'resuming from ' + str(resume) if resume else 'training'} -> {d}")
                t0 = time.time()
                train_fn(run_config(base_cfg, loss, seed, d, resume))
                log(f"[sweep] {loss} seed {seed}: trained in {time.time() - t0:.0f} s")
                # With train.time_budget_s the engine may stop before train.epochs: a normal return is the end.
                if run_state(d, None if cfg.get("train", {}).get("time_budget_s") else epochs) != "trained":
                    raise RuntimeError(f"training of {loss} seed {seed} ended without detections.json/stats.json in {d}")
                status[loss, seed] = "done"
            else:
                status[loss, seed] = "evaluated"
            if coco_gt is None:
                coco_gt = _val_coco(base_cfg)
            result = evaluate_run(d, coco_gt, loss=loss, seed=seed, backend=backend, cfg=cfg)
            log(f"[sweep] {loss} seed {seed}: AP {100 * result['stats']['AP']:.1f}  {'; '.join(result['diagnosis'])}")
        finally:
            release_lock(d)
    return status


def check_reusable(directory, cfg: dict) -> None:
    """Refuse to reuse a finished run trained with other settings (e.g. the config changed since)."""
    saved = json.loads((Path(directory) / RESULT).read_text(encoding="utf-8")).get("fingerprint")
    now = fingerprint(cfg)
    if saved is not None:  # a key added to DEFAULTS since (absent on one side) counts as its default value
        from .config import DEFAULTS

        for fp in (saved, now):
            for sec in FINGERPRINT_SECTIONS:
                if isinstance(fp.get(sec), dict):
                    fp[sec] = {**json.loads(json.dumps(DEFAULTS[sec], default=str)), **fp[sec]}
    if saved is not None and saved != now:
        changed = sorted(f"{sec}.{k}" for sec in now for k in set(now[sec] or {}) | set(saved.get(sec) or {})
                         if (now[sec] or {}).get(k) != (saved.get(sec) or {}).get(k))
        raise RuntimeError(
            f"{directory} was trained with different settings ({', '.join(changed)}); use a new --output-dir "
            "for a new configuration, or delete the run's result.json to re-evaluate it as it is"
        )


def _val_coco(cfg: dict):
    """pycocotools COCO of the checked validation annotations of ``cfg`` (the synthetic set's when
    no paths are given: generated on first use, as training does)."""
    from ..data import CocoDetection
    from .trainer import prepare_data_paths

    paths = prepare_data_paths(cfg)
    return CocoDetection(paths["val_ann"], paths["val_images"]).coco


PLAN = "sweep.json"


def write_plan(out_dir, losses, seeds, variants: dict | None = None) -> None:
    """Record the sweep's losses (in the order given: the first is the default baseline) and seeds in
    ``out_dir/sweep.json``, so ``--report-only DIR`` can rebuild the report without the command line."""
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    path = Path(out_dir) / PLAN
    plan = {"losses": list(losses), "seeds": [int(s) for s in seeds]}
    if variants:
        plan[VARIANTS] = variants
    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, OSError):
            old = {}
        # a later command may add losses or seeds to the same folder: keep the union, old order first
        plan["losses"] = list(dict.fromkeys([*old.get("losses", []), *plan["losses"]]))
        plan["seeds"] = sorted(set(old.get("seeds", [])) | set(plan["seeds"]))
        if old.get(VARIANTS) or variants:
            plan[VARIANTS] = {**old.get(VARIANTS, {}), **(variants or {})}
    tmp = path.with_name(f"{PLAN}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(plan, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)  # atomic: concurrent shards never read half a file


def discover_runs(out_dir) -> list[tuple[str, int]]:
    """The (loss, seed) runs of a sweep folder: from its ``sweep.json`` when present, else every
    ``<loss>/seed<k>/`` folder holding a run's files (losses in alphabetical order)."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        raise FileNotFoundError(f"sweep folder not found: {out_dir}")
    plan_path = out_dir / PLAN
    if plan_path.is_file():
        plan = json.loads(plan_path.read_text(encoding="utf-8"))
        return plan_runs(plan["losses"], plan["seeds"])
    found = []
    for d in sorted(out_dir.glob("*/seed*")):
        if d.is_dir() and d.name[4:].isdigit() and any((d / f).is_file() for f in (RESULT, "detections.json", "config.yaml")):
            found.append((d.parent.name, int(d.name[4:])))
    if not found:
        raise FileNotFoundError(f"{out_dir} holds no run folders (<loss>/seed<k>/ with result.json or detections.json)")
    return sorted(found, key=lambda r: (r[0], r[1]))


def sweep_config(out_dir, runs) -> dict:
    """The config of the first run of ``runs`` that has a ``config.yaml`` (the data and model settings
    every run of a sweep shares)."""
    from .config import load_config

    for loss, seed in runs:
        path = run_dir(out_dir, loss, seed) / "config.yaml"
        if path.is_file():
            return load_config(str(path))
    raise FileNotFoundError(f"no run under {out_dir} has a config.yaml; give --config")


def missing_runs(runs, out_dir) -> list[tuple[str, int]]:
    """Runs of ``runs`` without a result.json."""
    return [(l, s) for l, s in runs if run_state(run_dir(out_dir, l, s)) != "done"]


def build_report(base_cfg: dict, runs, out_dir, *, title: str = "Box-loss comparison", allow_missing: bool = False,
                 baseline: str | None = None, metric: str = "AP", alpha: float = 0.05, n_bootstrap: int = 1000,
                 coco_gt=None, log=print) -> dict:
    """Write report.md/json/csv and the PNGs into ``out_dir`` from the finished runs' files.

    Every run's ``detections.json`` is analysed again (``evaluation.analysis``: COCO stats, TIDE, AP per
    IoU threshold, IoU of true positives, by hotcoco), so a folder of old runs gets today's report.
    Every loss is compared with ``baseline`` (default: the first loss of ``runs``) on ``metric``,
    paired by seed, Holm-corrected at family-wise level ``alpha``, with ``n_bootstrap`` image resamples
    per seed (0: no image bootstrap); see ``evaluation.comparison``.

    Raises ``RuntimeError`` listing the runs that are not finished, unless ``allow_missing``: then the
    report covers the finished runs and says at its top which ones are missing.
    """
    from ..evaluation.analysis import analyse_detections
    from ..evaluation.comparison import compare_to_baseline, summarize_losses
    from ..evaluation.comparison_plots import write_comparison_plots

    missing = missing_runs(runs, out_dir)
    if missing and not allow_missing:
        raise RuntimeError(
            "not finished yet: " + ", ".join(f"{l} seed {s}" for l, s in missing)
            + f" (no {RESULT} in their run directories under {out_dir})"
        )
    done = [r for r in runs if r not in missing]
    if not done:
        raise RuntimeError(f"no finished run under {out_dir}")
    losses = list(dict.fromkeys(l for l, _ in done))
    baseline = baseline or losses[0]
    if baseline not in losses:
        raise ValueError(f"--baseline {baseline}: no finished run of it under {out_dir}; finished losses: {', '.join(losses)}")
    notes = []
    if missing:
        notes.append(f"Incomplete sweep: {len(done)} of {len(runs)} runs finished; missing: "
                     + ", ".join(f"{l} seed {s}" for l, s in missing) + ".")
    results = [load_run(run_dir(out_dir, l, s)) for l, s in done]
    coco_gt = _val_coco(base_cfg) if coco_gt is None else coco_gt
    t0 = time.time()
    analyses = {}
    for r in results:
        detections = json.loads((Path(r["run_dir"]) / "detections.json").read_text(encoding="utf-8"))
        analyses[r["loss"], r["seed"]] = analyse_detections(coco_gt, detections)
        r["analysis"] = analyses[r["loss"], r["seed"]].summary
    t1 = time.time()
    comparison = compare_to_baseline(analyses, losses, baseline, metric=metric, alpha=alpha, n_bootstrap=n_bootstrap)
    loss_summary = summarize_losses(analyses, losses, metric)
    log(f"[report] {len(results)} runs analysed in {t1 - t0:.1f} s, {len(comparison['comparisons'])} comparisons "
        f"({n_bootstrap} bootstrap resamples per seed) in {time.time() - t1:.1f} s")
    write_plots(results, out_dir)
    write_comparison_plots(loss_summary, comparison, out_dir)
    num_images = next(iter(analyses.values())).summary["num_images"]
    return write_report(results, out_dir, config=base_cfg, versions=collect_versions(), title=title, notes=notes,
                        comparison=comparison, loss_summary=loss_summary, num_images=num_images)
