"""Fetch the DeepForest tree-crown data from PyPI and write it as a tiled COCO dataset.

    python scripts/fetch_deepforest.py --output-dir data/deepforest [--wheel PATH] [--tile 256] [--seed 0]

Downloads deepforest-2.1.0-py3-none-any.whl (20.6 MB, sha256 checked) into OUTPUT_DIR/download/ with
`python -m pip download` unless --wheel is given or the wheel is already there, then writes
OUTPUT_DIR/images/{train,val}/*.png and OUTPUT_DIR/annotations/{train,val}.json and prints the
flags for scripts/train_det.py and scripts/compare_losses.py. Same arguments, same bytes.
See boxloss/data/deepforest.py and docs/data.md for what the conversion does.
"""

import argparse
import os
import sys
import time
from pathlib import Path

from boxloss.data import DatasetError, DownloadError, convert_deepforest, fetch_deepforest_wheel
from boxloss.data.deepforest import WHEEL_NAME, WHEEL_SHA256, sha256_of


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output-dir", required=True, help="output folder")
    parser.add_argument(
        "--wheel", help="use this deepforest wheel, sdist or package folder instead of downloading"
    )
    parser.add_argument("--tile", type=int, default=256, help="target tile side in pixels (default 256)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the train/val split (default 0)")
    parser.add_argument("--val-frac", type=float, default=0.2, help="fraction of tiles for val (0.2)")
    parser.add_argument(
        "--min-visible",
        type=float,
        default=0.5,
        help="a box part with at least this fraction of its box in the tile is a box, else a crowd region",
    )
    parser.add_argument("--min-side", type=float, default=2.0, help="drop box parts thinner than this (px)")
    parser.add_argument("--keep-empty", action="store_true", help="also write tiles without boxes")
    args = parser.parse_args(argv)

    out = Path(args.output_dir)
    try:
        if args.wheel:
            source = Path(args.wheel)
            if source.is_file():
                digest = sha256_of(source)
                note = "the published wheel" if digest == WHEEL_SHA256 else (
                    f"NOT the published {WHEEL_NAME}: counts may differ from docs/data.md"
                )
                print(f"source: {source} (sha256 {digest}, {note})")
        else:
            download = out / "download"
            had_it = (download / WHEEL_NAME).is_file()
            start = time.perf_counter()
            source = fetch_deepforest_wheel(download)
            seconds = time.perf_counter() - start
            verb = "found" if had_it else "downloaded"
            print(f"{verb} {source} (sha256 checked) in {seconds:.1f} s")
        start = time.perf_counter()
        summary = convert_deepforest(
            source,
            out,
            tile=args.tile,
            min_visible=args.min_visible,
            min_side=args.min_side,
            val_frac=args.val_frac,
            seed=args.seed,
            keep_empty=args.keep_empty,
        )
    except (DatasetError, DownloadError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"converted in {time.perf_counter() - start:.1f} s")
    print(summary.format())
    print(f"\ndataset flags for scripts/train_det.py and scripts/compare_losses.py:\n  {summary.cli_flags()}")
    default_out = os.path.normpath(args.output_dir) == os.path.normpath("data/deepforest")
    print("the comparison sized for a 2-core CPU (configs/deepforest.yaml reads data/deepforest/):\n  "
          "python scripts/compare_losses.py --config configs/deepforest.yaml --losses giou,ciou,smooth_l1 --seeds 5 "
          + ("" if default_out else f"{summary.cli_flags()} ") + "--output-dir runs/deepforest")
    return 0


if __name__ == "__main__":
    sys.exit(main())
