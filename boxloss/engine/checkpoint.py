"""Checkpoints: atomic writes, safe loading (``weights_only=True``), and RNG states as plain types.

A checkpoint is a dict: ``model``, ``optimizer``, ``scheduler``, ``scaler`` (state dicts), ``epoch``
(epochs completed), ``step`` (optimizer steps), ``config``, ``rng`` (``rng_state()``), and the
training bookkeeping (``best_ap``, ``elapsed_s``, ``nonfinite_total``, ``num_classes``, ...). Everything
is tensors, numbers, strings, lists, tuples, dicts or None, so ``torch.load(..., weights_only=True)``
reads it.

``load_checkpoint`` raises ``CheckpointError`` (a ``ValueError``, so the scripts report it as one
``error: ...`` line) for a file it cannot use: truncated or corrupt, refused by the safe loader (it
carries Python objects, i.e. code, that boxloss never writes), or a readable file that is not a boxloss
checkpoint (a bare ``state_dict``, a list, ...). The message is one line: the file, the reason, what to do.
"""

from __future__ import annotations

import os
import pickle
import random
import re
import tempfile

import numpy as np
import torch


def rng_state() -> dict:
    """Python, NumPy, torch (and CUDA) generator states as weights_only-loadable values."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what ``rng_state`` saved."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(state: dict, path: str) -> None:
    """Write ``state`` to ``path`` atomically: a temporary file in the same folder, then a rename,
    so an interrupted write never leaves a truncated checkpoint behind."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".pt", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


# What every checkpoint boxloss writes holds (resuming reads all of these, evaluation model/config/num_classes).
REQUIRED_KEYS = ("model", "optimizer", "epoch", "step", "config", "rng", "best_ap", "elapsed_s", "nonfinite_total",
                 "num_classes")


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used; the message is one line naming the file, why, and what to do."""


def _first_line(text: str, limit: int = 160) -> str:
    line = next((x.strip() for x in str(text).splitlines() if x.strip()), "")
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _refused_global(err: Exception) -> str | None:
    """The Python object (``module.name``) the weights_only unpickler refused, or None if ``err`` is not
    such a refusal (a corrupt pickle also raises UnpicklingError, with another reason)."""
    for text in (str(err), str(err.__context__ or "")):
        match = re.search(r"GLOBAL ([\w.]+)", text)
        if match:
            return match.group(1)
    return None


def _corrupt(path: str, reason: str) -> CheckpointError:
    return CheckpointError(f"{path}: not a readable checkpoint: truncated or corrupt ({reason}); delete it and "
                           f"resume from another checkpoint (e.g. checkpoint_best.pt of the run) or retrain")


def _describe(obj, required) -> str:
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return f"a bare state_dict of {len(obj)} tensors"
    if isinstance(obj, dict):
        missing = [k for k in required if k not in obj]
        return f"a dict without {', '.join(repr(k) for k in missing)}"
    return f"a {type(obj).__name__}, not a dict"


def load_checkpoint(path: str, map_location="cpu", *, required=REQUIRED_KEYS) -> dict:
    """Load a checkpoint with ``weights_only=True`` (no code from the file is run) and check that it is a
    dict holding the ``required`` keys (default: every key a boxloss training checkpoint has).

    Raises ``FileNotFoundError`` if there is no such file, and ``CheckpointError`` (a ``ValueError``,
    one-line message) if the file cannot be read, is truncated or corrupt, is refused by the safe loader,
    or is not a boxloss checkpoint.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if os.path.getsize(path) == 0:
        raise _corrupt(path, "empty file")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except PermissionError as err:
        raise CheckpointError(f"{path}: cannot be read ({err.strerror}); check its permissions") from None
    except pickle.UnpicklingError as err:
        name = _refused_global(err)
        if name is None:
            raise _corrupt(path, f"unpickling failed: {_first_line(err.__context__ or err)}") from None
        raise CheckpointError(
            f"{path}: refused by the safe loader (torch.load weights_only=True): it contains Python objects "
            f"other than tensors and plain data ({name}); boxloss never writes such files, so it is not a "
            f"boxloss checkpoint or was altered - load it yourself with weights_only=False only if you trust "
            f"its source") from None
    except Exception as err:  # noqa: BLE001 -- whatever a damaged file makes the zip reader or unpickler raise
        # (a zip cut short: RuntimeError, or OSError EINVAL from the reader's seek; other bytes: EOFError,
        # KeyError, ...)
        reason = _first_line(err).split(". ")[0] or "unexpected end of file"
        raise _corrupt(path, f"{type(err).__name__}: {reason}") from None
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in required):
        raise CheckpointError(
            f"{path}: not a boxloss checkpoint ({_describe(ckpt, required)}); give a checkpoint_last.pt or "
            f"checkpoint_best.pt that boxloss training (scripts/train_det.py) wrote")
    return ckpt
