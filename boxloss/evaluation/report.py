"""The per-loss comparison report as Markdown, JSON and CSV: the answer with its evidence
(``comparison.py``, ``verdict.py``, ``comparison_tables.py``), then every COCO stat as mean +- std over
seeds, per-class AP, each run's training-curve diagnosis, config and versions.

Pure functions over run results (plain dicts), so a report can be rebuilt from files without the
engine. One run result is::

    {"loss": "ciou", "seed": 0,
     "stats": {"AP": .., ... 12 COCO stats, fractions in [0, 1], -1 = no ground truth},
     "per_class": {"circle": .., ...},                 # AP per category name
     "pr": {"0.5": [101 precisions], "0.75": [...]},  # optional, for plots (recall 0:0.01:1)
     "train_time_s": 812.0, "cpu_time_s": 1500.0,       # optional: wall and CPU seconds of the run
     "final_train_loss": 0.91,                          # optional
     "log": [log.csv rows],                            # optional, for curves and diagnosis
     "diagnosis": ["healthy: ..."],                    # optional; computed from "log" if missing
     "analysis": {...},                                # optional: analysis.analyse_detections(...).summary
     "run_dir": "..."}                                 # optional

Units: ``report.json`` and ``report.csv`` keep COCO's fractions in [0, 1] (as ``stats.json`` does);
``report.md`` and ``format_table`` show percent, as papers do. ``std`` is the sample standard deviation
over seeds (n - 1 in the denominator); it is null / empty / not shown with a single seed.
"""

from __future__ import annotations

import csv
import json
import math
import platform
from pathlib import Path

import numpy as np
import yaml

from .coco_eval import STAT_NAMES
from .comparison_tables import (format_comparison_table, format_localization_table, format_metric_table, format_origin_table,
                                format_tide_table)
from .diagnosis import diagnose_run
from .verdict import answer_paragraphs

SCHEMA_VERSION = 2  # report.json layout, documented in docs/protocol.md ("report.json")
TABLE_STATS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR100")
EXTRA = ("train_time_s", "cpu_time_s", "final_train_loss")
PLOTS = {
    "ap_per_loss.png": "AP per loss (mean and std over seeds; dots are single seeds)",
    "pr_curves.png": "Precision-recall at IoU 0.5 and 0.75 (all classes, 100 detections)",
    "training_curves.png": "Train loss and validation AP per epoch",
}


def _agg(values: list) -> dict:
    """{"mean", "std", "runs"}; None values (missing) are skipped, -1 (no ground truth) stays -1."""
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return {"mean": None, "std": None, "runs": list(values)}
    if all(v == -1 for v in vals):
        return {"mean": -1.0, "std": None, "runs": vals}
    arr = np.asarray(vals)
    std = float(arr.std(ddof=1)) if len(arr) > 1 else None
    return {"mean": float(arr.mean()), "std": std, "runs": vals}


def summarize_runs(runs: list[dict]) -> dict:
    """``{loss: {stat: {"mean", "std", "runs"}, ..., "per_class": {name: {...}}, "seeds": [...]}}``,
    losses in the order they first appear, the runs of each loss in seed order."""
    by_loss: dict[str, list[dict]] = {}
    for run in runs:
        by_loss.setdefault(run["loss"], []).append(run)
    out = {}
    for loss, group in by_loss.items():
        group = sorted(group, key=lambda r: r.get("seed", 0))
        entry = {name: _agg([r["stats"].get(name) for r in group]) for name in STAT_NAMES}
        for key in EXTRA:
            entry[key] = _agg([r.get(key) for r in group])
        classes = list(dict.fromkeys(c for r in group for c in r.get("per_class", {})))
        entry["per_class"] = {c: _agg([r.get("per_class", {}).get(c) for r in group]) for c in classes}
        entry["seeds"] = [r.get("seed") for r in group]
        out[loss] = entry
    return out


def _pct(a: dict, digits: int = 1) -> str:
    if a["mean"] is None:
        return "—"
    if a["mean"] == -1:
        return "n/a"
    s = f"{100 * a['mean']:.{digits}f}"
    return s if a["std"] is None else f"{s} ± {100 * a['std']:.{digits}f}"


def _plain(a: dict, fmt: str) -> str:
    if a["mean"] is None:
        return "—"
    s = format(a["mean"], fmt)
    return s if a["std"] is None else f"{s} ± {format(a['std'], fmt)}"


def format_table(summary: dict) -> str:
    """The per-loss Markdown table (AP columns in percent), also readable in a terminal."""
    head = ["loss", "seeds", *TABLE_STATS, "wall time (s)", "CPU time (s)", "final train loss"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    best = max((e["AP"]["mean"] for e in summary.values() if e["AP"]["mean"] is not None), default=None)
    for loss, e in summary.items():
        cells = [loss, str(len(e["seeds"]))]
        for name in TABLE_STATS:
            cell = _pct(e[name])
            cells.append(f"**{cell}**" if name == "AP" and e["AP"]["mean"] == best and len(summary) > 1 else cell)
        cells += [_plain(e["train_time_s"], ".0f"), _plain(e["cpu_time_s"], ".0f"), _plain(e["final_train_loss"], ".3f")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_per_class_table(summary: dict) -> str:
    """Rows: classes; columns: losses; AP (%) mean ± std over seeds."""
    losses = list(summary)
    classes = list(dict.fromkeys(c for e in summary.values() for c in e["per_class"]))
    lines = ["| class | " + " | ".join(losses) + " |", "|" + "---|" * (len(losses) + 1)]
    for c in classes:
        cells = [_pct(summary[loss]["per_class"].get(c, {"mean": None, "std": None})) for loss in losses]
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_runs_table(runs: list[dict]) -> str:
    """One row per (loss, seed) with its AP, time, final loss and training-curve diagnosis."""
    lines = ["| loss | seed | AP | AP50 | wall time (s) | CPU time (s) | final train loss | diagnosis |", "|---|---|---|---|---|---|---|---|"]
    for r in sorted(runs, key=lambda r: (r["loss"], r.get("seed", 0))):
        diag = "; ".join(r.get("diagnosis") or []) or "—"
        t, c, fl = r.get("train_time_s"), r.get("cpu_time_s"), r.get("final_train_loss")
        lines.append(
            f"| {r['loss']} | {r.get('seed', '')} | {100 * r['stats']['AP']:.1f} | {100 * r['stats']['AP50']:.1f} | "
            f"{'—' if t is None else f'{t:.0f}'} | {'—' if c is None else f'{c:.0f}'} | {'—' if fl is None else f'{fl:.3f}'} | {diag} |"
        )
    return "\n".join(lines)


def collect_versions() -> dict:
    """Versions that affect the numbers: python, torch, torchvision, pycocotools, boxloss, platform."""
    from importlib import metadata

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("boxloss", "torch", "torchvision", "hotcoco", "pycocotools", "scipy", "albumentations", "numpy"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def _json_runs(runs: list[dict]) -> list[dict]:
    keep = ("loss", "seed", "stats", "per_class", "train_time_s", "cpu_time_s", "final_train_loss", "diagnosis", "run_dir", "analysis")
    return [{k: r[k] for k in keep if k in r} for r in runs]


def write_report(runs: list[dict], out_dir, *, config: dict | None = None, versions: dict | None = None,
                 title: str = "Box-loss comparison", notes: list[str] | None = None, comparison: dict | None = None,
                 loss_summary: dict | None = None, num_images: int | None = None) -> dict:
    """Write ``report.md``, ``report.json`` and ``report.csv`` into ``out_dir``.

    ``notes`` are paragraphs put right under the title of report.md (and under ``"notes"`` in
    report.json), e.g. which runs of an incomplete sweep are missing. ``comparison`` and
    ``loss_summary`` (``comparison.compare_to_baseline`` / ``summarize_losses``; runs then carry their
    ``analysis`` summary) add the answer paragraph and the comparison, origin, TIDE and localization
    sections; without them the report is the per-loss tables alone.

    Runs without a ``diagnosis`` but with a ``log`` are diagnosed here (``diagnose_run``). Plots are
    linked from report.md when the files of ``PLOTS`` / ``COMPARISON_PLOTS`` exist in ``out_dir``
    (write them first).

    Returns:
        ``{"md": path, "json": path, "csv": path, "summary": summarize_runs(runs), "answer": [paragraphs]}``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = [dict(r) for r in runs]
    for r in runs:
        if not r.get("diagnosis") and r.get("log"):
            r["diagnosis"] = diagnose_run(r["log"])
    summary = summarize_runs(runs)
    versions = collect_versions() if versions is None else versions
    answer = answer_paragraphs(comparison, loss_summary, num_images) if comparison and loss_summary else []

    doc = {"schema_version": SCHEMA_VERSION, "title": title, "notes": list(notes or []), "answer": answer,
           "comparison": comparison, "loss_summary": loss_summary, "num_images": num_images,
           "losses": summary, "runs": _json_runs(runs), "config": config, "versions": versions,
           "units": "COCO fractions in [0, 1]; -1 = no ground truth in that size range; std = sample std over seeds (null for one seed)"}
    json_path = out_dir / "report.json"
    json_path.write_text(json.dumps(doc, indent=2, default=str) + "\n", encoding="utf-8")

    csv_path = out_dir / "report.csv"
    cols = [*STAT_NAMES, *EXTRA]
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["loss", "n_seeds"] + [f"{c}_{s}" for c in cols for s in ("mean", "std")])
        for loss, e in summary.items():
            row = [loss, len(e["seeds"])]
            for c in cols:
                row += ["" if e[c]["mean"] is None else e[c]["mean"], "" if e[c]["std"] is None else e[c]["std"]]
            writer.writerow(row)

    n_seeds = sorted({len(e["seeds"]) for e in summary.values()})
    parts = [f"# {title}", ""]
    for note in notes or []:
        parts += [f"**{note}**", ""]
    for paragraph in answer:
        parts += [paragraph, ""]
    if comparison and loss_summary:
        metric = comparison["metric"]
        parts += [f"## {metric} per loss", "", format_metric_table(loss_summary, metric), "",
                  f"## Each loss against {comparison['baseline']}", "",
                  f"Paired by seed (same initial weights and data order; only the box loss differs). Δ = loss − "
                  f"{comparison['baseline']} in {metric} points. Seed-level: 95 % t-interval over seeds (retraining noise). "
                  + (f"Holm-corrected: the interval at the level of the comparison's Holm step over the "
                     f"{comparison['n_comparisons']} comparisons. " if comparison["n_comparisons"] else
                     "Holm-corrected: none (no comparison has two seeds, so there is no test). ")
                  + f"Image-level: hotcoco's paired bootstrap over the validation "
                  f"images ({comparison['n_bootstrap']} resamples) for each seed (evaluation-set noise). Verdict: better / "
                  f"worse only when the Holm-adjusted p < {comparison['alpha']:g}. Detectable Δ and seeds needed: 80 % power "
                  "at the first Holm step's level, taking the observed spread as true (docs/protocol.md, \"Verdicts\").", "",
                  format_comparison_table(comparison), "",
                  "### Where the differences come from", "",
                  "Paired mean differences over seeds (uncorrected 95 % intervals; descriptive). A loss that localizes "
                  "better gains more at strict IoU thresholds than at 0.50, has a smaller TIDE Loc error (negative ΔLoc) "
                  "and a higher IoU of its true positives.", "",
                  format_origin_table(comparison), "",
                  "## Errors (TIDE)", "",
                  "dAP50 in points: the AP50 each error type costs (what fixing it would add back), mean ± std over "
                  "seeds; Cls wrong class, Loc right class but 0.1 <= IoU < 0.5, Both, Dupe duplicate, Bkg background, "
                  "Miss never detected; FP / FN all false positives / negatives (hotcoco's TIDE).", "",
                  format_tide_table(loss_summary), "",
                  "## Localization", "",
                  "AP (%) at each IoU threshold, and the mean IoU of true positives (matched at IoU >= 0.5) per size "
                  "range, mean ± std over seeds.", "",
                  format_localization_table(loss_summary), ""]
    parts += [
        "## All COCO stats", "",
        f"{len(summary)} loss(es) x {'/'.join(map(str, n_seeds))} seed(s); everything but the box loss identical. "
        "COCO box AP in percent, mean ± sample std over seeds; n/a = no ground-truth box in that size range. "
        "Wall time is the run's wall clock (validation included; it grows with the machine's load), CPU time the "
        "process's CPU seconds (steadier under load; — where the log predates it).",
        "",
        format_table(summary),
        "",
    ]
    parts += ["## Per-class AP (%)", "", format_per_class_table(summary), ""]
    parts += ["## Runs and training-curve diagnosis", "", format_runs_table(runs), ""]
    from .comparison_plots import COMPARISON_PLOTS

    plots = [(name, caption) for name, caption in {**COMPARISON_PLOTS, **PLOTS}.items() if (out_dir / name).is_file()]
    if plots:
        parts += ["## Plots", ""]
        for name, caption in plots:
            parts += [f"{caption}:", "", f"![{caption}]({name})", ""]
    if config is not None:
        parts += ["## Config", "", "```yaml", yaml.safe_dump(json.loads(json.dumps(config, default=str)), sort_keys=False).rstrip(), "```", ""]
    parts += ["## Versions", "", ", ".join(f"{k} {v}" for k, v in versions.items()), ""]
    md_path = out_dir / "report.md"
    md_path.write_text("\n".join(parts), encoding="utf-8")
    return {"md": md_path, "json": json_path, "csv": csv_path, "summary": summary, "answer": answer}
