"""``train(cfg)`` runs a whole experiment from a config dict (see config.py).

``fit`` is the wiring, read top to bottom: threads and precision, data, model, optimizer and schedule,
resume if asked, then per epoch ``train_one_epoch`` (warmup, clipping, AMP, the non-finite guard,
logging), ``evaluate`` and ``save_checkpoints`` (loop.py). Everything a run writes goes to
``train.output_dir`` (docs/protocol.md lists the files).
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler

from ..data import (CocoDetection, DatasetError, build_dataloader, build_train_transforms, build_val_transforms,
                    make_synthetic_dataset)
from ..model import build_detector
from .amp import autocast_dtype
from .checkpoint import load_checkpoint, set_rng_state
from .config import ConfigError, DEFAULTS, dump_config, merge_config
from .distributed import barrier, cleanup, init_distributed, is_main_process
from .logger import RunLogger, truncate_log
from .loop import Run, RunClock, TrainingError, evaluate, evaluation_due, save_checkpoints, train_one_epoch
from .optim import build_optimizer, build_scheduler

logger = logging.getLogger(__name__)
# build_optimizer / build_scheduler / TrainingError stay importable from here for existing callers
__all__ = ["TrainingError", "build_datasets", "build_optimizer", "build_scheduler", "fit", "prepare_data_paths",
           "resolve_device", "synthetic_dir", "train"]


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
    """Refuse to resume under other model/loss/data settings. A key absent from an older checkpoint (added
    to DEFAULTS since) counts as its default value, as in the sweep's fingerprint."""
    for section in ("model", "loss", "data"):
        old = {**DEFAULTS.get(section, {}), **saved.get(section, {})}
        if old != cfg[section]:
            changed = sorted(k for k in set(cfg[section]) | set(old) if cfg[section].get(k) != old.get(k))
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
    "elapsed_s", "images_per_s" (mean over the run's logged steps), "nonfinite_steps", "data"}``.
    Raises ``ConfigError``/``DatasetError`` (ValueError), ``FileNotFoundError`` for bad input and
    ``TrainingError`` when the loss stays non-finite.
    """
    cfg = merge_config(DEFAULTS, cfg)
    device = resolve_device(cfg["train"]["device"])
    rank, world, _ = init_distributed(device.type)
    try:
        return fit(cfg, device, rank, world)
    finally:
        cleanup()


def fit(cfg: dict, device: torch.device, rank: int, world: int) -> dict:
    """The wiring of a run: threads and precision, data, model, optimizer and schedule, resume, then
    ``train_one_epoch`` / ``evaluate`` / ``save_checkpoints`` per epoch (``loop.py``)."""
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
    model = build_detector(cfg["model"], len(train_ds.category_ids), cfg["loss"]).to(device)
    memory_format = torch.channels_last if t["channels_last"] else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    optimizer = build_optimizer(model, cfg)
    # With a time budget the learning rate follows the clock (optim.time_factor), not the epoch schedule.
    scheduler = None if t["time_budget_s"] else build_scheduler(optimizer, cfg)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    clock = RunClock(kind=t["budget_clock"])
    state = {"epoch": 0, "step": 0, "best_ap": -1.0, "nonfinite_total": 0}
    if resume_path:
        state = _resume(cfg, resume_path, amp_dtype, model, optimizer, scheduler, scaler, clock)
    if main:
        dump_config(cfg, os.path.join(out_dir, "config.yaml"))

    sampler = DistributedSampler(train_ds, num_replicas=world, rank=rank, shuffle=True, seed=t["seed"])
    val_sampler = DistributedSampler(val_ds, num_replicas=world, rank=rank, shuffle=False) if world > 1 else None
    run = Run(
        cfg=cfg, device=device, rank=rank, world=world, model=model,
        ddp_model=DistributedDataParallel(model) if world > 1 else model,
        optimizer=optimizer, scheduler=scheduler, scaler=scaler, amp_dtype=amp_dtype, memory_format=memory_format,
        train_ds=train_ds, val_ds=val_ds, sampler=sampler,
        val_loader=build_dataloader(val_ds, cfg["eval"]["batch_size"], sampler=val_sampler, num_workers=t["workers"]),
        drop_last=len(train_ds) >= t["batch_size"] * world,  # no batch of 1: BatchNorm needs two samples
        log=RunLogger(out_dir, t["tensorboard"]) if main else None, clock=clock, precision=_precision_name(amp_dtype),
        step=state["step"], best_ap=state["best_ap"], nonfinite_total=state["nonfinite_total"],
    )

    clock.start()
    stats = None
    for epoch in range(state["epoch"] + 1, t["epochs"] + 1):
        out_of_time = train_one_epoch(run, epoch)
        if evaluation_due(run, epoch, out_of_time):
            stats = evaluate(run, epoch)
        save_checkpoints(run, epoch, stats)
        barrier()
        if out_of_time:
            if main:
                logger.info("time budget of %.0f s (%s clock) used up in epoch %d (step %d)", t["time_budget_s"],
                            t["budget_clock"], epoch, run.step)
            break

    if run.log is not None:
        run.log.close()
    return {"output_dir": out_dir, "epochs": t["epochs"], "step": run.step, "best_ap": run.best_ap, "stats": stats,
            "elapsed_s": clock.elapsed(), "images_per_s": float(np.mean(run.rates)) if run.rates else None,
            "nonfinite_steps": run.nonfinite_total, "data": paths}


def _resume(cfg, path, amp_dtype, model, optimizer, scheduler, scaler, clock) -> dict:
    """Load ``path`` into the run's objects (after checking it was trained with the same settings and
    precision), cut the interrupted epoch's rows from log.csv; returns the counters to continue from."""
    ckpt = load_checkpoint(path)
    _check_resume_config(cfg, ckpt["config"])
    _check_resume_precision(amp_dtype, ckpt)
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    if scheduler is not None and ckpt.get("scheduler") is not None:
        scheduler.load_state_dict(ckpt["scheduler"])
    if ckpt.get("scaler"):
        scaler.load_state_dict(ckpt["scaler"])
    set_rng_state(ckpt["rng"])
    clock.elapsed_before, clock.cpu_before = ckpt["elapsed_s"], ckpt.get("cpu_s", 0.0)
    if is_main_process():
        truncate_log(os.path.join(cfg["train"]["output_dir"], "log.csv"), ckpt["epoch"])
        logger.info("resumed from %s at epoch %d (step %d)", path, ckpt["epoch"], ckpt["step"])
    return {k: ckpt[k] for k in ("epoch", "step", "best_ap", "nonfinite_total")}
