"""The command-line tools (boxloss/cli/): how train's command line becomes a config (repeated --set,
--resume before an override, no --config = configs/default.yaml), the installed entry points, and
OMP_WAIT_POLICY=PASSIVE set before torch loads, however a command is started. The end-to-end runs of
compare and evaluate are in tests/evaluation/test_scripts.py."""

import csv
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from boxloss.cli.compare import CHILD_SCRIPT
from boxloss.cli.train import build_config, main, parse_args
from boxloss.engine import load_checkpoint
from boxloss.engine.sweep_jobs import child_command

ROOT = Path(__file__).resolve().parents[2]
SMOKE = str(ROOT / "configs" / "smoke.yaml")
DEFAULT = str(ROOT / "configs" / "default.yaml")
COMMANDS = {"boxloss-train": "train", "boxloss-compare": "compare", "boxloss-eval": "evaluate"}
SCRIPTS = {"train": "train_det.py", "compare": "compare_losses.py", "evaluate": "eval_det.py"}


def resolve(argv):
    return build_config(parse_args(argv))


def test_without_config_trains_what_default_yaml_trains():
    assert resolve([]) == resolve(["--config", DEFAULT])
    assert resolve(["--box-loss", "giou"]) == resolve(["--config", DEFAULT, "--box-loss", "giou"])


def test_set_may_be_repeated():
    cfg = resolve(["--config", SMOKE, "--set", "optim.lr=0.02", "--set", "train.epochs=3", "model.nms_iou=0.5"])
    assert (cfg["optim"]["lr"], cfg["train"]["epochs"], cfg["model"]["nms_iou"]) == (0.02, 3, 0.5)


def test_bare_overrides_may_come_before_and_after_options():
    cfg = resolve(["--config", SMOKE, "optim.lr=0.02", "--epochs", "3", "model.nms_iou=0.5", "--set", "train.seed=4"])
    assert (cfg["optim"]["lr"], cfg["train"]["epochs"], cfg["model"]["nms_iou"], cfg["train"]["seed"]) == (0.02, 3, 0.5, 4)
    cfg = resolve(["--config", SMOKE, "--set", "optim.lr=0.02", "optim.lr=0.03"])  # the later one wins
    assert cfg["optim"]["lr"] == 0.03


def test_resume_then_an_override_is_the_last_checkpoint_with_the_override(tmp_path):
    cfg = resolve(["--config", SMOKE, "--resume", "train.epochs=20", "optim.lr=0.02"])
    assert (cfg["train"]["resume"], cfg["train"]["epochs"], cfg["optim"]["lr"]) == ("last", 20, 0.02)
    assert resolve(["--config", SMOKE, "--resume"])["train"]["resume"] == "last"
    ckpt = tmp_path / "a=b" / "checkpoint.pt"  # a path, even with an "=" in it
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"")
    cfg = resolve(["--config", SMOKE, "--resume", str(ckpt), "train.epochs=20"])
    assert (cfg["train"]["resume"], cfg["train"]["epochs"]) == (str(ckpt), 20)


def test_resume_from_a_missing_path_fails_at_once_with_one_line(tiny_dict, tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_dict))
    missing = tmp_path / "nope.pt"
    assert main(["--config", str(config), "--resume", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --resume {missing}: no such checkpoint file (a bare --resume continues from ")
    assert err.count("\n") == 1
    assert not Path(tiny_dict["train"]["output_dir"]).exists()  # nothing was set up


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_resume_with_an_override_continues_the_run(tiny_dict, tmp_path):
    """The issue's command, ``train_det.py --resume train.epochs=N``, end to end (a few seconds)."""
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_dict))
    out = Path(tiny_dict["train"]["output_dir"])
    assert main(["--config", str(config), "--epochs", "1", "-q"]) == 0
    first = _rows(out / "log.csv")
    assert main(["--config", str(config), "--resume", "train.epochs=2", "-q"]) == 0
    assert load_checkpoint(str(out / "checkpoint_last.pt"))["epoch"] == 2
    rows = _rows(out / "log.csv")
    assert rows[: len(first)] == first and {r["epoch"] for r in rows[len(first):]} == {"2"}  # continued, not restarted
    # --resume PATH still takes a checkpoint path
    assert main(["--config", str(config), "--resume", str(out / "checkpoint_last.pt"), "train.epochs=3", "-q"]) == 0
    assert load_checkpoint(str(out / "checkpoint_last.pt"))["epoch"] == 3
    assert _rows(out / "log.csv")[: len(rows)] == rows


def test_compare_jobs_children_run_the_module_not_a_file_of_the_checkout():
    # an installed package has no scripts/ folder; "-mboxloss.cli.compare" is "-m boxloss.cli.compare"
    assert child_command(["--config", "c.yaml"], 0, 2, 1, CHILD_SCRIPT)[:2] == [sys.executable, "-mboxloss.cli.compare"]


def test_entry_points_are_declared_in_pyproject():
    tomllib = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"] == {name: f"boxloss.cli.{module}:main" for name, module in COMMANDS.items()}


_WATCH = '''
import atexit, os, sys

class _Watch:
    """Records OMP_WAIT_POLICY at the moment torch is first imported."""
    seen = "torch never imported"

    def find_spec(self, name, path=None, target=None):
        if name == "torch":
            _Watch.seen = os.environ.get("OMP_WAIT_POLICY", "unset")
            sys.meta_path.remove(self)
        return None

sys.meta_path.insert(0, _Watch())
atexit.register(lambda: open(os.environ["WATCH_OUT"], "w").write(_Watch.seen))
'''


def _launches():
    bindir = Path(sys.executable).parent
    for name, module in COMMANDS.items():
        yield pytest.param([sys.executable, "-m", f"boxloss.cli.{module}"], module, id=f"-m boxloss.cli.{module}")
        script = f"scripts/{SCRIPTS[module]}"
        yield pytest.param([sys.executable, str(ROOT / script)], module, id=script)
        installed = pytest.mark.skipif(not (bindir / name).is_file(), reason=f"{name} not installed (pip install -e .)")
        yield pytest.param([str(bindir / name)], module, id=name, marks=installed)
    # what `compare --jobs N` starts for each shard
    yield pytest.param(child_command([], 0, 2, 1, CHILD_SCRIPT), "compare", id="compare --jobs child")


@pytest.mark.slow
@pytest.mark.parametrize("command, module", list(_launches()))
def test_each_command_helps_and_sets_omp_wait_policy_before_torch(command, module, tmp_path):
    """``--help`` exits 0 with the module's docstring; OpenMP reads OMP_WAIT_POLICY once, when torch
    loads it, so it must be set by then (sitecustomize records it at torch's import)."""
    (tmp_path / "sitecustomize.py").write_text(_WATCH)
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env.update(PYTHONPATH=os.pathsep.join(filter(None, [str(tmp_path), env.get("PYTHONPATH")])),
               WATCH_OUT=str(tmp_path / "seen"))
    proc = subprocess.run([*command, "--help"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = importlib.import_module(f"boxloss.cli.{module}").__doc__
    assert " ".join(doc.split("\n\n")[0].split()) in " ".join(proc.stdout.split())
    assert (tmp_path / "seen").read_text() == "PASSIVE"


def test_an_explicit_omp_wait_policy_wins():
    code = "import os, boxloss.cli; print(os.environ['OMP_WAIT_POLICY'])"
    proc = subprocess.run([sys.executable, "-c", code], env={**os.environ, "OMP_WAIT_POLICY": "ACTIVE"},
                          capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "ACTIVE", proc.stderr
