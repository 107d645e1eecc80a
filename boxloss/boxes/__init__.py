"""Box-regression and classification losses for object detection. Needs torch only.

Formats: `box_convert`, `BOX_FORMATS`. Overlaps: `box_iou(a, b, kind=..., fmt=..., aligned=...)`.
Losses: `iou_loss`, `giou_loss`, `diou_loss`, `ciou_loss`, `smooth_l1_loss`, `l1_loss`,
`sigmoid_focal_loss`. Registry: `get_box_loss(name, **kw)`, `available_box_losses()`.
Formulas, papers and conventions: docs/losses.md.
"""

from .focal import sigmoid_focal_loss
from .kernels import cpu_kernels_available, get_default_impl, set_default_impl
from .formats import BOX_FORMATS, box_convert, to_xyxy
from .iou_losses import IOU_MODES, ciou_loss, diou_loss, giou_loss, iou_loss
from .overlaps import OVERLAP_KINDS, box_iou
from .registry import LossModule, SigmoidFocalLoss, available_box_losses, get_box_loss, register_box_loss
from .smooth_l1 import l1_loss, smooth_l1_loss

# Newer IoU-family losses (docs/losses.md, "Newer IoU-family losses"); importing registry_newer registers them.
from .alpha_iou import alpha_iou_loss
from .eiou import eiou_loss, focal_eiou_loss
from .inner_iou import inner_iou_loss
from .mpdiou import mpdiou_loss
from .shape_iou import shape_iou_loss
from .siou import siou_loss
from .wise_iou import WIoUv3Loss, wiou_momentum, wiou_v1_loss, wiou_v3_loss
from . import registry_newer  # noqa: F401  (registers the names above)

# Quality/classification and distribution losses (not box losses of the registry) and more box losses
# (docs/losses.md, "Generalized Focal Loss" onwards); the box losses are registered by registry_newer.
from .balanced_l1 import balanced_l1_loss
from .focaler_iou import focaler_iou_loss
from .gfocal import (
    DistributionFocalLoss,
    QualityFocalLoss,
    distribution_focal_loss,
    integral_decode,
    quality_focal_loss,
)
from .nwd import nwd_loss, nwd_similarity
from .piou import piou_loss, piou_v2_loss
from .varifocal import VarifocalLoss, varifocal_loss

__all__ = [
    "BOX_FORMATS",
    "IOU_MODES",
    "OVERLAP_KINDS",
    "LossModule",
    "SigmoidFocalLoss",
    "available_box_losses",
    "cpu_kernels_available",
    "get_default_impl",
    "set_default_impl",
    "box_convert",
    "box_iou",
    "ciou_loss",
    "diou_loss",
    "get_box_loss",
    "giou_loss",
    "iou_loss",
    "l1_loss",
    "register_box_loss",
    "sigmoid_focal_loss",
    "smooth_l1_loss",
    "to_xyxy",
    # newer IoU-family losses
    "WIoUv3Loss",
    "alpha_iou_loss",
    "eiou_loss",
    "focal_eiou_loss",
    "inner_iou_loss",
    "mpdiou_loss",
    "shape_iou_loss",
    "siou_loss",
    "wiou_momentum",
    "wiou_v1_loss",
    "wiou_v3_loss",
    # quality / distribution losses and more box losses
    "DistributionFocalLoss",
    "QualityFocalLoss",
    "VarifocalLoss",
    "balanced_l1_loss",
    "distribution_focal_loss",
    "focaler_iou_loss",
    "integral_decode",
    "nwd_loss",
    "nwd_similarity",
    "piou_loss",
    "piou_v2_loss",
    "quality_focal_loss",
    "varifocal_loss",
]
