"""Quality Focal Loss, Distribution Focal Loss (+ integral_decode) and Varifocal Loss: golden values worked by
hand, agreement with transcriptions of mmdetection's, the GFL authors', ultralytics' and RT-DETR's code,
gradcheck in fp64, saturated logits (+-100) in fp32/fp16/bf16, empty input, reductions / weights /
avg_factor, torch.compile, the modules and argument errors.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from boxloss.boxes import (
    DistributionFocalLoss,
    QualityFocalLoss,
    VarifocalLoss,
    available_box_losses,
    distribution_focal_loss,
    integral_decode,
    quality_focal_loss,
    varifocal_loss,
)

LN2, LN3 = math.log(2), math.log(3)


def _random_cls(n=64, c=5, *, seed=0, dtype=torch.float64, pos_frac=0.3):
    """Logits [n, c] and IoU-aware soft targets [n, c]: one class with an IoU in (0.05, 1) for positives, 0 else."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, generator=g, dtype=torch.float64) * 3
    labels = torch.randint(0, c, (n,), generator=g)
    labels[torch.rand(n, generator=g) > pos_frac] = c  # background
    scores = 0.05 + 0.95 * torch.rand(n, generator=g, dtype=torch.float64)
    dense = (labels[:, None] == torch.arange(c)).double() * scores[:, None]
    return logits.to(dtype), dense.to(dtype), labels, scores.to(dtype)


def _random_dist(n=32, reg_max=16, *, seed=0, dtype=torch.float64, sides=4):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, sides, reg_max + 1, generator=g, dtype=torch.float64) * 2
    target = torch.rand(n, sides, generator=g, dtype=torch.float64) * reg_max
    return logits.to(dtype), target.to(dtype)


# ---------------------------------------------------------------------------------------------------------
# Golden values, worked by hand. BCE(x, q) = softplus(x) - q x; at x = 0 it is ln 2 for every q.
# sigmoid(ln 3) = 3/4, BCE(ln 3, 0) = ln(1 + 3) = ln 4.
# ---------------------------------------------------------------------------------------------------------
QFL_GOLDEN = [
    # x = 0 (p = 1/2), q = 1: |1 - 1/2|^2 ln 2 = 0.25 * 0.693147 = 0.173287
    (0.0, 1.0, 2.0, 0.25 * LN2),
    # x = ln 3 (p = 3/4), q = 0 (negative): (3/4)^2 ln 4 = 0.5625 * 1.386294 = 0.779791
    (LN3, 0.0, 2.0, 0.5625 * math.log(4)),
    # x = ln 3, q = 3/4: the prediction equals the target, factor 0 -> 0 (BCE alone would be > 0)
    (LN3, 0.75, 2.0, 0.0),
    # x = 0, q = 0.2, beta = 1: |0.2 - 0.5| ln 2 = 0.207944
    (0.0, 0.2, 1.0, 0.3 * LN2),
    # beta = 0: plain BCE with soft target: x = ln 3, q = 0.5: ln 4 - 0.5 ln 3 = 0.836988
    (LN3, 0.5, 0.0, math.log(4) - 0.5 * LN3),
]


@pytest.mark.parametrize("x,q,beta,expected", QFL_GOLDEN)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_qfl_golden(x, q, beta, expected, dtype):
    x, q = torch.tensor([x], dtype=dtype), torch.tensor([q], dtype=dtype)
    got = quality_focal_loss(x, q, beta=beta, reduction="none")
    assert got.dtype == dtype
    tol = 1e-12 if dtype == torch.float64 else 1e-6
    assert got.item() == pytest.approx(expected, rel=tol, abs=tol)


VFL_GOLDEN = [
    # negative, x = ln 3 (p = 3/4), alpha 0.75, gamma 2: 0.75 * 0.5625 * ln 4 = 0.584843
    (LN3, 0.0, {}, 0.75 * 0.5625 * math.log(4)),
    # positive, x = 0, q = 0.6: q BCE = 0.6 ln 2 = 0.415888
    (0.0, 0.6, {}, 0.6 * LN2),
    # positive, iou_weighted=False: BCE = ln 2
    (0.0, 0.6, {"iou_weighted": False}, LN2),
    # negative, gamma 0.5, alpha 0.5: 0.5 * sqrt(3/4) * ln 4 = 0.600283
    (LN3, 0.0, {"gamma": 0.5, "alpha": 0.5}, 0.5 * math.sqrt(0.75) * math.log(4)),
    # positive with x = ln 3 and q = 1: 1 * BCE(ln 3, 1) = ln(4/3) = 0.287682 (no p^gamma on positives)
    (LN3, 1.0, {}, math.log(4 / 3)),
]


@pytest.mark.parametrize("x,q,kw,expected", VFL_GOLDEN)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_vfl_golden(x, q, kw, expected, dtype):
    got = varifocal_loss(torch.tensor([x], dtype=dtype), torch.tensor([q], dtype=dtype), reduction="none", **kw)
    tol = 1e-12 if dtype == torch.float64 else 1e-6
    assert got.item() == pytest.approx(expected, rel=tol, abs=tol)


# DFL: logits = log [1, 2, 3, 4, 1] over the bins 0..4 (reg_max 4): softmax = [1, 2, 3, 4, 1] / 11.
DFL_LOGITS = [0.0, math.log(2), math.log(3), math.log(4), 0.0]
DFL_GOLDEN = [
    # y = 1.25: bins 1 (2/11) and 2 (3/11), weights 0.75, 0.25: 0.75 ln(11/2) + 0.25 ln(11/3)
    #   = 0.75 * 1.704748 + 0.25 * 1.299283 = 1.603382
    (1.25, {}, 0.75 * math.log(11 / 2) + 0.25 * math.log(11 / 3)),
    # y = 2 (an integer): all the weight on bin 2: ln(11/3) = 1.299283
    (2.0, {}, math.log(11 / 3)),
    # y = 4 = reg_max, default margin 0.01: y -> 3.99, bins 3 (4/11) and 4 (1/11) with weights 0.01, 0.99:
    #   0.01 ln(11/4) + 0.99 ln 11 = 0.010116 + 2.373916 = 2.384032
    (4.0, {}, 0.01 * math.log(11 / 4) + 0.99 * math.log(11)),
    # y = 4, margin 0 (exact): all on bin 4: ln 11 = 2.397895
    (4.0, {"target_margin": 0.0}, math.log(11)),
    # y = 4, margin 0.1 (mmdetection's GFL head): y -> 3.9: 0.1 ln(11/4) + 0.9 ln 11 = 2.259266
    (4.0, {"target_margin": 0.1}, 0.1 * math.log(11 / 4) + 0.9 * math.log(11)),
    # y = 7 > reg_max: clamped like 4 (margin 0.01)
    (7.0, {}, 0.01 * math.log(11 / 4) + 0.99 * math.log(11)),
    # y = -1 < 0: clamped to 0: ln 11
    (-1.0, {}, math.log(11)),
]


@pytest.mark.parametrize("y,kw,expected", DFL_GOLDEN)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_dfl_golden(y, kw, expected, dtype):
    logits = torch.tensor([DFL_LOGITS], dtype=dtype)
    got = distribution_focal_loss(logits, torch.tensor([y], dtype=dtype), reduction="none", **kw)
    assert got.shape == (1,) and got.dtype == dtype
    tol = 1e-12 if dtype == torch.float64 else 1e-6
    assert got.item() == pytest.approx(expected, rel=tol, abs=tol)


def test_golden_decimals():
    assert 0.75 * math.log(11 / 2) + 0.25 * math.log(11 / 3) == pytest.approx(1.603382, abs=1e-6)
    assert 0.01 * math.log(11 / 4) + 0.99 * math.log(11) == pytest.approx(2.384032, abs=1e-6)
    assert 0.1 * math.log(11 / 4) + 0.9 * math.log(11) == pytest.approx(2.259266, abs=1e-6)
    assert 0.5 * math.sqrt(0.75) * math.log(4) == pytest.approx(0.600283, abs=1e-6)
    assert math.log(4) - 0.5 * LN3 == pytest.approx(0.836988, abs=1e-6)


def test_integral_decode_golden():
    # expectation of [1, 2, 3, 4, 1] / 11 over 0..4: (0 + 2 + 6 + 12 + 4) / 11 = 24/11 = 2.181818
    got = integral_decode(torch.tensor([DFL_LOGITS], dtype=torch.float64), 4)
    assert got.shape == (1,) and got.item() == pytest.approx(24 / 11, rel=1e-12)
    # uniform logits: reg_max / 2; a saturated bin: that bin's index exactly
    assert integral_decode(torch.zeros(17), 16).item() == pytest.approx(8.0, rel=1e-6)
    sat = torch.full((17,), -100.0)
    sat[5] = 100.0
    assert integral_decode(sat, 16).item() == 5.0


# ---------------------------------------------------------------------------------------------------------
# Transcriptions of the reference code.
# ---------------------------------------------------------------------------------------------------------
def ref_mmdet_qfl(pred, label, score, beta=2.0):
    """open-mmlab/mmdetection mmdet/models/losses/gfocal_loss.py `quality_focal_loss` (commit 182d5329), the
    (label, score) form, before its `weighted_loss` reduction: one value per row (summed over classes)."""
    pred_sigmoid = pred.sigmoid()
    scale_factor = pred_sigmoid
    zerolabel = scale_factor.new_zeros(pred.shape)
    loss = F.binary_cross_entropy_with_logits(pred, zerolabel, reduction="none") * scale_factor.pow(beta)
    bg_class_ind = pred.size(1)
    pos = ((label >= 0) & (label < bg_class_ind)).nonzero().squeeze(1)
    pos_label = label[pos].long()
    scale_factor = score[pos] - pred_sigmoid[pos, pos_label]
    loss[pos, pos_label] = F.binary_cross_entropy_with_logits(
        pred[pos, pos_label], score[pos], reduction="none") * scale_factor.abs().pow(beta)
    loss = loss.sum(dim=1, keepdim=False)
    return loss


def ref_mmdet3_qfl_tensor_target(pred, target, beta=2.0):
    """mmdetection v3.2.0 `quality_focal_loss_tensor_target` (activated=False), as copied verbatim into
    open-edge-platform/training_extensions library/src/otx/backend/native/models/common/losses/gfocal_loss.py
    (commit 0b2d5b6e; the index holds no mmdetection 3.x copy of gfocal_loss.py). One value per row."""
    pred_sigmoid = pred.sigmoid()
    loss_function = F.binary_cross_entropy_with_logits
    scale_factor = pred_sigmoid
    target = target.type_as(pred)
    zerolabel = scale_factor.new_zeros(pred.shape)
    loss = loss_function(pred, zerolabel, reduction="none") * scale_factor.pow(beta)
    pos = target != 0
    scale_factor = target[pos] - pred_sigmoid[pos]
    loss[pos] = loss_function(pred[pos], target[pos], reduction="none") * scale_factor.abs().pow(beta)
    return loss.sum(dim=1, keepdim=False)


def ref_gfocal_authors_qfl(pred, label, score, beta=2.0):
    """implus/GFocal mmdet/models/losses/gfocal_loss.py `quality_focal_loss` (commit adb8eca9), the authors'
    release: labels 1..C are positives, 0 negatives; per element (their weight_reduce_loss follows)."""
    pred_sigmoid = pred.sigmoid()
    pt = pred_sigmoid
    zerolabel = pt.new_zeros(pred.shape)
    loss = F.binary_cross_entropy_with_logits(pred, zerolabel, reduction="none") * pt.pow(beta)
    label = label - 1
    pos = (label >= 0).nonzero().squeeze(1)
    a = pos
    b = label[pos].long()
    pt = score[a] - pred_sigmoid[a, b]
    loss[a, b] = F.binary_cross_entropy_with_logits(pred[a, b], score[a], reduction="none") * pt.pow(beta)
    return loss


def ref_mmdet_dfl(pred, label):
    """open-mmlab/mmdetection mmdet/models/losses/gfocal_loss.py `distribution_focal_loss` (commit 182d5329);
    identical in implus/GFocal (commit adb8eca9). pred [N, n + 1], label [N]; no clamp (the head clamps)."""
    dis_left = label.long()
    dis_right = dis_left + 1
    weight_left = dis_right.float() - label
    weight_right = label - dis_left.float()
    loss = F.cross_entropy(pred, dis_left, reduction="none") * weight_left \
        + F.cross_entropy(pred, dis_right, reduction="none") * weight_right
    return loss


def ref_bbox2distance_clamp(distance, max_dis, dt=0.1):
    """The target clamp of implus/GFocal mmdet/core/bbox/transforms.py `bbox2distance(..., max_dis, dt=0.1)`
    (commit 82c1394c), which mmdetection's GFLHead applies with max_dis = reg_max (gfl_head.py, commit 0009b6e3)."""
    return distance.clamp(min=0, max=max_dis - dt)


def ref_ultralytics_dfl(pred_dist, target, reg_max=16):
    """ultralytics/ultralytics ultralytics/utils/loss.py `DFLoss.__call__` (commit 00033e8f). Its reg_max counts
    the bins (16 bins = distances 0..15); it returns the mean over the 4 sides, [N, 1]. (`clamp_` -> `clamp`.)"""
    target = target.clamp(0, reg_max - 1 - 0.01)
    tl = target.long()
    tr = tl + 1
    wl = tr - target
    wr = 1 - wl
    return (
        F.cross_entropy(pred_dist, tl.view(-1), reduction="none").view(tl.shape) * wl
        + F.cross_entropy(pred_dist, tr.view(-1), reduction="none").view(tl.shape) * wr
    ).mean(-1, keepdim=True)


def ref_mmdet_integral(x, reg_max=16):
    """open-mmlab/mmdetection mmdet/models/dense_heads/gfl_head.py `Integral.forward` (commit 0009b6e3)."""
    project = torch.linspace(0, reg_max, reg_max + 1, dtype=x.dtype)
    x = F.softmax(x.reshape(-1, reg_max + 1), dim=1)
    x = F.linear(x, project.type_as(x)).reshape(-1, 4)
    return x


def ref_mmdet_vfl(pred, target, alpha=0.75, gamma=2.0, iou_weighted=True):
    """open-mmlab/mmdetection mmdet/models/losses/varifocal_loss.py `varifocal_loss` (commit 19bceba5), the
    VarifocalNet authors' code, before `weight_reduce_loss`: per element."""
    assert pred.size() == target.size()
    pred_sigmoid = pred.sigmoid()
    target = target.type_as(pred)
    if iou_weighted:
        focal_weight = target * (target > 0.0).float() + \
            alpha * (pred_sigmoid - target).abs().pow(gamma) * \
            (target <= 0.0).float()
    else:
        focal_weight = (target > 0.0).float() + \
            alpha * (pred_sigmoid - target).abs().pow(gamma) * \
            (target <= 0.0).float()
    loss = F.binary_cross_entropy_with_logits(pred, target, reduction="none") * focal_weight
    return loss


def ref_ultralytics_vfl(pred_score, gt_score, label, alpha=0.75, gamma=2.0):
    """ultralytics/ultralytics ultralytics/utils/loss.py `VarifocalLoss.forward` (commit 00033e8f), autocast
    left out: positives chosen by the hard `label`, not by gt_score > 0; mean over dim 1, then sum."""
    weight = alpha * pred_score.sigmoid().pow(gamma) * (1 - label) + gt_score * label
    return (F.binary_cross_entropy_with_logits(pred_score, gt_score, reduction="none") * weight).mean(1).sum()


def ref_rtdetr_vfl(src_logits, target_score, target, num_boxes, alpha=0.75, gamma=2.0):
    """lyuwenyu/RT-DETR rtdetr_pytorch/src/zoo/rtdetr/rtdetr_criterion.py `loss_labels_vfl` (commit 830ef9fd),
    from `target_score` on: p^gamma is detached, positives chosen by the one-hot `target`."""
    pred_score = F.sigmoid(src_logits).detach()
    weight = alpha * pred_score.pow(gamma) * (1 - target) + target_score
    loss = F.binary_cross_entropy_with_logits(src_logits, target_score, weight=weight, reduction="none")
    loss = loss.mean(1).sum() * src_logits.shape[1] / num_boxes
    return loss


# --- QFL --------------------------------------------------------------------------------------------------
def test_qfl_matches_mmdetection_both_target_forms():
    logits, dense, labels, scores = _random_cls(200, 7, seed=1)
    ours = quality_focal_loss(logits, dense, reduction="none")
    assert ours.shape == (200, 7)
    # mmdetection sums over classes: our per-row sum is its per-row value
    torch.testing.assert_close(ours.sum(-1), ref_mmdet_qfl(logits, labels, scores), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(ours.sum(-1), ref_mmdet3_qfl_tensor_target(logits, dense), rtol=1e-12, atol=1e-14)
    # the (labels, scores) form, background index C (and -1) included, gives the same as the dense form
    labels2 = labels.clone()
    labels2[:5] = -1
    dense2 = (labels2[:, None] == torch.arange(7)).double() * scores[:, None]
    torch.testing.assert_close(quality_focal_loss(logits, (labels2, scores), reduction="none"),
                               quality_focal_loss(logits, dense2, reduction="none"), rtol=0, atol=0)
    # gradients too (nothing detached on either side)
    l1, l2 = logits.clone().requires_grad_(True), logits.clone().requires_grad_(True)
    quality_focal_loss(l1, dense, reduction="sum").backward()
    ref_mmdet3_qfl_tensor_target(l2, dense).sum().backward()
    torch.testing.assert_close(l1.grad, l2.grad, rtol=1e-10, atol=1e-14)


def test_qfl_matches_the_gfl_authors_code():
    logits, dense, labels, scores = _random_cls(200, 7, seed=2)
    authors_labels = torch.where(labels < 7, labels + 1, torch.zeros_like(labels))  # theirs: 0 negative, 1..C
    torch.testing.assert_close(quality_focal_loss(logits, dense, reduction="none"),
                               ref_gfocal_authors_qfl(logits, authors_labels, scores), rtol=1e-12, atol=1e-14)


def test_qfl_reduction_conventions_against_mmdetection():
    # GFL calls QFL with avg_factor = number of positives and per-anchor weights: identical to ours.
    # Without avg_factor, mmdetection's "mean" is over rows (anchors), ours over elements: a factor C apart.
    logits, dense, labels, scores = _random_cls(50, 4, seed=3)
    w = torch.rand(50, dtype=torch.float64)
    theirs_rows = ref_mmdet_qfl(logits, labels, scores)
    torch.testing.assert_close(quality_focal_loss(logits, dense, weight=w, avg_factor=7.0),
                               (theirs_rows * w).sum() / 7.0)
    torch.testing.assert_close(quality_focal_loss(logits, dense) * 4, theirs_rows.mean())


# --- DFL --------------------------------------------------------------------------------------------------
def test_dfl_matches_mmdetection_with_its_head_clamp():
    logits, target = _random_dist(64, 16, seed=4)
    target = target * 1.2  # some beyond reg_max, clamped by the head's bbox2distance at reg_max - 0.1
    ours = distribution_focal_loss(logits, target, target_margin=0.1, reduction="none")
    theirs = ref_mmdet_dfl(logits.reshape(-1, 17), ref_bbox2distance_clamp(target, 16).reshape(-1)).reshape(64, 4)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-14)
    # GFLHead's call: per-box weight expanded over the 4 sides, avg_factor 4
    w = torch.rand(64, dtype=torch.float64)
    torch.testing.assert_close(
        distribution_focal_loss(logits, target, target_margin=0.1, weight=w, avg_factor=4.0),
        (theirs.reshape(-1) * w[:, None].expand(-1, 4).reshape(-1)).sum() / 4.0)
    # gradients (logits and the continuous target)
    l1, l2 = logits.clone().requires_grad_(True), logits.clone().requires_grad_(True)
    t_in = (torch.rand(64, 4, dtype=torch.float64) * 15.5)
    distribution_focal_loss(l1, t_in, target_margin=0.1).backward()
    ref_mmdet_dfl(l2.reshape(-1, 17), t_in.reshape(-1)).mean().backward()
    torch.testing.assert_close(l1.grad, l2.grad, rtol=1e-10, atol=1e-14)


def test_dfl_matches_ultralytics():
    # ultralytics' reg_max = 16 bins = our reg_max 15; its clamp 16 - 1 - 0.01 = our margin 0.01 (the default).
    logits, target = _random_dist(64, 15, seed=5)
    target = target * 1.3 - 1  # below 0 and above 15: both clamped
    ours = distribution_focal_loss(logits, target, reduction="none")
    theirs = ref_ultralytics_dfl(logits.reshape(-1, 16), target, reg_max=16)
    assert theirs.shape == (64, 1)
    torch.testing.assert_close(ours.mean(-1, keepdim=True), theirs, rtol=1e-12, atol=1e-14)
    # BboxLoss: (DFL * weight).sum() / target_scores_sum, weight per box: our per-row weight and avg_factor 4 S
    w = torch.rand(64, 1, dtype=torch.float64)
    s = w.sum() * 1.7
    torch.testing.assert_close(distribution_focal_loss(logits, target, weight=w[:, 0], avg_factor=4 * s),
                               (theirs * w).sum() / s)


def test_dfl_how_mmdetection_and_ultralytics_differ():
    # Only at the top of the range: a target at reg_max is clamped to reg_max - 0.1 (mmdetection's head) or
    # reg_max - 0.01 (ultralytics, our default), and the loss moves 10 % or 1 % of its weight to bin reg_max - 1.
    logits = torch.tensor([DFL_LOGITS], dtype=torch.float64)
    y = torch.tensor([4.0], dtype=torch.float64)
    at = {m: distribution_focal_loss(logits, y, target_margin=m).item() for m in (0.0, 0.01, 0.1)}
    assert at[0.0] > at[0.01] > at[0.1]  # bin 3 (4/11) is likelier than bin 4 (1/11) here
    # ... and below reg_max - 0.1 all three are the same function
    y = torch.tensor([3.5], dtype=torch.float64)
    vals = {distribution_focal_loss(logits, y, target_margin=m).item() for m in (0.0, 0.01, 0.1)}
    assert len(vals) == 1


def test_dfl_minimum_is_at_the_two_bins_and_integral_recovers_the_target():
    # Minimising DFL for one target gives softmax = (y_r - y, y - y_l) on the two bins: the integral is y.
    logits = torch.zeros(17, dtype=torch.float64, requires_grad=True)
    y = torch.tensor(6.3, dtype=torch.float64)
    opt = torch.optim.SGD([logits], lr=1.0)
    for _ in range(3000):
        opt.zero_grad()
        distribution_focal_loss(logits, y).backward()
        opt.step()
    probs = torch.softmax(logits.detach(), -1)
    assert probs[6].item() == pytest.approx(0.7, abs=2e-2) and probs[7].item() == pytest.approx(0.3, abs=2e-2)
    assert integral_decode(logits.detach(), 16).item() == pytest.approx(6.3, abs=2e-2)


def test_integral_decode_matches_mmdetection():
    logits, _ = _random_dist(20, 16, seed=6)
    torch.testing.assert_close(integral_decode(logits, 16), ref_mmdet_integral(logits.reshape(20, 68), 16),
                               rtol=1e-12, atol=1e-12)


# --- VFL --------------------------------------------------------------------------------------------------
def test_vfl_matches_mmdetection():
    logits, dense, _, _ = _random_cls(200, 6, seed=7)
    for kw in ({}, {"iou_weighted": False}, {"alpha": 0.25, "gamma": 1.5}):
        torch.testing.assert_close(varifocal_loss(logits, dense, reduction="none", **kw),
                                   ref_mmdet_vfl(logits, dense, **kw), rtol=1e-12, atol=1e-14)
        l1, l2 = logits.clone().requires_grad_(True), logits.clone().requires_grad_(True)
        varifocal_loss(l1, dense, reduction="sum", **kw).backward()
        ref_mmdet_vfl(l2, dense, **kw).sum().backward()
        torch.testing.assert_close(l1.grad, l2.grad, rtol=1e-10, atol=1e-14)


def _detr_like(seed=8, zero_iou_match=False):
    """Logits [B=2, Q=10, C=5]; a one-hot `label` for the matched queries and `gt_score` = label * IoU."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 10, 5, generator=g, dtype=torch.float64) * 3
    label = torch.zeros(2, 10, 5, dtype=torch.float64)
    for b, q, c in ((0, 1, 2), (0, 4, 0), (1, 3, 4), (1, 7, 2), (1, 8, 1)):
        label[b, q, c] = 1.0
    iou = 0.1 + 0.9 * torch.rand(2, 10, 1, generator=g, dtype=torch.float64)
    if zero_iou_match:
        iou[1, 7, 0] = 0.0  # a matched query whose box does not overlap its target at all
    return logits, label * iou, label


def test_vfl_against_ultralytics_and_rtdetr():
    # Where every matched query has IoU > 0, the three agree on the values; the reductions differ:
    #   ultralytics: .mean(1).sum() = sum / Q;  RT-DETR: .mean(1).sum() * Q / num_boxes = sum / num_boxes.
    logits, gt_score, label = _detr_like()
    num_boxes = 5.0
    ours_sum = varifocal_loss(logits, gt_score, reduction="sum")
    torch.testing.assert_close(ours_sum / 10, ref_ultralytics_vfl(logits, gt_score, label), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(varifocal_loss(logits, gt_score, avg_factor=num_boxes),
                               ref_rtdetr_vfl(logits, gt_score, label, num_boxes), rtol=1e-12, atol=1e-14)
    # Gradients: ultralytics differentiates p^gamma like us (and mmdetection); RT-DETR detaches it.
    grads = {}
    for name, fn in {
        "ours": lambda x: varifocal_loss(x, gt_score, avg_factor=num_boxes),
        "ultralytics": lambda x: ref_ultralytics_vfl(x, gt_score, label) * 10 / num_boxes,
        "rtdetr": lambda x: ref_rtdetr_vfl(x, gt_score, label, num_boxes),
        "ours_detached": lambda x: (F.binary_cross_entropy_with_logits(x, gt_score, reduction="none")
                                    * torch.where(gt_score > 0, gt_score, 0.75 * x.detach().sigmoid() ** 2)).sum()
        / num_boxes,
    }.items():
        x = logits.clone().requires_grad_(True)
        fn(x).backward()
        grads[name] = x.grad
    torch.testing.assert_close(grads["ours"], grads["ultralytics"], rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(grads["rtdetr"], grads["ours_detached"], rtol=1e-10, atol=1e-14)
    assert (grads["ours"] - grads["rtdetr"]).abs().max() > 1e-3  # the p^gamma term of the negatives


def test_vfl_zero_iou_match_is_a_negative_for_us_and_ignored_by_ultralytics_and_rtdetr():
    # A matched query whose IoU is 0: its class element has label 1 but target 0. mmdetection (and we) split
    # positives by q > 0, so it is a negative (alpha p^gamma BCE(x, 0)); ultralytics and RT-DETR split by the
    # hard label, and its weight is gt_score * label = 0: the element contributes nothing.
    logits, gt_score, label = _detr_like(zero_iou_match=True)
    x = logits[1, 7, 2]  # the matched class of query 7 in image 1
    missing = 0.75 * torch.sigmoid(x) ** 2 * F.softplus(x)
    ours_sum = varifocal_loss(logits, gt_score, reduction="sum")
    torch.testing.assert_close(ours_sum / 10, ref_ultralytics_vfl(logits, gt_score, label) + missing / 10)
    torch.testing.assert_close(varifocal_loss(logits, gt_score, avg_factor=5.0),
                               ref_rtdetr_vfl(logits, gt_score, label, 5.0) + missing / 5.0)
    torch.testing.assert_close(varifocal_loss(logits, gt_score, reduction="none"), ref_mmdet_vfl(logits, gt_score))


# ---------------------------------------------------------------------------------------------------------
# Numerics.
# ---------------------------------------------------------------------------------------------------------
def test_gradcheck_qfl_fp64():
    logits, dense, _, _ = _random_cls(8, 3, seed=9)
    soft = (dense + 0.1 * torch.rand(8, 3, dtype=torch.float64)).clamp(0, 1)  # q != sigmoid(x) almost surely
    for beta in (2.0, 1.5, 0.0):
        x, q = logits.clone().requires_grad_(True), soft.clone().requires_grad_(True)
        assert torch.autograd.gradcheck(lambda a, b: quality_focal_loss(a, b, beta=beta, reduction="none"), (x, q),
                                        eps=1e-6, atol=1e-6)


def test_gradcheck_vfl_fp64():
    logits, dense, _, _ = _random_cls(8, 3, seed=10, pos_frac=0.6)
    for kw in ({}, {"gamma": 0.5, "iou_weighted": False}):
        x = logits.clone().requires_grad_(True)
        assert torch.autograd.gradcheck(lambda a: varifocal_loss(a, dense, reduction="none", **kw), (x,),
                                        eps=1e-6, atol=1e-6)
    # w.r.t. the targets of positives (q > 0 stays > 0 under the finite differences)
    pos = dense > 0
    q = dense[pos].clone().requires_grad_(True)

    def fn(qq):
        return varifocal_loss(logits, dense.masked_scatter(pos, qq), reduction="none")

    assert torch.autograd.gradcheck(fn, (q,), eps=1e-6, atol=1e-6)


def test_gradcheck_dfl_and_integral_fp64():
    logits, target = _random_dist(4, 8, seed=11)
    target = target.clamp(0.05, 7.9)
    target = torch.where((target - target.round()).abs() < 1e-3, target + 0.01, target)  # off the bin edges
    x, y = logits.clone().requires_grad_(True), target.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: distribution_focal_loss(a, b, reduction="none"), (x, y),
                                    eps=1e-6, atol=1e-6)
    assert torch.autograd.gradcheck(lambda a: integral_decode(a, 8), (x,), eps=1e-6, atol=1e-6)


SATURATED = torch.tensor([-100.0, -30.0, -1.0, 0.0, 1.0, 30.0, 100.0])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("q", [0.0, 0.3, 1.0])
def test_saturated_logits_finite_values_and_gradients(dtype, q):
    x = SATURATED.to(dtype).requires_grad_(True)
    t = torch.full_like(SATURATED, q).to(dtype).requires_grad_(True)
    cases = [
        lambda: quality_focal_loss(x, t, reduction="none"),
        lambda: quality_focal_loss(x, t, beta=0.5, reduction="none"),
        lambda: varifocal_loss(x, t, reduction="none"),
        lambda: varifocal_loss(x, t, gamma=0.5, reduction="none"),
    ]
    for make in cases:
        loss = make()
        assert loss.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
        assert torch.isfinite(loss).all(), loss
        gx, gt = torch.autograd.grad(loss.sum(), (x, t))
        assert torch.isfinite(gx.float()).all() and torch.isfinite(gt.float()).all(), (gx, gt)
        assert gx.dtype == dtype


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_dfl_saturated_logits_finite(dtype):
    logits = torch.full((3, 17), -100.0)
    logits[0, 0], logits[1, 16], logits[2, 8] = 100.0, 100.0, 100.0
    logits = logits.to(dtype).requires_grad_(True)
    target = torch.tensor([15.5, 0.2, 16.0], dtype=dtype)
    loss = distribution_focal_loss(logits, target, reduction="none")
    assert loss.dtype == torch.float32 and torch.isfinite(loss).all()
    # the far-off bins cost ~200 nats: no inf from log(softmax) underflowing to log(0)
    assert loss[0].item() == pytest.approx(200.0, rel=1e-3)
    loss.sum().backward()
    assert torch.isfinite(logits.grad.float()).all()
    out = integral_decode(logits.detach(), 16)
    assert out.dtype == torch.float32 and torch.equal(out, torch.tensor([0.0, 16.0, 8.0]))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_inputs_compute_in_fp32(dtype):
    logits, dense, _, _ = _random_cls(64, 5, seed=12)
    dl, dt = _random_dist(16, 16, seed=13)
    cases = [
        (quality_focal_loss, logits, dense),
        (varifocal_loss, logits, dense),
        (distribution_focal_loss, dl, dt),
    ]
    for fn, a, b in cases:
        a_lp, b_lp = a.to(dtype).requires_grad_(True), b.to(dtype)
        loss = fn(a_lp, b_lp, reduction="none")
        assert loss.dtype == torch.float32
        expected = fn(a_lp.detach().double(), b_lp.double(), reduction="none")
        torch.testing.assert_close(loss.double(), expected, rtol=1e-5, atol=1e-6)
        loss.sum().backward()
        assert a_lp.grad.dtype == dtype and torch.isfinite(a_lp.grad.float()).all()
    assert integral_decode(dl.to(dtype), 16).dtype == torch.float32


def test_dtype_rule():
    logits, dense, _, _ = _random_cls(4, 3, seed=14)
    assert quality_focal_loss(logits.float(), dense).dtype == torch.float64
    assert varifocal_loss(logits.float(), dense.float()).dtype == torch.float32
    dl, dt = _random_dist(4, 8, seed=15)
    assert distribution_focal_loss(dl.float(), dt).dtype == torch.float64
    assert distribution_focal_loss(dl.float(), dt.float()).dtype == torch.float32


EMPTY = {
    "qfl": lambda x, **kw: quality_focal_loss(x, torch.zeros(0, 5), **kw),
    "qfl_tuple": lambda x, **kw: quality_focal_loss(x, (torch.zeros(0, dtype=torch.long), torch.zeros(0)), **kw),
    "vfl": lambda x, **kw: varifocal_loss(x, torch.zeros(0, 5), **kw),
    "dfl": lambda x, **kw: distribution_focal_loss(x, torch.zeros(0), **kw),
}


@pytest.mark.parametrize("name", list(EMPTY))
def test_empty_input(name):
    x = torch.zeros(0, 5, requires_grad=True)
    fn = EMPTY[name]
    mean = fn(x)
    assert mean.item() == 0.0 and mean.requires_grad
    mean.backward()
    assert x.grad.shape == (0, 5)
    assert fn(x, reduction="sum").item() == 0.0
    assert fn(x, avg_factor=0).item() == 0.0
    assert fn(x, reduction="none").shape == ((0,) if name == "dfl" else (0, 5))
    assert integral_decode(torch.zeros(0, 4, 17), 16).shape == (0, 4)


def test_reductions_weight_and_avg_factor():
    logits, dense, _, _ = _random_cls(10, 3, seed=16)
    dl, dt = _random_dist(10, 8, seed=17)
    for fn, a, b in ((quality_focal_loss, logits, dense), (varifocal_loss, logits, dense),
                     (distribution_focal_loss, dl, dt)):
        el = fn(a, b, reduction="none")
        w_el = torch.rand(el.shape, dtype=torch.float64)
        w_row = torch.rand(el.shape[:-1], dtype=torch.float64)
        torch.testing.assert_close(fn(a, b), el.mean())
        torch.testing.assert_close(fn(a, b, reduction="sum"), el.sum())
        torch.testing.assert_close(fn(a, b, weight=w_el, reduction="none"), el * w_el)
        torch.testing.assert_close(fn(a, b, weight=w_row, reduction="none"), el * w_row[..., None])
        torch.testing.assert_close(fn(a, b, weight=w_el, avg_factor=3.0), (el * w_el).sum() / 3)
        torch.testing.assert_close(fn(a, b, weight=w_el, avg_factor=torch.tensor(3.0)), (el * w_el).sum() / 3)
        with pytest.raises(ValueError, match="weight"):
            fn(a, b, weight=torch.ones(7, dtype=torch.float64))
        with pytest.raises(ValueError, match="reduction"):
            fn(a, b, reduction="avg")
        with pytest.raises(ValueError, match="avg_factor"):
            fn(a, b, reduction="sum", avg_factor=2.0)


def test_batch_shapes_and_broadcasting():
    logits, dense, _, _ = _random_cls(12, 3, seed=18)
    for fn in (quality_focal_loss, varifocal_loss):
        ref = fn(logits, dense, reduction="none")
        torch.testing.assert_close(fn(logits.view(3, 4, 3), dense.view(3, 4, 3), reduction="none"), ref.view(3, 4, 3))
        assert fn(logits, torch.zeros(3, dtype=torch.float64), reduction="none").shape == (12, 3)  # broadcast
    dl, dt = _random_dist(6, 8, seed=19)
    torch.testing.assert_close(distribution_focal_loss(dl.reshape(24, 9), dt.reshape(24), reduction="none"),
                               distribution_focal_loss(dl, dt, reduction="none").reshape(24))


COMPILED = {
    "qfl": lambda x, t: quality_focal_loss(x, t),
    "vfl": lambda x, t: varifocal_loss(x, t, avg_factor=3.0),
}


@pytest.mark.parametrize("name", list(COMPILED))
def test_torch_compile_fullgraph(name):
    logits, dense, _, _ = _random_cls(16, 4, seed=20, dtype=torch.float32)
    fn = COMPILED[name]
    torch._dynamo.reset()
    compiled = torch.compile(fn, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(logits, dense), fn(logits, dense))


def test_torch_compile_fullgraph_qfl_tuple_dfl_and_integral():
    logits, _, labels, scores = _random_cls(16, 4, seed=21, dtype=torch.float32)
    dl, dt = _random_dist(8, 16, seed=22, dtype=torch.float32)

    def fn(x, lab, sc, d, t):
        return quality_focal_loss(x, (lab, sc)) + distribution_focal_loss(d, t) + integral_decode(d, 16).sum()

    torch._dynamo.reset()
    compiled = torch.compile(fn, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(logits, labels, scores, dl, dt), fn(logits, labels, scores, dl, dt))


# ---------------------------------------------------------------------------------------------------------
# Modules, registry and arguments.
# ---------------------------------------------------------------------------------------------------------
def test_modules():
    logits, dense, _, _ = _random_cls(10, 3, seed=23)
    dl, dt = _random_dist(10, 8, seed=24)
    w = torch.rand(10, dtype=torch.float64)
    torch.testing.assert_close(QualityFocalLoss(beta=1.5, loss_weight=2.0)(logits, dense, weight=w, avg_factor=3.0),
                               2.0 * quality_focal_loss(logits, dense, beta=1.5, weight=w, avg_factor=3.0))
    torch.testing.assert_close(VarifocalLoss(alpha=0.5, loss_weight=3.0)(logits, dense),
                               3.0 * varifocal_loss(logits, dense, alpha=0.5))
    torch.testing.assert_close(DistributionFocalLoss(loss_weight=0.25)(dl, dt, weight=w),
                               0.25 * distribution_focal_loss(dl, dt, weight=w))
    with pytest.raises(ValueError, match="bogus"):
        VarifocalLoss(bogus=1)


def test_not_box_losses():
    for name in ("qfl", "quality_focal", "vfl", "varifocal", "dfl", "distribution_focal"):
        assert name not in available_box_losses()


def test_bad_arguments_raise_value_error_naming_them():
    logits, dense, labels, scores = _random_cls(4, 3, seed=25)
    dl, dt = _random_dist(4, 8, seed=26)
    cases = [
        (lambda: quality_focal_loss(logits, dense, beta=-1.0), "beta"),
        (lambda: quality_focal_loss(logits, dense.long()), "targets"),
        (lambda: quality_focal_loss(logits, (labels, scores, scores)), "pair"),
        (lambda: quality_focal_loss(logits, (scores, scores)), "labels"),
        (lambda: quality_focal_loss(logits, (labels[:2], scores[:2])), "labels"),
        (lambda: quality_focal_loss(logits, torch.zeros(4, 2, dtype=torch.float64)), "broadcast"),
        (lambda: varifocal_loss(logits, dense, alpha=-0.5), "alpha"),
        (lambda: varifocal_loss(logits, dense, gamma=-1.0), "gamma"),
        (lambda: varifocal_loss(logits, dense, iou_weighted=1), "iou_weighted"),
        (lambda: distribution_focal_loss(dl, dt, target_margin=1.0), "target_margin"),
        (lambda: distribution_focal_loss(dl, dt, target_margin=-0.1), "target_margin"),
        (lambda: distribution_focal_loss(dl, dt[:, :2]), "target"),
        (lambda: distribution_focal_loss(dl[..., :1], dt), "reg_max"),
        (lambda: integral_decode(dl, 16), "reg_max"),
        (lambda: integral_decode(dl, 0), "reg_max"),
        (lambda: integral_decode(dl.reshape(4, 36), 8), "reshape"),
    ]
    for make, word in cases:
        with pytest.raises(ValueError, match=word):
            make()
