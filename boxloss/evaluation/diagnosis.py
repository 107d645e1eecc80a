"""Read a training run's curves the way a practitioner would, and say what looks wrong.

``diagnose_run(log_rows)`` takes the rows of a run's ``log.csv`` (the engine's format: ``kind`` is
``train`` or ``eval``; train rows carry ``loss``; eval rows carry ``AP`` and optionally ``val_loss``;
values may be strings as ``csv.DictReader`` gives them) and returns short findings, one string each,
starting with a tag: ``diverged``, ``rising``, ``stuck``, ``over-fitting``, ``healthy`` or ``short``.

The rules of thumb (thresholds are module constants):

- diverged: a non-finite train loss;
- rising: the train loss at the end is clearly above where it started, or came back up far above its
  minimum: the learning rate is too high (lower it, add warm-up, clip gradients);
- stuck: the train loss barely moves and the validation AP (or val loss) is flat too: the model is not
  learning (try a lower learning rate, as the usual rule says; if it is already low, a higher one; check
  that targets reach the loss);
- over-fitting: the train loss keeps falling while the validation AP gets worse, or the validation loss
  rises, or the AP stalls for the second half of training: more data / augmentation / weight decay, or
  stop earlier (the best checkpoint is not the last);
- healthy: none of the above; with a second finding ``still improving`` when the last evaluation
  interval still added at least half the run's mean AP gain per interval (not converged: train longer
  before comparing);
- short: too few points to judge.

The train loss is compared over windows (the mean of each fifth of the train rows), not point by point,
so that per-batch noise does not trigger anything.
"""

from __future__ import annotations

import math

import numpy as np

WINDOWS = 5  # the train loss is summarised as the means of this many consecutive chunks
RISE_TOL = 0.10  # end > start * (1 + RISE_TOL) -> rising
REBOUND = 1.5  # end > REBOUND * lowest window -> rising (came back up)
FLAT_TOL = 0.05  # relative train-loss drop under this -> flat
AP_FLAT = 0.01  # AP range (absolute, AP in [0, 1]) under this -> flat
AP_DROP = 0.01  # best AP - last AP over this (absolute) -> AP got worse
AP_STALL = 0.002  # AP gain over the second half of the evals under this -> stalled
VAL_RISE = 0.05  # last val loss > min * (1 + VAL_RISE) -> val loss rising
FALL_TOL = 0.10  # train loss fell by this much (relative) over the same span -> still falling
STILL_RISING = 0.5  # last eval interval's AP gain >= this x the run's mean gain per interval -> not converged


def as_float(v) -> float | None:
    if v is None or v == "":
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _series(rows, kind: str, key: str) -> tuple[list[float], list[float]]:
    """(epoch-or-step x, value) of rows of one kind, skipping rows without the value."""
    xs, ys = [], []
    for i, row in enumerate(rows):
        if row.get("kind") != kind:
            continue
        y = as_float(row.get(key))
        if y is None:
            continue
        x = as_float(row.get("step"))
        xs.append(x if x is not None else float(i))
        ys.append(y)
    return xs, ys


def _fmt(v: float) -> str:
    return f"{v:.3g}"


def _pct(ap: float) -> str:
    return f"{100 * ap:.1f}%"


def diagnose_run(log_rows) -> list[str]:
    """Findings about one training run, from its log rows (see the module docstring).

    Returns a non-empty list of strings, each ``"<tag>: <what was seen> — <what to do>"``.
    """
    rows = list(log_rows)
    steps, loss = _series(rows, "train", "loss")
    eval_steps, ap = _series(rows, "eval", "AP")
    ap = [a for a in ap if a >= 0]  # -1 = no ground truth: nothing to read
    _, val_loss = _series(rows, "eval", "val_loss")

    if any(not math.isfinite(v) for v in loss):
        first = next(i for i, v in enumerate(loss) if not math.isfinite(v))
        return [f"diverged: the train loss became {loss[first]} at step {int(steps[first])} — lower the learning rate, add warm-up or gradient clipping"]
    if len(loss) < 2 * WINDOWS:
        return [f"short: only {len(loss)} train-loss points — too few to diagnose"]

    chunks = [float(c.mean()) for c in np.array_split(np.asarray(loss), WINDOWS)]
    start, end, low = chunks[0], chunks[-1], min(chunks)
    drop = (start - end) / abs(start) if start else 0.0
    findings = []

    if end > start * (1 + RISE_TOL) or end > REBOUND * low:
        findings.append(
            f"rising: train loss went {_fmt(start)} -> lowest {_fmt(low)} -> {_fmt(end)} (window means) — "
            "diverging, the learning rate is too high: lower it, add warm-up or gradient clipping"
        )
        return findings

    ap_flat = len(ap) < 2 or (max(ap) - min(ap)) < AP_FLAT
    val_flat = len(val_loss) < 2 or abs(val_loss[-1] - val_loss[0]) <= FLAT_TOL * abs(val_loss[0])
    if drop < FLAT_TOL and ap_flat and val_flat:
        ap_txt = f"; val AP stays {_pct(min(ap))}-{_pct(max(ap))}" if ap else ""
        findings.append(
            f"stuck: train loss only {_fmt(start)} -> {_fmt(end)} ({100 * drop:.1f}% drop){ap_txt} — "
            "not learning: lower the learning rate (or raise it if it is already tiny) and check that the targets reach the loss"
        )
        return findings

    if drop >= FLAT_TOL and len(ap) >= 3:
        best = int(np.argmax(ap))
        half = len(ap) // 2
        second_half_gain = ap[-1] - max(ap[: half + 1])
        # train-loss fall over the second half of the evals' span
        t_half = eval_steps[half] if len(eval_steps) > half else steps[len(steps) // 2]
        late = [v for s, v in zip(steps, loss) if s >= t_half]
        late_chunks = [float(c.mean()) for c in np.array_split(np.asarray(late), min(WINDOWS, len(late)))] if len(late) >= 2 else []
        late_fall = (late_chunks[0] - late_chunks[-1]) / abs(late_chunks[0]) if late_chunks and late_chunks[0] else 0.0
        if best < len(ap) - 1 and ap[best] - ap[-1] > AP_DROP:
            findings.append(
                f"over-fitting: train loss still falling ({_fmt(start)} -> {_fmt(end)}) but val AP peaked at {_pct(ap[best])} "
                f"(eval {best + 1} of {len(ap)}) and ended at {_pct(ap[-1])} — use the best checkpoint, stop earlier, "
                "or add data / augmentation / weight decay"
            )
        elif len(val_loss) >= 3 and int(np.argmin(val_loss)) < len(val_loss) - 1 and val_loss[-1] > min(val_loss) * (1 + VAL_RISE):
            findings.append(
                f"over-fitting: train loss falling ({_fmt(start)} -> {_fmt(end)}) while val loss rose from its minimum "
                f"{_fmt(min(val_loss))} to {_fmt(val_loss[-1])} — stop earlier or add data / augmentation / weight decay"
            )
        elif len(ap) >= 4 and second_half_gain < AP_STALL and late_fall >= FALL_TOL:
            findings.append(
                f"over-fitting (likely): train loss fell {100 * late_fall:.0f}% in the second half while val AP stalled "
                f"({_pct(max(ap[: half + 1]))} -> {_pct(ap[-1])}) — more training buys nothing here: stop earlier or regularise"
            )
    if not findings:
        ap_txt = f", val AP {_pct(ap[0])} -> {_pct(ap[-1])}" if len(ap) >= 2 else (f", val AP {_pct(ap[0])}" if ap else "")
        findings.append(f"healthy: train loss {_fmt(start)} -> {_fmt(end)} ({100 * drop:.0f}% drop){ap_txt}")
        gain = ap[-1] - ap[0] if len(ap) >= 3 else 0.0
        rate = gain / max(len(ap) - 1, 1)  # mean AP gain per evaluation interval
        if gain > AP_FLAT and ap[-1] - ap[-2] >= STILL_RISING * rate:
            findings.append(
                f"still improving: the last evaluation interval added {100 * (ap[-1] - ap[-2]):.1f} AP points "
                f"({(ap[-1] - ap[-2]) / rate:.1f}x the run's mean per interval) — not converged: longer training "
                "would raise AP; compare losses at convergence"
            )
    return findings
