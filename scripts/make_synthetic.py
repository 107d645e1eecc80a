"""Write the built-in synthetic shapes dataset (COCO format).

    python scripts/make_synthetic.py --out data/synthetic --train 2000 --val 500 --size 320 --seed 0

Gives DIR/images/{train,val}/*.jpg, DIR/train.json, DIR/val.json. Same arguments, same bytes.
"""

import argparse
import sys
import time

from boxloss.data import make_synthetic_dataset


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--train", type=int, default=2000, help="number of training images")
    parser.add_argument("--val", type=int, default=500, help="number of validation images")
    parser.add_argument("--size", type=int, default=320, help="longer image side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=0, help="processes (0 = this one); output is the same")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    try:
        summary = make_synthetic_dataset(
            args.out, args.train, args.val, args.size, args.seed, workers=args.workers
        )
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    seconds = time.perf_counter() - start
    rate = summary["images"] / seconds if seconds > 0 else float("inf")
    print(
        f"wrote {summary['images']} images, {summary['objects']} boxes "
        f"({summary['dropped_hidden']} hidden objects dropped) to {args.out} "
        f"in {seconds:.2f} s ({rate:.0f} images/s)"
    )
    print(f"train: {summary['train']}\nval:   {summary['val']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
