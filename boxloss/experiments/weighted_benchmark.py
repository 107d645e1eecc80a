"""Speed of the weighted / avg_factor box-loss call detectors make -- ``loss(pred, target, weight=w,
avg_factor=n)`` -- through the fused one-pass path, against the two-pass composition it replaced (the
fused per-box loss, then ``_checks.finish_box_loss``), measured in the same run (``--weighted`` of
``scripts/bench_losses.py``).

Three forms per loss and N, each against its two-pass composition: ``avg_factor`` alone, ``weight`` and
``avg_factor``, and, for scale, the unweighted mean. Timing as ``loss_benchmark.time_calls``: forward +
backward, gradient for pred only, median over interleaved rounds.
"""

from __future__ import annotations

import torch

from boxloss import boxes as B
from boxloss.boxes._checks import finish_box_loss

from .loss_benchmark import make_boxes, time_calls

FORMS = ("avg_factor", "weight+avg_factor")
AVG_FACTOR = 17.0  # any value: the time does not depend on it
HEADER = ("| loss | N | unweighted mean ms | avg_factor: two-pass / one-pass ms | speedup "
          "| weight+avg_factor: two-pass / one-pass ms | speedup |\n|---|---|---|---|---|---|---|")


def _fns(loss, target, weight) -> dict:
    def two_pass(w):
        return lambda p, t: finish_box_loss(loss(p, t, reduction="none", impl="fused"), "mean", w, AVG_FACTOR)

    return {
        "mean": lambda p, t: loss(p, t, reduction="mean", impl="fused"),
        "avg_factor/two-pass": two_pass(None),
        "avg_factor/one-pass": lambda p, t: loss(p, t, avg_factor=AVG_FACTOR, impl="fused"),
        "weight+avg_factor/two-pass": two_pass(weight),
        "weight+avg_factor/one-pass": lambda p, t: loss(p, t, weight=weight, avg_factor=AVG_FACTOR, impl="fused"),
    }


def run_weighted_benchmark(losses, sizes, *, rounds: int | None = None, log=print) -> list[dict]:
    """One row per (loss, N): seconds per forward + backward call of each form; logs a markdown line per row."""
    rows = []
    for name in losses:
        loss = getattr(B, f"{name}_loss")
        for n in sizes:
            pred, target = make_boxes(n)
            weight = torch.rand(n, generator=torch.Generator().manual_seed(1))
            seconds = time_calls(_fns(loss, target, weight), pred, target,
                                 rounds=rounds or (5 if n >= 1_000_000 else 9))
            row = {"loss": name, "n": n, "seconds": seconds}
            rows.append(row)
            log(format_row(row))
    return rows


def format_row(row: dict) -> str:
    s = row["seconds"]
    cells = [f"{s['mean'] * 1e3:.3f}"]
    for form in FORMS:
        two, one = s[f"{form}/two-pass"], s[f"{form}/one-pass"]
        cells += [f"{two * 1e3:.3f} / {one * 1e3:.3f}", f"{two / one:.2f}x"]
    return f"| {row['loss']} | {row['n']:.0e} | " + " | ".join(cells) + " |"
