"""The numerics policy of docs/architecture.md ("Numerics policy"), one test (or more) per item, on every core loss.

Output dtype rule under test: losses and box_iou compute and return float32, or float64 when an input is
float64, whatever the input dtype (fp16/bf16 included); gradients reach each input in its own dtype.
"""

import pytest
import torch

from boxloss.boxes import box_iou, ciou_loss, get_box_loss, iou_loss, sigmoid_focal_loss, smooth_l1_loss
from boxloss.boxes.overlaps import aligned_overlap

from box_cases import IOU_FAMILY, overlapping_pairs, random_boxes

ALL_BOX_LOSSES = dict(IOU_FAMILY, iou_log=lambda p, t, **kw: iou_loss(p, t, mode="log", **kw),
                      iou_square=lambda p, t, **kw: iou_loss(p, t, mode="square", **kw),
                      smooth_l1=smooth_l1_loss, l1=lambda p, t, **kw: smooth_l1_loss(p, t, beta=0.0, **kw))
DEGENERATE_PRED = torch.tensor(
    [
        [5.0, 5.0, 5.0, 9.0],  # zero width
        [5.0, 5.0, 9.0, 5.0],  # zero height
        [5.0, 5.0, 5.0, 5.0],  # 0x0 point inside the target
        [9.0, 9.0, 4.0, 4.0],  # x2 < x1 and y2 < y1 (raw head output)
        [9.0, 4.0, 4.0, 8.0],  # x2 < x1 only
        [50.0, 50.0, 50.0, 50.0],  # 0x0 point far away
        [3.0, 3.0, 3.0, 3.0],  # 0x0 identical to the target below
        [1.0, 1.0, 1.0, 1.0],  # 0x0 at the target's corner
    ]
)
DEGENERATE_TARGET = torch.tensor(
    [[4.0, 4.0, 8.0, 8.0]] * 6 + [[3.0, 3.0, 3.0, 3.0], [1.0, 1.0, 3.0, 3.0]]
)


# --- gradients -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["iou", "iou_log", "iou_square", "giou", "diou", "smooth_l1"])
def test_gradcheck_fp64(name):
    pred, target = overlapping_pairs(12, seed=7)
    fn = ALL_BOX_LOSSES[name]
    assert torch.autograd.gradcheck(lambda p, t: fn(p, t, reduction="none"), (pred.requires_grad_(), target.requires_grad_()))


@pytest.mark.parametrize("kind", ["iou", "giou", "diou", "ciou"])
@pytest.mark.parametrize("aligned", [False, True])
def test_box_iou_gradcheck_fp64(kind, aligned):
    a = random_boxes(6, seed=1).view(2, 3, 4).requires_grad_()
    b = (random_boxes(6, seed=2) * 0.5 + 20).view(2, 3, 4).requires_grad_()
    assert torch.autograd.gradcheck(lambda x, y: box_iou(x, y, kind=kind, aligned=aligned), (a, b))


@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.5, 2.0])
@pytest.mark.parametrize("soft", [False, True])
def test_focal_gradcheck_fp64(gamma, soft):
    g = torch.Generator().manual_seed(3)
    logits = (torch.randn(5, 4, generator=g, dtype=torch.float64) * 3).requires_grad_()
    targets = torch.rand(5, 4, generator=g, dtype=torch.float64)
    targets = (targets if soft else (targets > 0.5).double()).requires_grad_(soft)
    assert torch.autograd.gradcheck(
        lambda x, y: sigmoid_focal_loss(x, y, gamma=gamma, reduction="none"), (logits, targets)
    )


def _ciou_with_detached_alpha(p, t, eps=1e-7):
    """CIoU loss written out independently, with alpha detached by hand."""
    pw, ph = p[:, 2] - p[:, 0], p[:, 3] - p[:, 1]
    tw, th = t[:, 2] - t[:, 0], t[:, 3] - t[:, 1]
    iw = (torch.min(p[:, 2], t[:, 2]) - torch.max(p[:, 0], t[:, 0])).clamp(min=0)
    ih = (torch.min(p[:, 3], t[:, 3]) - torch.max(p[:, 1], t[:, 1])).clamp(min=0)
    inter = iw * ih
    iou = inter / (pw * ph + tw * th - inter)
    cw = torch.max(p[:, 2], t[:, 2]) - torch.min(p[:, 0], t[:, 0])
    ch = torch.max(p[:, 3], t[:, 3]) - torch.min(p[:, 1], t[:, 1])
    rho2 = ((p[:, 0] + p[:, 2] - t[:, 0] - t[:, 2]) ** 2 + (p[:, 1] + p[:, 3] - t[:, 1] - t[:, 3]) ** 2) / 4
    v = 4 / torch.pi**2 * (torch.atan(tw / (th + eps)) - torch.atan(pw / (ph + eps))) ** 2
    alpha = (v / (1 - iou + v)).detach()
    return 1 - iou + rho2 / (cw**2 + ch**2) + alpha * v


def test_ciou_gradient_is_autograd_with_alpha_detached():
    pred, target = overlapping_pairs(500, seed=11)
    p1, p2 = pred.clone().requires_grad_(), pred.clone().requires_grad_()
    t1, t2 = target.clone().requires_grad_(), target.clone().requires_grad_()
    ours = ciou_loss(p1, t1, reduction="none")
    ref = _ciou_with_detached_alpha(p2, t2)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    w = torch.rand_like(ours)
    torch.testing.assert_close(
        torch.autograd.grad((ours * w).sum(), (p1, t1)), torch.autograd.grad((ref * w).sum(), (p2, t2)),
        rtol=1e-10, atol=1e-12,
    )


def test_ciou_alpha_is_constant_in_backprop():
    # With alpha constant, the gradient is NOT the true derivative, so gradcheck must fail on pairs with
    # different aspect ratios (v > 0). If someone makes alpha differentiable, this test fails.
    pred = torch.tensor([[0.0, 0.0, 4.0, 2.0]], dtype=torch.float64, requires_grad=True)
    target = torch.tensor([[0.5, 0.0, 3.0, 3.0]], dtype=torch.float64)
    assert not torch.autograd.gradcheck(lambda p: ciou_loss(p, target), (pred,), raise_exception=False)
    # ... while the similarity box_iou(kind="ciou") is differentiated exactly.
    assert torch.autograd.gradcheck(lambda p: box_iou(p, target, kind="ciou", aligned=True), (pred,))


def test_ciou_gated_alpha_is_zero_below_half_iou():
    pred, target = overlapping_pairs(2000, seed=5)
    iou = box_iou(pred, target, aligned=True)
    gated = ciou_loss(pred, target, gate_alpha=True, reduction="none")
    diou = ALL_BOX_LOSSES["diou"](pred, target, reduction="none")
    ungated = ciou_loss(pred, target, reduction="none")
    low = iou < 0.5
    assert low.any() and (~low).any()
    torch.testing.assert_close(gated[low], diou[low], rtol=0, atol=1e-15)
    torch.testing.assert_close(gated[~low], ungated[~low], rtol=0, atol=1e-15)


# --- identical boxes ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ALL_BOX_LOSSES))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
def test_identical_boxes_give_exactly_zero(name, dtype):
    # Sides >= 64 so the boxes stay boxes after rounding to bf16 (spacing 32 near 5000). Identical boxes of
    # zero area have IoU 0/0; we define it as 0 (as torchvision and mmdetection do), see docs/losses.md.
    boxes = random_boxes(1000, seed=9, scale=5000, min_size=64, max_size=3000).to(dtype)
    assert torch.all(boxes[:, 2:] > boxes[:, :2])
    loss = ALL_BOX_LOSSES[name](boxes, boxes, reduction="none")
    assert torch.all(loss == 0), loss.abs().max()


@pytest.mark.parametrize("kind", ["iou", "giou", "diou", "ciou"])
def test_identical_boxes_similarity_is_one(kind):
    boxes = random_boxes(500, seed=4, dtype=torch.float32)
    assert torch.all(box_iou(boxes, boxes, kind=kind, aligned=True) == 1)
    assert torch.all(box_iou(boxes, boxes, kind=kind).diagonal() == 1)


# --- degenerate boxes -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ALL_BOX_LOSSES) + ["ciou_gated"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_degenerate_boxes_finite_values_and_gradients(name, dtype):
    fn = (lambda p, t, **kw: ciou_loss(p, t, gate_alpha=True, **kw)) if name == "ciou_gated" else ALL_BOX_LOSSES[name]
    pred = DEGENERATE_PRED.to(dtype).clone().requires_grad_()
    target = DEGENERATE_TARGET.to(dtype).clone().requires_grad_()
    loss = fn(pred, target, reduction="none")
    assert torch.isfinite(loss).all(), loss
    loss.sum().backward()
    assert torch.isfinite(pred.grad).all() and torch.isfinite(target.grad).all(), (pred.grad, target.grad)


@pytest.mark.parametrize("kind", ["iou", "giou", "diou", "ciou"])
def test_degenerate_boxes_box_iou_finite(kind):
    a = DEGENERATE_PRED.clone().requires_grad_()
    b = DEGENERATE_TARGET.clone().requires_grad_()
    sim = box_iou(a, b, kind=kind)
    assert torch.isfinite(sim).all()
    sim.sum().backward()
    assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all()


def test_inverted_box_has_zero_area():
    # A raw head output with x2 < x1 is a box of zero area, not a box with positive "negative x negative"
    # area: (9,9)-(4,4) against (4,4)-(9,9) has IoU 0, not 1.
    assert box_iou(DEGENERATE_PRED[3:4], DEGENERATE_TARGET[3:4], aligned=True).item() == 0.0


# --- fp16 / bf16 / mixed --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(IOU_FAMILY))
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_large_coordinates(name, dtype):
    # Coordinates up to 1e4: areas reach 1e8, far past fp16's max of 65504. Computing in fp16 would give
    # inf areas and NaN IoU; we compute in fp32.
    assert torch.isinf(torch.tensor(1e4, dtype=torch.float16) ** 2)
    pred, target = overlapping_pairs(2000, seed=13)
    pred, target = (pred * 90).to(dtype), (target * 90).to(dtype)
    assert pred.abs().max() > 8000
    pred.requires_grad_()
    loss = IOU_FAMILY[name](pred, target, reduction="none")
    assert loss.dtype == torch.float32
    exact = IOU_FAMILY[name](pred.detach().double(), target.double(), reduction="none")
    torch.testing.assert_close(loss.double(), exact, rtol=1e-5, atol=1e-5)
    loss.sum().backward()
    assert pred.grad.dtype == dtype and torch.isfinite(pred.grad).all()


@pytest.mark.parametrize("dtypes,expected", [
    ((torch.float16, torch.float16), torch.float32),
    ((torch.bfloat16, torch.bfloat16), torch.float32),
    ((torch.float32, torch.float32), torch.float32),
    ((torch.float16, torch.float32), torch.float32),
    ((torch.bfloat16, torch.float16), torch.float32),
    ((torch.float32, torch.float64), torch.float64),
    ((torch.float64, torch.float64), torch.float64),
])
@pytest.mark.parametrize("name", sorted(ALL_BOX_LOSSES))
def test_output_dtype_rule_and_mixed_inputs(dtypes, expected, name):
    pred, target = overlapping_pairs(50, seed=2)
    pred = pred.to(dtypes[0]).requires_grad_()
    target = target.to(dtypes[1]).requires_grad_()
    loss = ALL_BOX_LOSSES[name](pred, target)
    assert loss.dtype == expected
    loss.backward()
    assert pred.grad.dtype == dtypes[0] and target.grad.dtype == dtypes[1]
    assert torch.isfinite(pred.grad).all() and torch.isfinite(target.grad).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.5, 2.0])
def test_focal_saturated_logits_finite(dtype, gamma):
    logits = torch.tensor([-100.0, 100.0, -100.0, 100.0, 0.0, 30.0], dtype=dtype, requires_grad=True)
    targets = torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0, 0.7], dtype=dtype)
    loss = sigmoid_focal_loss(logits, targets, gamma=gamma, reduction="none")
    values = loss.detach()
    assert loss.dtype == torch.float32 and torch.isfinite(loss).all()
    # Confident and right: ~0 loss. Confident and wrong: ~100 * alpha_t * 1.
    assert values[0] < 1e-30 and values[1] < 1e-30
    assert values[2].item() == pytest.approx(0.25 * 100, rel=1e-3)
    assert values[3].item() == pytest.approx(0.75 * 100, rel=1e-3)
    loss.sum().backward()
    assert torch.isfinite(logits.grad).all()
    assert logits.grad.dtype == dtype


def test_smooth_l1_beta_zero_gradient_finite_at_zero_difference():
    pred = torch.tensor([[1.0, 2.0, 3.0, 4.0]], requires_grad=True)
    loss = smooth_l1_loss(pred, pred.detach().clone(), beta=0.0)
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(pred.grad).all()
    assert torch.all(pred.grad == 0)


# --- empty input ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ALL_BOX_LOSSES))
def test_empty_input_is_graph_connected_zero(name):
    pred = torch.zeros(0, 4, requires_grad=True)
    target = torch.zeros(0, 4)
    mean = ALL_BOX_LOSSES[name](pred, target)
    assert mean.item() == 0.0 and mean.requires_grad and mean.grad_fn is not None
    mean.backward()
    assert pred.grad.shape == (0, 4)
    assert ALL_BOX_LOSSES[name](pred, target, reduction="sum").item() == 0.0
    assert ALL_BOX_LOSSES[name](pred, target, reduction="none").shape[0] == 0
    assert ALL_BOX_LOSSES[name](pred, target, avg_factor=0.0).item() == 0.0


def test_empty_focal_and_box_iou():
    logits = torch.zeros(0, 5, requires_grad=True)
    loss = sigmoid_focal_loss(logits, torch.zeros(0, 5))
    assert loss.item() == 0.0 and loss.grad_fn is not None
    assert box_iou(torch.zeros(0, 4), torch.zeros(3, 4)).shape == (0, 3)


# --- torch.compile: no graph breaks, no host sync, no data-dependent shapes ------------------------------


@pytest.mark.parametrize("name", sorted(ALL_BOX_LOSSES) + ["focal", "box_iou_ciou", "module_ciou"])
def test_compile_fullgraph(name):
    torch._dynamo.reset()
    if name == "focal":
        fn, args = sigmoid_focal_loss, (torch.randn(64, 5), (torch.rand(64, 5) > 0.8).float())
    elif name == "box_iou_ciou":
        fn, args = (lambda a, b: box_iou(a, b, kind="ciou")), overlapping_pairs(64, dtype=torch.float32)
    elif name == "module_ciou":
        fn, args = get_box_loss("ciou", loss_weight=2.0), overlapping_pairs(64, dtype=torch.float32)
    else:
        fn, args = ALL_BOX_LOSSES[name], overlapping_pairs(64, dtype=torch.float32)
    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(*args), fn(*args))


@pytest.mark.slow
def test_compile_fullgraph_inductor_ciou_with_backward():
    torch._dynamo.reset()
    pred, target = overlapping_pairs(256, dtype=torch.float32)
    p1, p2 = pred.clone().requires_grad_(), pred.clone().requires_grad_()
    compiled = torch.compile(lambda p, t: ciou_loss(p, t, weight=torch.ones(256)), fullgraph=True)
    out = compiled(p1, target)
    ref = ciou_loss(p2, target, weight=torch.ones(256))
    torch.testing.assert_close(out, ref)
    out.backward()
    ref.backward()
    torch.testing.assert_close(p1.grad, p2.grad)


def test_reference_overlap_never_adds_eps():
    # eps is a lower bound: for boxes far larger than eps the value is independent of eps.
    pred, target = overlapping_pairs(100)
    for kind in ("iou", "giou", "diou"):
        a = aligned_overlap(pred, target, kind, 1e-7)[0]
        b = aligned_overlap(pred, target, kind, 1e-3)[0]
        assert torch.equal(a, b)
