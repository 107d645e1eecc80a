"""Our box losses inside detectors people already train (optional; core boxloss never imports this package).

- `boxloss.integrations.ultralytics`: Ultralytics YOLO (v8, 11, 26 detection models) with the IoU term of
  its box loss replaced by a registry loss; needs the AGPL-3.0 extra: pip install -c constraints.txt -e ".[ultralytics]".
- `boxloss.integrations.torchvision`: torchvision FCOS, RetinaNet and Faster R-CNN with a registry box loss.
- `boxloss.integrations.torchvision_train` / `sweep_detectors`: the per-loss sweep (compare_losses.py
  ``--detector torchvision:NAME`` / ``ultralytics:MODEL.yaml``) on those detectors.
- `boxloss.integrations.yolo_data`: COCO JSON -> YOLO txt labels + data.yaml (no Ultralytics needed).

How to use them, what stays fixed and the measured equivalence with the built-in losses: docs/integrations.md.
"""
