"""Every loss against a baseline, paired by seed, with both kinds of noise and a verdict.

Input: ``analyses[(loss, seed)] = RunAnalysis`` (``analysis.py``) of runs that differ only in the box
loss within a seed. For each loss other than the baseline, over the seeds both have:

- **seed level** (retraining noise, what a user who retrains faces): the per-seed differences of the
  metric (COCO AP by default), their mean and 95 % t-interval, the paired t-test's p-value;
- **image level** (evaluation-set noise): for each seed, hotcoco's paired bootstrap over the val images
  (``hotcoco.compare(..., n_bootstrap)``: the images are resampled with replacement, both runs'
  metrics recomputed on each resample) — its 95 % percentile interval of the difference;
- **Holm's correction** over the comparisons (``statistics.holm_adjust``) and the **verdict**:
  ``better`` / ``worse`` only when the Holm-adjusted p-value is below ``alpha`` — equivalently, the
  interval at the comparison's Holm level excludes 0 and Holm did not stop earlier; otherwise ``not
  established``, with the smallest difference this sweep could detect (80 % power) and the number of
  seeds needed to detect the observed difference (80 % power), both at level ``alpha / m`` (the first
  Holm step: conservative) with the observed spread. With one seed the retraining noise is unknown: no
  verdict, only the image-level interval;
- **where the difference comes from**: the same paired differences (uncorrected 95 % intervals,
  descriptive) for AP50, AP75, AP at each IoU threshold, TIDE's Loc dAP and the mean IoU of true
  positives.

docs/protocol.md, "Verdicts", states the rule, its assumptions and its limits.
"""

from __future__ import annotations

import math

import numpy as np

from .localization import AREAS, TIDE_ERRORS, TIDE_TOTALS
from .statistics import holm_adjust, holm_levels, min_detectable_difference, seeds_needed, t_interval

VERDICTS = ("better", "worse", "not established")
LOCALIZATION_METRICS = ("AP50", "AP75", "Loc dAP50", "TP IoU")


def _metric(summary: dict, name: str) -> float | None:
    """A scalar of one run's analysis by name: a COCO stat, ``"AP@0.85"``, ``"Loc dAP50"`` (any TIDE
    key) or ``"TP IoU"`` (mean IoU of true positives, all areas). None when undefined."""
    if name in summary["stats"]:
        v = summary["stats"][name]
        return None if v is None or v < 0 else float(v)
    if name.startswith("AP@"):
        v = summary["ap_by_iou"].get(name[3:])
        return None if v is None or v < 0 else float(v)
    if name.endswith(" dAP50"):
        return float(summary["tide"]["dAP"][name.split()[0]])
    if name == "TP IoU":
        return summary["tp_iou"]["all"]["mean"]
    raise KeyError(name)


def paired_values(analyses: dict, loss: str, baseline: str, name: str) -> tuple[list[int], list[float], list[float]]:
    """(seeds, values of loss, values of baseline) over the seeds where both runs exist and define
    ``name``, in seed order."""
    seeds = sorted({s for l, s in analyses if l == loss} & {s for l, s in analyses if l == baseline})
    out_s, a, b = [], [], []
    for s in seeds:
        va, vb = _metric(analyses[loss, s].summary, name), _metric(analyses[baseline, s].summary, name)
        if va is not None and vb is not None:
            out_s.append(s)
            a.append(va)
            b.append(vb)
    return out_s, a, b


def bootstrap_difference(analysis_baseline, analysis_loss, metric: str, n_bootstrap: int, seed: int = 0,
                         confidence: float = 0.95) -> dict:
    """hotcoco's paired image bootstrap of ``metric(loss) - metric(baseline)`` on one seed's pair of runs:
    ``{"diff", "lower", "upper", "std_err", "prob_positive", "n_images", "n_bootstrap"}``."""
    import hotcoco

    out = hotcoco.compare(analysis_baseline.result.evaluator, analysis_loss.result.evaluator,
                          n_bootstrap=n_bootstrap, seed=seed, confidence=confidence)
    ci = out["ci"][metric]
    return {"diff": float(out["deltas"][metric]), "lower": float(ci["lower"]), "upper": float(ci["upper"]),
            "std_err": float(ci["std_err"]), "prob_positive": float(ci["prob_positive"]),
            "n_images": int(out["num_images"]), "n_bootstrap": int(out["n_bootstrap"])}


def _describe(analyses, loss, baseline, name) -> dict | None:
    seeds, a, b = paired_values(analyses, loss, baseline, name)
    if not seeds:
        return None
    return {"seeds": seeds, **t_interval(np.subtract(a, b)).to_dict()}


def compare_to_baseline(analyses: dict, losses: list[str], baseline: str, *, metric: str = "AP", alpha: float = 0.05,
                        n_bootstrap: int = 1000, bootstrap_seed: int = 0) -> dict:
    """Compare every loss of ``losses`` (other than ``baseline``) with ``baseline``; see the module doc.

    Returns ``{"metric", "baseline", "alpha", "confidence", "correction": "holm", "n_comparisons",
    "n_bootstrap", "comparisons": [one dict per loss, in the order of losses]}``; report_schema in
    docs/protocol.md lists every field.
    """
    if baseline not in losses:
        raise ValueError(f"baseline {baseline!r} is not among the compared losses {losses}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    confidence = 1 - alpha
    rows = []
    for loss in losses:
        if loss == baseline:
            continue
        seeds, a, b = paired_values(analyses, loss, baseline, metric)
        row = {"loss": loss, "baseline": baseline, "seeds": seeds, "n": len(seeds)}
        if not seeds:
            row.update(seed_level=None, per_seed=[], verdict="not established", p_holm=None, holm_level=None, corrected=None,
                       mde=None, seeds_needed=None, localization={}, bootstrap_excluding_zero=0,
                       reason=f"no seed with a finished run of both {loss} and {baseline}")
            rows.append(row)
            continue
        diffs = np.subtract(a, b)
        row["seed_level"] = t_interval(diffs, confidence).to_dict()
        row["per_seed"] = []
        for s, va, vb in zip(seeds, a, b):
            entry = {"seed": s, "loss_value": va, "baseline_value": vb, "diff": va - vb}
            if n_bootstrap > 0:
                entry["bootstrap"] = bootstrap_difference(analyses[baseline, s], analyses[loss, s], metric, n_bootstrap,
                                                          seed=bootstrap_seed, confidence=confidence)
            row["per_seed"].append(entry)
        boots = [e["bootstrap"] for e in row["per_seed"] if "bootstrap" in e]
        row["bootstrap_excluding_zero"] = sum(1 for bs in boots if bs["lower"] > 0 or bs["upper"] < 0)
        row["localization"] = {name: _describe(analyses, loss, baseline, name)
                               for name in (*LOCALIZATION_METRICS, *(f"AP@{t}" for t in _thresholds(analyses)))}
        rows.append(row)

    pvalues = [r["seed_level"]["p"] if r.get("seed_level") else None for r in rows]
    adjusted, levels = holm_adjust(pvalues), holm_levels(pvalues, alpha)
    m = sum(p is not None for p in pvalues)
    planning_alpha = alpha / max(m, 1)
    for r, p_holm, level in zip(rows, adjusted, levels):
        if r.get("seed_level") is None:
            continue
        sl = r["seed_level"]
        r["p_holm"] = p_holm
        r["holm_level"] = level
        if level is not None:
            ci = t_interval(np.array([e["diff"] for e in r["per_seed"]]), 1 - level)
            r["corrected"] = {"confidence": 1 - level, "lower": ci.lower, "upper": ci.upper}
        else:
            r["corrected"] = None
        r["mde"] = min_detectable_difference(sl["sd"], sl["n"], planning_alpha)
        r["seeds_needed"] = seeds_needed(sl["mean"], sl["sd"], planning_alpha)
        r["planning_alpha"] = planning_alpha
        if sl["n"] < 2:
            r["verdict"] = "not established"
            r["reason"] = ("one seed: only evaluation-set noise is covered (the image bootstrap); the retraining noise "
                           "is unknown, so no verdict")
        elif p_holm is not None and p_holm < alpha:
            r["verdict"] = "better" if sl["mean"] > 0 else "worse"
            r["reason"] = f"Holm-adjusted p = {p_holm:.3g} < {alpha:g}"
        else:
            r["verdict"] = "not established"
            r["reason"] = (f"Holm-adjusted p = {p_holm:.3g} >= {alpha:g}" if p_holm is not None else "no test possible")
    return {"metric": metric, "baseline": baseline, "alpha": alpha, "confidence": confidence, "correction": "holm",
            "n_comparisons": m, "n_bootstrap": n_bootstrap, "comparisons": rows}


def _thresholds(analyses: dict) -> list[str]:
    first = next(iter(analyses.values()))
    return list(first.summary["ap_by_iou"])


def _spread(values, *, coco: bool = False) -> dict:
    """``{"mean", "std", "runs"}`` of the defined values; ``coco``: -1 (no ground truth) is undefined too."""
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v)) and not (coco and float(v) < 0)]
    if not vals:
        return {"mean": None, "std": None, "runs": list(values)}
    arr = np.asarray(vals)
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if len(arr) > 1 else None, "runs": vals}


def summarize_losses(analyses: dict, losses: list[str], metric: str = "AP", confidence: float = 0.95) -> dict:
    """Per loss, over its seeds: the metric's mean with its t-interval, AP per IoU threshold, TIDE dAP
    and counts, the IoU of true positives per area (mean of the run means; the histogram summed over
    seeds). ``{loss: {"seeds", "metric": TInterval dict, "metric_runs": [per seed], "ap_by_iou": {t: spread}, "tide": {key: spread},
    "tide_counts": {key: spread}, "tp_iou": {area: {"mean": spread, "median": spread, "n": spread,
    "histogram": {"edges", "counts"}}}}}`` where spread is ``{"mean", "std", "runs"}``."""
    out = {}
    for loss in losses:
        seeds = sorted(s for l, s in analyses if l == loss)
        if not seeds:
            continue
        sums = [analyses[loss, s].summary for s in seeds]
        values = [_metric(x, metric) for x in sums]
        finite = [v for v in values if v is not None]
        metric_ci = t_interval(finite, confidence).to_dict() if finite else None
        if metric_ci:
            metric_ci["p"] = None  # a test of "AP = 0" means nothing here
        entry = {"seeds": seeds, "metric": metric_ci, "metric_runs": values}
        entry["ap_by_iou"] = {t: _spread([x["ap_by_iou"][t] for x in sums], coco=True) for t in sums[0]["ap_by_iou"]}
        entry["tide"] = {k: _spread([x["tide"]["dAP"][k] for x in sums]) for k in (*TIDE_ERRORS, *TIDE_TOTALS)}
        entry["tide_counts"] = {k: _spread([x["tide"]["counts"][k] for x in sums]) for k in TIDE_ERRORS}
        entry["tp_iou"] = {}
        for area in AREAS:
            per = [x["tp_iou"][area] for x in sums]
            entry["tp_iou"][area] = {
                "mean": _spread([p["mean"] for p in per]),
                "median": _spread([p["quantiles"]["0.50"] for p in per]),
                "n": _spread([p["n"] for p in per]),
                "histogram": {"edges": per[0]["histogram"]["edges"],
                              "counts": np.sum([p["histogram"]["counts"] for p in per], axis=0).astype(int).tolist()},
            }
        out[loss] = entry
    return out
