"""NWD, Focaler-IoU, PIoU / PIoU v2 and Balanced L1: golden values worked by hand, agreement with transcriptions
of the authors' (or mmdetection's) code, gradcheck in fp64, degenerate / fp16 / bf16 / empty inputs, reductions,
weights, avg_factor, torch.compile, the registry and argument errors. The quality / distribution losses (QFL,
DFL, VFL) are in test_quality_losses.py.
"""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from box_cases import overlapping_pairs
from boxloss.boxes import (
    available_box_losses,
    balanced_l1_loss,
    box_convert,
    ciou_loss,
    diou_loss,
    eiou_loss,
    focaler_iou_loss,
    get_box_loss,
    giou_loss,
    iou_loss,
    nwd_loss,
    nwd_similarity,
    piou_loss,
    piou_v2_loss,
    siou_loss,
)

e = math.exp


def T(*rows):
    return torch.tensor(rows, dtype=torch.float64)


def _nwd(p, t, **kw):
    return nwd_loss(p, t, constant=12.8, **kw)


# Every box loss (with its options) that the generic tests run over.
LOSSES = {
    "nwd": _nwd,
    "nwd_c2": lambda p, t, **kw: nwd_loss(p, t, constant=2.0, **kw),
    "focaler_iou": focaler_iou_loss,
    "focaler_iou_d.2_u.8": lambda p, t, **kw: focaler_iou_loss(p, t, d=0.2, u=0.8, **kw),
    "focaler_giou": lambda p, t, **kw: focaler_iou_loss(p, t, base="giou", **kw),
    "focaler_diou": lambda p, t, **kw: focaler_iou_loss(p, t, base="diou", **kw),
    "focaler_ciou": lambda p, t, **kw: focaler_iou_loss(p, t, base="ciou", **kw),
    "focaler_eiou": lambda p, t, **kw: focaler_iou_loss(p, t, base="eiou", **kw),
    "focaler_siou": lambda p, t, **kw: focaler_iou_loss(p, t, base="siou", **kw),
    "piou": piou_loss,
    "piou_v2": piou_v2_loss,
    "piou_v2_lam2": lambda p, t, **kw: piou_loss(p, t, version=2, lam=2.0, **kw),
}
# Balanced L1 is element-wise (no boxes, no fmt): tested on its own below.

# ---------------------------------------------------------------------------------------------------------
# Golden values, worked by hand (same cases as test_newer_losses.py).
#
# Case A: pred (0,0,4,4), target (2,2,6,6). IoU = 4/28 = 1/7. Enclosing (0,0,6,6): c^2 = 72, |C| = 36.
#   Centres (2,2), (4,4): rho^2 = 8. Same sizes (4x4).
# Case B: pred (0,0,4,2) (w 4, h 2), target (0,0,2,2). IoU = 4/8 = 1/2. Enclosing (0,0,4,2) = the union:
#   c^2 = 20, GIoU = IoU. Centres (2,1), (1,1): rho^2 = 1. dw = 2, dh = 0.
# Case C: pred (1,1,3,5) (w 2, h 4), target (0,0,4,2) (w 4, h 2). inter 2x1 = 2, union 14, IoU 1/7.
#   Centres (2,3), (2,1): rho^2 = 4.
# ---------------------------------------------------------------------------------------------------------
A = (T([0, 0, 4, 4]), T([2, 2, 6, 6]))
B = (T([0, 0, 4, 2]), T([0, 0, 2, 2]))
C = (T([1, 1, 3, 5]), T([0, 0, 4, 2]))

GOLDEN = [
    # NWD A, C = 4: W2^2 = rho^2 + (0 + 0)/4 = 8: 1 - exp(-sqrt(8)/4) = 1 - e^{-0.707107} = 0.506931.
    ("nwd A C4", nwd_loss, A, {"constant": 4.0}, 1 - e(-math.sqrt(8) / 4)),
    # NWD B, C = 1: W2^2 = 1 + ((4-2)^2 + 0)/4 = 2: 1 - e^{-sqrt 2} = 0.756883.
    ("nwd B C1", nwd_loss, B, {"constant": 1.0}, 1 - e(-math.sqrt(2))),
    # NWD C, C = 12.8: W2^2 = 4 + ((2-4)^2 + (4-2)^2)/4 = 6: 1 - e^{-sqrt(6)/12.8} = 0.174170.
    ("nwd C C12.8", nwd_loss, C, {"constant": 12.8}, 1 - e(-math.sqrt(6) / 12.8)),
    # Focaler-IoU A (d 0, u 0.95): 1 - (1/7)/0.95 = 0.849624.
    ("focaler_iou A", focaler_iou_loss, A, {}, 1 - (1 / 7) / 0.95),
    # Focaler-IoU B, d 0.25, u 0.75: (1/2 - 1/4)/(1/2) = 1/2: L = 1/2.
    ("focaler_iou B d.25 u.75", focaler_iou_loss, B, {"d": 0.25, "u": 0.75}, 0.5),
    # Focaler-IoU B, d 0.6: IoU < d, IoU_focaler = 0: L = 1.
    ("focaler_iou B d.6", focaler_iou_loss, B, {"d": 0.6, "u": 0.9}, 1.0),
    # Focaler-IoU B, u 0.4: IoU > u, IoU_focaler = 1: L = 0.
    ("focaler_iou B u.4", focaler_iou_loss, B, {"u": 0.4}, 0.0),
    # Focaler-GIoU B, d 0.25, u 0.75: L_GIoU = 1/2 (C = union); + 1/2 - 1/2 = 1/2.
    ("focaler_giou B", focaler_iou_loss, B, {"base": "giou", "d": 0.25, "u": 0.75}, 0.5),
    # Focaler-DIoU A: (1 - 1/7 + 1/9) + 1/7 - (1/7)/0.95 = 1 + 1/9 - 0.150376 = 0.960735.
    ("focaler_diou A", focaler_iou_loss, A, {"base": "diou"}, 1 + 1 / 9 - (1 / 7) / 0.95),
    # Focaler-CIoU A: same aspect ratio, v = 0: = Focaler-DIoU A.
    ("focaler_ciou A", focaler_iou_loss, A, {"base": "ciou"}, 1 + 1 / 9 - (1 / 7) / 0.95),
    # Focaler-EIoU B: L_EIoU B = 0.8 (test_newer_losses.py); + 1/2 - (1/2)/0.95 = 0.773684.
    ("focaler_eiou B", focaler_iou_loss, B, {"base": "eiou"}, 0.8 + 0.5 - 0.5 / 0.95),
    # PIoU A: dw1 + dw2 = |0-2| + |4-6| = 4, / w_gt 4 = 1; same for h: P = (1 + 1)/4 = 1/2.
    #   L = 1 - 1/7 + 1 - e^{-1/4} = 0.857143 + 0.221199 = 1.078342.
    ("piou A", piou_loss, A, {}, 6 / 7 + 1 - e(-0.25)),
    # PIoU v2 A, lambda 1.3: q = e^{-1/2} = 0.606531, x = 1.3 q = 0.788490, u = 3 x e^{-x^2} = 1.270309:
    #   L = 1.270309 * 1.078342 = 1.369828.
    ("piou_v2 A", piou_loss, A, {"version": 2},
     3 * 1.3 * e(-0.5) * e(-(1.3 * e(-0.5)) ** 2) * (6 / 7 + 1 - e(-0.25))),
    # PIoU B: dw = |0-0| + |4-2| = 2, / w_gt 2 = 1; dh = 0: P = 1/4. L = 1/2 + 1 - e^{-1/16} = 0.560587.
    ("piou B", piou_loss, B, {}, 0.5 + 1 - e(-1 / 16)),
    # PIoU C: target w 4, h 2. dw = |1-0| + |3-4| = 2 -> 2/4; dh = |1-0| + |5-2| = 4 -> 4/2 = 2:
    #   P = (0.5 + 2)/4 = 0.625. L = 6/7 + 1 - e^{-0.390625} = 0.857143 + 0.323366 = 1.180509.
    ("piou C", piou_loss, C, {}, 6 / 7 + 1 - e(-0.625**2)),
    # PIoU v2 C, lambda 2: x = 2 e^{-0.625} = 1.070523; u = 3 x e^{-x^2} = 1.020957 (past the peak at 1/sqrt 2).
    ("piou_v2 C lam2", piou_loss, C, {"version": 2, "lam": 2.0},
     3 * 2 * e(-0.625) * e(-(2 * e(-0.625)) ** 2) * (6 / 7 + 1 - e(-0.625**2))),
]


@pytest.mark.parametrize("case", GOLDEN, ids=[g[0] for g in GOLDEN])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_golden(case, dtype):
    _, fn, (p, t), kw, expected = case
    got = fn(p.to(dtype), t.to(dtype), reduction="none", **kw)
    assert got.dtype == dtype and got.shape == (1,)
    tol = 1e-12 if dtype == torch.float64 else 1e-6
    assert got.item() == pytest.approx(expected, rel=tol, abs=tol)


def test_golden_values_of_the_worked_numbers():
    # The decimals quoted in the comments above, so that a typo in a formula there shows up.
    assert 1 - e(-math.sqrt(6) / 12.8) == pytest.approx(0.174170, abs=1e-6)
    assert 3 * 1.3 * e(-0.5) * e(-(1.3 * e(-0.5)) ** 2) == pytest.approx(1.270309, abs=1e-6)
    assert 3 * 2 * e(-0.625) * e(-(2 * e(-0.625)) ** 2) == pytest.approx(1.020957, abs=1e-6)
    assert 1.270309 * (6 / 7 + 1 - e(-0.25)) == pytest.approx(1.369828, abs=1e-6)
    assert 6 / 7 + 1 - e(-0.625**2) == pytest.approx(1.180509, abs=1e-6)
    assert 1 - (1 / 7) / 0.95 == pytest.approx(0.849624, abs=1e-6)
    assert 1 + 1 / 9 - (1 / 7) / 0.95 == pytest.approx(0.960735, abs=1e-6)
    assert 0.8 + 0.5 - 0.5 / 0.95 == pytest.approx(0.773684, abs=1e-6)
    assert 0.5 + 1 - e(-1 / 16) == pytest.approx(0.560587, abs=1e-6)


# ---------------------------------------------------------------------------------------------------------
# Transcriptions of the reference code (their eps placements kept).
# ---------------------------------------------------------------------------------------------------------
def ref_nwd_authors(pred, target, eps=1e-7, constant=12.8):
    """jwwangchn/NWD mmdet/models/losses/iou_loss.py `wasserstein_loss(mode='exp')` (commit b8168016)."""
    center1 = (pred[:, :2] + pred[:, 2:]) / 2
    center2 = (target[:, :2] + target[:, 2:]) / 2
    whs = center1[:, :2] - center2[:, :2]
    center_distance = whs[:, 0] * whs[:, 0] + whs[:, 1] * whs[:, 1] + eps
    w1 = pred[:, 2] - pred[:, 0] + eps
    h1 = pred[:, 3] - pred[:, 1] + eps
    w2 = target[:, 2] - target[:, 0] + eps
    h2 = target[:, 3] - target[:, 1] + eps
    wh_distance = ((w1 - w2) ** 2 + (h1 - h2) ** 2) / 4
    wasserstein_2 = center_distance + wh_distance
    return 1 - torch.exp(-torch.sqrt(wasserstein_2) / constant)


def ref_nwd_overlaps_authors(bboxes1, bboxes2, eps=1e-6, constant=12.8):
    """jwwangchn/NWD mmdet/core/bbox/iou_calculators/metric_calculator.py `bbox_overlaps(mode='wasserstein')`
    (commit b8168016), pairwise [N, M]: the similarity their label assignment uses."""
    center1 = (bboxes1[..., :, None, :2] + bboxes1[..., :, None, 2:]) / 2
    center2 = (bboxes2[..., None, :, :2] + bboxes2[..., None, :, 2:]) / 2
    whs = center1[..., :2] - center2[..., :2]
    center_distance = whs[..., 0] * whs[..., 0] + whs[..., 1] * whs[..., 1] + eps
    w1 = bboxes1[..., :, None, 2] - bboxes1[..., :, None, 0] + eps
    h1 = bboxes1[..., :, None, 3] - bboxes1[..., :, None, 1] + eps
    w2 = bboxes2[..., None, :, 2] - bboxes2[..., None, :, 0] + eps
    h2 = bboxes2[..., None, :, 3] - bboxes2[..., None, :, 1] + eps
    wh_distance = ((w1 - w2) ** 2 + (h1 - h2) ** 2) / 4
    return torch.exp(-torch.sqrt(center_distance + wh_distance) / constant)


def ref_ultralytics_bbox_iou_focaler(box1, box2, d=0.0, u=0.95, GIoU=False, DIoU=False, CIoU=False, eps=1e-7):
    """ultralytics/ultralytics ultralytics/utils/metrics.py `bbox_iou(xywh=False)` (commit 000df7b3) with the
    Focaler-IoU authors' one line, malagoutou/Focaler-IoU focaleriou.py (commit a0807cb7),
    `iou = ((iou - d) / (u - d)).clamp(0, 1)`, inserted right after `iou = inter / union` (where their
    CSDN guide puts it, and where the circulating YOLO forks have it). Returns the similarity."""
    b1_x1, b1_y1, b1_x2, b1_y2 = box1.chunk(4, -1)
    b2_x1, b2_y1, b2_x2, b2_y2 = box2.chunk(4, -1)
    w1, h1 = b1_x2 - b1_x1, b1_y2 - b1_y1 + eps
    w2, h2 = b2_x2 - b2_x1, b2_y2 - b2_y1 + eps
    inter = (b1_x2.minimum(b2_x2) - b1_x1.maximum(b2_x1)).clamp_(0) * (
        b1_y2.minimum(b2_y2) - b1_y1.maximum(b2_y1)
    ).clamp_(0)
    union = w1 * h1 + w2 * h2 - inter + eps
    iou = inter / union
    iou = ((iou - d) / (u - d)).clamp(0, 1)  # the authors' line
    if CIoU or DIoU or GIoU:
        cw = b1_x2.maximum(b2_x2) - b1_x1.minimum(b2_x1)
        ch = b1_y2.maximum(b2_y2) - b1_y1.minimum(b2_y1)
        if CIoU or DIoU:
            c2 = cw.pow(2) + ch.pow(2) + eps
            rho2 = ((b2_x1 + b2_x2 - b1_x1 - b1_x2).pow(2) + (b2_y1 + b2_y2 - b1_y1 - b1_y2).pow(2)) / 4
            if CIoU:
                v = (4 / math.pi**2) * ((w2 / h2).atan() - (w1 / h1).atan()).pow(2)
                with torch.no_grad():
                    alpha = v / (v - iou + (1 + eps))
                return (iou - (rho2 / c2 + v * alpha)).squeeze(-1)
            return (iou - rho2 / c2).squeeze(-1)
        c_area = cw * ch + eps
        return (iou - (c_area - union) / c_area).squeeze(-1)
    return iou.squeeze(-1)


def ref_piou_authors(box1, box2, PIoU=False, PIoU2=False, Lambda=1.3, eps=1e-7):
    """fppccc/Powerful-IoU YOLOv8/piou.py `piou(xywh=False)` (commit 7f9e59c4): returns the loss itself
    (their README: `iou = 1 - piou(...)`, then BboxLoss takes 1 - iou)."""
    b1_x1, b1_y1, b1_x2, b1_y2 = box1.chunk(4, -1)
    b2_x1, b2_y1, b2_x2, b2_y2 = box2.chunk(4, -1)
    w1, h1 = b1_x2 - b1_x1, b1_y2 - b1_y1 + eps
    w2, h2 = b2_x2 - b2_x1, b2_y2 - b2_y1 + eps
    inter = (b1_x2.minimum(b2_x2) - b1_x1.maximum(b2_x1)).clamp(0) * (
        b1_y2.minimum(b2_y2) - b1_y1.maximum(b2_y1)
    ).clamp(0)
    union = w1 * h1 + w2 * h2 - inter + eps
    iou = inter / union
    dw1 = torch.abs(b1_x2.minimum(b1_x1) - b2_x2.minimum(b2_x1))
    dw2 = torch.abs(b1_x2.maximum(b1_x1) - b2_x2.maximum(b2_x1))
    dh1 = torch.abs(b1_y2.minimum(b1_y1) - b2_y2.minimum(b2_y1))
    dh2 = torch.abs(b1_y2.maximum(b1_y1) - b2_y2.maximum(b2_y1))
    P = ((dw1 + dw2) / torch.abs(w2) + (dh1 + dh2) / torch.abs(h2)) / 4
    L_v1 = 1 - iou - torch.exp(-P**2) + 1
    if PIoU:
        return L_v1.squeeze(-1)
    if PIoU2:
        q = torch.exp(-P)
        x = q * Lambda
        return (3 * x * torch.exp(-x**2) * L_v1).squeeze(-1)


def ref_mmdet_balanced_l1(pred, target, beta=1.0, alpha=0.5, gamma=1.5):
    """open-mmlab/mmdetection mmdet/models/losses/balanced_l1_loss.py `balanced_l1_loss` (commit 030b5682),
    before its `weighted_loss` reduction."""
    assert beta > 0
    assert pred.size() == target.size() and target.numel() > 0
    diff = torch.abs(pred - target)
    b = math.e ** (gamma / alpha) - 1
    loss = torch.where(
        diff < beta, alpha / b * (b * diff + 1) * torch.log(b * diff / beta + 1) - alpha * diff,
        gamma * diff + gamma / b - alpha * beta)
    return loss


def test_nwd_matches_the_authors_code():
    p, t = overlapping_pairs(500, seed=3)
    for c in (12.8, 2.0):
        # Theirs adds eps = 1e-7 under the square root: W changes by ~1e-7 / (2 W), far below 1e-6 here.
        torch.testing.assert_close(nwd_loss(p, t, constant=c, reduction="none"), ref_nwd_authors(p, t, constant=c),
                                   rtol=1e-6, atol=1e-7)


def test_nwd_similarity_matches_the_authors_overlaps():
    a, _ = overlapping_pairs(40, seed=4)
    b, _ = overlapping_pairs(30, seed=5)
    ours = nwd_similarity(a, b, constant=12.8)
    assert ours.shape == (40, 30)
    # theirs: eps = 1e-6 under the root and added to every width (cancels in the differences)
    torch.testing.assert_close(ours, ref_nwd_overlaps_authors(a, b), rtol=1e-6, atol=1e-6)
    # the pairwise diagonal is the aligned similarity, bit for bit, and the loss is 1 - it
    assert torch.equal(nwd_similarity(a[:30], b, constant=12.8).diagonal(),
                       nwd_similarity(a[:30], b, constant=12.8, aligned=True))
    torch.testing.assert_close(nwd_loss(a[:30], b, constant=12.8, reduction="none"),
                               1 - nwd_similarity(a[:30], b, constant=12.8, aligned=True))


def test_nwd_identical_boxes_exactly_zero_where_the_authors_code_is_not():
    boxes = T([0, 0, 10, 10], [3, 4, 5, 8])
    assert torch.equal(nwd_loss(boxes, boxes, constant=12.8, reduction="none"), torch.zeros(2, dtype=torch.float64))
    # theirs: sqrt(eps) = 3.16e-4 under the root: 1 - exp(-3.16e-4 / 12.8) = 2.47e-5
    assert ref_nwd_authors(boxes, boxes)[0].item() == pytest.approx(1 - e(-math.sqrt(1e-7) / 12.8), rel=1e-6)


@pytest.mark.parametrize("base,kw", [("iou", {}), ("iou", {"d": 0.2, "u": 0.8}), ("giou", {}), ("diou", {}),
                                     ("diou", {"d": 0.1, "u": 0.9})])
def test_focaler_matches_the_authors_line_in_ultralytics_bbox_iou(base, kw):
    p, t = overlapping_pairs(500, seed=6)
    flags = {"giou": {"GIoU": True}, "diou": {"DIoU": True}}.get(base, {})
    expected = 1 - ref_ultralytics_bbox_iou_focaler(p, t, **kw, **flags)
    torch.testing.assert_close(focaler_iou_loss(p, t, base=base, reduction="none", **kw), expected,
                               rtol=1e-5, atol=1e-5)


def test_focaler_ciou_alpha_uses_the_real_iou_as_the_paper_says():
    # The paper: L_Focaler-CIoU = L_CIoU + IoU - IoU_focaler, with L_CIoU's own alpha = v / (1 - IoU + v).
    # The authors' line placed in ultralytics' bbox_iou remaps the IoU *before* alpha is computed, so there
    # alpha = v / (1 - IoU_focaler + v). The two agree where v = 0 and differ otherwise.
    p, t = overlapping_pairs(500, seed=7)
    ours = focaler_iou_loss(p, t, base="ciou", reduction="none")
    iou = 1 - iou_loss(p, t, reduction="none", impl="reference")
    paper = ciou_loss(p, t, reduction="none", impl="reference") + iou - (iou / 0.95).clamp(0, 1)
    torch.testing.assert_close(ours, paper, rtol=1e-12, atol=1e-12)
    # ... and so is the gradient: CIoU's (alpha a constant, tested in test_core_numerics.py) plus the remapping's
    p1, p2 = p.clone().requires_grad_(True), p.clone().requires_grad_(True)
    focaler_iou_loss(p1, t, base="ciou").backward()
    iou2 = 1 - iou_loss(p2, t, reduction="none", impl="reference")
    (ciou_loss(p2, t, reduction="none", impl="reference") + iou2 - (iou2 / 0.95).clamp(0, 1)).mean().backward()
    torch.testing.assert_close(p1.grad, p2.grad, rtol=1e-10, atol=1e-14)
    line_in_bbox_iou = 1 - ref_ultralytics_bbox_iou_focaler(p, t, CIoU=True)
    diff = (ours - line_in_bbox_iou).abs()
    assert diff.max() > 1e-4  # a real difference for boxes of different aspect ratios (7.2e-4 here) ...
    assert diff.max() < 2e-3  # ... but small with d = 0, u = 0.95: the two IoUs differ by IoU / 19
    narrow = focaler_iou_loss(p, t, base="ciou", d=0.3, u=0.7, reduction="none")
    assert (narrow - (1 - ref_ultralytics_bbox_iou_focaler(p, t, d=0.3, u=0.7, CIoU=True))).abs().max() > 5e-3
    # case A has v = 0 (both squares): the two agree
    assert focaler_iou_loss(*A, base="ciou").item() == pytest.approx(
        1 - ref_ultralytics_bbox_iou_focaler(*A, CIoU=True).item(), abs=1e-6)


@pytest.mark.parametrize("version,lam", [(1, 1.3), (2, 1.3), (2, 0.7), (2, 2.0)])
def test_piou_matches_the_authors_code(version, lam):
    p, t = overlapping_pairs(500, seed=8)
    ours = piou_loss(p, t, version=version, lam=lam, reduction="none")
    theirs = ref_piou_authors(p, t, PIoU=version == 1, PIoU2=version == 2, Lambda=lam)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    # nothing is detached in their code: the gradients agree too (v2's attention is differentiated)
    p1, p2 = p.clone().requires_grad_(True), p.clone().requires_grad_(True)
    piou_loss(p1, t, version=version, lam=lam).backward()
    ref_piou_authors(p2, t, PIoU=version == 1, PIoU2=version == 2, Lambda=lam).mean().backward()
    torch.testing.assert_close(p1.grad, p2.grad, rtol=1e-4, atol=1e-7)


def test_piou_inverted_prediction_differs_from_the_authors_corner_sorting():
    # Inverted prediction (x2 < x1, y2 < y1): 8,9 -> 3,2. The authors sort each box's corners (min/max), so
    # they measure its mirror image (3,2,8,9): edges |3-4| + |8-8| = 1, |2-4| + |9-8| = 3 on a 4x4 target.
    # We use the corners as given: |8-4| + |3-8| = 9, |9-4| + |2-8| = 11: the prediction is pulled back
    # to the target's corners (as MPDIoU does). IoU is 0 for both (their intersection uses the raw corners too).
    p, t = T([8, 9, 3, 2]), T([4, 4, 8, 8])
    p_ours = 0.25 * (9 / 4 + 11 / 4)  # 1.25
    p_theirs = 0.25 * (1 / 4 + 3 / 4)  # 0.25
    assert piou_loss(p, t).item() == pytest.approx(2 - e(-p_ours**2), rel=1e-12)
    assert ref_piou_authors(p, t, PIoU=True).item() == pytest.approx(2 - e(-p_theirs**2), rel=1e-6)
    # valid boxes: the same P either way (test_piou_matches_the_authors_code)


def test_balanced_l1_matches_mmdetection():
    g = torch.Generator().manual_seed(9)
    pred = torch.randn(400, 4, generator=g, dtype=torch.float64) * 2
    target = torch.randn(400, 4, generator=g, dtype=torch.float64)
    for kw in ({}, {"beta": 0.5}, {"alpha": 0.3, "gamma": 2.0}, {"beta": 2.0, "alpha": 1.0, "gamma": 1.0}):
        torch.testing.assert_close(balanced_l1_loss(pred, target, reduction="none", **kw),
                                   ref_mmdet_balanced_l1(pred, target, **kw), rtol=1e-12, atol=1e-14)
        p1, p2 = pred.clone().requires_grad_(True), pred.clone().requires_grad_(True)
        balanced_l1_loss(p1, target, **kw).backward()
        ref_mmdet_balanced_l1(p2, target, **kw).mean().backward()
        torch.testing.assert_close(p1.grad, p2.grad, rtol=1e-10, atol=1e-14)


def test_balanced_l1_golden_and_continuity():
    # alpha 0.5, gamma 1.5, beta 1: b = e^3 - 1 = 19.085537, gamma / b = 0.078594.
    # x = 0.5: 0.5/b (b/2 + 1) ln(b/2 + 1) - 0.25 = 0.5/19.085537 * 10.542768 * 2.355440 - 0.25 = 0.400568
    # x = 1 (outlier branch, x < beta is false): 1.5 + 0.078594 - 0.5 = 1.078594; x = 2: 2.578594
    b = e(3) - 1
    x = T(0.0, 0.5, 1.0, 2.0)
    got = balanced_l1_loss(x, torch.zeros(4, dtype=torch.float64), reduction="none")
    expected = T(0.0, 0.5 / b * (b / 2 + 1) * math.log(b / 2 + 1) - 0.25, 1.5 + 1.5 / b - 0.5, 3 + 1.5 / b - 0.5)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-15)
    assert got[1].item() == pytest.approx(0.400568, abs=1e-6) and got[3].item() == pytest.approx(2.578594, abs=1e-6)
    # value continuous at x = beta for any beta; the slope only for beta = 1 (mmdetection's generalisation):
    # inlier slope at beta = gamma + alpha ((b beta + 1) / (beta (b + 1)) - 1): 1.5 for beta 1, 1.524894 for 0.5.
    for beta, slope_in in ((1.0, 1.5), (0.5, 1.5 + 0.5 * ((b * 0.5 + 1) / (0.5 * (b + 1)) - 1))):
        h = 1e-7
        xs = T(beta - h, beta - 2 * h, beta + h, beta + 2 * h).requires_grad_(True)
        loss = balanced_l1_loss(xs, torch.zeros(4, dtype=torch.float64), beta=beta, reduction="none")
        assert (loss[0] - loss[2]).abs().item() < 1e-6  # continuous value
        (grad,) = torch.autograd.grad(loss.sum(), xs)
        assert grad[0].item() == pytest.approx(slope_in, rel=1e-5)
        assert grad[2].item() == pytest.approx(1.5, rel=1e-12)  # outlier slope gamma
    assert 1.5 + 0.5 * ((b * 0.5 + 1) / (0.5 * (b + 1)) - 1) == pytest.approx(1.524894, abs=1e-6)


def test_balanced_l1_gives_inliers_more_gradient_than_smooth_l1():
    # The paper's point: for |x| < 1 the gradient alpha ln(b x + 1) exceeds Smooth L1's x (beta 1) at small x.
    from boxloss.boxes import smooth_l1_loss

    x = T(0.05, 0.1, 0.2).requires_grad_(True)
    (g_bal,) = torch.autograd.grad(balanced_l1_loss(x, torch.zeros(3, dtype=torch.float64), reduction="sum"), x)
    (g_sl1,) = torch.autograd.grad(
        smooth_l1_loss(x, torch.zeros(3, dtype=torch.float64), reduction="sum", impl="reference"), x)
    torch.testing.assert_close(g_bal, 0.5 * torch.log1p((e(3) - 1) * x.detach()))
    assert (g_bal > g_sl1).all()


# ---------------------------------------------------------------------------------------------------------
# Identities and properties specific to each loss.
# ---------------------------------------------------------------------------------------------------------
def test_focaler_with_d0_u1_is_the_base_loss():
    p, t = overlapping_pairs(300, seed=10)
    bases = {"iou": iou_loss, "giou": giou_loss, "diou": diou_loss, "ciou": ciou_loss, "eiou": eiou_loss,
             "siou": siou_loss}
    for base, ref in bases.items():
        got = focaler_iou_loss(p, t, base=base, d=0.0, u=1.0, reduction="none")
        torch.testing.assert_close(got, ref(p, t, reduction="none", impl="reference"), rtol=1e-12, atol=1e-12)


def test_focaler_zero_iou_gradient_outside_the_interval():
    # IoU > u: the IoU term is saturated at 1 and its gradient is 0 (Focaler-IoU with base iou: no gradient).
    p = T([[0, 0, 10, 10.2]]).requires_grad_(True)  # IoU 100/102 = 0.980 > 0.95
    t = T([[0, 0, 10, 10]])
    loss = focaler_iou_loss(p, t)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(p.grad, torch.zeros_like(p))


def test_piou_penalty_is_normalised_by_the_target_not_the_enclosing_box():
    # Same edge errors on a target twice as large: P halves. DIoU's term instead depends on the enclosing box.
    small, big = T([0, 0, 4, 4]), T([0, 0, 8, 8])
    shift = T([1, 1, 1, 1])
    p_small = 0.25 * (2 / 4 + 2 / 4)
    p_big = 0.25 * (2 / 8 + 2 / 8)
    iou_small = 9 / 23  # 3x3 overlap of two 4x4 boxes
    iou_big = 49 / 79  # 7x7 overlap of two 8x8 boxes
    assert piou_loss(small + shift, small).item() == pytest.approx(1 - iou_small + 1 - e(-p_small**2), rel=1e-12)
    assert piou_loss(big + shift, big).item() == pytest.approx(1 - iou_big + 1 - e(-p_big**2), rel=1e-12)


def test_piou_v2_attention_is_nonmonotonic():
    # u(lambda q) peaks at q = 1/(sqrt 2 lambda), i.e. P = ln(sqrt 2 lambda) = 0.609 for lambda 1.3;
    # with the IoU term fixed at 1 (disjoint boxes), the v2 loss rises then falls as P grows.
    t = T([0, 0, 10, 10])
    losses = [piou_loss(t + T([s, 0, s, 0]), t, version=2).item() for s in (10, 20, 30, 60, 200)]
    assert losses[0] < losses[1] and losses[-1] < losses[-2] < losses[1]
    # q -> 0 for very poor pairs: the loss itself goes to 0 (their gradient is small by design)
    assert piou_loss(t + T([1e4, 0, 1e4, 0]), t, version=2).item() < 1e-30


def test_nwd_depends_on_absolute_offset_not_box_size():
    # The point of NWD for tiny objects: a 1-pixel shift costs the same for a 4-pixel and a 40-pixel box.
    for size in (4.0, 40.0):
        t = T([0, 0, size, size])
        assert nwd_loss(t + T([1, 0, 1, 0]), t, constant=12.8).item() == pytest.approx(1 - e(-1 / 12.8), rel=1e-12)
    # IoU loss punishes the small box far more: 1 - 12/20 = 0.4 vs 1 - 156/164 = 0.0488
    assert iou_loss(T([1, 0, 5, 4]), T([0, 0, 4, 4]), impl="reference").item() == pytest.approx(0.4)
    assert iou_loss(T([1, 0, 41, 40]), T([0, 0, 40, 40]), impl="reference").item() == pytest.approx(8 / 164)


# ---------------------------------------------------------------------------------------------------------
# Numerics: gradcheck, identical, degenerate, low precision, empty, shapes, formats, reductions.
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", [n for n in LOSSES if n != "focaler_ciou"])  # CIoU's alpha is detached: below
def test_gradcheck_fp64(name):
    fn = LOSSES[name]
    p, t = overlapping_pairs(6, seed=11)
    p.requires_grad_(True)
    t.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: fn(a, b, reduction="none"), (p, t), eps=1e-6, atol=1e-5)


def test_gradcheck_balanced_l1_fp64():
    g = torch.Generator().manual_seed(12)
    pred = (torch.rand(20, 4, generator=g, dtype=torch.float64) * 4 - 2).requires_grad_(True)
    target = torch.zeros(20, 4, dtype=torch.float64, requires_grad=True)
    for kw in ({}, {"beta": 0.5, "alpha": 0.3}):
        assert torch.autograd.gradcheck(lambda a, b: balanced_l1_loss(a, b, reduction="none", **kw), (pred, target),
                                        eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("name", list(LOSSES))
def test_identical_boxes_give_exactly_zero(name):
    fn = LOSSES[name]
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [3.5, 1.25, 7.0, 90.0], [1e4 - 7, 9e3, 1e4, 1e4]], requires_grad=True)
    loss = fn(boxes, boxes.detach().clone(), reduction="none")
    assert torch.equal(loss, torch.zeros(3)), loss
    loss.sum().backward()
    assert torch.isfinite(boxes.grad).all()


DEGENERATE = {  # as in test_newer_losses.py
    "zero width pred": ([5.0, 5.0, 5.0, 9.0], [4.0, 4.0, 8.0, 8.0]),
    "0x0 pred": ([6.0, 6.0, 6.0, 6.0], [4.0, 4.0, 8.0, 8.0]),
    "0x0 pred outside": ([20.0, 20.0, 20.0, 20.0], [4.0, 4.0, 8.0, 8.0]),
    "inverted pred": ([8.0, 9.0, 3.0, 2.0], [4.0, 4.0, 8.0, 8.0]),
    "0x0 identical": ([6.0, 6.0, 6.0, 6.0], [6.0, 6.0, 6.0, 6.0]),
    "0x0 target": ([4.0, 4.0, 8.0, 8.0], [6.0, 6.0, 6.0, 6.0]),
    "zero height both": ([0.0, 1.0, 4.0, 1.0], [1.0, 1.0, 5.0, 1.0]),
    "both inverted": ([8.0, 9.0, 3.0, 2.0], [7.0, 7.0, 1.0, 1.0]),
    "same centre": ([2.0, 2.0, 8.0, 8.0], [4.0, 4.0, 6.0, 6.0]),
    "disjoint": ([0.0, 0.0, 1.0, 1.0], [50.0, 60.0, 70.0, 90.0]),
    "far apart": ([0.0, 0.0, 1.0, 1.0], [1e4, 1e4, 1e4 + 1, 1e4 + 1]),
}


@pytest.mark.parametrize("case", list(DEGENERATE))
@pytest.mark.parametrize("name", list(LOSSES))
def test_degenerate_finite_values_and_gradients(name, case):
    for dtype in (torch.float32, torch.float64):
        p, t = (torch.tensor([x], dtype=dtype, requires_grad=True) for x in DEGENERATE[case])
        loss = LOSSES[name](p, t, reduction="sum")
        assert torch.isfinite(loss)
        loss.backward()
        assert torch.isfinite(p.grad).all() and torch.isfinite(t.grad).all(), (dtype, p.grad, t.grad)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_balanced_l1_huge_errors_finite_gradients(dtype):
    # the log branch is evaluated at min(x, beta): no inf * 0 = NaN leaks from the unused branch
    pred = torch.tensor([0.0, 1e-30, 3e4, -6e4, 1.0], dtype=dtype).requires_grad_(True)
    target = torch.zeros(5, dtype=dtype)
    loss = balanced_l1_loss(pred, target, reduction="sum")
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(pred.grad.float()).all()
    assert pred.grad[0].item() == 0.0  # the subgradient at x = 0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", list(LOSSES))
def test_low_precision_inputs_compute_in_fp32(name, dtype):
    fn = LOSSES[name]
    p, t = overlapping_pairs(64, seed=13)
    p, t = (p * 100).to(dtype), (t * 100).to(dtype)  # coordinates to ~1.5e4: areas far beyond fp16's 65504
    p.requires_grad_(True)
    loss = fn(p, t, reduction="none")
    assert loss.dtype == torch.float32
    expected = fn(p.detach().double(), t.double(), reduction="none")
    torch.testing.assert_close(loss.double(), expected, rtol=1e-4, atol=1e-5)
    loss.sum().backward()
    assert p.grad.dtype == dtype and torch.isfinite(p.grad.float()).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_balanced_l1_low_precision(dtype):
    g = torch.Generator().manual_seed(14)
    pred = (torch.randn(50, 4, generator=g) * 3).to(dtype).requires_grad_(True)
    target = torch.randn(50, 4, generator=g).to(dtype)
    loss = balanced_l1_loss(pred, target, reduction="none")
    assert loss.dtype == torch.float32
    expected = balanced_l1_loss(pred.detach().double(), target.double(), reduction="none")
    torch.testing.assert_close(loss.double(), expected, rtol=1e-6, atol=1e-6)
    loss.sum().backward()
    assert pred.grad.dtype == dtype


@pytest.mark.parametrize("name", list(LOSSES))
def test_dtype_rule_batch_shape_and_broadcasting(name):
    fn = LOSSES[name]
    p, t = overlapping_pairs(6, seed=15)
    assert fn(p, t).dtype == torch.float64
    assert fn(p.float(), t.float()).dtype == torch.float32
    assert fn(p.float(), t).dtype == torch.float64
    loss = fn(p.view(2, 3, 4), t.view(2, 3, 4), reduction="none")
    assert loss.shape == (2, 3)
    torch.testing.assert_close(loss.flatten(), fn(p, t, reduction="none"))
    assert fn(p, t[:1], reduction="none").shape == (6,)


@pytest.mark.parametrize("name", list(LOSSES) + ["balanced_l1"])
def test_empty_input(name):
    fn = LOSSES.get(name, balanced_l1_loss)
    p = torch.zeros(0, 4, requires_grad=True)
    t = torch.zeros(0, 4)
    mean = fn(p, t)
    assert mean.item() == 0.0 and mean.requires_grad
    mean.backward()
    assert p.grad.shape == (0, 4)
    assert fn(p, t, reduction="none").shape == ((0,) if name != "balanced_l1" else (0, 4))
    assert fn(p, t, reduction="sum").item() == 0.0
    assert fn(p, t, avg_factor=0).item() == 0.0


@pytest.mark.parametrize("name", list(LOSSES))
def test_formats_agree(name):
    fn = LOSSES[name]
    p, t = overlapping_pairs(20, seed=16)
    ref = fn(p, t, reduction="none")
    for fmt in ("xywh", "cxcywh"):
        got = fn(box_convert(p, "xyxy", fmt), box_convert(t, "xyxy", fmt), fmt=fmt, reduction="none")
        torch.testing.assert_close(got, ref, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", list(LOSSES))
def test_reductions_weight_and_avg_factor(name):
    fn = LOSSES[name]
    p, t = overlapping_pairs(10, seed=17)
    per_box = fn(p, t, reduction="none")
    w = torch.linspace(0, 2, 10, dtype=torch.float64)
    torch.testing.assert_close(fn(p, t), per_box.mean())
    torch.testing.assert_close(fn(p, t, reduction="sum"), per_box.sum())
    torch.testing.assert_close(fn(p, t, weight=w, reduction="none"), per_box * w)
    torch.testing.assert_close(fn(p, t, weight=w.unsqueeze(-1).expand(10, 4)), (per_box * w).mean())
    torch.testing.assert_close(fn(p, t, weight=w, avg_factor=4.0), (per_box * w).sum() / 4)
    torch.testing.assert_close(fn(p, t, weight=w, avg_factor=torch.tensor(4.0)), (per_box * w).sum() / 4)
    with pytest.raises(ValueError, match="weight"):
        fn(p, t, weight=torch.ones(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="reduction"):
        fn(p, t, reduction="avg")
    with pytest.raises(ValueError, match="avg_factor"):
        fn(p, t, reduction="sum", avg_factor=2.0)


def test_balanced_l1_reductions_weight_and_avg_factor():
    g = torch.Generator().manual_seed(18)
    p, t = torch.randn(10, 4, generator=g, dtype=torch.float64), torch.randn(10, 4, generator=g, dtype=torch.float64)
    el = balanced_l1_loss(p, t, reduction="none")
    assert el.shape == (10, 4)
    w_el = torch.rand(10, 4, generator=g, dtype=torch.float64)
    w_row = torch.rand(10, generator=g, dtype=torch.float64)
    torch.testing.assert_close(balanced_l1_loss(p, t), el.mean())
    torch.testing.assert_close(balanced_l1_loss(p, t, reduction="sum"), el.sum())
    torch.testing.assert_close(balanced_l1_loss(p, t, weight=w_el, reduction="none"), el * w_el)
    torch.testing.assert_close(balanced_l1_loss(p, t, weight=w_row, reduction="none"), el * w_row[:, None])
    torch.testing.assert_close(balanced_l1_loss(p, t, weight=w_el, avg_factor=3.0), (el * w_el).sum() / 3)
    with pytest.raises(ValueError, match="weight"):
        balanced_l1_loss(p, t, weight=torch.ones(4, 10, dtype=torch.float64))


@pytest.mark.parametrize("name", ["nwd", "focaler_ciou", "focaler_siou", "piou", "piou_v2", "balanced_l1"])
def test_torch_compile_fullgraph(name):
    fn = LOSSES.get(name, balanced_l1_loss)
    p, t = overlapping_pairs(8, seed=19, dtype=torch.float32)
    torch._dynamo.reset()  # one lambda code object per parametrisation would hit the recompile limit
    compiled = torch.compile(lambda a, b: fn(a, b), backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(p, t), fn(p, t))


def test_torch_compile_fullgraph_nwd_similarity_pairwise():
    a, b = overlapping_pairs(8, seed=20, dtype=torch.float32)
    torch._dynamo.reset()
    compiled = torch.compile(lambda x, y: nwd_similarity(x, y, constant=12.8), backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(a, b), nwd_similarity(a, b, constant=12.8))


# ---------------------------------------------------------------------------------------------------------
# Properties.
# ---------------------------------------------------------------------------------------------------------
box_xy = st.floats(-50, 50)
box_wh = st.floats(0.5, 40)


def _box(x, y, w, h):
    return torch.tensor([x, y, x + w, y + h], dtype=torch.float64)


SCALE_INVARIANT = [n for n in LOSSES if not n.startswith("nwd")]


@settings(max_examples=30, deadline=None, derandomize=True)
@given(p=st.tuples(box_xy, box_xy, box_wh, box_wh), t=st.tuples(box_xy, box_xy, box_wh, box_wh),
       s=st.floats(0.01, 100), shift=st.tuples(st.floats(-1e3, 1e3), st.floats(-1e3, 1e3)))
def test_scale_and_translation_invariance(p, t, s, shift):
    p, t = _box(*p), _box(*t)
    move = torch.tensor([*shift, *shift], dtype=torch.float64)
    for name, fn in LOSSES.items():
        ref = fn(p, t, reduction="none")
        torch.testing.assert_close(fn(p + move, t + move, reduction="none"), ref, rtol=1e-6, atol=1e-6, msg=name)
        if name in SCALE_INVARIANT:
            torch.testing.assert_close(fn(p * s, t * s, reduction="none"), ref, rtol=1e-6, atol=1e-6, msg=name)
    # NWD: invariant when the constant is scaled with the boxes
    ref = nwd_loss(p, t, constant=12.8, reduction="none")
    torch.testing.assert_close(nwd_loss(p * s, t * s, constant=12.8 * s, reduction="none"), ref)


# Not PIoU v2 (nonmonotonic attention, by design) nor Focaler-CIoU (CIoU's alpha falls with the IoU, as for CIoU).
MONOTONE = ["nwd", "nwd_c2", "focaler_iou", "focaler_iou_d.2_u.8", "focaler_giou", "focaler_diou", "focaler_siou",
            "piou"]


@settings(max_examples=40, deadline=None, derandomize=True)
@given(t=st.tuples(box_xy, box_xy, box_wh, box_wh), size=st.tuples(box_wh, box_wh),
       angle=st.floats(0, 2 * math.pi), d1=st.floats(0, 60), d2=st.floats(0, 60))
def test_loss_grows_as_centre_moves_away(t, size, angle, d1, d2):
    t = _box(*t)
    near, far = min(d1, d2), max(d1, d2)
    centre = 0.5 * (t[:2] + t[2:])
    direction = torch.tensor([math.cos(angle), math.sin(angle)], dtype=torch.float64)

    def pred_at(d):
        c, half = centre + d * direction, 0.5 * torch.tensor(size, dtype=torch.float64)
        return torch.cat([c - half, c + half])

    for name in MONOTONE:
        fn = LOSSES[name]
        assert fn(pred_at(far), t) >= fn(pred_at(near), t) - 1e-9, name


# ---------------------------------------------------------------------------------------------------------
# Registry and arguments.
# ---------------------------------------------------------------------------------------------------------
REGISTRY_FUNCTIONAL = {
    "nwd": (nwd_loss, {"constant": 8.0}),
    "focaler_iou": (focaler_iou_loss, {"base": "ciou", "d": 0.1, "u": 0.9}),
    "piou": (piou_loss, {}),
    "piou_v2": (piou_v2_loss, {"lam": 1.5}),
    "balanced_l1": (balanced_l1_loss, {"beta": 0.5}),
}


def test_registry_lists_every_new_loss():
    names = available_box_losses()
    for name in REGISTRY_FUNCTIONAL:
        assert name in names


@pytest.mark.parametrize("name", list(REGISTRY_FUNCTIONAL))
def test_registry_round_trip(name):
    fn, kw = REGISTRY_FUNCTIONAL[name]
    module = get_box_loss(name, loss_weight=2.0, **kw)
    assert isinstance(module, torch.nn.Module)
    p, t = overlapping_pairs(10, seed=21)
    w = torch.rand(10, dtype=torch.float64)
    torch.testing.assert_close(module(p, t, weight=w, avg_factor=3.0), 2.0 * fn(p, t, weight=w, avg_factor=3.0, **kw))
    with pytest.raises(ValueError, match="bogus"):
        get_box_loss(name, bogus=1, **kw)


def test_registry_piou_v2_is_piou_version_2():
    p, t = overlapping_pairs(10, seed=22)
    torch.testing.assert_close(get_box_loss("piou_v2")(p, t), piou_loss(p, t, version=2))
    torch.testing.assert_close(get_box_loss("piou", version=2, lam=2.0)(p, t), piou_v2_loss(p, t, lam=2.0))
    with pytest.raises(ValueError, match="version"):
        get_box_loss("piou_v2", version=1)  # not an argument of piou_v2


def test_nwd_needs_its_constant():
    with pytest.raises(ValueError, match="constant"):
        get_box_loss("nwd")
    with pytest.raises(ValueError, match="constant"):
        nwd_loss(T([0, 0, 1, 1]), T([0, 0, 1, 1]))
    with pytest.raises(ValueError, match="constant"):
        nwd_similarity(T([[0, 0, 1, 1]]), T([[0, 0, 1, 1]]))


BAD_ARGS = [
    (nwd_loss, {"constant": 0.0}, "constant"),
    (nwd_loss, {"constant": -1.0}, "constant"),
    (nwd_loss, {"constant": float("inf")}, "constant"),
    (nwd_loss, {"constant": 12.8, "fmt": "xyzw"}, "fmt"),
    (focaler_iou_loss, {"base": "wiou"}, "base"),
    (focaler_iou_loss, {"d": 0.5, "u": 0.5}, "u"),
    (focaler_iou_loss, {"d": -0.1}, "d"),
    (focaler_iou_loss, {"u": 1.5}, "u"),
    (focaler_iou_loss, {"eps": 0.0}, "eps"),
    (piou_loss, {"version": 3}, "version"),
    (piou_loss, {"lam": 0.0}, "lam"),
    (piou_loss, {"lam": float("nan")}, "lam"),
    (balanced_l1_loss, {"alpha": 0.0}, "alpha"),
    (balanced_l1_loss, {"gamma": -1.0}, "gamma"),
    (balanced_l1_loss, {"beta": 0.0}, "beta"),
]


@pytest.mark.parametrize("fn,kw,word", BAD_ARGS, ids=[f"{b[0].__name__}-{b[2]}-{i}" for i, b in enumerate(BAD_ARGS)])
def test_bad_arguments_raise_value_error_naming_them(fn, kw, word):
    p = T([[0, 0, 2, 2]])
    with pytest.raises(ValueError, match=word):
        fn(p, p, **kw)


def test_bad_box_tensors_raise_value_error():
    with pytest.raises(ValueError, match="pred"):
        piou_loss(torch.zeros(3, 5), torch.zeros(3, 4))
    with pytest.raises(ValueError, match="target"):
        nwd_loss(torch.zeros(3, 4), torch.zeros(3, 4, dtype=torch.long), constant=1.0)
    with pytest.raises(ValueError, match="pairwise"):
        nwd_similarity(torch.zeros(4), torch.zeros(3, 4), constant=1.0)
