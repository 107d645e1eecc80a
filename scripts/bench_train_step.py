#!/usr/bin/env python
"""Training-step throughput of the detector in fp32 and under bf16 autocast, measured in one run.

    python scripts/bench_train_step.py --config configs/default.yaml --batch 8 --threads 1
    python scripts/bench_train_step.py --batch 4 8 --threads 1 2 --repeats 3

Times forward + loss + backward + gradient clipping (max norm 10) + the config's optimizer step of the
config's detector (channels-last, train_det.py's default), on batches of the config's training split
decoded and augmented beforehand, so that only the model step is measured. Each setting runs --warmup
untimed steps, then --steps timed ones; fp32 and bf16 alternate --repeats times and the best of each is
kept (this machine is shared and noisy).
Prints images/s per setting and the bf16 / fp32 ratio. Used for docs/benchmarks.md, "Detector training".
"""

import argparse
import itertools
import os
import platform
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as scripts/train_det.py

import torch

from boxloss.data import build_dataloader
from boxloss.engine import load_config
from boxloss.engine.amp import cpu_has_native_bf16
from boxloss.engine.trainer import build_datasets, build_optimizer
from boxloss.model import build_detector


def decoded_batches(cfg: dict, batch: int, count: int) -> tuple[list, int]:
    """``count`` augmented training batches (channels-last) and the number of classes."""
    train_ds, _, _ = build_datasets(cfg)
    loader = build_dataloader(train_ds, batch, shuffle=True, num_workers=0, seed=0, drop_last=True)
    batches = list(itertools.islice(loader, count))
    if len(batches) < count:
        raise SystemExit(f"error: the training split gives only {len(batches)} batches of {batch}; lower --steps")
    batches = [(images.contiguous(memory_format=torch.channels_last), targets) for images, targets in batches]
    return batches, len(train_ds.category_ids)


def images_per_s(model, optimizer, batches, precision: str, warmup: int) -> float:
    """Training-step images/s in ``precision`` ("fp32" or "bf16" autocast) over ``batches[warmup:]``."""
    def step(images, targets):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = model(images, targets)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimizer.step()

    for images, targets in batches[:warmup]:
        step(images, targets)
    start, seen = time.perf_counter(), 0
    for images, targets in batches[warmup:]:
        step(images, targets)
        seen += len(images)
    return seen / (time.perf_counter() - start)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/default.yaml")
    p.add_argument("--batch", type=int, nargs="+", default=[8])
    p.add_argument("--threads", type=int, nargs="+", default=[1])
    p.add_argument("--steps", type=int, default=12, help="timed steps per setting")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2, help="alternating fp32/bf16 rounds; the best of each is kept")
    args = p.parse_args(argv)

    cfg = load_config(args.config)
    print(f"python {platform.python_version()}, torch {torch.__version__}, {platform.machine()}, "
          f"{os.cpu_count()} cores, native bf16: {cpu_has_native_bf16()}, config {args.config}")
    print(f"{'batch':>5} {'threads':>7} {'fp32 img/s':>10} {'bf16 img/s':>10} {'bf16/fp32':>9}")
    for batch in args.batch:
        batches, num_classes = decoded_batches(cfg, batch, args.warmup + args.steps)
        for threads in args.threads:
            torch.set_num_threads(threads)
            torch.manual_seed(0)
            model = build_detector(cfg["model"], num_classes, cfg["loss"]).to(memory_format=torch.channels_last)
            optimizer = build_optimizer(model, cfg)
            best = {"fp32": 0.0, "bf16": 0.0}
            for _ in range(args.repeats):
                for precision in best:
                    best[precision] = max(best[precision], images_per_s(model, optimizer, batches, precision, args.warmup))
            print(f"{batch:>5} {threads:>7} {best['fp32']:>10.1f} {best['bf16']:>10.1f} {best['bf16'] / best['fp32']:>8.2f}x",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
