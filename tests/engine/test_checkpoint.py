"""Checkpoints: atomic writes, weights_only loading, RNG states that round-trip, and one clear error
(``CheckpointError``, a ValueError) for files that cannot be used, from the function and from the scripts."""

import os
import random
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from boxloss.engine import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from boxloss.engine.checkpoint import REQUIRED_KEYS, CheckpointError

ROOT = Path(__file__).resolve().parents[2]


def _draw():
    return random.random(), float(np.random.rand()), float(torch.rand(()))


def test_rng_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    path = str(tmp_path / "c.pt")
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    save_checkpoint({"rng": rng_state(), "epoch": 3, "config": {"a": [1, None, "x"]}}, path)
    expected = _draw()
    _draw()
    state = load_checkpoint(path, required=())  # weights_only=True inside
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
    assert load_checkpoint(path, required=())["epoch"] == 1
    assert os.listdir(tmp_path) == ["c.pt"]


# ---------------------------------------------------------------------------- files that cannot be used


class _RunsCode:
    """Pickles as a call of os.mkdir: loading it with weights_only=False would create ``path``."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return os.mkdir, (self.path,)


def _boxloss_like_state() -> dict:
    """A dict with every key a training checkpoint has (the values are small stand-ins)."""
    state = {key: 0 for key in REQUIRED_KEYS}
    state.update(model=torch.nn.Linear(4, 2).state_dict(), optimizer={"state": {}, "param_groups": []},
                 config={"loss": {"box_loss": "ciou"}}, rng=rng_state())
    return state


def _write_case(case: str, folder: Path) -> Path:
    path = folder / f"{case}.pt"
    if case == "truncated":  # a real checkpoint cut short (a copy interrupted, a full disk)
        save_checkpoint(_boxloss_like_state(), str(path))
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "random_bytes":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    elif case == "state_dict":  # torch.save(model.state_dict()): weights without the training state
        torch.save(torch.nn.Linear(4, 2).state_dict(), path)
    elif case == "list":
        torch.save([1, 2, 3], path)
    elif case == "code":
        torch.save({"model": _RunsCode(str(folder / "code-ran"))}, path)
    return path


# the case, and what the one-line message must say
CASES = {
    "truncated": "not a readable checkpoint: truncated or corrupt (",
    "empty": "not a readable checkpoint: truncated or corrupt (empty file)",
    "random_bytes": "not a readable checkpoint: truncated or corrupt (",
    "state_dict": "not a boxloss checkpoint (a bare state_dict of 2 tensors)",
    "list": "not a boxloss checkpoint (a list, not a dict)",
    "code": "refused by the safe loader (torch.load weights_only=True): it contains Python objects other than "
            f"tensors and plain data ({os.mkdir.__module__}.mkdir); boxloss never writes such files",
}
ADVICE = {
    "truncated": "delete it and resume from another checkpoint (e.g. checkpoint_best.pt of the run) or retrain",
    "state_dict": "give a checkpoint_last.pt or checkpoint_best.pt that boxloss training (scripts/train_det.py) wrote",
    "code": "load it yourself with weights_only=False only if you trust its source",
}
ADVICE.update(empty=ADVICE["truncated"], random_bytes=ADVICE["truncated"], list=ADVICE["state_dict"])


@pytest.mark.parametrize("case", list(CASES))
def test_an_unusable_file_raises_one_clear_error(case, tmp_path):
    path = _write_case(case, tmp_path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(str(path))
    message = str(info.value)
    assert isinstance(info.value, ValueError)  # what the scripts report as "error: ..." with exit status 2
    assert message.startswith(f"{path}: {CASES[case]}") and message.endswith(ADVICE[case]), message
    assert "\n" not in message
    assert not (tmp_path / "code-ran").exists()  # the pickled call was refused, not run


def test_a_complete_checkpoint_loads_and_a_missing_file_says_so(tmp_path):
    save_checkpoint(_boxloss_like_state(), str(tmp_path / "ok.pt"))
    assert load_checkpoint(str(tmp_path / "ok.pt"))["config"] == {"loss": {"box_loss": "ciou"}}
    save_checkpoint({"model": {}, "epoch": 1}, str(tmp_path / "partial.pt"))
    with pytest.raises(CheckpointError, match=r"not a boxloss checkpoint \(a dict without 'optimizer', 'step'"):
        load_checkpoint(str(tmp_path / "partial.pt"))
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_checkpoint(str(tmp_path / "missing.pt"))


def _assert_one_error_line(err: str, path: Path, case: str):
    assert err.startswith(f"error: {path}: {CASES[case]}") and err.endswith(ADVICE[case] + "\n"), err
    assert err.count("\n") == 1 and "Traceback" not in err, err


@pytest.mark.parametrize("case", list(CASES))
def test_eval_script_reports_an_unusable_checkpoint_in_one_line(case, tmp_path, capsys):
    path = _write_case(case, tmp_path)
    main = runpy.run_path(str(ROOT / "scripts" / "eval_det.py"))["main"]
    assert main(["--checkpoint", str(path), "--device", "cpu", "--output-dir", str(tmp_path / "eval")]) == 2
    out, err = capsys.readouterr()
    _assert_one_error_line(err, path, case)
    assert out == "" and not (tmp_path / "eval").exists()


@pytest.mark.parametrize("case", list(CASES))
def test_train_script_resume_reports_an_unusable_checkpoint_in_one_line(case, tmp_path, capsys, tiny_dict):
    path = _write_case(case, tmp_path)
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_dict))
    main = runpy.run_path(str(ROOT / "scripts" / "train_det.py"))["main"]
    assert main(["--config", str(config), "--resume", str(path)]) == 2
    out, err = capsys.readouterr()
    _assert_one_error_line(err, path, case)
    assert out == "" and not (Path(tiny_dict["train"]["output_dir"]) / "checkpoint_last.pt").exists()


def test_eval_script_process_exits_2_without_a_traceback(tmp_path):
    path = _write_case("code", tmp_path)
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "eval_det.py"), "--checkpoint", str(path),
                           "--device", "cpu"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"error: {path}: {CASES['code']}") and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "code-ran").exists()
