"""Training and inference: ``train(cfg)`` runs an experiment from a config dict; ``predict_coco``
gives COCO-format detections of a model on a loader. Configs: ``load_config`` (config.py).

    from boxloss.engine import load_config, train
    result = train(load_config("configs/smoke.yaml", ["loss.box_loss=giou"]))

The sweep across losses (``boxloss/engine/sweep.py``) builds on ``train``.
"""

from .checkpoint import CheckpointError, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .config import DEFAULTS, ConfigError, dump_config, load_config, merge_config, parse_override, validate_config
from .inference import evaluate_detections, predict_coco, run_inference
from .logger import COLUMNS, RunLogger
from .loop import TrainingError
from .optim import build_optimizer, build_scheduler
from .trainer import synthetic_dir, train

__all__ = [
    "COLUMNS",
    "CheckpointError",
    "ConfigError",
    "DEFAULTS",
    "RunLogger",
    "TrainingError",
    "build_optimizer",
    "build_scheduler",
    "dump_config",
    "evaluate_detections",
    "load_config",
    "load_checkpoint",
    "merge_config",
    "parse_override",
    "predict_coco",
    "rng_state",
    "run_inference",
    "save_checkpoint",
    "set_rng_state",
    "synthetic_dir",
    "train",
    "validate_config",
]
