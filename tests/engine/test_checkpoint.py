"""Checkpoints: atomic writes, weights_only loading, RNG states that round-trip."""

import os
import random

import numpy as np
import torch

from boxloss.engine import load_checkpoint, rng_state, save_checkpoint, set_rng_state


def _draw():
    return random.random(), float(np.random.rand()), float(torch.rand(()))


def test_rng_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    path = str(tmp_path / "c.pt")
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    save_checkpoint({"rng": rng_state(), "epoch": 3, "config": {"a": [1, None, "x"]}}, path)
    expected = _draw()
    _draw()
    state = load_checkpoint(path)  # weights_only=True inside
    set_rng_state(state["rng"])
    assert _draw() == expected
    assert state["epoch"] == 3 and state["config"] == {"a": [1, None, "x"]}
    assert [f for f in os.listdir(tmp_path) if f.startswith(".tmp")] == []


def test_failed_write_leaves_the_old_checkpoint(tmp_path):
    path = str(tmp_path / "c.pt")
    save_checkpoint({"epoch": 1}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    try:
        save_checkpoint({"epoch": 2, "bad": Unpicklable()}, path)
    except RuntimeError:
        pass
    assert load_checkpoint(path)["epoch"] == 1
    assert os.listdir(tmp_path) == ["c.pt"]
