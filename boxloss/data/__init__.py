"""COCO-format detection data: checking, loading, augmentation, batching, a synthetic set, and a
real one (DeepForest tree crowns: ``fetch_deepforest_wheel`` + ``convert_deepforest``).

Knows nothing of models. Typical use::

    from boxloss.data import CocoDetection, build_train_transforms, build_dataloader
    ds = CocoDetection("train.json", "images/", transforms=build_train_transforms(320))
    loader = build_dataloader(ds, batch_size=16, shuffle=True, num_workers=2)
    for images, targets in loader:  # uint8 [B, 3, 320, 320], list of target dicts
        ...
"""

from .check import check_coco_annotations, load_json
from .coco import CocoDetection
from .deepforest import DeepForestSummary, DownloadError, convert_deepforest, fetch_deepforest_wheel
from .errors import DatasetError
from .image_io import read_image
from .letterbox import letterbox_params, unletterbox_boxes
from .loader import build_dataloader, collate_detection, seed_worker
from .report import REASONS, DatasetReport
from .synthetic import make_synthetic_dataset
from .synthetic_shapes import SHAPE_NAMES
from .transforms import PAD_VALUE, bbox_params, build_train_transforms, build_val_transforms

__all__ = [
    "CocoDetection",
    "DatasetError",
    "DatasetReport",
    "DeepForestSummary",
    "DownloadError",
    "PAD_VALUE",
    "REASONS",
    "SHAPE_NAMES",
    "bbox_params",
    "build_dataloader",
    "build_train_transforms",
    "build_val_transforms",
    "check_coco_annotations",
    "collate_detection",
    "convert_deepforest",
    "fetch_deepforest_wheel",
    "letterbox_params",
    "load_json",
    "make_synthetic_dataset",
    "read_image",
    "seed_worker",
    "unletterbox_boxes",
]
