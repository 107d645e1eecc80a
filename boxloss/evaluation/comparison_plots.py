"""PNG plots of the per-loss comparison report (matplotlib, Agg backend: no display needed).

Pure functions over the outputs of ``comparison.py``: ``summary = summarize_losses(analyses, losses)``
and ``comparison = compare_to_baseline(analyses, losses, baseline)``. Every value there is a fraction;
the plots show AP in percent (AP points) and IoU as it is.

- ``plot_difference_forest``: the verdict at a glance — per compared loss, the mean difference to the
  baseline with its Holm-corrected and its uncorrected seed-level intervals, each seed's difference and
  that seed's image-bootstrap interval, and the verdict;
- ``plot_ap_vs_iou``: AP per IoU threshold 0.50..0.95 per loss, and the same curves minus the first
  loss's;
- ``plot_tide_bars``: TIDE's dAP50 per error type per loss (mean, std, seeds);
- ``plot_tp_iou_histograms``: the distribution of the IoU of true positives per loss, and its mean per
  size range.

Each ``plot_*`` draws with a ``_*_figure`` helper that returns the matplotlib Figure (tests inspect it),
then saves it. ``write_comparison_plots`` writes all four under their ``COMPARISON_PLOTS`` names. One
loss keeps one colour in every plot: tab10 in the order of ``summary`` (the compared losses).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.transforms import blended_transform_factory  # noqa: E402

COMPARISON_PLOTS = {
    "difference_forest.png": "Each loss minus the baseline (AP points): mean, Holm-corrected and 95 % seed-level intervals, "
                             "single seeds with their image-bootstrap intervals, and the verdict",
    "ap_vs_iou.png": "AP per IoU threshold (mean over seeds, min-max shaded) and its difference to the first loss",
    "tide_errors.png": "TIDE errors at IoU 0.5: the AP50 points fixing each error type would add (mean, std, seeds)",
    "tp_iou.png": "IoU of true positives: distribution (all areas, summed over seeds) and mean per size range",
}

VERDICT_COLORS = {"better": "#1a7f37", "worse": "#c0262d", "not established": "0.5"}
TIDE_MAIN = ("Cls", "Loc", "Both", "Dupe", "Bkg", "Miss")
TIDE_TOTAL = ("FP", "FN")
SIZE_AREAS = ("all", "small", "medium", "large")


def _colors(losses) -> dict:
    """Same palette and order as ``plots._colors``: the i-th loss gets tab10's i-th colour."""
    cmap = plt.get_cmap("tab10")
    return {loss: cmap(i % 10) for i, loss in enumerate(losses)}


def _save(fig, path) -> Path:
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def _num(v, negative: bool = False) -> float:
    """A value as float; None, non-finite and (unless ``negative``) a negative value such as COCO's -1
    for 'no ground truth' become NaN."""
    if v is None:
        return math.nan
    v = float(v)
    return v if math.isfinite(v) and (negative or v >= 0) else math.nan


def _pts(v) -> float:
    """A difference (may be negative) in AP points; None -> NaN."""
    return math.nan if v is None or not math.isfinite(float(v)) else 100.0 * float(v)


def _multi(summary: dict) -> bool:
    """Whether some loss has more than one seed (then spreads over seeds are drawn)."""
    return any(len(e["seeds"]) > 1 for e in summary.values())


def _seed_counts(summary: dict) -> str:
    return "/".join(map(str, sorted({len(e["seeds"]) for e in summary.values()})))


# ---------------------------------------------------------------------------------------------------- forest

def _forest_losses(comparison: dict, losses) -> list[str]:
    """The colour order: the given losses, else the baseline followed by the compared losses."""
    if losses is not None:
        return list(losses)
    return [comparison["baseline"], *(r["loss"] for r in comparison["comparisons"])]


def _forest_figure(comparison: dict, losses=None):
    """Figure of ``plot_difference_forest``; ``losses`` fixes the colours (default: baseline first)."""
    rows = comparison["comparisons"]
    colors = _colors(_forest_losses(comparison, losses))
    metric, baseline = comparison["metric"], comparison["baseline"]
    conf = comparison.get("confidence", 1 - comparison.get("alpha", 0.05))
    fig, ax = plt.subplots(figsize=(9.0, 1.15 * max(len(rows), 1) + 2.2))
    text_at = blended_transform_factory(ax.transAxes, ax.transData)
    xs = [0.0]
    for i, r in enumerate(rows):
        color = colors.get(r["loss"], "black")
        sl, corr = r.get("seed_level"), r.get("corrected")
        per_seed = r.get("per_seed", [])
        if corr and corr.get("lower") is not None and corr.get("upper") is not None:
            lo, hi = _pts(corr["lower"]), _pts(corr["upper"])
            ax.plot([lo, hi], [i, i], color=color, lw=9, alpha=0.35, solid_capstyle="butt", zorder=2)
            xs += [lo, hi]
        if sl and sl.get("lower") is not None and sl.get("upper") is not None:
            lo, hi = _pts(sl["lower"]), _pts(sl["upper"])
            ax.errorbar((lo + hi) / 2, i, xerr=[[(hi - lo) / 2]], fmt="none", ecolor="black", elinewidth=1.3,
                        capsize=6, capthick=1.3, zorder=3)
            xs += [lo, hi]
        if sl and sl.get("mean") is not None:
            ax.plot(_pts(sl["mean"]), i, marker="D", ms=9, color=color, mec="black", mew=0.8, zorder=4, ls="none")
            xs.append(_pts(sl["mean"]))
        for k, e in enumerate(per_seed):
            y = i + 0.22 + 0.1 * k / max(len(per_seed) - 1, 1) if len(per_seed) > 1 else i + 0.22
            b = e.get("bootstrap") or {}
            if b.get("lower") is not None and b.get("upper") is not None:
                lo, hi = _pts(b["lower"]), _pts(b["upper"])
                ax.plot([lo, hi], [y, y], color=color, lw=1.2, alpha=0.45, zorder=2)
                xs += [lo, hi]
            if e.get("diff") is not None:
                ax.plot(_pts(e["diff"]), y, marker="o", ms=3.5, color="black", alpha=0.75, zorder=3, ls="none")
                xs.append(_pts(e["diff"]))
        verdict = r.get("verdict", "not established")
        ax.text(1.03, i - 0.12, verdict, transform=text_at, ha="left", va="center", fontsize=9.5, fontweight="bold",
                color="white", clip_on=False,
                bbox={"boxstyle": "round,pad=0.3", "facecolor": VERDICT_COLORS.get(verdict, "0.45"), "edgecolor": "none"})
        ax.text(1.03, i + 0.2, _forest_detail(r), transform=text_at, ha="left", va="center", fontsize=7.5,
                color="0.25", clip_on=False, linespacing=1.4)
    ax.axvline(0.0, color="0.2", lw=1, ls="--", zorder=1)
    ax.set_yticks(range(len(rows)), [r["loss"] for r in rows])
    ax.set_ylim(len(rows) - 0.45, -0.55)  # first loss on top; room below each row for its seeds
    xs = [x for x in xs if math.isfinite(x)]
    pad = 0.08 * max(max(xs) - min(xs), 0.1)
    ax.set_xlim(min(xs) - pad, max(xs) + pad)
    ax.set_xlabel(f"{metric}(loss) − {metric}({baseline})  (AP points)")
    ax.grid(axis="x", alpha=0.3)
    ns = "/".join(map(str, sorted({r.get("n", 0) for r in rows}))) or "0"
    m = comparison.get("n_comparisons", len(rows))
    holm = f"; Holm over {m} comparison(s)" if m else "; no test"
    ax.set_title(f"{metric} difference to {baseline} ({ns} paired seed(s){holm})", fontsize=10.5)
    handles = [
        Line2D([], [], marker="D", ms=8, color="0.5", mec="black", ls="none", label="mean difference over seeds"),
        Line2D([], [], color="0.5", lw=9, alpha=0.35, label="seed-level t-interval at the Holm level"),
        Line2D([], [], color="black", lw=1.3, marker="|", ms=10, label=f"seed-level {100 * conf:g} % t-interval (uncorrected)"),
        Line2D([], [], marker="o", ms=3.5, color="black", alpha=0.75, ls="none", label="one seed's difference"),
        Line2D([], [], color="0.5", lw=1.2, alpha=0.45, label=f"that seed's image-bootstrap {100 * conf:g} % interval"),
    ]
    fig.legend(handles=handles, loc="lower left", bbox_to_anchor=(0.06, 0.0), ncol=2, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.75 / fig.get_figheight(), 1, 1))  # 0.75 in at the bottom for the legend
    fig.subplots_adjust(right=0.72)  # the verdict column, outside the axes
    return fig


def _forest_detail(row: dict) -> str:
    """The small text under a verdict: the mean difference and its Holm-level interval in AP points, n and
    the Holm-adjusted p; or why there is none."""
    sl = row.get("seed_level")
    if not sl:
        return "no paired seed"
    lines = [f"mean {_pts(sl['mean']):+.2f} pts"]
    boots = [e["bootstrap"] for e in row.get("per_seed", []) if e.get("bootstrap") and e["bootstrap"].get("lower") is not None]
    corr = row.get("corrected")
    if corr and corr.get("lower") is not None and corr.get("upper") is not None:
        lines[0] += f" [{_pts(corr['lower']):+.2f}, {_pts(corr['upper']):+.2f}]"
        lines.append(f"(Holm-level {100 * corr['confidence']:.4g} % interval)")
    if row.get("n", sl.get("n", 0)) < 2:
        if len(boots) == 1:
            lines.append(f"image bootstrap [{_pts(boots[0]['lower']):+.2f}, {_pts(boots[0]['upper']):+.2f}]")
        lines.append("1 seed: retraining noise unknown, no test")
    else:
        p = row.get("p_holm")
        lines.append(f"n={sl['n']} seeds" + ("" if p is None else f", Holm-adjusted p={p:.2g}"))
    return "\n".join(lines)


def plot_difference_forest(comparison: dict, path, losses=None) -> Path:
    """One row per compared loss: the difference of the metric to the baseline in AP points — mean
    (diamond), seed-level t-interval at its Holm level (thick bar) and at 95 % (thin bar with caps), each
    seed's difference (dot) with that seed's image-bootstrap interval (faint line, below the row) — and
    the verdict at the right. ``losses``: the order that fixes the colours (as in the other plots)."""
    return _save(_forest_figure(comparison, losses), path)


# ---------------------------------------------------------------------------------------------------- AP vs IoU

def _ap_curves(entry: dict, thresholds: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(mean curve, runs: seeds x thresholds) in percent; NaN where undefined. The mean is recomputed
    from the runs without their -1 (no ground truth), which the spread's own mean would include."""
    runs = [entry["ap_by_iou"][t].get("runs") or [entry["ap_by_iou"][t]["mean"]] for t in thresholds]
    n = max((len(r) for r in runs), default=0)
    arr = np.full((n, len(thresholds)), np.nan)
    for j, r in enumerate(runs):
        for s, v in enumerate(r):
            arr[s, j] = 100 * _num(v)
    defined = np.isfinite(arr).any(axis=0)
    mean = np.full(len(thresholds), np.nan)
    mean[defined] = np.nanmean(arr[:, defined], axis=0)
    return mean, arr


def _nan_range(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column-wise min and max ignoring NaN (NaN where a column has no value, without a warning)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmin(arr, axis=0), np.nanmax(arr, axis=0)


def _ap_vs_iou_figure(summary: dict):
    """Figure of ``plot_ap_vs_iou``."""
    losses = list(summary)
    colors = _colors(losses)
    thresholds = sorted(summary[losses[0]]["ap_by_iou"], key=float)
    x = np.array([float(t) for t in thresholds])
    fig, (ax, ax_d) = plt.subplots(2, 1, figsize=(7.5, 7.0), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    ref = losses[0]
    ref_mean, ref_runs = _ap_curves(summary[ref], thresholds)
    for loss in losses:
        mean, runs = _ap_curves(summary[loss], thresholds)
        ap = np.nanmean(mean) if np.isfinite(mean).any() else math.nan
        ax.plot(x, mean, color=colors[loss], lw=1.8, marker="o", ms=4, label=f"{loss} (AP {ap:.1f})")
        if len(runs) > 1:
            ax.fill_between(x, *_nan_range(runs), color=colors[loss], alpha=0.15, lw=0)
        ax_d.plot(x, mean - ref_mean, color=colors[loss], lw=1.8, marker="o", ms=4)
        # paired per-seed differences, only when both losses ran the same seeds
        if loss != ref and len(runs) > 1 and summary[loss]["seeds"] == summary[ref]["seeds"] and runs.shape == ref_runs.shape:
            d = runs - ref_runs
            ax_d.fill_between(x, *_nan_range(d), color=colors[loss], alpha=0.15, lw=0)
    ax.set_ylabel("COCO AP (%)")
    ax.set_ylim(bottom=0)
    spread = ", min–max over seeds shaded" if _multi(summary) else ""
    ax.set_title(f"AP per IoU threshold (area all; mean over {_seed_counts(summary)} seed(s){spread})", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    ax_d.axhline(0.0, color="0.2", lw=1, ls="--")
    ax_d.set_ylabel(f"AP − AP of {ref} (AP points)")
    ax_d.set_xlabel("IoU threshold")
    ax_d.set_title(f"difference to {ref}" + (" (shaded: min–max of the per-seed paired differences)" if _multi(summary) else ""),
                   fontsize=10)
    ax_d.set_xticks(x, thresholds)
    ax_d.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_ap_vs_iou(summary: dict, path) -> Path:
    """Top: AP (%) at each IoU threshold 0.50..0.95, one line per loss (mean over seeds, min–max over
    seeds shaded); bottom: each curve minus the first loss's (AP points), so small differences show."""
    return _save(_ap_vs_iou_figure(summary), path)


# ---------------------------------------------------------------------------------------------------- TIDE

def _grouped(ax, summary: dict, keys, colors: dict, *, section: str, scale: float = 100.0, marker=None) -> None:
    """Grouped bars (or markers, when ``marker`` is given) of ``summary[loss][section][key]``: mean, std
    error bars, seeds as black dots; one group per key, one bar per loss."""
    losses = list(summary)
    width = 0.8 / max(len(losses), 1)
    for j, loss in enumerate(losses):
        pos = np.arange(len(keys)) - 0.4 + width * (j + 0.5)
        for p, key in zip(pos, keys):
            s = summary[loss][section].get(key)
            if s is None:
                continue
            mean, std = _num(s["mean"], negative=True), s.get("std")
            if math.isnan(mean):
                continue
            yerr = None if std is None else scale * std
            if marker is None:
                ax.bar(p, scale * mean, width * 0.9, color=colors[loss], label=loss if key == keys[0] else None, zorder=2)
                if yerr is not None:
                    ax.errorbar(p, scale * mean, yerr=yerr, fmt="none", ecolor="black", elinewidth=1, capsize=3, zorder=3)
            else:
                ax.errorbar(p, scale * mean, yerr=yerr, fmt=marker, color=colors[loss], ms=7, capsize=4, lw=1.5,
                            label=loss if key == keys[0] else None, zorder=3)
            runs = np.array([scale * _num(v, negative=True) for v in s.get("runs", [])])
            runs = runs[np.isfinite(runs)]
            if len(runs) > 1:
                jitter = np.linspace(-0.25, 0.25, len(runs)) * width
                off = 0.0 if marker is None else 0.35 * width
                ax.scatter(p + off + jitter, runs, color="black", s=8, alpha=0.6, zorder=4, lw=0)


def _tide_figure(summary: dict):
    """Figure of ``plot_tide_bars``."""
    losses = list(summary)
    colors = _colors(losses)
    fig, (ax, ax_t) = plt.subplots(1, 2, figsize=(max(8.5, 1.1 * len(losses) + 7.5), 4.4),
                                   gridspec_kw={"width_ratios": [len(TIDE_MAIN), len(TIDE_TOTAL) + 0.6]})
    _grouped(ax, summary, TIDE_MAIN, colors, section="tide")
    _grouped(ax_t, summary, TIDE_TOTAL, colors, section="tide")
    for a, keys, title in ((ax, TIDE_MAIN, "per error type"), (ax_t, TIDE_TOTAL, "all false positives / negatives")):
        a.set_xticks(range(len(keys)), keys)
        a.set_xlim(-0.55, len(keys) - 0.45)
        a.set_ylim(bottom=0)
        a.grid(axis="y", alpha=0.3)
        a.set_title(title, fontsize=10)
    ax.set_ylabel("dAP50: AP50 gained if fixed (AP points)")
    ax.set_xlabel("error type (Loc: right class, 0.1 ≤ IoU < 0.5)")
    ax_t.set_xlabel("total")
    how = f"mean ± std over {_seed_counts(summary)} seed(s); dots: seeds" if _multi(summary) else "1 seed"
    fig.suptitle(f"TIDE errors at IoU 0.5 ({how})", fontsize=11)
    fig.legend(*ax.get_legend_handles_labels(), loc="lower center", ncol=min(len(losses), 8), fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig


def plot_tide_bars(summary: dict, path) -> Path:
    """Grouped bars per TIDE error type (Cls, Loc, Both, Dupe, Bkg, Miss; FP and FN in their own panel),
    one bar per loss: mean dAP50 in AP points, std error bars with more than one seed, seeds as dots."""
    return _save(_tide_figure(summary), path)


# ---------------------------------------------------------------------------------------------------- TP IoU

def _tp_iou_figure(summary: dict):
    """Figure of ``plot_tp_iou_histograms``."""
    losses = list(summary)
    colors = _colors(losses)
    fig, (ax, ax_m) = plt.subplots(1, 2, figsize=(12.0, 4.6), gridspec_kw={"width_ratios": [3, 2]})
    for loss in losses:
        tp = summary[loss]["tp_iou"]["all"]
        edges = np.asarray(tp["histogram"]["edges"], dtype=float)
        counts = np.asarray(tp["histogram"]["counts"], dtype=float)
        mean = tp["mean"]["mean"]
        n = tp["n"]["mean"]
        label = loss
        if mean is not None:
            label += f" (mean {mean:.3f}"
            label += f", {n:.0f} TP/seed)" if n is not None else ")"
        total = counts.sum()
        if total > 0:
            ax.stairs(counts / total, edges, color=colors[loss], lw=1.8, label=label)
        else:
            ax.plot([], [], color=colors[loss], label=f"{loss} (no true positive)")
        if mean is not None:
            ax.axvline(mean, color=colors[loss], lw=1.3, ls="--")
    ax.set_xlim(0.5, 1.0)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("IoU of a true positive with its ground truth (matched at IoU ≥ 0.5)")
    ax.set_ylabel("fraction of true positives per bin")
    ax.set_title("all areas, summed over seeds (dashed: mean)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_ylim(top=ax.get_ylim()[1] * 1.25)  # room for the legend above the curves

    tp_means = {loss: {a: summary[loss]["tp_iou"][a]["mean"] for a in SIZE_AREAS if a in summary[loss]["tp_iou"]}
                for loss in losses}
    areas = [a for a in SIZE_AREAS if any(not math.isnan(_num(tp_means[loss].get(a, {}).get("mean"))) for loss in losses)]
    _grouped(ax_m, {loss: {**summary[loss], "tp_mean": tp_means[loss]} for loss in losses}, areas, colors,
             section="tp_mean", scale=1.0, marker="D")
    labels = []
    for a in areas:
        ns = [summary[loss]["tp_iou"][a]["n"]["mean"] for loss in losses]
        ns = [n for n in ns if n is not None]
        labels.append(f"{a}\nn {min(ns):.0f}–{max(ns):.0f}" if ns and round(min(ns)) != round(max(ns))
                      else f"{a}\nn {ns[0]:.0f}" if ns else a)
    ax_m.set_xticks(range(len(areas)), labels, fontsize=8.5)
    ax_m.set_xlim(-0.55, len(areas) - 0.45)
    ax_m.set_ylabel("mean IoU of true positives")
    ax_m.set_xlabel("size range (n: true positives per seed)")
    ax_m.set_title("per size range" + (" (mean ± std over seeds; dots: seeds)" if _multi(summary) else ""), fontsize=10)
    ax_m.grid(axis="y", alpha=0.3)
    fig.suptitle(f"IoU of true positives per box loss ({_seed_counts(summary)} seed(s))", fontsize=11)
    fig.tight_layout()
    return fig


def plot_tp_iou_histograms(summary: dict, path) -> Path:
    """Left: per loss, the histogram of the IoU of true positives (all areas, summed over seeds) as a
    fraction of true positives per bin, step lines overlaid, dashed line at the mean; right: the mean
    TP IoU per size range per loss (std error bars, seeds as dots)."""
    return _save(_tp_iou_figure(summary), path)


def write_comparison_plots(summary: dict, comparison: dict, out_dir) -> list[Path]:
    """Write the four ``COMPARISON_PLOTS`` into ``out_dir``; returns their paths in that order."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = list(COMPARISON_PLOTS)
    losses = list(summary) + [r["loss"] for r in comparison["comparisons"] if r["loss"] not in summary]
    if comparison["baseline"] not in losses:
        losses.insert(0, comparison["baseline"])
    return [
        plot_difference_forest(comparison, out_dir / names[0], losses=losses),
        plot_ap_vs_iou(summary, out_dir / names[1]),
        plot_tide_bars(summary, out_dir / names[2]),
        plot_tp_iou_histograms(summary, out_dir / names[3]),
    ]
