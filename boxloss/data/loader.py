"""Batching detection samples: the collate function and a DataLoader with sane defaults."""

import random

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader

from .transforms import PAD_VALUE


def collate_detection(batch):
    """Stack ``(image, target)`` samples into ``(images [B, 3, H, W], list of B targets)``.

    Images of different sizes (e.g. no letterbox) are padded at the bottom/right with the letterbox
    grey up to the largest height and width, which leaves box coordinates unchanged.
    """
    images, targets = zip(*batch)
    h = max(img.shape[-2] for img in images)
    w = max(img.shape[-1] for img in images)
    if all(img.shape[-2:] == (h, w) for img in images):
        return torch.stack(images), list(targets)
    out = images[0].new_full((len(images), images[0].shape[0], h, w), PAD_VALUE)
    for i, img in enumerate(images):
        out[i, :, : img.shape[-2], : img.shape[-1]] = img
    return out, list(targets)


def _pipelines(dataset):
    """The albumentations pipelines of ``dataset``, looking inside ``Subset`` and ``ConcatDataset``."""
    if hasattr(getattr(dataset, "transforms", None), "set_random_seed"):
        return [dataset.transforms]
    inner = list(getattr(dataset, "datasets", [])) + (
        [dataset.dataset] if hasattr(dataset, "dataset") else []
    )
    return [p for d in inner for p in _pipelines(d)]


def _seed_pipelines(dataset, seed: int) -> None:
    """Give each pipeline of ``dataset`` its own seed derived from ``seed``."""
    for k, pipeline in enumerate(_pipelines(dataset)):
        pipeline.set_random_seed(int(np.random.SeedSequence([seed, k]).generate_state(1)[0]))


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: one OpenCV thread per worker and a distinct seed per worker.

    The seed comes from torch (``base_seed + worker_id``; the loader's generator draws ``base_seed``
    when the workers start, once with ``build_dataloader``'s persistent workers) and is given to
    ``random``, ``numpy`` and the dataset's albumentations pipelines, which have their own
    generators and would otherwise produce the same augmentations in every worker.
    """
    cv2.setNumThreads(0)
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)
    info = torch.utils.data.get_worker_info()
    if info is not None:
        _seed_pipelines(info.dataset, seed)


def build_dataloader(
    dataset,
    batch_size: int,
    shuffle: bool = False,
    num_workers: int = 0,
    sampler=None,
    seed: int = 0,
    *,
    drop_last: bool = False,
    pin_memory: bool | None = None,
) -> DataLoader:
    """A DataLoader for detection datasets.

    Args:
        dataset: e.g. ``CocoDetection``.
        batch_size: images per batch (per process under DDP).
        shuffle: reshuffle every epoch (ignored when a ``sampler`` is given; it decides the order).
        num_workers: loader processes; workers are persistent across epochs.
        sampler: e.g. ``DistributedSampler(dataset, shuffle=True, seed=seed)``; call its
            ``set_epoch`` each epoch.
        seed: seeds the shuffle order and the augmentation (in each worker via ``seed_worker``;
            with ``num_workers=0`` the dataset's pipeline is reseeded here). Under DDP the rank is
            added so ranks do not augment alike (a ``DistributedSampler``'s own seed must stay the
            same on all ranks).
        drop_last: drop the last incomplete batch.
        pin_memory: default: on when CUDA is available.
    """
    if pin_memory is None:
        pin_memory = torch.cuda.is_available()
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        seed += torch.distributed.get_rank()
    generator = torch.Generator()
    generator.manual_seed(seed)
    if num_workers == 0:
        _seed_pipelines(dataset, seed)  # what seed_worker does in workers
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_detection,
        pin_memory=pin_memory,
        drop_last=drop_last,
        worker_init_fn=seed_worker,
        generator=generator,
        persistent_workers=num_workers > 0,
    )
