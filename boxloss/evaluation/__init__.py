"""Evaluation: COCO mAP of a detector's detections (pycocotools as the reference), per-loss reports,
tables and plots.

Typical use::

    from boxloss.evaluation import evaluate_coco
    result = evaluate_coco(val_dataset.coco, detections)   # COCO result dicts, dataset ids
    print(result.stats["AP"], result.per_class)
"""

from .coco_eval import BACKENDS, STAT_NAMES, CocoEvalResult, evaluate_coco

__all__ = ["BACKENDS", "STAT_NAMES", "CocoEvalResult", "evaluate_coco"]
