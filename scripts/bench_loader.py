"""Measure training-loader throughput (images/s) on a COCO dataset, synthetic by default.

    python scripts/bench_loader.py --size 320 --batch 16 --workers 0 2

Without --ann/--images it first writes a synthetic set (--images-count images at --size) into a
temporary folder. Each setting runs --warmup batches untimed, then times --batches batches.
"""

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import albumentations
import cv2
import torch

from boxloss.data import CocoDetection, build_dataloader, build_train_transforms, make_synthetic_dataset


def bench(dataset, batch: int, workers: int, batches: int, warmup: int) -> float:
    loader = build_dataloader(
        dataset, batch_size=batch, shuffle=True, num_workers=workers, seed=0, drop_last=True
    )
    needed = warmup + batches
    images, start, done = 0, None, 0
    while done < needed:  # loop over epochs if the dataset is small
        for imgs, _ in loader:
            done += 1
            if done == warmup:
                start = time.perf_counter()
            elif done > warmup:
                images += len(imgs)
            if done == needed:
                break
    if start is None:  # warmup == 0
        raise SystemExit("error: --warmup must be >= 1")
    return images / (time.perf_counter() - start)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ann", help="COCO json (default: a generated synthetic set)")
    parser.add_argument("--images", help="image folder for --ann")
    parser.add_argument("--images-count", type=int, default=512, help="synthetic images to generate")
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args(argv)

    print(
        f"python {platform.python_version()}, torch {torch.__version__}, "
        f"albumentations {albumentations.__version__}, opencv {cv2.__version__}, "
        f"{platform.machine()}, {torch.get_num_threads()} torch threads"
    )
    with tempfile.TemporaryDirectory() as tmp:
        if args.ann:
            ann, image_dir = args.ann, args.images
        else:
            make_synthetic_dataset(tmp, args.images_count, 0, args.size, seed=0)
            ann, image_dir = Path(tmp, "train.json"), Path(tmp, "images")
        dataset = CocoDetection(ann, image_dir, transforms=build_train_transforms(args.size, seed=0))
        for workers in args.workers:
            rate = bench(dataset, args.batch, workers, args.batches, args.warmup)
            print(f"size {args.size}  batch {args.batch}  workers {workers}: {rate:.0f} images/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
