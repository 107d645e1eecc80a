"""comparison_plots on hand-made summarize_losses / compare_to_baseline outputs (no hotcoco, no bootstrap)."""

import matplotlib.pyplot as plt
import numpy as np
import pytest

from boxloss.evaluation.comparison_plots import (
    COMPARISON_PLOTS,
    _ap_vs_iou_figure,
    _colors,
    _forest_figure,
    _tide_figure,
    _tp_iou_figure,
    plot_ap_vs_iou,
    plot_difference_forest,
    plot_tide_bars,
    plot_tp_iou_histograms,
    write_comparison_plots,
)

THRESHOLDS = [f"{t:.2f}" for t in np.linspace(0.5, 0.95, 10)]
EDGES = list(np.round(np.linspace(0.5, 1.0, 11), 2))
TIDE_KEYS = ("Cls", "Loc", "Both", "Dupe", "Bkg", "Miss", "FP", "FN")


def spread(runs):
    runs = [float(v) for v in runs]
    return {"mean": float(np.mean(runs)), "std": float(np.std(runs, ddof=1)) if len(runs) > 1 else None, "runs": runs}


def loss_entry(ap50, loc, tp_mean, seeds=(0, 1, 2), large_none=False):
    n = len(seeds)
    wiggle = np.linspace(-0.01, 0.01, n) if n > 1 else np.zeros(1)
    ap = {t: spread(ap50 * (1.5 - float(t)) + wiggle) for t in THRESHOLDS}
    ap["0.95"] = spread([-1.0] + [0.01] * (n - 1)) if n > 1 else spread([0.01])  # a run without ground truth there
    tide = {k: spread(np.full(n, 0.02) + wiggle / 10) for k in TIDE_KEYS}
    tide["Loc"] = spread(loc + wiggle)
    tp = {}
    for area in ("all", "small", "medium", "large"):
        none = large_none and area == "large"
        tp[area] = {"mean": {"mean": None, "std": None, "runs": [None] * n} if none else spread(tp_mean + wiggle),
                    "median": spread(tp_mean + 0.01 + wiggle),
                    "n": spread(np.zeros(n) if none else np.full(n, 100.0)),
                    "histogram": {"edges": EDGES, "counts": [0] * 10 if none else [1, 2, 5, 9, 14, 20, 18, 12, 5, 1]}}
    return {"seeds": list(seeds), "metric": {"n": n, "mean": ap50 / 2, "sd": None, "lower": None, "upper": None},
            "ap_by_iou": ap, "tide": tide, "tp_iou": tp}


SUMMARY = {"giou": loss_entry(0.80, 0.02, 0.75), "ciou": loss_entry(0.81, 0.018, 0.76),
           "l1": loss_entry(0.65, 0.17, 0.68, large_none=True), "diou": loss_entry(0.79, 0.03, 0.74, seeds=(0,))}


def t(mean, lower, upper, n=3):
    return {"n": n, "mean": mean, "sd": None if n < 2 else 0.001, "lower": lower, "upper": upper, "confidence": 0.95,
            "p": None if n < 2 else 0.01}


def seed_rows(diffs, bootstrap=True):
    return [{"seed": s, "diff": d, **({"bootstrap": {"lower": d - 0.002, "upper": d + 0.002, "diff": d}} if bootstrap else {})}
            for s, d in enumerate(diffs)]


COMPARISON = {
    "metric": "AP", "baseline": "giou", "alpha": 0.05, "confidence": 0.95, "n_comparisons": 2,
    "comparisons": [
        {"loss": "ciou", "n": 3, "seed_level": t(0.005, 0.003, 0.007), "p_holm": 0.007,
         "corrected": {"confidence": 0.95, "lower": 0.003, "upper": 0.007},
         "per_seed": seed_rows([0.0045, 0.0048, 0.006]), "verdict": "better"},
        {"loss": "l1", "n": 3, "seed_level": t(-0.17, -0.18, -0.16), "p_holm": 0.0001,
         "corrected": {"confidence": 0.975, "lower": -0.182, "upper": -0.158},
         "per_seed": seed_rows([-0.17, -0.172, -0.168], bootstrap=False), "verdict": "worse"},
        {"loss": "diou", "n": 1, "seed_level": t(-0.001, None, None, n=1), "p_holm": None, "corrected": None,
         "per_seed": seed_rows([-0.001]), "verdict": "not established"},
        {"loss": "siou", "n": 0, "seed_level": None, "per_seed": [], "verdict": "not established",
         "reason": "no seed with a finished run of both siou and giou"},
    ],
}


def _png(path):
    assert path.is_file() and path.stat().st_size > 1000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("plot, data", [(plot_difference_forest, COMPARISON), (plot_ap_vs_iou, SUMMARY),
                                        (plot_tide_bars, SUMMARY), (plot_tp_iou_histograms, SUMMARY)])
def test_each_plot_writes_a_png(tmp_path, plot, data):
    out = plot(data, tmp_path / "p.png")
    assert out == tmp_path / "p.png"
    _png(out)


def test_write_comparison_plots_names(tmp_path):
    paths = write_comparison_plots(SUMMARY, COMPARISON, tmp_path / "plots")
    assert [p.name for p in paths] == list(COMPARISON_PLOTS)
    for p in paths:
        _png(p)


def test_one_seed_everywhere(tmp_path):
    one = {k: loss_entry(0.8 - 0.01 * i, 0.02, 0.75, seeds=(0,)) for i, k in enumerate(("giou", "ciou"))}
    comp = {**COMPARISON, "n_comparisons": 0, "comparisons": [COMPARISON["comparisons"][2] | {"loss": "ciou"}]}
    for p in write_comparison_plots(one, comp, tmp_path):
        _png(p)


def _texts(fig):
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def test_forest_rows_verdicts_and_intervals():
    fig = _forest_figure(COMPARISON, losses=list(SUMMARY))
    try:
        ax = fig.axes[0]
        assert [t.get_text() for t in ax.get_yticklabels()] == ["ciou", "l1", "diou", "siou"]
        texts = _texts(fig)
        verdicts = [t for t in texts if t in ("better", "worse", "not established")]
        assert verdicts == ["better", "worse", "not established", "not established"]
        colours = {t.get_text(): t.get_bbox_patch().get_facecolor()[:3] for t in ax.texts if t.get_text() in ("better", "worse")}
        assert colours["better"][1] > colours["better"][0] and colours["worse"][0] > colours["worse"][1]  # green, red
        assert any("1 seed" in t for t in texts) and any("no paired seed" in t for t in texts)
        assert any("+0.50 pts [+0.30, +0.70]" in t for t in texts)  # AP points, Holm-level interval
        assert "giou" in ax.get_title() and "AP" in ax.get_title()
        # thick bars (the Holm-level intervals) only for the two rows that have one, in AP points
        thick = sorted(tuple(np.round(line.get_xdata(), 6)) for line in ax.lines if line.get_linewidth() == 9)
        assert thick == [(-18.2, -15.8), (0.3, 0.7)]
        # the mean diamonds carry each loss's colour from the summary order
        diamonds = [line for line in ax.lines if line.get_marker() == "D"]
        assert len(diamonds) == 3
        assert diamonds[1].get_color() == _colors(list(SUMMARY))["l1"]
        lo, hi = ax.get_xlim()
        assert lo < -18.2 and hi > 0.7
    finally:
        plt.close(fig)


def test_ap_vs_iou_curves_and_difference():
    fig = _ap_vs_iou_figure(SUMMARY)
    try:
        ax, ax_d = fig.axes
        labels = [line.get_label() for line in ax.lines if not line.get_label().startswith("_")]
        assert [label.split()[0] for label in labels] == list(SUMMARY)
        giou = np.asarray(ax.lines[0].get_ydata())
        assert giou[0] == pytest.approx(100 * 0.80 * 1.0)  # AP50 in percent
        assert giou[-1] == pytest.approx(1.0)  # 0.95: the -1 run is left out of the mean
        diff = [np.asarray(line.get_ydata()) for line in ax_d.lines if len(line.get_ydata()) == len(THRESHOLDS)]
        assert np.allclose(diff[0], 0.0)
        assert diff[1][0] == pytest.approx(100 * 0.01)  # ciou - giou at 0.50, in AP points
    finally:
        plt.close(fig)


def test_tide_bars_in_ap_points():
    fig = _tide_figure(SUMMARY)
    try:
        ax, ax_t = fig.axes
        assert [t.get_text() for t in ax.get_xticklabels()] == ["Cls", "Loc", "Both", "Dupe", "Bkg", "Miss"]
        assert [t.get_text() for t in ax_t.get_xticklabels()] == ["FP", "FN"]
        heights = [p.get_height() for p in ax.patches]
        assert len(heights) == 6 * len(SUMMARY)
        assert max(heights) == pytest.approx(17.0)  # l1's Loc, 0.17 -> 17 AP points
    finally:
        plt.close(fig)


def test_tp_iou_histogram_fractions_and_size_means():
    fig = _tp_iou_figure(SUMMARY)
    try:
        ax, ax_m = fig.axes
        counts = np.array([1, 2, 5, 9, 14, 20, 18, 12, 5, 1])
        stairs = [p for p in ax.patches if hasattr(p, "get_data")]
        assert len(stairs) == len(SUMMARY)
        assert np.allclose(stairs[0].get_data().values, counts / counts.sum())
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        assert labels[0].startswith("giou (mean 0.750")
        assert [t.get_text().split("\n")[0] for t in ax_m.get_xticklabels()] == ["all", "small", "medium", "large"]
    finally:
        plt.close(fig)
