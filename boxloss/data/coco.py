"""COCO-format detection dataset: checked annotations, OpenCV images, albumentations transforms."""

import contextlib
import io
import logging
import os

import numpy as np
import torch
from pycocotools.coco import COCO

from ..boxes import box_convert
from .check import check_coco_annotations
from .image_io import read_image
from .letterbox import letterbox_params
from .transforms import INDEX_FIELD

logger = logging.getLogger(__name__)


class CocoDetection(torch.utils.data.Dataset):
    """A COCO detection dataset for training and evaluation.

    The annotation file is checked first (``check_coco_annotations``: structural errors raise
    ``DatasetError``, fixable box problems are fixed and counted); ``self.report`` holds the result
    and a one-line summary is logged (as a warning when boxes were clipped or skipped).

    Args:
        ann_file: COCO json.
        image_dir: folder the json's ``file_name`` entries are relative to.
        transforms: an albumentations pipeline such as ``build_train_transforms(320)``, or None.
        apply_exif: honour EXIF orientation when decoding (see ``read_image``).
        min_box_size: boxes narrower or lower than this (pixels) after the transforms are dropped.
        verify_images: decode every image at construction to check its size (slow, for debugging).

    ``dataset[i]`` returns ``(image, target)``:

    - ``image``: ``uint8`` tensor ``[3, H, W]``, RGB, 0..255 (the model converts to float and
      normalises; uint8 keeps worker-to-main transfer 4x smaller);
    - ``target["boxes"]``: ``float32 [K, 4]`` xyxy in the transformed image's pixels;
    - ``target["labels"]``: ``int64 [K]`` contiguous class indices ``0..C-1`` (see
      ``label_to_category_id``); crowd annotations are never training targets;
    - ``target["image_id"]`` (int), ``target["ann_ids"]`` (``int64 [K]``, ids in ``self.coco``);
    - ``target["orig_size"]``, ``target["size"]``: ``int64 [2]`` ``(h, w)`` before/after transforms;
    - ``target["scale"]``, ``target["pad"]``: ``float32 [2]`` ``(x, y)`` of the letterbox, for
      ``unletterbox_boxes`` (exact for ``build_val_transforms`` and for no transforms; with
      ``build_train_transforms`` they describe the letterbox only, not the random jitter);
    - ``target["num_dropped"]`` (int): boxes lost to the transforms (clipped away, under
      ``min_visibility``, under ``min_box_size``). Images left with no boxes are kept as negatives.

    Attributes:
        coco: pycocotools ``COCO`` of the cleaned ground truth, crowd boxes included, for evaluation.
        category_ids: the dataset's own category ids, sorted; ``category_ids[label]`` is the id.
        label_to_category_id, category_id_to_label: the same mapping as dicts.
        class_names: category names in label order.
        ids: image ids in dataset order.
        report: the ``DatasetReport``.
    """

    def __init__(
        self, ann_file, image_dir, transforms=None, *, apply_exif=True, min_box_size=1.0, verify_images=False
    ):
        self.image_dir = os.fspath(image_dir)
        self.transforms = transforms
        self.apply_exif = apply_exif
        self.min_box_size = float(min_box_size)
        self.report = check_coco_annotations(
            ann_file, image_dir, verify_images=verify_images, apply_exif=apply_exif
        )
        log = logger.warning if self.report.num_skipped or self.report.fixes["clipped"] else logger.info
        log("%s (dataset.report.format() has details)", self.report.summary())

        self.coco = COCO()
        self.coco.dataset = self.report.clean
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            self.coco.createIndex()

        self.category_ids = sorted(self.coco.cats)
        self.label_to_category_id = dict(enumerate(self.category_ids))
        self.category_id_to_label = {c: i for i, c in enumerate(self.category_ids)}
        self.class_names = [self.coco.cats[c]["name"] for c in self.category_ids]
        self.ids = sorted(self.coco.imgs)
        self._index_targets()

    def _index_targets(self) -> None:
        """Per-image targets as flat numpy arrays: workers then share pages instead of copying
        millions of small Python objects (the refcount copy-on-read problem of forked workers)."""
        boxes, labels, ann_ids, offsets = [], [], [], [0]
        for image_id in self.ids:
            anns = [a for a in self.coco.imgToAnns[image_id] if not a["iscrowd"]]
            boxes += [a["bbox"] for a in anns]
            labels += [self.category_id_to_label[a["category_id"]] for a in anns]
            ann_ids += [a["id"] for a in anns]
            offsets.append(len(boxes))
        self._boxes = np.array(boxes, dtype=np.float32).reshape(-1, 4)  # COCO xywh
        self._labels = np.array(labels, dtype=np.int64)
        self._ann_ids = np.array(ann_ids, dtype=np.int64)
        self._offsets = np.array(offsets, dtype=np.int64)
        imgs = [self.coco.imgs[i] for i in self.ids]
        self._files = np.array([img["file_name"] for img in imgs])
        self._sizes = np.array([(img["height"], img["width"]) for img in imgs], dtype=np.int64).reshape(-1, 2)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int):
        orig_size = tuple(int(v) for v in self._sizes[index])
        image = read_image(
            os.path.join(self.image_dir, str(self._files[index])), orig_size, apply_exif=self.apply_exif
        )
        start, end = self._offsets[index], self._offsets[index + 1]
        boxes, labels, ann_ids = self._boxes[start:end], self._labels[start:end], self._ann_ids[start:end]
        num_in = len(boxes)
        if self.transforms is not None:
            out = self.transforms(image=image, bboxes=boxes, **{INDEX_FIELD: np.arange(num_in)})
            image = out["image"]
            kept = np.asarray(out[INDEX_FIELD], dtype=np.int64).reshape(-1)
            boxes = np.asarray(out["bboxes"], dtype=np.float32).reshape(-1, 4)
            labels, ann_ids = labels[kept], ann_ids[kept]
        big = (boxes[:, 2] >= self.min_box_size) & (boxes[:, 3] >= self.min_box_size)
        xyxy = box_convert(torch.from_numpy(np.ascontiguousarray(boxes[big])), "xywh", "xyxy")
        labels, ann_ids = labels[big], ann_ids[big]

        size = image.shape[:2]
        scale, pad = letterbox_params(orig_size, size)
        target = {
            "boxes": xyxy,
            "labels": torch.from_numpy(labels),
            "image_id": int(self.ids[index]),
            "ann_ids": torch.from_numpy(ann_ids),
            "orig_size": torch.tensor(orig_size, dtype=torch.int64),
            "size": torch.tensor(size, dtype=torch.int64),
            "scale": torch.tensor(scale, dtype=torch.float32),
            "pad": torch.tensor(pad, dtype=torch.float32),
            "num_dropped": num_in - len(labels),
        }
        image = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
        return image, target
