"""Registry entries for the newer IoU-family losses (names in docs/losses.md, "Newer IoU-family losses")."""

from __future__ import annotations

from .alpha_iou import alpha_iou_loss
from .balanced_l1 import balanced_l1_loss
from .eiou import eiou_loss, focal_eiou_loss
from .focaler_iou import focaler_iou_loss
from .inner_iou import inner_iou_loss
from .mpdiou import mpdiou_loss
from .nwd import nwd_loss
from .piou import piou_loss, piou_v2_loss
from .registry import LossModule, _functional, register_box_loss
from .shape_iou import shape_iou_loss
from .siou import siou_loss
from .wise_iou import WIoUv3Loss, wiou_v1_loss


def _mpdiou_module(**kwargs) -> LossModule:
    if kwargs.get("img_size") is None:
        raise ValueError(
            'box loss "mpdiou" needs img_size=(width, height) of the input image in the boxes\' units, '
            'e.g. get_box_loss("mpdiou", img_size=(640, 640))'
        )
    return LossModule(mpdiou_loss, name="mpdiou", **kwargs)


def _nwd_module(**kwargs) -> LossModule:
    if kwargs.get("constant") is None:
        raise ValueError(
            'box loss "nwd" needs constant=C, the normalising size in the boxes\' units (the paper: the dataset\'s '
            'average absolute object size), e.g. get_box_loss("nwd", constant=12.8)'
        )
    return LossModule(nwd_loss, name="nwd", **kwargs)


for _name, _fn in (
    ("eiou", eiou_loss),
    ("focal_eiou", focal_eiou_loss),
    ("siou", siou_loss),
    ("alpha_iou", alpha_iou_loss),
    ("wiou_v1", wiou_v1_loss),
    ("inner_iou", inner_iou_loss),
    ("shape_iou", shape_iou_loss),
    ("focaler_iou", focaler_iou_loss),
    ("piou", piou_loss),
    ("piou_v2", piou_v2_loss),
    ("balanced_l1", balanced_l1_loss),  # element-wise, on encoded distances like smooth_l1
):
    register_box_loss(_name, _functional(_fn, _name))
register_box_loss("mpdiou", _mpdiou_module)
register_box_loss("wiou_v3", WIoUv3Loss)
register_box_loss("nwd", _nwd_module)
