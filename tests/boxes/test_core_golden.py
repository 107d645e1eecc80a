"""Hand-worked values for every core loss. The arithmetic is in the comments."""

import math

import pytest
import torch

from boxloss.boxes import (
    box_iou,
    ciou_loss,
    diou_loss,
    giou_loss,
    iou_loss,
    l1_loss,
    sigmoid_focal_loss,
    smooth_l1_loss,
)


def t(*rows):
    return torch.tensor(rows, dtype=torch.float64)


# Overlapping: P=(0,0,2,2), T=(1,1,3,3). inter 1x1=1, union 4+4-1=7, IoU=1/7.
# Enclosing C=(0,0,3,3): area 9, diagonal^2 = 9+9 = 18. Centres (1,1),(2,2): rho^2 = 2. Same aspect: v=0.
OVERLAP = (t([0, 0, 2, 2]), t([1, 1, 3, 3]))
# Nested: P=(0,0,4,4) contains T=(1,1,3,3). inter 4, union 16, IoU=1/4; C=P so GIoU=IoU; same centre.
NESTED = (t([0, 0, 4, 4]), t([1, 1, 3, 3]))
# Disjoint: P=(0,0,1,1), T=(2,0,3,1). IoU=0; C=(0,0,3,1): area 3, union 2; diag^2 = 9+1 = 10;
# centres (0.5,0.5),(2.5,0.5): rho^2 = 4.
DISJOINT = (t([0, 0, 1, 1]), t([2, 0, 3, 1]))
# Aspect: P=(0,0,2,1) (w=2,h=1), T=(0,0,1,2) (w=1,h=2). inter 1, union 2+2-1=3, IoU=1/3.
# C=(0,0,2,2): diag^2 = 8; centres (1,0.5),(0.5,1): rho^2 = 0.5, rho^2/c^2 = 1/16.
# v = 4/pi^2 (atan(1/2) - atan(2))^2 = 4/pi^2 atan(3/4)^2  (atan 2 - atan 1/2 = pi/2 - 2 atan 1/2 = atan 3/4)
ASPECT = (t([0, 0, 2, 1]), t([0, 0, 1, 2]))
V_ASPECT = 4 / math.pi**2 * math.atan(0.75) ** 2
ALPHA_ASPECT = V_ASPECT / (1 - 1 / 3 + V_ASPECT)

GOLDEN = [
    # (case, loss, expected)
    (OVERLAP, "iou", 1 - 1 / 7),
    (OVERLAP, "giou", 1 - (1 / 7 - (9 - 7) / 9)),  # = 68/63
    (OVERLAP, "diou", 1 - 1 / 7 + 2 / 18),  # = 61/63
    (OVERLAP, "ciou", 1 - 1 / 7 + 2 / 18),  # v = 0
    (NESTED, "iou", 3 / 4),
    (NESTED, "giou", 3 / 4),  # (C - U)/C = 0
    (NESTED, "diou", 3 / 4),  # rho = 0
    (NESTED, "ciou", 3 / 4),  # v = 0
    (DISJOINT, "iou", 1.0),
    (DISJOINT, "giou", 1 + 1 / 3),  # GIoU = 0 - (3 - 2)/3
    (DISJOINT, "diou", 1 + 4 / 10),
    (DISJOINT, "ciou", 1 + 4 / 10),
    (ASPECT, "iou", 2 / 3),
    (ASPECT, "giou", 1 - (1 / 3 - (4 - 3) / 4)),  # C area 4
    (ASPECT, "diou", 2 / 3 + 1 / 16),
    (ASPECT, "ciou", 2 / 3 + 1 / 16 + ALPHA_ASPECT * V_ASPECT),  # ~0.762918
]
LOSSES = {"iou": iou_loss, "giou": giou_loss, "diou": diou_loss, "ciou": ciou_loss}


@pytest.mark.parametrize("case,name,expected", GOLDEN)
def test_iou_family_golden(case, name, expected):
    pred, target = case
    # eps=1e-12: CIoU's atan(w / (h + eps)) guard then moves the value by < 1e-12 relative.
    assert LOSSES[name](pred, target, eps=1e-12).item() == pytest.approx(expected, rel=1e-12)
    # With the default eps=1e-7 the guard's effect stays below 1e-7 relative.
    assert LOSSES[name](pred, target).item() == pytest.approx(expected, rel=1e-7)
    # The loss is 1 - similarity, and pairwise box_iou agrees.
    similarity = box_iou(pred[None], target[None], kind=name, eps=1e-12).item()
    assert similarity == pytest.approx(1 - expected, rel=1e-12, abs=1e-15)


def test_ciou_gated_alpha_golden():
    # ASPECT has IoU = 1/3 < 0.5, so the journal version's alpha is 0 and CIoU reduces to DIoU.
    pred, target = ASPECT
    assert ciou_loss(pred, target, gate_alpha=True, eps=1e-12).item() == pytest.approx(2 / 3 + 1 / 16, rel=1e-12)
    # OVERLAP-like pair with IoU >= 0.5 keeps alpha: P=(0,0,4,2), T=(0,0,4,3): inter 8, union 12, IoU 2/3.
    # C = T: diag^2 = 16+9 = 25; centres (2,1),(2,1.5): rho^2 = 0.25.
    # v = 4/pi^2 (atan(4/3) - atan(2))^2, alpha = v / (1/3 + v).
    p, q = t([0, 0, 4, 2]), t([0, 0, 4, 3])
    v = 4 / math.pi**2 * (math.atan(4 / 3) - math.atan(2)) ** 2
    expected = 1 - 2 / 3 + 0.25 / 25 + v / (1 / 3 + v) * v
    assert ciou_loss(p, q, gate_alpha=True, eps=1e-12).item() == pytest.approx(expected, rel=1e-12)
    assert ciou_loss(p, q, eps=1e-12).item() == pytest.approx(expected, rel=1e-12)


def test_iou_loss_modes_golden():
    pred, target = OVERLAP  # IoU = 1/7
    assert iou_loss(pred, target, mode="log").item() == pytest.approx(math.log(7), rel=1e-12)
    assert iou_loss(pred, target, mode="square").item() == pytest.approx(1 - 1 / 49, rel=1e-12)
    # Disjoint boxes: -ln(max(0, eps)) = -ln(1e-7)
    assert iou_loss(*DISJOINT, mode="log").item() == pytest.approx(-math.log(1e-7), rel=1e-9)


def test_identical_boxes_are_zero_golden():
    box = t([3, 4, 10, 6])
    for fn in LOSSES.values():
        assert fn(box, box).item() == 0.0
    assert iou_loss(box, box, mode="log").item() == 0.0


def test_torchvision_unit_cases():
    # torchvision's own test boxes: box1=(-1,-1,1,1) area 4, box2=(0,0,1,1) area 1 inside it,
    # box3=(0,1,1,2) touching box2's top edge, box4=(1,1,2,2) touching box1's corner.
    b1, b2, b3, b4 = t([-1, -1, 1, 1]), t([0, 0, 1, 1]), t([0, 1, 1, 2]), t([1, 1, 2, 2])
    # box1 vs box2: IoU = 1/4, C = box1 -> GIoU loss 0.75
    assert giou_loss(b1, b2).item() == pytest.approx(0.75)
    # box2 vs box3: IoU 0, C=(0,0,1,2) area 2, union 2 -> GIoU loss 1
    assert giou_loss(b2, b3).item() == pytest.approx(1.0)
    # box2 vs box4: C=(0,0,2,2) area 4, union 2 -> GIoU loss 1 + 2/4 = 1.5
    assert giou_loss(b2, b4).item() == pytest.approx(1.5)
    # box1 vs box4: C=(-1,-1,2,2) area 9, union 5 -> 1 + 4/9
    assert giou_loss(b1, b4).item() == pytest.approx(1 + 4 / 9)


def test_smooth_l1_golden():
    pred, target = t([0.0, 0.5, 2.0, -3.0]), t([0.0, 0.0, 0.0, 0.0])
    # beta=1: |x|<1 -> 0.5 x^2: 0, 0.125; else |x|-0.5: 1.5, 2.5. Sum 4.125, mean 1.03125.
    assert smooth_l1_loss(pred, target, reduction="sum").item() == pytest.approx(4.125)
    assert smooth_l1_loss(pred, target).item() == pytest.approx(1.03125)
    # beta=0 is L1: 0 + 0.5 + 2 + 3 = 5.5
    assert smooth_l1_loss(pred, target, beta=0.0, reduction="sum").item() == pytest.approx(5.5)
    assert l1_loss(pred, target, reduction="sum").item() == pytest.approx(5.5)
    # beta=4: all |x| < 4 -> x^2/8: 0, 0.03125, 0.5, 1.125 -> 1.65625
    assert smooth_l1_loss(pred, target, beta=4.0, reduction="sum").item() == pytest.approx(1.65625)


def test_focal_golden():
    # logit 0: p = 0.5, BCE = ln 2, (1 - p_t)^2 = 1/4 for either target.
    x = torch.tensor([0.0, 0.0], dtype=torch.float64)
    y = torch.tensor([1.0, 0.0], dtype=torch.float64)
    # alpha_t = 0.25 for the positive, 0.75 for the negative.
    expected = [0.25 * 0.25 * math.log(2), 0.75 * 0.25 * math.log(2)]
    assert sigmoid_focal_loss(x, y, reduction="none").tolist() == pytest.approx(expected, rel=1e-12)
    # alpha < 0 disables the balance term: 0.25 ln 2 each.
    assert sigmoid_focal_loss(x, y, alpha=-1, reduction="none").tolist() == pytest.approx([0.25 * math.log(2)] * 2)
    # gamma = 0, alpha < 0 is plain BCE. logit 2, target 1: ln(1 + e^-2).
    assert sigmoid_focal_loss(t(2.0), t(1.0), alpha=-1, gamma=0).item() == pytest.approx(math.log1p(math.exp(-2)))
    # Soft target 0.5 at logit 0: 1 - p_t = 0.5, BCE = ln 2, alpha_t = 0.5 -> 0.5 * 0.25 * ln 2
    assert sigmoid_focal_loss(t(0.0), t(0.5)).item() == pytest.approx(0.125 * math.log(2))
