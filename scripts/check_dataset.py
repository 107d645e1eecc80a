"""Check a COCO detection annotation file and print what is in it and what had to be fixed.

    python scripts/check_dataset.py --ann data/synthetic/train.json --images data/synthetic/images

Prints boxes per class, box size and aspect-ratio histograms, and fixable problems by reason.
Exits 1 on structural errors (bad JSON, missing fields, bad bbox, unknown image/category ids,
duplicate ids, missing image files), printing each one on its own line.
"""

import argparse
import sys

from boxloss.data import DatasetError, check_coco_annotations

MAX_PRINTED = 50


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ann", required=True, help="COCO annotation json")
    parser.add_argument("--images", help="image folder the json's file_name entries are relative to")
    parser.add_argument(
        "--verify-images", action="store_true", help="decode every image and check its size (slow)"
    )
    parser.add_argument("--no-exif", action="store_true", help="ignore EXIF orientation when decoding")
    args = parser.parse_args(argv)
    if args.verify_images and not args.images:
        parser.error("--verify-images needs --images")

    try:
        report = check_coco_annotations(
            args.ann, args.images, verify_images=args.verify_images, apply_exif=not args.no_exif
        )
    except DatasetError as e:
        for message in e.errors[:MAX_PRINTED]:
            print(f"error: {message}", file=sys.stderr)
        if len(e.errors) > MAX_PRINTED:
            print(f"error: ... and {len(e.errors) - MAX_PRINTED} more", file=sys.stderr)
        return 1
    print(report.format())
    return 0


if __name__ == "__main__":
    sys.exit(main())
