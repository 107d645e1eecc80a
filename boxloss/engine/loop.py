"""One epoch of training, one evaluation, one checkpoint: the three steps ``trainer.fit`` repeats.

Each takes the ``Run`` (everything a run carries from epoch to epoch: model, optimizer, clocks,
counters) and the epoch number, in the manner of DETR's ``engine.py``:

    for epoch in range(start + 1, epochs + 1):
        out_of_time = train_one_epoch(run, epoch)
        if evaluation_due(run, epoch, out_of_time):
            stats = evaluate(run, epoch)
        save_checkpoints(run, epoch, stats)

Order and augmentation of an epoch depend only on ``(seed, epoch)`` (a fresh loader per epoch), so a
resumed run sees exactly the batches the uninterrupted one would have.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import time
from dataclasses import dataclass, field

import torch
from tqdm import tqdm

from ..data import build_dataloader
from .checkpoint import rng_state, save_checkpoint
from .inference import evaluate_detections, run_inference
from .optim import time_factor, warmup_factor

logger = logging.getLogger(__name__)
LOSS_KEYS = ("loss", "loss_cls", "loss_box", "loss_ctr")


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. the loss stayed non-finite); the message says why and what to try."""


@dataclass
class RunClock:
    """Wall and CPU seconds of a run, resumed parts included. ``budget()`` is the clock
    ``train.time_budget_s`` is measured on: wall seconds, or (``budget_clock: process``) CPU seconds of
    this process, all its threads, data-loader workers not counted — what an idle machine would give a
    run on a shared one."""

    elapsed_before: float = 0.0
    cpu_before: float = 0.0
    kind: str = "wall"
    start_time: float = field(default_factory=time.perf_counter)
    start_cpu: float = field(default_factory=time.process_time)

    def start(self) -> None:
        self.start_time, self.start_cpu = time.perf_counter(), time.process_time()

    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.start_time

    def cpu(self) -> float:
        return self.cpu_before + time.process_time() - self.start_cpu

    def budget(self) -> float:
        return self.cpu() if self.kind == "process" else self.elapsed()


@dataclass
class Run:
    """What one training run carries from epoch to epoch (built by ``trainer.fit``)."""

    cfg: dict
    device: torch.device
    rank: int
    world: int
    model: torch.nn.Module  # the bare model: its state_dict goes into checkpoints
    ddp_model: torch.nn.Module  # what the forward runs through (DistributedDataParallel when world > 1)
    optimizer: torch.optim.Optimizer
    scheduler: object
    scaler: torch.amp.GradScaler
    amp_dtype: torch.dtype | None
    memory_format: torch.memory_format
    train_ds: object
    val_ds: object
    sampler: object
    val_loader: object
    drop_last: bool
    log: object  # RunLogger on rank 0, None elsewhere
    clock: RunClock
    precision: str
    step: int = 0
    best_ap: float = -1.0
    nonfinite_total: int = 0
    nonfinite_run: int = 0
    rates: list = field(default_factory=list)

    @property
    def main(self) -> bool:
        return self.rank == 0


def _out_of_budget(run: Run) -> bool:
    """True when ``train.time_budget_s`` is used up; rank 0's clock decides, so all ranks stop at the
    same step."""
    over = torch.tensor(float(run.clock.budget() >= run.cfg["train"]["time_budget_s"]), device=run.device)
    if run.world > 1:
        torch.distributed.broadcast(over, 0)
    return bool(over)


def _loss_is_finite(run: Run, loss: torch.Tensor, losses: dict, epoch: int) -> bool:
    """False (and the step skipped, counted, logged) when the loss is not finite on some rank; raises
    ``TrainingError`` after ``train.max_nonfinite`` such steps in a row."""
    finite = torch.isfinite(loss.detach()).float()
    if run.world > 1:
        torch.distributed.all_reduce(finite, op=torch.distributed.ReduceOp.MIN)
    if bool(finite):
        run.nonfinite_run = 0
        return True
    run.nonfinite_run += 1
    run.nonfinite_total += 1
    run.optimizer.zero_grad(set_to_none=True)
    if run.main:
        logger.warning("non-finite loss at epoch %d step %d (%s); step skipped", epoch, run.step,
                       {k: float(v.detach()) for k, v in losses.items()})
    if run.nonfinite_run >= run.cfg["train"]["max_nonfinite"]:
        raise TrainingError(
            f"stopping: the loss was not finite in {run.nonfinite_run} steps in a row (epoch {epoch}, "
            f"step {run.step}, {run.nonfinite_total} in all); lower optim.lr, set train.clip_grad, or check the data")
    return False


def _optimizer_step(run: Run, loss: torch.Tensor) -> None:
    """Backward (scaled for fp16), optional gradient clipping, optimizer step."""
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    clip = run.cfg["train"]["clip_grad"]
    if clip > 0:
        run.scaler.unscale_(run.optimizer)
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), clip)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.step += 1


def train_one_epoch(run: Run, epoch: int) -> bool:
    """Train epoch ``epoch`` (1-based): warmup and time-budget learning rates, AMP, the non-finite
    guard, a log row every ``train.log_every`` steps, then the scheduler's epoch step. Returns True when
    the time budget ran out during the epoch."""
    t = run.cfg["train"]
    run.sampler.set_epoch(epoch)
    loader = build_dataloader(run.train_ds, t["batch_size"], sampler=run.sampler, num_workers=t["workers"],
                              seed=t["seed"] * 100_003 + epoch, drop_last=run.drop_last)
    run.ddp_model.train()
    sched_lrs = [g["lr"] for g in run.optimizer.param_groups]
    window = {k: 0.0 for k in LOSS_KEYS}
    window_steps, window_images, window_start = 0, 0, time.perf_counter()
    epoch_loss, epoch_steps, out_of_time = 0.0, 0, False
    bar = tqdm(loader, desc=f"epoch {epoch}/{t['epochs']}", disable=not (run.main and t["progress"]),
               dynamic_ncols=True, leave=False)
    for i, (images, targets) in enumerate(bar):
        if t["time_budget_s"] and _out_of_budget(run):
            out_of_time = True
            break
        factor = warmup_factor(run.step, run.cfg) * time_factor(run.clock.budget(), run.cfg)
        for g, lr in zip(run.optimizer.param_groups, sched_lrs):
            g["lr"] = lr * factor
        images = images.to(run.device, non_blocking=True).contiguous(memory_format=run.memory_format)
        with torch.autocast(device_type=run.device.type, dtype=run.amp_dtype, enabled=run.amp_dtype is not None):
            losses = run.ddp_model(images, targets)
        loss = losses["loss"]
        if not _loss_is_finite(run, loss, losses, epoch):
            continue
        _optimizer_step(run, loss)

        for k in LOSS_KEYS:
            window[k] += float(losses[k].detach())
        epoch_loss += float(loss.detach())
        epoch_steps += 1
        window_steps += 1
        window_images += len(images) * run.world
        if window_steps == t["log_every"] or i + 1 == len(loader):
            now = time.perf_counter()
            rate = window_images / max(now - window_start, 1e-9)
            run.rates.append(rate)
            row = {"kind": "train", "epoch": epoch, "step": run.step, "time_s": run.clock.elapsed(), "cpu_s": run.clock.cpu(),
                   "lr": run.optimizer.param_groups[0]["lr"], "images_per_s": rate,
                   **{k: v / window_steps for k, v in window.items()}}
            if run.main:
                run.log.log(row)
                bar.set_postfix(loss=f"{row['loss']:.3f}", cls=f"{row['loss_cls']:.3f}", box=f"{row['loss_box']:.3f}",
                                ctr=f"{row['loss_ctr']:.3f}", lr=f"{row['lr']:.2e}", ips=f"{rate:.1f}")
            window = {k: 0.0 for k in LOSS_KEYS}
            window_steps, window_images, window_start = 0, 0, time.perf_counter()
    bar.close()

    # The scheduler steps on the scheduled (not warmed-up) learning rates.
    for g, lr in zip(run.optimizer.param_groups, sched_lrs):
        g["lr"] = lr
    if isinstance(run.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        run.scheduler.step(epoch_loss / max(epoch_steps, 1))
    elif run.scheduler is not None:
        run.scheduler.step()
    return out_of_time


def evaluation_due(run: Run, epoch: int, out_of_time: bool) -> bool:
    """Every ``train.eval_every`` epochs, at the last epoch and when the time budget ends (never with 0)."""
    every = run.cfg["train"]["eval_every"]
    return bool(every) and (epoch % every == 0 or epoch == run.cfg["train"]["epochs"] or out_of_time)


def _write_json(path: str, obj) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f)
    os.replace(tmp, path)


def evaluate(run: Run, epoch: int) -> dict | None:
    """Inference on the val split on every rank, COCO evaluation on rank 0: writes ``detections.json``
    and ``stats.json``, logs an eval row; returns the stats (None on other ranks)."""
    dets, val_losses = run_inference(run.ddp_model, run.val_loader, run.val_ds, run.device, with_loss=True,
                                     amp_dtype=run.amp_dtype)
    if not run.main:
        return None
    out_dir = run.cfg["train"]["output_dir"]
    stats = evaluate_detections(run.val_ds.coco, dets, run.cfg["eval"]["backend"])
    _write_json(os.path.join(out_dir, "detections.json"), dets)
    _write_json(os.path.join(out_dir, "stats.json"), {"epoch": epoch, "step": run.step, **stats})
    run.log.log({"kind": "eval", "epoch": epoch, "step": run.step, "time_s": run.clock.elapsed(), "cpu_s": run.clock.cpu(),
                 "lr": run.optimizer.param_groups[0]["lr"], **{"val_" + k: v for k, v in val_losses.items()}, **stats})
    logger.info("epoch %d: AP %.4f AP50 %.4f AP75 %.4f val_loss %.4f", epoch, stats["AP"], stats["AP50"],
                stats["AP75"], val_losses["loss"])
    return stats


def save_checkpoints(run: Run, epoch: int, stats: dict | None) -> None:
    """Rank 0: ``checkpoint_last.pt`` every epoch, ``checkpoint_best.pt`` when ``stats`` (the latest
    evaluation) beat the best AP so far."""
    if not run.main:
        return
    improved = stats is not None and stats["AP"] > run.best_ap
    if improved:
        run.best_ap = stats["AP"]
    state = {
        "model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict() if run.scheduler is not None else None,
        "scaler": run.scaler.state_dict(), "epoch": epoch, "step": run.step, "config": copy.deepcopy(run.cfg),
        "rng": rng_state(), "best_ap": run.best_ap, "elapsed_s": run.clock.elapsed(), "cpu_s": run.clock.cpu(),
        "nonfinite_total": run.nonfinite_total, "num_classes": len(run.train_ds.category_ids),
        "category_ids": list(run.train_ds.category_ids), "precision": run.precision,
    }
    out_dir = run.cfg["train"]["output_dir"]
    save_checkpoint(state, os.path.join(out_dir, "checkpoint_last.pt"))
    if improved:
        save_checkpoint(state, os.path.join(out_dir, "checkpoint_best.pt"))
