"""Run logs: ``log.csv`` (one row per logged train step and per evaluation) and optional TensorBoard.

The columns are fixed (``COLUMNS``) so that rows of both kinds share one file; cells that do not apply
are empty. docs/protocol.md documents each column.
"""

from __future__ import annotations

import csv
import os

from ..evaluation.coco_eval import STAT_NAMES

COLUMNS = ("kind", "epoch", "step", "time_s", "cpu_s", "lr", "loss", "loss_cls", "loss_box", "loss_ctr", "images_per_s",
           "val_loss", "val_loss_cls", "val_loss_box", "val_loss_ctr") + STAT_NAMES


class RunLogger:
    """Appends rows to ``output_dir/log.csv``; mirrors scalars to TensorBoard when it is installed."""

    def __init__(self, output_dir: str, tensorboard: bool = True):
        self.path = os.path.join(output_dir, "log.csv")
        new = not os.path.exists(self.path) or os.path.getsize(self.path) == 0
        self.file = open(self.path, "a", newline="")
        self.writer = csv.DictWriter(self.file, fieldnames=COLUMNS, extrasaction="ignore")
        if new:
            self.writer.writeheader()
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(os.path.join(output_dir, "tb"))
            except ImportError:  # tensorboard is optional
                self.tb = None

    def log(self, row: dict) -> None:
        self.writer.writerow({k: _fmt(v) for k, v in row.items()})
        self.file.flush()
        if self.tb is not None:
            prefix = "train" if row.get("kind") == "train" else "eval"
            for key, value in row.items():
                if key not in ("kind", "epoch", "step") and isinstance(value, (int, float)):
                    self.tb.add_scalar(f"{prefix}/{key}", value, row.get("step", 0))

    def close(self) -> None:
        self.file.close()
        if self.tb is not None:
            self.tb.close()


def _fmt(value):
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def truncate_log(path: str, epoch: int) -> None:
    """Drop rows after ``epoch`` (rows of an interrupted epoch) before a resumed run appends its own."""
    if not os.path.exists(path):
        return
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    keep = [r for r in rows if r.get("epoch") not in (None, "") and int(r["epoch"]) <= epoch]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(keep)
