"""Fixtures for the data tests."""

import pytest

from boxloss.data import make_synthetic_dataset


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory):
    """A tiny synthetic dataset (8 train, 4 val images, longer side 128), generated once."""
    out = tmp_path_factory.mktemp("synthetic")
    make_synthetic_dataset(out, 8, 4, size=128, seed=3)
    return out
