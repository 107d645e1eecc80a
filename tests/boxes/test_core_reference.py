"""Agreement with torchvision.ops and torch.nn.functional on thousands of random boxes: values and grads.

Intended differences from torchvision (documented in docs/losses.md):
- eps: torchvision adds eps to denominators (inter / (union + eps)); we only bound them from below
  (inter / max(union, eps)), so identical boxes give exactly 0. Comparisons pass eps=1e-12 to both so the
  two placements agree to ~1e-12; `test_eps_placement_difference` pins the difference itself.
- box_iou(kind="ciou") differentiates alpha (the true derivative); torchvision's complete_box_iou
  detaches it. ciou_loss detaches it, as torchvision's complete_box_iou_loss does.
- CIoU's aspect term: torchvision computes atan(w / h); we compute atan(w / (h + eps)) so 0-height boxes
  stay finite. Same ~eps/h effect.
"""

import pytest
import torch
import torch.nn.functional as F
import torchvision.ops as tvo

from boxloss.boxes import box_iou, ciou_loss, diou_loss, giou_loss, sigmoid_focal_loss, smooth_l1_loss

from box_cases import overlapping_pairs, random_boxes

N = 4000
TV_LOSSES = {
    "giou": (giou_loss, tvo.generalized_box_iou_loss),
    "diou": (diou_loss, tvo.distance_box_iou_loss),
    "ciou": (ciou_loss, tvo.complete_box_iou_loss),
}


def _value_and_grad(fn, pred, target, **kw):
    pred = pred.clone().requires_grad_(True)
    loss = fn(pred, target, reduction="sum", **kw)
    (grad,) = torch.autograd.grad(loss, pred)
    return loss.detach(), grad


@pytest.mark.parametrize("name", sorted(TV_LOSSES))
@pytest.mark.parametrize("pairs", ["overlapping", "random"])
def test_losses_match_torchvision_fp64(name, pairs):
    ours, theirs = TV_LOSSES[name]
    pred, target = overlapping_pairs(N) if pairs == "overlapping" else (random_boxes(N, seed=1), random_boxes(N, seed=2))
    v1, g1 = _value_and_grad(ours, pred, target, eps=1e-12)
    v2, g2 = _value_and_grad(theirs, pred, target, eps=1e-12)
    torch.testing.assert_close(v1, v2, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(g1, g2, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("name", sorted(TV_LOSSES))
def test_losses_match_torchvision_fp32_default_eps(name):
    ours, theirs = TV_LOSSES[name]
    pred, target = overlapping_pairs(N, dtype=torch.float32)
    v1, g1 = _value_and_grad(ours, pred, target)
    v2, g2 = _value_and_grad(theirs, pred, target)
    torch.testing.assert_close(v1, v2, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(g1, g2, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "kind,tv_fn",
    [
        ("iou", tvo.box_iou),
        ("giou", tvo.generalized_box_iou),
        ("diou", lambda a, b: tvo.distance_box_iou(a, b, eps=1e-12)),
        ("ciou", lambda a, b: tvo.complete_box_iou(a, b, eps=1e-12)),
    ],
)
def test_pairwise_box_iou_matches_torchvision(kind, tv_fn):
    a = random_boxes(300, seed=3).requires_grad_(True)
    b = random_boxes(200, seed=4)
    ours = box_iou(a, b, kind=kind, eps=1e-12)
    theirs = tv_fn(a, b)
    torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-9)
    if kind == "ciou":
        # Intended difference: our box_iou(kind="ciou") is the true derivative of CIoU, alpha included
        # (gradcheck in test_core_numerics.py), while torchvision's complete_box_iou detaches alpha.
        return
    weights = torch.rand_like(ours)
    (g1,) = torch.autograd.grad((ours * weights).sum(), a)
    (g2,) = torch.autograd.grad((theirs * weights).sum(), a)
    torch.testing.assert_close(g1, g2, rtol=1e-7, atol=1e-9)


def test_eps_placement_difference():
    box = random_boxes(100)
    assert torch.all(ciou_loss(box, box, reduction="none") == 0)
    theirs = tvo.complete_box_iou_loss(box, box, reduction="none")
    area = (box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1])
    # torchvision: 1 - A / (A + eps) = eps / (A + eps) > 0
    torch.testing.assert_close(theirs, 1e-7 / (area + 1e-7), rtol=1e-5, atol=1e-15)
    assert torch.all(theirs > 0)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.5, 2.0])
@pytest.mark.parametrize("alpha", [0.25, -1.0])
@pytest.mark.parametrize("soft", [False, True])
def test_focal_matches_torchvision(gamma, alpha, soft):
    g = torch.Generator().manual_seed(5)
    logits = (torch.randn(2000, 8, generator=g, dtype=torch.float64) * 4).requires_grad_(True)
    targets = torch.rand(2000, 8, generator=g, dtype=torch.float64)
    targets = targets if soft else (targets > 0.8).to(torch.float64)
    ours = sigmoid_focal_loss(logits, targets, alpha=alpha, gamma=gamma, reduction="sum")
    theirs = tvo.sigmoid_focal_loss(logits, targets, alpha=alpha, gamma=gamma, reduction="sum")
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-10)
    (g1,) = torch.autograd.grad(ours, logits)
    (g2,) = torch.autograd.grad(theirs, logits)
    torch.testing.assert_close(g1, g2, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("beta", [0.0, 0.1, 1.0, 5.0])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_smooth_l1_matches_torch(beta, reduction):
    pred, target = overlapping_pairs(N)
    pred.requires_grad_(True)
    ours = smooth_l1_loss(pred, target, beta=beta, reduction=reduction)
    theirs = F.smooth_l1_loss(pred, target, beta=beta, reduction=reduction) if beta else F.l1_loss(pred, target, reduction=reduction)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
    (g1,) = torch.autograd.grad(ours.sum(), pred)
    (g2,) = torch.autograd.grad(theirs.sum(), pred)
    torch.testing.assert_close(g1, g2, rtol=1e-12, atol=1e-12)
