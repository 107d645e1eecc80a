"""PNG plots of a per-loss comparison (matplotlib, Agg backend: no display needed).

Pure functions over the run results and summary described in ``report.py``:

- ``plot_ap_per_loss``: mean AP per loss with std error bars, each seed as a small dot;
- ``plot_pr_curves``: precision-recall at IoU 0.5 and 0.75 per loss (mean over seeds of COCO's
  101-point interpolated precision, averaged over classes);
- ``plot_training_curves``: train loss (mean of each epoch's steps, relative to epoch 1) and
  validation AP per epoch, one colour per loss, one line per seed.

``write_plots`` writes all three under their ``report.PLOTS`` names.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .diagnosis import as_float  # noqa: E402
from .report import summarize_runs  # noqa: E402

RECALL = np.linspace(0.0, 1.0, 101)


def _colors(losses) -> dict:
    cmap = plt.get_cmap("tab10")
    return {loss: cmap(i % 10) for i, loss in enumerate(losses)}


def _by_loss(runs) -> dict:
    out = defaultdict(list)
    for r in sorted(runs, key=lambda r: r.get("seed", 0)):
        out[r["loss"]].append(r)
    return dict(out)


def plot_ap_per_loss(summary: dict, path, *, stat: str = "AP") -> Path:
    """Per loss: mean of ``stat`` (percent) with +- std error bars; small dots are the single seeds."""
    losses = list(summary)
    colors = _colors(losses)
    fig, ax = plt.subplots(figsize=(1.2 * len(losses) + 2.5, 3.8))
    for i, loss in enumerate(losses):
        a = summary[loss][stat]
        if a["mean"] is None or a["mean"] < 0:
            continue
        # points with error bars, not bars: the axis is zoomed on the differences, and a truncated bar
        # would exaggerate them
        ax.errorbar(i, 100 * a["mean"], yerr=None if a["std"] is None else 100 * a["std"], color=colors[loss],
                    marker="D", ms=8, capsize=8, lw=2, zorder=2)
        runs = np.asarray([v for v in a["runs"] if v is not None and v >= 0])
        jitter = np.linspace(-0.12, 0.12, len(runs)) if len(runs) > 1 else np.zeros(len(runs))
        ax.scatter(i + 0.18 + jitter / 2, 100 * runs, color="black", s=12, alpha=0.6, zorder=3)
        top = max([100 * a["mean"] + 100 * (a["std"] or 0.0), *(100 * runs)])
        ax.annotate(f"{100 * a['mean']:.1f}", (i, top), xytext=(0, 5), textcoords="offset points", ha="center", va="bottom", fontsize=9)
    ax.set_xticks(range(len(losses)), losses)
    means = [100 * summary[k][stat]["mean"] for k in losses if (summary[k][stat]["mean"] or -1) >= 0]
    if means:
        lows = [100 * v for k in losses for v in summary[k][stat]["runs"] if v is not None and v >= 0]
        lo = max(0.0, min(min(lows), min(means)) - 2)
        hi = max(100 * (summary[k][stat]["mean"] + (summary[k][stat]["std"] or 0.0)) for k in losses if (summary[k][stat]["mean"] or -1) >= 0)
        hi = max(hi, max(100 * v for k in losses for v in summary[k][stat]["runs"] if v is not None)) + 4
        ax.set_ylim(lo, hi)
    n = sorted({len(summary[k]["seeds"]) for k in losses})
    ax.set_ylabel(f"COCO {stat} (%)")
    ax.set_title(f"{stat} per box loss (mean ± std over {'/'.join(map(str, n))} seed(s))")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def plot_pr_curves(runs: list[dict], path, ious=(0.5, 0.75)) -> Path:
    """One panel per IoU threshold; one line per loss (mean over seeds), seeds' range shaded."""
    groups = _by_loss(runs)
    colors = _colors(groups)
    fig, axes = plt.subplots(1, len(ious), figsize=(5.2 * len(ious), 4.4), squeeze=False)
    for ax, iou in zip(axes[0], ious):
        for loss, group in groups.items():
            curves = [np.asarray(r["pr"][str(iou)]) for r in group if str(iou) in r.get("pr", {})]
            if not curves:
                continue
            curves = np.stack(curves)
            mean = curves.mean(axis=0)
            ap = 100 * mean.mean()
            ax.plot(RECALL, mean, color=colors[loss], lw=1.8, label=f"{loss} (AP{int(round(iou * 100))} {ap:.1f})")
            if len(curves) > 1:
                ax.fill_between(RECALL, curves.min(axis=0), curves.max(axis=0), color=colors[loss], alpha=0.15, lw=0)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision (interpolated, mean over classes)")
        ax.set_title(f"IoU {iou}")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best", fontsize=8)
    fig.suptitle("Precision-recall per box loss (area all, 100 detections per image)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def epoch_curves(log_rows) -> tuple[dict, dict]:
    """``({epoch: mean train loss}, {epoch: val AP})`` from log rows; AP -1 and missing values skipped."""
    train, ap = defaultdict(list), {}
    for row in log_rows:
        epoch = as_float(row.get("epoch"))
        if epoch is None:
            continue
        if row.get("kind") == "train" and as_float(row.get("loss")) is not None:
            train[epoch].append(as_float(row["loss"]))
        elif row.get("kind") == "eval" and (as_float(row.get("AP")) or -1) >= 0:
            ap[epoch] = as_float(row["AP"])
    return {e: float(np.mean(v)) for e, v in sorted(train.items())}, dict(sorted(ap.items()))


def plot_training_curves(runs: list[dict], path) -> Path:
    """Left: train loss per epoch; right: validation AP (%) per epoch; one colour per loss.

    Different losses have different scales (an IoU loss lies in [0, 2], Smooth L1 is unbounded), so the
    train-loss panel shows each run's total loss divided by its first epoch's value.
    """
    groups = _by_loss(runs)
    colors = _colors(groups)
    fig, (ax_l, ax_a) = plt.subplots(1, 2, figsize=(10.5, 4.2))
    for loss, group in groups.items():
        for k, r in enumerate(group):
            train, ap = epoch_curves(r.get("log", []))
            label = loss if k == 0 else None
            if train:
                e, v = np.array(list(train)), np.array(list(train.values()))
                ax_l.plot(e, v / v[0], color=colors[loss], lw=1.4, alpha=0.85, label=label, marker="o" if len(e) < 12 else None, ms=3)
            if ap:
                e, v = np.array(list(ap)), 100 * np.array(list(ap.values()))
                ax_a.plot(e, v, color=colors[loss], lw=1.4, alpha=0.85, label=label, marker="o" if len(e) < 12 else None, ms=3)
    ax_l.set_title("train loss (relative to epoch 1)")
    ax_l.set_xlabel("epoch")
    ax_l.set_ylabel("mean train loss / epoch-1 value")
    ax_a.set_title("validation AP")
    ax_a.set_xlabel("epoch")
    ax_a.set_ylabel("COCO AP (%)")
    for ax in (ax_l, ax_a):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.suptitle("Training curves (one line per seed)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def write_plots(runs: list[dict], out_dir, summary: dict | None = None) -> list[Path]:
    """Write ap_per_loss.png, pr_curves.png and training_curves.png into ``out_dir``; returns the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = summarize_runs(runs) if summary is None else summary
    return [
        plot_ap_per_loss(summary, out_dir / "ap_per_loss.png"),
        plot_pr_curves(runs, out_dir / "pr_curves.png"),
        plot_training_curves(runs, out_dir / "training_curves.png"),
    ]
