"""The codes the fused kernels understand: one table for the C++ and the Triton backends.

A loss is a ``KIND`` (its head on the shared box geometry), a box format ``FMT``, an exponent variant
``VARIANT`` (how the loss's exponent p0 is applied, so that the common ones compile without a pow), flag
bits, ``eps`` and up to three float parameters ``p0, p1, p2``, and an ``extra`` per-box input:

===  ============  ==========================================================================
code name          parameters
===  ============  ==========================================================================
0    iou           (linear: 1 - IoU)
1    giou
2    diou
3    ciou          flags: ALPHA_GATED (alpha = 0 where IoU < 0.5), PAPER_GRAD (the DIoU paper's
                   d atan(w/h) without its 1/(w^2 + h^2) factor)
4    iou_square    1 - IoU^2
5    iou_log       -log(max(IoU, eps))
6    eiou
7    focal_eiou    p0 = gamma (IoU^gamma * L_EIoU; variant of gamma)
8    siou          p0 = theta (variant of theta)
9    alpha_iou     p0 = alpha (variant of alpha); 10 alpha_giou, 11 alpha_diou, 12 alpha_ciou
13   wiou_v1
14   wiou_v3       extra = the running mean of 1 - IoU; p1 = log(alpha), p2 = delta
15   mpdiou        extra = w_img^2 + h_img^2, per box
16   inner_iou     p0 = ratio / 2; 17 inner_giou, 18 inner_diou, 19 inner_ciou, 20 inner_eiou, 21 inner_siou
22   shape_iou     p0 = scale (variant of scale; VARIANT_SCALE0 for scale 0)
===  ============  ==========================================================================

The references (the specification every kernel must match to rounding) are the eager functions of
``boxloss.boxes``: ``overlaps.aligned_overlap`` for kinds 0-5, ``eiou.py``, ``siou.py``, ``alpha_iou.py``,
``wise_iou.py``, ``mpdiou.py``, ``inner_iou.py``, ``shape_iou.py`` for the others.
"""

from __future__ import annotations

KINDS = {
    "iou": 0, "giou": 1, "diou": 2, "ciou": 3, "iou_square": 4, "iou_log": 5,
    "eiou": 6, "focal_eiou": 7, "siou": 8,
    "alpha_iou": 9, "alpha_giou": 10, "alpha_diou": 11, "alpha_ciou": 12,
    "wiou_v1": 13, "wiou_v3": 14, "mpdiou": 15,
    "inner_iou": 16, "inner_giou": 17, "inner_diou": 18, "inner_ciou": 19, "inner_eiou": 20, "inner_siou": 21,
    "shape_iou": 22,
}
FMTS = {"xyxy": 0, "xywh": 1, "cxcywh": 2}

# flag bits (CIoU)
ALPHA_GATED = 1
PAPER_GRAD = 2

# how an exponent e > 0 is applied (``_geometry.safe_pow``): 0 e = 1 (identity), 1 e = 0.5 (sqrt),
# 2 any other e (x^e, 0 where x = 0); 3 is Shape-IoU's scale 0 (every weight 1)
VARIANT_ONE, VARIANT_SQRT, VARIANT_POW, VARIANT_SCALE0 = 0, 1, 2, 3
# kinds whose p0 is an exponent: their code is instantiated once per variant
EXPONENT_KINDS = frozenset({7, 8, 9, 10, 11, 12, 22})
# kinds that read ``extra``: per box (MPDIoU), or one value (Wise-IoU v3); the others never read it
READS_EXTRA = frozenset({14, 15})
PER_BOX_EXTRA = frozenset({15})


def variant_of(exponent: float) -> int:
    """The VARIANT of an exponent e > 0: 0 for 1, 1 for 0.5, 2 otherwise."""
    if exponent == 1:
        return VARIANT_ONE
    return VARIANT_SQRT if exponent == 0.5 else VARIANT_POW
