"""Evaluation: COCO mAP of a detector's detections (pycocotools as the reference), per-loss reports,
tables and plots.

Typical use::

    from boxloss.evaluation import evaluate_coco
    result = evaluate_coco(val_dataset.coco, detections)   # COCO result dicts, dataset ids
    print(result.stats["AP"], result.per_class)

Reports (``report.write_report``), plots (``plots.write_plots``, imports matplotlib) and training-curve
diagnosis (``diagnosis.diagnose_run``) are pure functions over run results, documented in report.py.
"""

from .coco_eval import BACKENDS, STAT_NAMES, CocoEvalResult, evaluate_coco
from .diagnosis import diagnose_run
from .report import format_table, summarize_runs, write_report

__all__ = ["BACKENDS", "STAT_NAMES", "CocoEvalResult", "diagnose_run", "evaluate_coco", "format_table", "summarize_runs", "write_report"]
