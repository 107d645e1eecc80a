"""Train the one-stage detector with a box loss chosen by name.

    boxloss-train --config configs/smoke.yaml --box-loss ciou
    boxloss-train --config configs/default.yaml --box-loss giou --set optim.lr=0.02 train.epochs=20
    boxloss-train --box-loss giou --output-dir runs/giou        # no --config: configs/default.yaml's recipe
    boxloss-train --output-dir runs/giou --resume train.epochs=20   # continue runs/giou for 20 epochs
    torchrun --nproc_per_node=2 -m boxloss.cli.train --config configs/smoke.yaml --box-loss diou

(``python scripts/train_det.py`` and ``python -m boxloss.cli.train`` are the same command.) Without
``--config`` the run uses the defaults, which are the measured recipe of configs/default.yaml. Any
config key can be overridden with ``--set section.key=value`` (several values or several ``--set``
allowed; bare ``section.key=value`` arguments work too, anywhere on the line). ``--resume`` continues
from OUTPUT_DIR/checkpoint_last.pt, ``--resume PATH`` from that checkpoint; a ``section.key=value``
right after ``--resume`` is an override, not a path. Bad input (unknown loss, missing file, bad value)
is reported as one ``error: ...`` line and exit status 2. All logic lives in ``boxloss.engine.train``.
"""

import argparse
import logging
import os
import re
import sys

from boxloss.boxes import available_box_losses
from boxloss.data import DatasetError
from boxloss.engine import ConfigError, TrainingError, load_config, train

# "section.key=value" (what parse_override reads), as opposed to a checkpoint path
_OVERRIDE = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+=")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="box losses: " + ", ".join(available_box_losses()))
    p.add_argument("--config", help="YAML config (configs/smoke.yaml, configs/quick.yaml, configs/default.yaml); "
                                    "default: the defaults, which are configs/default.yaml's recipe")
    p.add_argument("--box-loss", help="box loss name (loss.box_loss)")
    p.add_argument("--train-ann", help="COCO json of the training split (data.train_ann)")
    p.add_argument("--train-images", help="image folder of the training split (data.train_images)")
    p.add_argument("--val-ann", help="COCO json of the validation split (data.val_ann)")
    p.add_argument("--val-images", help="image folder of the validation split (data.val_images)")
    p.add_argument("--epochs", type=int, help="train.epochs")
    p.add_argument("--output-dir", help="run folder (train.output_dir)")
    p.add_argument("--resume", nargs="?", const="last", default=None, metavar="PATH",
                   help="resume from the checkpoint PATH, or from OUTPUT_DIR/checkpoint_last.pt when no PATH is given "
                        "(a section.key=value after --resume is a config override, not a PATH)")
    p.add_argument("--device", help="cpu | cuda | auto (train.device)")
    p.add_argument("--seed", type=int, help="train.seed")
    p.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="config overrides, e.g. optim.lr=0.01 (may be repeated)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="more config overrides")
    p.add_argument("-q", "--quiet", action="store_true", help="warnings only")
    # intermixed: bare overrides may come before and after options (plain parse_args drops the later ones)
    args = p.parse_intermixed_args(argv)
    if args.resume is not None and _OVERRIDE.match(args.resume):
        # "--resume train.epochs=20": argparse gave the override to --resume's optional PATH
        args.overrides.insert(0, args.resume)
        args.resume = "last"
    return args


def build_config(args) -> dict:
    """The resolved config of the command line (``args`` from ``parse_args``)."""
    extra = {}
    flags = {("loss", "box_loss"): args.box_loss, ("data", "train_ann"): args.train_ann,
             ("data", "train_images"): args.train_images, ("data", "val_ann"): args.val_ann,
             ("data", "val_images"): args.val_images, ("train", "epochs"): args.epochs,
             ("train", "output_dir"): args.output_dir, ("train", "resume"): args.resume,
             ("train", "device"): args.device, ("train", "seed"): args.seed}
    for (section, key), value in flags.items():
        if value is not None:
            extra.setdefault(section, {})[key] = value
    cfg = load_config(args.config, list(args.set) + list(args.overrides), extra=extra)
    resume = cfg["train"]["resume"]
    if resume and resume not in ("last", "auto") and not os.path.isfile(resume):
        # before the data set is built: a typo should not cost a dataset generation
        raise FileNotFoundError(f"--resume {resume}: no such checkpoint file (a bare --resume continues from "
                                f"{os.path.join(cfg['train']['output_dir'], 'checkpoint_last.pt')})")
    return cfg


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
