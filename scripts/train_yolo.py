#!/usr/bin/env python
"""Train an Ultralytics YOLO detection model with a boxloss registry box loss in place of CIoU.

    python scripts/train_yolo.py --box-loss siou model=yolo11n.yaml data=DATA.yaml epochs=100 imgsz=640
    python scripts/train_yolo.py --box-loss nwd --box-loss-arg constant=12.8 model=yolov8n.yaml data=DATA.yaml

KEY=VALUE arguments are Ultralytics training arguments (values parsed as YAML: 10, 0.01, true, [640, 480]);
pretrained=False, plots=False and amp=False are the defaults here. Weights are never downloaded: give a
model yaml. Make DATA.yaml from COCO JSON with `python -m boxloss.integrations.yolo_data`. What is
replaced and what is kept (assignment, DFL, BCE): docs/integrations.md.
Needs the optional extra (AGPL-3.0): pip install -c constraints.txt -e ".[ultralytics]".
"""

import argparse
import os
import sys

import yaml


def _key_values(items, what: str) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{what} {item!r} is not KEY=VALUE, e.g. epochs=10")
        out[key] = yaml.safe_load(value)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--box-loss", default="ciou", help="registry box loss name (default: ciou)")
    parser.add_argument("--box-loss-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="keyword argument of the box loss, e.g. constant=12.8 for nwd (repeatable)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="Ultralytics training arguments")
    args = parser.parse_args(argv)
    os.environ.setdefault("YOLO_OFFLINE", "1")
    try:
        overrides = _key_values(args.overrides, "argument")
        loss_kwargs = _key_values(args.box_loss_arg, "--box-loss-arg")
        from boxloss.integrations.ultralytics import train

        trainer = train(box_loss=args.box_loss, box_loss_kwargs=loss_kwargs, **overrides)
    except (ImportError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (RuntimeError, FileNotFoundError, SyntaxError) as exc:  # e.g. Ultralytics' "Dataset 'x' error"
        print(f"error: {type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc!r}",
              file=sys.stderr)
        return 1
    print(f"box loss {args.box_loss}: results in {trainer.save_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
