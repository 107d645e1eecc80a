"""Markdown tables of a per-loss comparison (``comparison.compare_to_baseline`` and
``comparison.summarize_losses`` outputs). AP-like values are shown in percent points, IoUs as
fractions; the machine-readable report.json keeps fractions throughout."""

from __future__ import annotations

from .localization import AREAS, TIDE_ERRORS, TIDE_TOTALS


def _row(cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _head(cells) -> list[str]:
    return [_row(cells), "|" + "---|" * len(cells)]


def _pts(v, signed=False) -> str:
    if v is None:
        return "—"
    return f"{100 * v:+.1f}" if signed else f"{100 * v:.1f}"


def _ci(lower, upper) -> str:
    return "—" if lower is None or upper is None else f"[{100 * lower:+.1f}, {100 * upper:+.1f}]"


def _spread(s: dict, scale: float = 100, fmt: str = ".1f") -> str:
    if s is None or s["mean"] is None:
        return "—"
    text = format(scale * s["mean"], fmt)
    return text if s["std"] is None else f"{text} ± {format(scale * s['std'], fmt)}"


def format_metric_table(loss_summary: dict, metric: str = "AP") -> str:
    """Per loss: the metric's mean over seeds, its 95 % t-interval, and each seed's value (percent)."""
    lines = _head(["loss", "seeds", f"{metric} mean", "95 % interval of the mean", "per seed"])
    for loss, e in loss_summary.items():
        m = e.get("metric")
        if m is None:
            lines.append(_row([loss, len(e["seeds"]), "—", "—", "—"]))
            continue
        ci = "— (one seed)" if m["lower"] is None else f"[{100 * m['lower']:.1f}, {100 * m['upper']:.1f}]"
        per_seed = ", ".join(f"s{s}: {100 * v:.1f}" for s, v in zip(e["seeds"], e.get("metric_runs", [])))
        lines.append(_row([loss, m["n"], f"{100 * m['mean']:.1f}", ci, per_seed or "—"]))
    return "\n".join(lines)


def _bootstrap_cell(row: dict) -> str:
    cells = [f"s{e['seed']}: {_ci(e['bootstrap']['lower'], e['bootstrap']['upper'])}"
             for e in row.get("per_seed", []) if "bootstrap" in e]
    return "<br>".join(cells) if cells else "—"


def format_comparison_table(comparison: dict) -> str:
    """One row per loss against the baseline: Δ metric, the seed-level 95 % and Holm-corrected
    intervals, each seed's image-level bootstrap interval, p-values, verdict, the minimum detectable
    difference and the seeds needed for the observed one (80 % power)."""
    metric = comparison["metric"]
    lines = _head([f"loss vs {comparison['baseline']}", "seeds", f"Δ{metric}", "seed-level 95 % CI", "Holm-corrected CI",
                   "image-level bootstrap 95 % CI per seed", "p", "p (Holm)", "verdict", "detectable Δ (80 % power)",
                   "seeds needed for Δ"])
    for r in comparison["comparisons"]:
        sl = r.get("seed_level")
        if sl is None:
            lines.append(_row([r["loss"], 0, "—", "—", "—", "—", "—", "—", r["verdict"], "—", "—"]))
            continue
        corr = r.get("corrected") or {}
        corrected = "—" if corr.get("lower") is None else f"{_ci(corr['lower'], corr['upper'])} ({100 * corr['confidence']:.1f} %)"
        verdict = f"**{r['verdict']}**" if r["verdict"] != "not established" else r["verdict"]
        lines.append(_row([
            r["loss"], r["n"], _pts(sl["mean"], signed=True), _ci(sl["lower"], sl["upper"]), corrected, _bootstrap_cell(r),
            "—" if sl["p"] is None else f"{sl['p']:.3g}", "—" if r.get("p_holm") is None else f"{r['p_holm']:.3g}", verdict,
            "—" if r.get("mde") is None else f"{100 * r['mde']:.1f}",
            "—" if r.get("seeds_needed") is None else str(r["seeds_needed"]),
        ]))
    return "\n".join(lines)


ORIGIN_COLUMNS = (("AP@0.50", "ΔAP50"), ("AP@0.75", "ΔAP75"), ("AP@0.90", "ΔAP90"), ("Loc dAP50", "ΔLoc dAP50"),
                  ("TP IoU", "Δ mean IoU of TPs"))


def format_origin_table(comparison: dict) -> str:
    """Where each difference lies: paired mean differences (uncorrected 95 % intervals) at IoU 0.50,
    0.75 and 0.90, in TIDE's localization error and in the mean IoU of true positives."""
    lines = _head([f"loss vs {comparison['baseline']}", *(label for _, label in ORIGIN_COLUMNS)])
    for r in comparison["comparisons"]:
        loc = r.get("localization") or {}
        cells = [r["loss"]]
        for key, _ in ORIGIN_COLUMNS:
            d = loc.get(key)
            if d is None:
                cells.append("—")
            elif key == "TP IoU":
                ci = "" if d["lower"] is None else f" [{d['lower']:+.3f}, {d['upper']:+.3f}]"
                cells.append(f"{d['mean']:+.3f}{ci}")
            else:
                ci = "" if d["lower"] is None else f" {_ci(d['lower'], d['upper'])}"
                cells.append(f"{_pts(d['mean'], signed=True)}{ci}")
        lines.append(_row(cells))
    return "\n".join(lines)


def format_tide_table(loss_summary: dict) -> str:
    """Per loss: TIDE's dAP50 of each error type (mean ± std over seeds, AP points)."""
    keys = (*TIDE_ERRORS, *TIDE_TOTALS)
    lines = _head(["loss", *keys])
    for loss, e in loss_summary.items():
        lines.append(_row([loss, *(_spread(e["tide"][k]) for k in keys)]))
    return "\n".join(lines)


def format_localization_table(loss_summary: dict) -> str:
    """Per loss: AP at each IoU threshold (percent) and the mean IoU of true positives per area."""
    first = next(iter(loss_summary.values()))
    thresholds = list(first["ap_by_iou"])
    lines = _head(["loss", *(f"AP@{t}" for t in thresholds), *(f"TP IoU {a}" for a in AREAS)])
    for loss, e in loss_summary.items():
        cells = [loss, *(_spread(e["ap_by_iou"][t]) for t in thresholds)]
        cells += [_spread(e["tp_iou"][a]["mean"], scale=1, fmt=".3f") for a in AREAS]
        lines.append(_row(cells))
    return "\n".join(lines)
