"""Optimizer and learning-rate schedule of a run: ``build_optimizer``, ``build_scheduler`` (stepped once
per epoch), and the per-step factors applied on top of it (linear warmup; with a time budget, a cosine
over the clock instead of the epochs)."""

from __future__ import annotations

import math

import torch


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


def warmup_factor(step: int, cfg: dict) -> float:
    """Linear warmup over ``schedule.warmup_iters`` steps from ``schedule.warmup_factor`` to 1."""
    w = cfg["schedule"]["warmup_iters"]
    if step >= w:
        return 1.0
    f0 = cfg["schedule"]["warmup_factor"]
    return f0 + (1.0 - f0) * step / w


def time_factor(elapsed_s: float, cfg: dict) -> float:
    """With ``train.time_budget_s``: the cosine schedule over wall-clock time instead of epochs."""
    budget = cfg["train"]["time_budget_s"]
    if not budget or cfg["schedule"]["name"] == "none":
        return 1.0
    m = cfg["schedule"]["min_lr_factor"]
    return m + (1 - m) * 0.5 * (1 + math.cos(math.pi * min(1.0, elapsed_s / budget)))
