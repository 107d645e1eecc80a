"""The answer at the top of a comparison report, in plain words, with its numbers.

``answer_paragraphs(comparison, loss_summary, num_images)`` turns the output of
``comparison.compare_to_baseline`` and ``comparison.summarize_losses`` into a few short paragraphs:
which losses are established as better or worse than the baseline and by how much (with the corrected
interval), which are not and what it would take to decide, where the established differences come
from (localization or not), and which kinds of noise the evidence covers. The rule behind each word is
in docs/protocol.md, "Verdicts".
"""

from __future__ import annotations


def _pts(v: float | None, signed: bool = True) -> str:
    if v is None:
        return "—"
    return f"{100 * v:+.1f}" if signed else f"{100 * v:.1f}"


def _ci(lower, upper) -> str:
    return "—" if lower is None or upper is None else f"[{100 * lower:+.1f}, {100 * upper:+.1f}]"


def _span(values) -> str:
    """``1.2`` or ``1.2-3.4``: the range of values already in display units."""
    lo, hi = f"{min(values):.1f}", f"{max(values):.1f}"
    return lo if lo == hi else f"{lo}-{hi}"


def _loc_mean(row: dict, name: str) -> float | None:
    d = (row.get("localization") or {}).get(name)
    return None if d is None else d["mean"]


def origin_sentence(row: dict) -> str:
    """Where one comparison's difference lies: its trend over IoU thresholds, TIDE's Loc error and the
    IoU of true positives (the descriptive paired means, not tests)."""
    d50, d75, d90 = (_loc_mean(row, f"AP@{t}") for t in ("0.50", "0.75", "0.90"))
    loc, tp = _loc_mean(row, "Loc dAP50"), _loc_mean(row, "TP IoU")
    if d50 is None or d75 is None:
        return ""
    parts = [f"ΔAP {_pts(d50)} at IoU 0.50, {_pts(d75)} at 0.75" + ("" if d90 is None else f", {_pts(d90)} at 0.90")]
    if loc is not None:
        parts.append(f"TIDE Loc dAP50 {_pts(loc)} (negative: fewer localization errors)")
    if tp is not None:
        parts.append(f"mean IoU of true positives {tp:+.3f}")
    main = row.get("seed_level", {}).get("mean") or 0.0
    # a loss that localizes better gains more at strict thresholds than at IoU 0.5
    if abs(d75) > abs(d50) + 0.002 and (d75 > 0) == (main > 0):
        where = "mostly localization: the gap widens at stricter IoU thresholds"
    elif abs(d50) >= abs(d75):
        where = "already at IoU 0.5, so not only localization (finding / classifying objects too)"
    else:
        where = "mixed"
    return f"{row['loss']} vs {row['baseline']}: " + "; ".join(parts) + f" — {where}."


def answer_paragraphs(comparison: dict, loss_summary: dict, num_images: int | None = None) -> list[str]:
    """Paragraphs (Markdown) answering "which box loss, on this data?" with the evidence's strength."""
    metric, baseline = comparison["metric"], comparison["baseline"]
    rows = comparison["comparisons"]
    n_seeds = sorted({r["n"] for r in rows} | {len(e["seeds"]) for e in loss_summary.values()})
    seeds_text = "/".join(map(str, n_seeds))
    data = f"{num_images} validation images, " if num_images else ""
    out = []
    if not rows:
        return [f"Only one loss ({baseline}) was run: nothing to compare."]

    better = [r for r in rows if r["verdict"] == "better"]
    worse = [r for r in rows if r["verdict"] == "worse"]
    open_ = [r for r in rows if r["verdict"] == "not established"]
    one_seed = all(r["n"] < 2 for r in rows)

    def established(r):
        c = r.get("corrected") or {}
        level = c.get("confidence")
        return (f"**{r['loss']}** by {_pts(r['seed_level']['mean'])} points "
                f"({100 * level:.1f} % Holm-corrected interval {_ci(c.get('lower'), c.get('upper'))}, {r['n']} seeds)")

    head = f"**Answer** ({metric}, {data}{seeds_text} seed(s) per loss, baseline **{baseline}**): "
    if better:
        head += "better than the baseline: " + "; ".join(established(r) for r in better) + ". "
    if worse:
        head += "worse than the baseline: " + "; ".join(established(r) for r in worse) + ". "
    if not better and not worse:
        head += f"no loss is established as better or worse than {baseline} on this data. " if not one_seed else \
            "no verdict: only one seed is paired between each loss and the baseline. "
    if open_ and (better or worse):
        head += "Not established: " + ", ".join(r["loss"] for r in open_) + "."
    out.append(head.strip())

    best = max(((l, e["metric"]["mean"]) for l, e in loss_summary.items() if e.get("metric")), key=lambda x: x[1], default=None)
    if best:
        e = loss_summary[best[0]]["metric"]
        ci = "" if e["lower"] is None else f", 95 % interval of the mean over seeds [{100 * e['lower']:.1f}, {100 * e['upper']:.1f}]"
        uneven = len({len(x["seeds"]) for x in loss_summary.values()}) > 1
        out.append(f"Highest mean {metric}: {best[0]} ({100 * best[1]:.1f}{ci}"
                   + (f", over its {e['n']} seed(s); the losses have different numbers of seeds, so compare the paired "
                      "differences above, not the means" if uneven else "") + "). "
                   + ("A highest mean is not a winner unless its comparison above says so." if len(loss_summary) > 1 else ""))

    if one_seed:
        out.append("**One paired seed: only evaluation-set noise is covered** (the image bootstrap below). Retraining "
                   "the same detector with another seed moves AP by an unknown amount, often by more than the "
                   "differences between IoU-family losses; run `--seeds 3` or more for a verdict.")
    else:
        undecided = [r for r in open_ if r.get("seed_level") and r["seed_level"]["n"] >= 2]
        if undecided:
            bits = []
            for r in undecided:
                sl = r["seed_level"]
                need = r.get("seeds_needed")
                need_text = f"~{need} seeds would detect it with 80 % power" if need else "more seeds than is practical would be needed"
                bits.append(f"{r['loss']} {_pts(sl['mean'])} (95 % interval {_ci(sl['lower'], sl['upper'])}; "
                            f"{need_text})")
            mdes = [r["mde"] for r in undecided if r.get("mde") is not None]
            mde = (f" With {seeds_text} seeds this sweep detects, with 80 % power, only differences of about "
                   f"{_span([100 * m for m in mdes])} points or more.") if mdes else ""
            out.append("Not established (differences within the noise): " + "; ".join(bits) + "." + mde)

    origins = [origin_sentence(r) for r in (better + worse or [r for r in rows if r.get("seed_level")])]
    origins = [o for o in origins if o]
    if origins:
        out.append("**Where the differences come from** (paired means over seeds): " + " ".join(origins))

    boots = [(r["loss"], e["bootstrap"]) for r in rows for e in r.get("per_seed", []) if "bootstrap" in e]
    if boots:
        half = [100 * (b["upper"] - b["lower"]) / 2 for _, b in boots]
        sds = [100 * r["seed_level"]["sd"] for r in rows if r.get("seed_level") and r["seed_level"]["sd"] is not None]
        text = (f"Noise: the evaluation set alone (image bootstrap, {boots[0][1]['n_images']} images) makes a single "
                f"seed's difference uncertain by about ±{_span(half)} points")
        if sds:
            text += f"; retraining with another seed moves the differences by a standard deviation of {_span(sds)} points"
        out.append(text + ".")
    return out
