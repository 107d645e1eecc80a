"""Fixtures for the engine tests: a tiny config over a tiny synthetic set generated once per session."""

import copy

import pytest

from boxloss.engine import load_config

TINY = {
    "data": {"image_size": 64, "synthetic": {"train": 16, "val": 8, "size": 64, "seed": 1}},
    "model": {"widths": [8, 8, 16, 16, 16], "depths": [0, 0, 0, 0, 0], "fpn_channels": 16, "head_convs": 1,
              "norm_groups": 4},
    "optim": {"name": "sgd", "lr": 0.01, "weight_decay": 1e-4},
    "schedule": {"name": "cosine", "warmup_iters": 2},
    "train": {"epochs": 2, "batch_size": 8, "workers": 0, "eval_every": 1, "log_every": 1, "progress": False,
              "tensorboard": False, "device": "cpu"},
    "eval": {"batch_size": 8},
}


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("synthetic-cache"))


@pytest.fixture
def tiny_dict(cache_dir, tmp_path):
    """The tiny config as a plain nested dict (cache and ``tmp_path/run`` output filled in)."""
    extra = copy.deepcopy(TINY)
    extra["data"]["cache_dir"] = cache_dir
    extra["train"]["output_dir"] = str(tmp_path / "run")
    return extra


@pytest.fixture
def tiny_cfg(tiny_dict):
    """A validated tiny config writing to ``tmp_path/run``; tests tweak it as needed."""
    return load_config(None, extra=tiny_dict)
