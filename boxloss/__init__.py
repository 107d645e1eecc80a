"""boxloss: box-regression losses for object detection, a small detector, and per-loss evaluation.

Subpackages import in one direction only: scripts -> engine/evaluation -> model/data -> boxes.
`boxloss.boxes` needs torch alone.
"""

__version__ = "0.1.0"
