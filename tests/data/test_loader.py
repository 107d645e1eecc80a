"""collate_detection and build_dataloader: batching, worker seeding, samplers."""

import albumentations as A
import cv2
import torch
from torch.utils.data import ConcatDataset, Dataset, DistributedSampler, Subset

from boxloss.data import (
    PAD_VALUE,
    CocoDetection,
    build_dataloader,
    build_train_transforms,
    collate_detection,
)


def test_collate_stacks_equal_sizes():
    batch = [(torch.zeros(3, 8, 8, dtype=torch.uint8), {"i": i}) for i in range(3)]
    images, targets = collate_detection(batch)
    assert images.shape == (3, 3, 8, 8) and targets == [{"i": 0}, {"i": 1}, {"i": 2}]


def test_collate_pads_different_sizes_bottom_right():
    a, b = torch.ones(3, 4, 6, dtype=torch.uint8), torch.ones(3, 5, 2, dtype=torch.uint8)
    images, _ = collate_detection([(a, {}), (b, {})])
    assert images.shape == (2, 3, 5, 6)
    assert torch.equal(images[0, :, :4, :6], a) and torch.all(images[0, :, 4:] == PAD_VALUE)
    assert torch.equal(images[1, :, :5, :2], b) and torch.all(images[1, :, :, 2:] == PAD_VALUE)


class _Draws(Dataset):
    """Returns, per item, a draw from its albumentations pipeline's generator and cv2's thread count."""

    def __init__(self, n=8):
        self.n, self.transforms = n, A.Compose([A.HorizontalFlip()], seed=0)

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return torch.zeros(3, 2, 2), {
            "draw": self.transforms.random_generator.random(),
            "threads": cv2.getNumThreads(),
        }


def _draws(loader):
    return [t["draw"] for _, targets in loader for t in targets]


def test_workers_get_distinct_reproducible_augmentation_seeds():
    dataset = _Draws()
    draws = _draws(build_dataloader(dataset, batch_size=1, num_workers=2, seed=0))
    assert len(set(draws)) == len(draws)  # without reseeding, both workers repeat the same draws
    assert draws == _draws(build_dataloader(dataset, batch_size=1, num_workers=2, seed=0))
    assert draws != _draws(build_dataloader(dataset, batch_size=1, num_workers=2, seed=1))
    threads = [t["threads"] for _, ts in build_dataloader(dataset, batch_size=4, num_workers=2) for t in ts]
    assert threads == [1] * len(dataset)  # cv2.setNumThreads(0) in workers


def test_pipelines_inside_subset_and_concat_are_reseeded():
    dataset = ConcatDataset([Subset(_Draws(), [0, 1, 2, 3]), _Draws(4)])
    draws = _draws(build_dataloader(dataset, batch_size=1, num_workers=2, seed=0))
    assert len(draws) == 8 and len(set(draws)) == 8


def test_main_process_loading_is_seeded_too():
    dataset = _Draws()
    assert _draws(build_dataloader(dataset, 2, seed=5)) == _draws(build_dataloader(dataset, 2, seed=5))


def test_sampler_is_passed_through(synthetic_dir):
    dataset = CocoDetection(
        synthetic_dir / "train.json", synthetic_dir / "images", build_train_transforms(64, seed=0)
    )
    sampler = DistributedSampler(dataset, num_replicas=2, rank=1, shuffle=True, seed=0)
    loader = build_dataloader(dataset, batch_size=3, shuffle=True, sampler=sampler)
    assert loader.sampler is sampler
    ids = [t["image_id"] for _, targets in loader for t in targets]
    assert len(ids) == len(dataset) // 2
    assert ids == [dataset.ids[i] for i in sampler]
    images, targets = next(iter(loader))
    assert images.shape == (3, 3, 64, 64) and images.dtype == torch.uint8 and len(targets) == 3


def test_shuffle_order_follows_seed(synthetic_dir):
    dataset = CocoDetection(synthetic_dir / "val.json", synthetic_dir / "images")

    def order(seed):
        return [t["image_id"] for _, ts in build_dataloader(dataset, 1, shuffle=True, seed=seed) for t in ts]

    assert order(0) == order(0) and sorted(order(0)) == dataset.ids
