#!/usr/bin/env python
"""Train the one-stage detector with a box loss chosen by name.

    python scripts/train_det.py --config configs/smoke.yaml --box-loss ciou
    python scripts/train_det.py --config configs/default.yaml --box-loss giou --set optim.lr=0.02 train.epochs=20
    torchrun --nproc_per_node=2 scripts/train_det.py --config configs/smoke.yaml --box-loss diou

Any config key can be overridden with ``--set section.key=value`` (several allowed; bare
``section.key=value`` arguments work too). Bad input (unknown loss, missing file, bad value) is
reported as one ``error: ...`` line and exit status 2. All logic lives in ``boxloss.engine.train``.
"""

import argparse
import logging
import os
import sys

# OpenMP threads that spin while waiting burn the CPU other jobs need, and when the machine is shared
# they wait for each other: training ran 2-3x slower on a busy 2-core machine without this. Must be
# set before torch loads OpenMP; an explicit OMP_WAIT_POLICY in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from boxloss.boxes import available_box_losses
from boxloss.data import DatasetError
from boxloss.engine import ConfigError, TrainingError, load_config, train


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="box losses: " + ", ".join(available_box_losses()))
    p.add_argument("--config", help="YAML config (configs/smoke.yaml, configs/quick.yaml, configs/default.yaml)")
    p.add_argument("--box-loss", help="box loss name (loss.box_loss)")
    p.add_argument("--train-ann", help="COCO json of the training split (data.train_ann)")
    p.add_argument("--train-images", help="image folder of the training split (data.train_images)")
    p.add_argument("--val-ann", help="COCO json of the validation split (data.val_ann)")
    p.add_argument("--val-images", help="image folder of the validation split (data.val_images)")
    p.add_argument("--epochs", type=int, help="train.epochs")
    p.add_argument("--output-dir", help="run folder (train.output_dir)")
    p.add_argument("--resume", nargs="?", const="last", default=None,
                   help="resume from PATH, or from OUTPUT_DIR/checkpoint_last.pt when no PATH is given")
    p.add_argument("--device", help="cpu | cuda | auto (train.device)")
    p.add_argument("--seed", type=int, help="train.seed")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="config overrides, e.g. optim.lr=0.01")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="more config overrides")
    p.add_argument("-q", "--quiet", action="store_true", help="warnings only")
    return p.parse_args(argv)


def build_config(args) -> dict:
    extra = {}
    flags = {("loss", "box_loss"): args.box_loss, ("data", "train_ann"): args.train_ann,
             ("data", "train_images"): args.train_images, ("data", "val_ann"): args.val_ann,
             ("data", "val_images"): args.val_images, ("train", "epochs"): args.epochs,
             ("train", "output_dir"): args.output_dir, ("train", "resume"): args.resume,
             ("train", "device"): args.device, ("train", "seed"): args.seed}
    for (section, key), value in flags.items():
        if value is not None:
            extra.setdefault(section, {})[key] = value
    return load_config(args.config, list(args.set) + list(args.overrides), extra=extra)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(asctime)s %(message)s",
                        datefmt="%H:%M:%S")
    try:
        cfg = build_config(args)
        result = train(cfg)
    except (ConfigError, DatasetError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except TrainingError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if result["stats"] is not None:
        print(f"done: {result['output_dir']}: AP {result['stats']['AP']:.4f} (best {result['best_ap']:.4f}), "
              f"{result['elapsed_s']:.0f} s, {result['images_per_s'] or 0:.1f} images/s")
    else:
        print(f"done: {result['output_dir']}: {result['elapsed_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
