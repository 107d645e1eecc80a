"""Albumentations pipelines for detection: letterbox to a square, plus jitter for training.

Both pipelines take ``image`` (HWC uint8 RGB), ``bboxes`` in COCO ``[x, y, w, h]`` pixels and
``indices`` (one integer per box; ``CocoDetection`` passes ``0..K-1`` and uses the surviving
indices to keep labels aligned). Boxes are clipped to the image after every step, boxes that keep
less than ``min_visibility`` of their area or become thinner than 1 px are dropped by
albumentations (``CocoDetection`` counts them in ``target["num_dropped"]``).

A custom pipeline works with ``CocoDetection`` if it takes the same fields, i.e. uses
``bbox_params()`` below, and ends in a centred letterbox (``target["scale"]``/``["pad"]`` assume one).
"""

import os

# albumentations asks PyPI for a newer version on import (2 s timeout); pointless offline and in
# every DataLoader worker. Users can still set the variable to "0" themselves.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A  # noqa: E402
import cv2  # noqa: E402

PAD_VALUE = 114  # grey used for letterbox padding and for pixels exposed by the affine jitter
INDEX_FIELD = "indices"


def bbox_params(min_visibility: float = 0.0) -> A.BboxParams:
    """COCO-format box handling: clip to the image, drop boxes under 1 px or under ``min_visibility``."""
    return A.BboxParams(
        format="coco",
        label_fields=[INDEX_FIELD],
        clip=True,
        min_visibility=min_visibility,
        min_width=1.0,
        min_height=1.0,
    )


def letterbox(size: int) -> list:
    """Resize the longer side to ``size`` (aspect kept) and pad to ``size x size``, centred."""
    return [
        A.LongestMaxSize(max_size=size, interpolation=cv2.INTER_LINEAR),
        A.PadIfNeeded(size, size, position="center", border_mode=cv2.BORDER_CONSTANT, fill=PAD_VALUE),
    ]


def build_val_transforms(size: int = 320) -> A.Compose:
    """Letterbox only: deterministic, so predictions map back exactly with ``unletterbox_boxes``."""
    return A.Compose(letterbox(size), bbox_params=bbox_params())


def build_train_transforms(
    size: int = 320,
    *,
    scale: tuple[float, float] = (0.75, 1.25),
    translate: float = 0.1,
    hflip: float = 0.5,
    color: float = 0.3,
    min_visibility: float = 0.3,
    seed: int | None = None,
) -> A.Compose:
    """Letterbox, then scale/translate jitter, horizontal flip and colour jitter.

    Args:
        size: output side in pixels (square).
        scale: range of the random zoom (same factor for x and y: aspect ratios are not altered).
        translate: random shift, as a fraction of ``size``, in each direction.
        hflip: probability of a horizontal flip.
        color: strength of brightness/contrast/saturation jitter (hue jitter is fixed at 0.015).
        min_visibility: boxes keeping less than this fraction of their area are dropped.
        seed: seed of the pipeline's own random generator (albumentations ignores numpy/random
            seeds). ``build_dataloader`` reseeds it in each worker, so workers do not repeat each other.
    """
    steps = letterbox(size) + [
        A.Affine(
            scale=scale,
            translate_percent=(-translate, translate),
            keep_ratio=True,
            border_mode=cv2.BORDER_CONSTANT,
            fill=PAD_VALUE,
            p=1.0,
        ),
        A.HorizontalFlip(p=hflip),
        A.ColorJitter(brightness=color, contrast=color, saturation=color, hue=0.015, p=0.8),
    ]
    return A.Compose(steps, bbox_params=bbox_params(min_visibility), seed=seed)
