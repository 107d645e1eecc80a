"""Evaluation: COCO mAP of a detector's detections (hotcoco by default, pycocotools the reference),
error analysis (TIDE, AP per IoU threshold, IoU of true positives), per-loss comparisons with
confidence intervals and verdicts, reports, tables and plots.

Typical use::

    from boxloss.evaluation import evaluate_coco
    result = evaluate_coco(val_dataset.coco, detections)   # COCO result dicts, dataset ids
    print(result.stats["AP"], result.per_class)

One run: ``analysis.analyse_detections``; several losses: ``comparison.compare_to_baseline`` (statistics
in ``statistics.py``, the plain-words answer in ``verdict.py``). Reports (``report.write_report``), plots (``plots.write_plots``, imports matplotlib) and training-curve
diagnosis (``diagnosis.diagnose_run``) are pure functions over run results, documented in report.py.
"""

from .analysis import RunAnalysis, analyse_detections
from .coco_eval import BACKENDS, STAT_NAMES, CocoEvalResult, evaluate_coco
from .comparison import compare_to_baseline, summarize_losses
from .diagnosis import diagnose_run
from .report import format_table, summarize_runs, write_report

__all__ = ["BACKENDS", "STAT_NAMES", "CocoEvalResult", "RunAnalysis", "analyse_detections", "compare_to_baseline", "diagnose_run",
           "evaluate_coco", "format_table", "summarize_losses", "summarize_runs", "write_report"]
