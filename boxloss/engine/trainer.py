"""The training loop: ``train(cfg)`` runs a whole experiment from a config dict (see config.py).

Read top to bottom: set up (device, process group, seed, data, model, optimizer, schedule), resume
if asked, then per epoch: train with warmup, clipping, AMP and non-finite-loss guards, log, evaluate,
checkpoint. Everything a run writes goes to ``train.output_dir`` (docs/protocol.md lists the files).
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler
from tqdm import tqdm

from ..data import (CocoDetection, DatasetError, build_dataloader, build_train_transforms, build_val_transforms,
                    make_synthetic_dataset)
from ..model import build_detector
from .amp import autocast_dtype
from .checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .config import ConfigError, DEFAULTS, dump_config, merge_config
from .distributed import barrier, cleanup, init_distributed, is_main_process
from .inference import evaluate_detections, run_inference
from .logger import RunLogger, truncate_log

logger = logging.getLogger(__name__)
LOSS_KEYS = ("loss", "loss_cls", "loss_box", "loss_ctr")


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. the loss stayed non-finite); the message says why and what to try."""


# ----------------------------------------------------------------------------------------- set-up


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("bad value train.device='cuda': no CUDA device is available; accepted: auto, cpu")
    return torch.device(name)


def synthetic_dir(cfg: dict) -> Path:
    """Where the synthetic dataset of ``cfg["data"]["synthetic"]`` lives (one folder per parameter set)."""
    root = cfg["data"]["cache_dir"] or os.environ.get("BOXLOSS_CACHE") or os.path.join(Path.home(), ".cache", "boxloss")
    s = cfg["data"]["synthetic"]
    return Path(root) / f"synthetic-s{s['size']}-n{s['train']}-{s['val']}-seed{s['seed']}"


def prepare_data_paths(cfg: dict) -> dict:
    """The four data paths: the config's own, or those of the synthetic set (generated once, by rank 0,
    into a temporary folder renamed into place, so concurrent runs never see half a dataset)."""
    d = cfg["data"]
    if d["train_ann"]:
        for key in ("train_ann", "val_ann"):
            if not os.path.isfile(d[key]):
                raise FileNotFoundError(f"data.{key}: annotation file not found: {d[key]}")
        for key in ("train_images", "val_images"):
            if not os.path.isdir(d[key]):
                raise FileNotFoundError(f"data.{key}: image folder not found: {d[key]}")
        return {k: d[k] for k in ("train_ann", "train_images", "val_ann", "val_images")}
    out = synthetic_dir(cfg)
    if is_main_process() and not (out / "val.json").exists():
        s = d["synthetic"]
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=out.parent))
        logger.info("generating the synthetic dataset (%d train, %d val images) in %s", s["train"], s["val"], out)
        make_synthetic_dataset(tmp, s["train"], s["val"], size=s["size"], seed=s["seed"], workers=min(2, os.cpu_count() or 1))
        try:
            os.rename(tmp, out)
        except OSError:  # another run finished first
            shutil.rmtree(tmp, ignore_errors=True)
    barrier()
    return {"train_ann": str(out / "train.json"), "train_images": str(out / "images"),
            "val_ann": str(out / "val.json"), "val_images": str(out / "images")}


def build_datasets(cfg: dict):
    paths = prepare_data_paths(cfg)
    size = cfg["data"]["image_size"]
    train_tf = build_train_transforms(size) if cfg["data"]["augment"] else build_val_transforms(size)
    train_ds = CocoDetection(paths["train_ann"], paths["train_images"], train_tf)
    val_ds = CocoDetection(paths["val_ann"], paths["val_images"], build_val_transforms(size))
    if train_ds.category_ids != val_ds.category_ids:
        raise DatasetError(f"{paths['val_ann']}: categories {val_ds.category_ids} differ from the training set's "
                           f"{train_ds.category_ids}; both splits need the same category ids")
    return train_ds, val_ds, paths


def build_optimizer(model: torch.nn.Module, cfg: dict) -> torch.optim.Optimizer:
    """SGD (momentum, nesterov) / Adam / AdamW; no weight decay on norm weights and biases."""
    o = cfg["optim"]
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": o["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}]
    if o["name"] == "sgd":
        return torch.optim.SGD(groups, lr=o["lr"], momentum=o["momentum"], nesterov=o["nesterov"])
    cls = torch.optim.Adam if o["name"] == "adam" else torch.optim.AdamW
    return cls(groups, lr=o["lr"], betas=tuple(o["betas"]))


def build_scheduler(optimizer, cfg: dict):
    """A ``torch.optim.lr_scheduler`` stepped once per epoch (None for ``name: none``)."""
    s, epochs = cfg["schedule"], cfg["train"]["epochs"]
    eta_min = cfg["optim"]["lr"] * s["min_lr_factor"]
    sched = torch.optim.lr_scheduler
    if s["name"] == "step":
        return sched.StepLR(optimizer, s["step_size"], s["gamma"])
    if s["name"] == "multistep":
        return sched.MultiStepLR(optimizer, s["milestones"], s["gamma"])
    if s["name"] == "exponential":
        return sched.ExponentialLR(optimizer, s["gamma"])
    if s["name"] == "cosine":
        return sched.CosineAnnealingLR(optimizer, T_max=epochs, eta_min=eta_min)
    if s["name"] == "cosine_restarts":
        return sched.CosineAnnealingWarmRestarts(optimizer, T_0=s["t0"], T_mult=s["t_mult"], eta_min=eta_min)
    if s["name"] == "plateau":  # on the epoch's mean training loss, available every epoch
        return sched.ReduceLROnPlateau(optimizer, mode="min", factor=s["factor"], patience=s["patience"])
    return None


def _warmup_factor(step: int, cfg: dict) -> float:
    w = cfg["schedule"]["warmup_iters"]
    if step >= w:
        return 1.0
    f0 = cfg["schedule"]["warmup_factor"]
    return f0 + (1.0 - f0) * step / w


def _time_factor(elapsed_s: float, cfg: dict) -> float:
    """With ``train.time_budget_s``: the cosine schedule over wall-clock time instead of epochs."""
    budget = cfg["train"]["time_budget_s"]
    if not budget or cfg["schedule"]["name"] == "none":
        return 1.0
    m = cfg["schedule"]["min_lr_factor"]
    return m + (1 - m) * 0.5 * (1 + math.cos(math.pi * min(1.0, elapsed_s / budget)))


def _resolve_resume(cfg: dict) -> str | None:
    resume = cfg["train"]["resume"]
    if not resume:
        return None
    if resume in ("last", "auto"):
        path = os.path.join(cfg["train"]["output_dir"], "checkpoint_last.pt")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"--resume: no checkpoint to resume in {cfg['train']['output_dir']} (checkpoint_last.pt)")
        return path
    return resume


def _check_resume_config(cfg: dict, saved: dict) -> None:
    for section in ("model", "loss", "data"):
        if saved.get(section) != cfg[section]:
            changed = sorted(k for k in set(cfg[section]) | set(saved.get(section, {}))
                             if cfg[section].get(k) != saved.get(section, {}).get(k))
            raise ConfigError(f"--resume: the checkpoint was trained with different {section} settings "
                              f"({', '.join(f'{section}.{k}' for k in changed)}); resume with the same config")


def _precision_name(amp_dtype) -> str:
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[amp_dtype]


def _check_resume_precision(amp_dtype, ckpt: dict) -> None:
    """Refuse to continue a run in another precision than it trained in (checkpoints from before the
    ``precision`` entry are not checked)."""
    saved = ckpt.get("precision")
    if saved is not None and saved != _precision_name(amp_dtype):
        raise ConfigError(f"--resume: the checkpoint was trained in {saved} and this run would train in "
                          f"{_precision_name(amp_dtype)} (train.amp={ckpt['config']['train']['amp']!r} then); "
                          f"resume with the same train.amp on the same kind of device")


# ---------------------------------------------------------------------------------------- the run


def train(cfg: dict) -> dict:
    """Run a whole training from a config dict (missing keys take ``DEFAULTS``); returns a summary.

    Returns ``{"output_dir", "epochs", "step", "best_ap", "stats" (last evaluation or None),
    "elapsed_s", "images_per_s" (mean over the run's logged steps), "nonfinite_steps"}``.
    Raises ``ConfigError``/``DatasetError`` (ValueError), ``FileNotFoundError`` for bad input and
    ``TrainingError`` when the loss stays non-finite.
    """
    cfg = merge_config(DEFAULTS, cfg)
    t = cfg["train"]
    device = resolve_device(t["device"])
    rank, world, _ = init_distributed(device.type)
    try:
        return _train(cfg, device, rank, world)
    finally:
        cleanup()


def _train(cfg: dict, device: torch.device, rank: int, world: int) -> dict:
    t, main = cfg["train"], rank == 0
    if device.type == "cpu":
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        torch.set_num_threads(t["threads"] or max(1, min(2, (os.cpu_count() or 1) // local_world)))
    amp_dtype = autocast_dtype(t["amp"], device, warn=main)
    if t["deterministic"]:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    out_dir = t["output_dir"]
    resume_path = _resolve_resume(cfg)
    if main:
        os.makedirs(out_dir, exist_ok=True)
    seed_everything(t["seed"])

    train_ds, val_ds, paths = build_datasets(cfg)
    num_classes = len(train_ds.category_ids)
    model = build_detector(cfg["model"], num_classes, cfg["loss"]).to(device)
    memory_format = torch.channels_last if t["channels_last"] else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    optimizer = build_optimizer(model, cfg)
    budget = t["time_budget_s"]
    # With a time budget the learning rate follows the clock (_time_factor), not the epoch schedule.
    scheduler = None if budget else build_scheduler(optimizer, cfg)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)

    start_epoch, step, best_ap, elapsed_before, cpu_before, nonfinite_total = 0, 0, -1.0, 0.0, 0.0, 0
    if resume_path:
        ckpt = load_checkpoint(resume_path)
        _check_resume_config(cfg, ckpt["config"])
        _check_resume_precision(amp_dtype, ckpt)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if scheduler is not None and ckpt.get("scheduler") is not None:
            scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        set_rng_state(ckpt["rng"])
        start_epoch, step, best_ap = ckpt["epoch"], ckpt["step"], ckpt["best_ap"]
        elapsed_before, nonfinite_total = ckpt["elapsed_s"], ckpt["nonfinite_total"]
        cpu_before = ckpt.get("cpu_s", 0.0)
        if main:
            truncate_log(os.path.join(out_dir, "log.csv"), start_epoch)
            logger.info("resumed from %s at epoch %d (step %d)", resume_path, start_epoch, step)
    if main:
        dump_config(cfg, os.path.join(out_dir, "config.yaml"))
    ddp_model = DistributedDataParallel(model) if world > 1 else model

    sampler = DistributedSampler(train_ds, num_replicas=world, rank=rank, shuffle=True, seed=t["seed"])
    drop_last = len(train_ds) >= t["batch_size"] * world  # no batch of 1: BatchNorm needs two samples
    val_sampler = DistributedSampler(val_ds, num_replicas=world, rank=rank, shuffle=False) if world > 1 else None
    val_loader = build_dataloader(val_ds, cfg["eval"]["batch_size"], sampler=val_sampler, num_workers=t["workers"])
    log = RunLogger(out_dir, t["tensorboard"]) if main else None

    start_time = time.perf_counter()
    start_cpu = time.process_time()
    elapsed = lambda: elapsed_before + time.perf_counter() - start_time  # noqa: E731
    cpu = lambda: cpu_before + time.process_time() - start_cpu  # noqa: E731
    # The budget clock: wall seconds, or CPU seconds of this process (all its threads; data-loader
    # workers not counted), which gives a run on a shared machine what an idle one would give it.
    clock = cpu if t["budget_clock"] == "process" else elapsed
    stats, rates, nonfinite_run, out_of_time = None, [], 0, False
    for epoch in range(start_epoch + 1, t["epochs"] + 1):
        # A fresh loader per epoch, seeded by (seed, epoch): order and augmentation depend only on the
        # epoch, so a resumed run sees exactly the batches the uninterrupted one would have.
        sampler.set_epoch(epoch)
        loader = build_dataloader(train_ds, t["batch_size"], sampler=sampler, num_workers=t["workers"],
                                  seed=t["seed"] * 100_003 + epoch, drop_last=drop_last)
        ddp_model.train()
        sched_lrs = [g["lr"] for g in optimizer.param_groups]
        window = {k: 0.0 for k in LOSS_KEYS}
        window_steps, window_images, window_start = 0, 0, time.perf_counter()
        epoch_loss, epoch_steps = 0.0, 0
        bar = tqdm(loader, desc=f"epoch {epoch}/{t['epochs']}", disable=not (main and t["progress"]),
                   dynamic_ncols=True, leave=False)
        for i, (images, targets) in enumerate(bar):
            if budget:
                over = torch.tensor(float(clock() >= budget), device=device)
                if world > 1:  # rank 0's clock decides, so that all ranks stop at the same step
                    torch.distributed.broadcast(over, 0)
                if bool(over):
                    out_of_time = True
                    break
            factor = _warmup_factor(step, cfg) * _time_factor(clock(), cfg)
            for g, lr in zip(optimizer.param_groups, sched_lrs):
                g["lr"] = lr * factor
            images = images.to(device, non_blocking=True).contiguous(memory_format=memory_format)
            with torch.autocast(device_type=device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                losses = ddp_model(images, targets)
            loss = losses["loss"]
            finite = torch.isfinite(loss.detach()).float()
            if world > 1:
                torch.distributed.all_reduce(finite, op=torch.distributed.ReduceOp.MIN)
            if not bool(finite):
                nonfinite_run += 1
                nonfinite_total += 1
                optimizer.zero_grad(set_to_none=True)
                if main:
                    logger.warning("non-finite loss at epoch %d step %d (%s); step skipped", epoch, step,
                                   {k: float(v.detach()) for k, v in losses.items()})
                if nonfinite_run >= t["max_nonfinite"]:
                    raise TrainingError(
                        f"stopping: the loss was not finite in {nonfinite_run} steps in a row (epoch {epoch}, "
                        f"step {step}, {nonfinite_total} in all); lower optim.lr, set train.clip_grad, or check the data")
                continue
            nonfinite_run = 0
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if t["clip_grad"] > 0:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), t["clip_grad"])
            scaler.step(optimizer)
            scaler.update()
            step += 1

            for k in LOSS_KEYS:
                window[k] += float(losses[k].detach())
            epoch_loss += float(loss.detach())
            epoch_steps += 1
            window_steps += 1
            window_images += len(images) * world
            if window_steps == t["log_every"] or i + 1 == len(loader):
                now = time.perf_counter()
                rate = window_images / max(now - window_start, 1e-9)
                rates.append(rate)
                row = {"kind": "train", "epoch": epoch, "step": step, "time_s": elapsed(), "cpu_s": cpu(),
                       "lr": optimizer.param_groups[0]["lr"], "images_per_s": rate,
                       **{k: v / window_steps for k, v in window.items()}}
                if main:
                    log.log(row)
                    bar.set_postfix(loss=f"{row['loss']:.3f}", cls=f"{row['loss_cls']:.3f}", box=f"{row['loss_box']:.3f}",
                                    ctr=f"{row['loss_ctr']:.3f}", lr=f"{row['lr']:.2e}", ips=f"{rate:.1f}")
                window = {k: 0.0 for k in LOSS_KEYS}
                window_steps, window_images, window_start = 0, 0, time.perf_counter()
        bar.close()

        # Scheduler step on the scheduled (not warmed-up) learning rates.
        for g, lr in zip(optimizer.param_groups, sched_lrs):
            g["lr"] = lr
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            scheduler.step(epoch_loss / max(epoch_steps, 1))
        elif scheduler is not None:
            scheduler.step()

        every = t["eval_every"]
        if every and (epoch % every == 0 or epoch == t["epochs"] or out_of_time):
            dets, val_losses = run_inference(ddp_model, val_loader, val_ds, device, with_loss=True, amp_dtype=amp_dtype)
            if main:
                stats = evaluate_detections(val_ds.coco, dets, cfg["eval"]["backend"])
                _write_json(os.path.join(out_dir, "detections.json"), dets)
                _write_json(os.path.join(out_dir, "stats.json"), {"epoch": epoch, "step": step, **stats})
                log.log({"kind": "eval", "epoch": epoch, "step": step, "time_s": elapsed(), "cpu_s": cpu(),
                         "lr": optimizer.param_groups[0]["lr"], **{"val_" + k: v for k, v in val_losses.items()},
                         **stats})
                logger.info("epoch %d: AP %.4f AP50 %.4f AP75 %.4f val_loss %.4f", epoch, stats["AP"], stats["AP50"],
                            stats["AP75"], val_losses["loss"])

        if main:
            improved = stats is not None and stats["AP"] > best_ap
            if improved:
                best_ap = stats["AP"]
            state = {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "scaler": scaler.state_dict(), "epoch": epoch, "step": step, "config": copy.deepcopy(cfg),
                "rng": rng_state(), "best_ap": best_ap, "elapsed_s": elapsed(), "cpu_s": cpu(), "nonfinite_total": nonfinite_total,
                "num_classes": num_classes, "category_ids": list(train_ds.category_ids),
                "precision": _precision_name(amp_dtype),
            }
            save_checkpoint(state, os.path.join(out_dir, "checkpoint_last.pt"))
            if improved:
                save_checkpoint(state, os.path.join(out_dir, "checkpoint_best.pt"))
        barrier()
        if out_of_time:
            if main:
                logger.info("time budget of %.0f s (%s clock) used up in epoch %d (step %d)", budget, t["budget_clock"], epoch, step)
            break

    if log is not None:
        log.close()
    return {"output_dir": out_dir, "epochs": t["epochs"], "step": step, "best_ap": best_ap, "stats": stats,
            "elapsed_s": elapsed(), "images_per_s": float(np.mean(rates)) if rates else None,
            "nonfinite_steps": nonfinite_total, "data": paths}


def _write_json(path: str, obj) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f)
    os.replace(tmp, path)
