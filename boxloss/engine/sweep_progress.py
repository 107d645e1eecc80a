"""What a running sweep is doing, read from its run folders: one line per run in progress (epoch,
train loss, AP so far, ETA) and the sweep's own ETA. ``compare_losses.py --jobs N`` prints it while
its quiet child processes train.

    print(format_progress(runs, "runs/cmp", epochs=10, jobs=2))

    3/15 runs finished, 2 training; sweep ETA ~41 min (mean run 8.1 min, 2 at a time)
      ciou seed 1   epoch  6/10  loss 1.402  AP 15.1 (epoch 6)  ETA 3.4 min
      diou seed 0   epoch  2/10  loss 2.110  AP —               ETA 7.2 min

Everything comes from the files the engine writes anyway (``log.csv``: its ``time_s`` column is the
run's wall clock, resumed parts included), so it also works for shards on other machines sharing
the folder.
"""

from __future__ import annotations

import math

from ..evaluation.diagnosis import as_float
from .sweep import read_log, run_dir, run_state


def run_progress(directory, epochs: int) -> dict:
    """``{"state", "epoch", "loss", "ap", "ap_epoch", "time_s", "eta_s"}`` of one run folder (None where
    unknown). ``epoch`` is the epoch being trained; the ETA extrapolates the run's seconds per finished
    epoch to the epochs left."""
    state = run_state(directory, epochs)
    rows = read_log(directory / "log.csv")
    train = [r for r in rows if r.get("kind") == "train"]
    evals = [r for r in rows if r.get("kind") == "eval" and (as_float(r.get("AP")) or -1) >= 0]
    out = {"state": state, "epoch": None, "loss": None, "ap": None, "ap_epoch": None, "time_s": None, "eta_s": None}
    if train:
        last = train[-1]
        out.update(epoch=int(as_float(last.get("epoch")) or 0), loss=as_float(last.get("loss")),
                   time_s=as_float(last.get("time_s")))
    if evals:
        out.update(ap=as_float(evals[-1]["AP"]), ap_epoch=int(as_float(evals[-1].get("epoch")) or 0))
    done_epochs = [int(as_float(r.get("epoch")) or 0) for r in evals] + [out["epoch"] - 1 if out["epoch"] else 0]
    finished = max(done_epochs)
    if out["time_s"] and finished > 0 and state not in ("done", "trained"):
        out["eta_s"] = out["time_s"] / finished * max(epochs - finished, 0)
    return out


def _minutes(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds / 60:.1f} min"


def format_progress(runs, out_dir, epochs: int, jobs: int = 1) -> str:
    """The progress block of a sweep (see the module doc); runs not started are only counted."""
    from pathlib import Path

    progress = {(l, s): run_progress(Path(run_dir(out_dir, l, s)), epochs) for l, s in runs}
    finished = [k for k, p in progress.items() if p["state"] in ("done", "trained")]
    active = [k for k, p in progress.items() if p["state"] not in ("done", "trained") and p["epoch"] is not None]
    times = [progress[k]["time_s"] for k in finished if progress[k]["time_s"]]
    head = f"{len(finished)}/{len(runs)} runs finished, {len(active)} training"
    if times:
        mean = sum(times) / len(times)
        queued = len(runs) - len(finished) - len(active)
        left = sum(progress[k]["eta_s"] or mean for k in active) + queued * mean
        head += f"; sweep ETA ~{left / max(jobs, 1) / 60:.0f} min (mean run {mean / 60:.1f} min, {jobs} at a time)"
    lines = [head]
    width = max((len(f"{l} seed {s}") for l, s in active), default=0)
    for loss, seed in active:
        p = progress[loss, seed]
        ap = "—" if p["ap"] is None else f"{100 * p['ap']:.1f} (epoch {p['ap_epoch']})"
        loss_text = "—" if p["loss"] is None or not math.isfinite(p["loss"]) else f"{p['loss']:.3f}"
        lines.append(f"  {f'{loss} seed {seed}':<{width}}  epoch {p['epoch']:>3}/{epochs}  loss {loss_text}  "
                     f"AP {ap:<16} ETA {_minutes(p['eta_s'])}")
    return "\n".join(lines)


def progress_key(runs, out_dir, epochs: int) -> tuple:
    """What changes when the block is worth printing again: each run's state and epoch (not every
    loss value, which changes every few seconds)."""
    from pathlib import Path

    return tuple((run_state(run_dir(out_dir, l, s), epochs),
                  run_progress(Path(run_dir(out_dir, l, s)), epochs)["epoch"]) for l, s in runs)
