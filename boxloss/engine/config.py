"""Experiment configs: defaults, YAML loading, ``key=value`` overrides, validation.

A config is a plain dict of sections (``data``, ``model``, ``loss``, ``optim``, ``schedule``,
``train``, ``eval``). ``load_config(path, overrides)`` starts from ``DEFAULTS``, merges the YAML
file, then the overrides (``"optim.lr=0.01"``; values are parsed as YAML, so ``[64, 128]``,
``null`` and ``true`` work), and validates every value. Problems raise ``ConfigError`` (a
``ValueError``) with a one-line message naming the key and what is accepted. Every key is
documented in docs/protocol.md.

"Default" has one meaning: ``DEFAULTS`` is the measured recipe of ``configs/default.yaml`` (AdamW,
lr 0.002, 10 epochs of batch 8, ...), so ``load_config()`` and ``load_config("configs/default.yaml")``
resolve to the same config (tested). ``DEFAULTS`` stays a dict here rather than being read from that
file: an installed package has no ``configs/`` folder, and ``DEFAULTS`` is the complete schema (every
key, including those the YAML file leaves out), which ``_merge`` checks keys against.
"""

from __future__ import annotations

import copy
import logging
import os

import yaml

from ..boxes import available_box_losses
from ..model.backbone import BACKBONES
from ..model.detector import CLS_LOSSES, QUALITY_KINDS
from ..model.head import BOX_HEADS
from ..model.postprocess import NMS_KINDS
from .amp import AMP_DTYPES

log = logging.getLogger(__name__)

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULERS = ("none", "step", "multistep", "exponential", "cosine", "cosine_restarts", "plateau")
AMP_MODES = tuple(AMP_DTYPES)
DEVICES = ("auto", "cpu", "cuda")
EVAL_BACKENDS = ("hotcoco", "pycocotools")

DEFAULTS: dict = {
    "data": {
        "train_ann": None, "train_images": None, "val_ann": None, "val_images": None,
        "image_size": 256,
        "augment": True,
        "cache_dir": None,  # where the synthetic set is written; default $BOXLOSS_CACHE or ~/.cache/boxloss
        "synthetic": {"train": 1000, "val": 200, "size": 256, "seed": 0},
    },
    "model": {
        "backbone": "tiny", "backbone_weights": None,
        "widths": [16, 32, 64, 96, 128], "depths": [0, 1, 1, 1, 1],
        "fpn_channels": 64, "head_convs": 2, "norm_groups": 16,
        "quality": "centerness", "center_radius": 1.5, "scale_ranges": [64, 128],
        "score_thresh": 0.05, "pre_nms_top_k": 1000, "nms": "nms", "nms_iou": 0.6, "max_detections": 100,
        # box distances: one per side (FCOS), or a distribution over 0..reg_max strides per side (GFL)
        "box_head": "distances", "reg_max": 16,
        # the detector a compare_losses.py run trains (--detector; boxloss/integrations/sweep_detectors.py):
        # "boxloss" (this engine's, the only one train() trains), "ultralytics:MODEL.yaml", "torchvision:NAME"
        "detector": "boxloss",
    },
    "loss": {
        "box_loss": "ciou",
        # Box-loss weight per loss name (docs/protocol.md: why these, how to sweep); 1.0 when absent.
        "weights": {"smooth_l1": 1.0, "l1": 1.0, "iou": 1.0, "giou": 1.0, "diou": 1.0, "ciou": 1.0},
        # Extra keyword arguments per loss name, passed to get_box_loss.
        "args": {"smooth_l1": {"beta": 0.1111}},
        "cls_loss": "focal", "focal_alpha": 0.25, "focal_gamma": 2.0, "cls_weight": 1.0, "ctr_weight": 1.0,
        "dfl_weight": 0.25,  # distribution focal loss, with model.box_head: distribution only (GFL's weight)
    },
    # AdamW, lr 0.002, wd 0.01: fastest to a good AP in short CPU budgets in our trials (docs/protocol.md);
    # momentum and nesterov apply to sgd only, betas to adam/adamw.
    "optim": {"name": "adamw", "lr": 0.002, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01,
              "betas": [0.9, 0.999]},
    "schedule": {
        "name": "cosine", "warmup_iters": 200, "warmup_factor": 0.001,
        "step_size": 10, "milestones": [20, 27], "gamma": 0.1, "t0": 10, "t_mult": 1,
        "min_lr_factor": 0.01, "patience": 2, "factor": 0.1,
    },
    "train": {
        # batch 8 beat 16 and 4 at 10 epochs (docs/benchmarks.md, "Detector training")
        "epochs": 10, "batch_size": 8, "workers": 1, "eval_every": 2, "log_every": 10, "amp": "none",
        "clip_grad": 10.0, "seed": 0, "device": "auto", "output_dir": "runs/default", "resume": None,
        "max_nonfinite": 5, "deterministic": False, "threads": 0, "channels_last": True, "progress": True,
        "tensorboard": True, "time_budget_s": 0, "budget_clock": "wall",
    },
    "eval": {"backend": "hotcoco", "batch_size": 16},
}

# Keys whose value is a free-form table (checked elsewhere), not a fixed set of sub-keys.
_TABLES = {("loss", "weights"), ("loss", "args")}


class ConfigError(ValueError):
    """A bad config file, key or value; the message is one line naming what is accepted."""


def _merge(base: dict, new: dict, path: tuple = ()) -> None:
    for key, value in new.items():
        where = path + (key,)
        if key not in base and path[:2] not in _TABLES and path not in _TABLES:
            accepted = ", ".join(".".join(path + (k,)) for k in base)
            raise ConfigError(f"unknown config key {'.'.join(where)}; accepted: {accepted}")
        if isinstance(base.get(key), dict) and where not in _TABLES:
            if not isinstance(value, dict):
                raise ConfigError(f"config key {'.'.join(where)} must be a mapping, got {value!r}")
            _merge(base[key], value, where)
        elif where in _TABLES:
            if not isinstance(value, dict):
                raise ConfigError(f"config key {'.'.join(where)} must be a mapping, got {value!r}")
            base[key] = {**base[key], **value}
        else:
            base[key] = value


def parse_override(text: str) -> dict:
    """``"optim.lr=0.01"`` -> ``{"optim": {"lr": 0.01}}`` (the value parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form section.key=value (e.g. optim.lr=0.01)")
    key, value = text.split("=", 1)
    try:
        value = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        raise ConfigError(f"override {text!r}: value is not valid YAML") from None
    out = node = {}
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node[part] = {}
        node = node[part]
    node[parts[-1]] = value
    return out


def load_config(path: str | None = None, overrides: list[str] | tuple = (), extra: dict | None = None) -> dict:
    """DEFAULTS <- YAML file at ``path`` <- ``extra`` (a nested dict) <- ``overrides``; validated."""
    cfg = copy.deepcopy(DEFAULTS)
    if path is not None:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"config file not found: {path}")
        try:
            with open(path) as f:
                data = yaml.safe_load(f) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path} is not valid YAML: {str(err).splitlines()[0]}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of sections ({', '.join(DEFAULTS)})")
        _merge(cfg, data)
    if extra:
        _merge(cfg, extra)
    for text in overrides:
        _merge(cfg, parse_override(text))
    return validate_config(cfg)


def merge_config(cfg: dict, new: dict) -> dict:
    """A validated copy of ``cfg`` with the nested dict ``new`` merged in."""
    out = copy.deepcopy(cfg)
    _merge(out, new)
    return validate_config(out)


def _fail(key: str, value, accepted: str):
    raise ConfigError(f"bad value {key}={value!r}; accepted: {accepted}")


def _number(cfg, key, lo=None, hi=None, integer=False, allow_none=False, strict_lo=False):
    section, name = key.split(".")
    value = cfg[section][name]
    if value is None and allow_none:
        return
    kind = "an integer" if integer else "a number"
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    ok = ok and not isinstance(value, bool)
    if ok and lo is not None:
        ok = value > lo if strict_lo else value >= lo
    if ok and hi is not None:
        ok = value <= hi
    if not ok:
        bound = (f" {'>' if strict_lo else '>='} {lo}" if lo is not None else "") + (f" and <= {hi}" if hi is not None else "")
        _fail(key, value, kind + bound + (" or null" if allow_none else ""))


def _choice(cfg, key, choices):
    section, name = key.split(".")
    if cfg[section][name] not in choices:
        _fail(key, cfg[section][name], ", ".join(map(str, choices)))


def _bool(cfg, key):
    section, name = key.split(".")
    if not isinstance(cfg[section][name], bool):
        _fail(key, cfg[section][name], "true or false")


def _path(cfg, key):
    section, name = key.split(".")
    value = cfg[section][name]
    if value is not None and not isinstance(value, str):
        _fail(key, value, "a path or null")


def _int_list(cfg, key, length=None, lo=1):
    section, name = key.split(".")
    value = cfg[section][name]
    ok = isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) and v >= lo for v in value)
    if not ok or (length is not None and len(value) != length):
        _fail(key, value, f"a list of {length or 'some'} integers >= {lo}")


def validate_config(cfg: dict) -> dict:
    """Check every value; returns ``cfg`` or raises ``ConfigError``."""
    d = cfg["data"]
    for key in ("train_ann", "train_images", "val_ann", "val_images", "cache_dir"):
        _path(cfg, f"data.{key}")
    given = [k for k in ("train_ann", "train_images", "val_ann", "val_images") if d[k]]
    if given and len(given) != 4:
        missing = sorted({"train_ann", "train_images", "val_ann", "val_images"} - set(given))
        raise ConfigError(f"data: give all of train_ann, train_images, val_ann, val_images (missing: {', '.join(missing)}), "
                          "or none of them for the synthetic dataset")
    _number(cfg, "data.image_size", 32, integer=True)
    if d["image_size"] % 32:
        _fail("data.image_size", d["image_size"], "a multiple of 32 (the coarsest stride)")
    _bool(cfg, "data.augment")
    syn = d["synthetic"]
    for key in ("train", "val", "seed"):
        if not isinstance(syn.get(key), int) or isinstance(syn.get(key), bool) or syn[key] < (1 if key != "seed" else 0):
            _fail(f"data.synthetic.{key}", syn.get(key), "a positive integer" if key != "seed" else "an integer >= 0")
    if not isinstance(syn.get("size"), int) or syn["size"] < 32:
        _fail("data.synthetic.size", syn.get("size"), "an integer >= 32")

    _choice(cfg, "model.backbone", BACKBONES)
    _path(cfg, "model.backbone_weights")
    _int_list(cfg, "model.widths", 5)
    _int_list(cfg, "model.depths", 5, lo=0)
    _number(cfg, "model.fpn_channels", 1, integer=True)
    _number(cfg, "model.head_convs", 0, integer=True)
    _number(cfg, "model.norm_groups", 1, integer=True)
    if cfg["model"]["fpn_channels"] % cfg["model"]["norm_groups"]:
        _fail("model.norm_groups", cfg["model"]["norm_groups"], f"a divisor of model.fpn_channels={cfg['model']['fpn_channels']}")
    _choice(cfg, "model.quality", QUALITY_KINDS)
    _number(cfg, "model.center_radius", 0)
    ranges = cfg["model"]["scale_ranges"]
    if not (isinstance(ranges, (list, tuple)) and len(ranges) == 2 and all(isinstance(v, (int, float)) for v in ranges)
            and 0 < ranges[0] < ranges[1]):
        _fail("model.scale_ranges", ranges, "two increasing positive numbers (pixel boundaries P3|P4 and P4|P5)")
    _number(cfg, "model.score_thresh", 0, 1)
    _number(cfg, "model.pre_nms_top_k", 1, integer=True)
    _choice(cfg, "model.nms", NMS_KINDS)
    _number(cfg, "model.nms_iou", 0, 1)
    _number(cfg, "model.max_detections", 1, integer=True)
    _choice(cfg, "model.box_head", BOX_HEADS)
    _number(cfg, "model.reg_max", 1, integer=True)
    detector = cfg["model"]["detector"]
    if not (detector == "boxloss" or (isinstance(detector, str) and detector.startswith(("ultralytics:", "torchvision:")))):
        _fail("model.detector", detector, "boxloss, ultralytics:MODEL.yaml or torchvision:NAME")

    loss = cfg["loss"]
    _choice(cfg, "loss.box_loss", available_box_losses())
    for name, w in loss["weights"].items():
        if name not in available_box_losses():
            _fail(f"loss.weights.{name}", w, "a table keyed by box loss name: " + ", ".join(available_box_losses()))
        if not isinstance(w, (int, float)) or isinstance(w, bool) or w < 0:
            _fail(f"loss.weights.{name}", w, "a number >= 0")
    for name, args in loss["args"].items():
        if name not in available_box_losses():
            _fail(f"loss.args.{name}", args, "a table keyed by box loss name: " + ", ".join(available_box_losses()))
        if not isinstance(args, dict):
            _fail(f"loss.args.{name}", args, "a mapping of keyword arguments")
    _choice(cfg, "loss.cls_loss", CLS_LOSSES)
    _number(cfg, "loss.focal_alpha", hi=1)
    _number(cfg, "loss.focal_gamma", 0)
    for key in ("cls_weight", "ctr_weight", "dfl_weight"):
        _number(cfg, f"loss.{key}", 0)

    o = cfg["optim"]
    _choice(cfg, "optim.name", OPTIMIZERS)
    _number(cfg, "optim.lr", 0, strict_lo=True)
    _number(cfg, "optim.momentum", 0, 1)
    _bool(cfg, "optim.nesterov")
    _number(cfg, "optim.weight_decay", 0)
    if not (isinstance(o["betas"], (list, tuple)) and len(o["betas"]) == 2 and all(isinstance(b, (int, float)) and 0 <= b < 1 for b in o["betas"])):
        _fail("optim.betas", o["betas"], "two numbers in [0, 1)")
    if o["name"] == "sgd" and o["nesterov"] and o["momentum"] <= 0:
        raise ConfigError("optim.nesterov=true needs optim.momentum > 0")

    _choice(cfg, "schedule.name", SCHEDULERS)
    _number(cfg, "schedule.warmup_iters", 0, integer=True)
    _number(cfg, "schedule.warmup_factor", 0, 1, strict_lo=True)
    _number(cfg, "schedule.step_size", 1, integer=True)
    _int_list(cfg, "schedule.milestones", lo=1)
    _number(cfg, "schedule.gamma", 0, 1, strict_lo=True)
    _number(cfg, "schedule.t0", 1, integer=True)
    _number(cfg, "schedule.t_mult", 1, integer=True)
    _number(cfg, "schedule.min_lr_factor", 0, 1)
    _number(cfg, "schedule.patience", 0, integer=True)
    _number(cfg, "schedule.factor", 0, 1, strict_lo=True)

    _number(cfg, "train.epochs", 1, integer=True)
    _number(cfg, "train.batch_size", 1, integer=True)
    _number(cfg, "train.workers", 0, integer=True)
    _number(cfg, "train.eval_every", 0, integer=True)
    _number(cfg, "train.log_every", 1, integer=True)
    _choice(cfg, "train.amp", AMP_MODES)
    _number(cfg, "train.clip_grad", 0)
    _number(cfg, "train.seed", 0, integer=True)
    _choice(cfg, "train.device", DEVICES)
    _path(cfg, "train.output_dir")
    if not cfg["train"]["output_dir"]:
        _fail("train.output_dir", cfg["train"]["output_dir"], "a folder path")
    _path(cfg, "train.resume")
    _number(cfg, "train.max_nonfinite", 1, integer=True)
    _number(cfg, "train.threads", 0, integer=True)
    _number(cfg, "train.time_budget_s", 0)
    _choice(cfg, "train.budget_clock", ("wall", "process"))
    if cfg["train"]["time_budget_s"] and cfg["schedule"]["name"] not in ("cosine", "none"):
        _fail("schedule.name", cfg["schedule"]["name"], "cosine or none when train.time_budget_s is set")
    for key in ("deterministic", "channels_last", "progress", "tensorboard"):
        _bool(cfg, f"train.{key}")
    if cfg["eval"].get("backend") == "faster-coco-eval":
        # configs and checkpoints written before hotcoco replaced it: the same numbers, from hotcoco
        log.info("eval.backend: faster-coco-eval is no longer supported; using hotcoco (identical COCO numbers)")
        cfg["eval"]["backend"] = "hotcoco"
    _choice(cfg, "eval.backend", EVAL_BACKENDS)
    _number(cfg, "eval.batch_size", 1, integer=True)
    return cfg


def dump_config(cfg: dict, path: str) -> None:
    """Write the resolved config as YAML (what ``--config`` reads back)."""
    with open(path, "w") as f:
        yaml.safe_dump(cfg, f, sort_keys=False, default_flow_style=None)
