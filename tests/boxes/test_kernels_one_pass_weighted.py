"""The one-pass path of a weighted / avg_factor sum or mean on CPU (``kernels.functions.BoxLossWeightedOnePass``,
the call detectors make: ``loss(pred, target, weight=w, avg_factor=n)``).

Its contract: for an incoming gradient of 1 (``loss.backward()``, or a loss added to others) the gradient has
the bits of the two-pass path -- the per-box loss, then ``_checks.finish_box_loss`` -- because the kernel's
pass is given exactly the per-box gradient autograd would give; with a weight the value has those bits too
(without one the kernel sums, in double). Another incoming gradient scales the result: close, not equal.
Checked against the two-pass composition and against the reference path, for one-value, per-box and
per-coordinate weights, float / int / tensor avg_factor, a batch shape, fp32 and fp64, and the kinds that
read an extra input; plus the graph's single node, the fallbacks (a weight or avg_factor that requires grad),
a retained second backward, no boxes, and avg_factor with reduction="sum".
"""

import pytest
import torch

from boxloss.boxes import ciou_loss, giou_loss, kernels, siou_loss
from boxloss.boxes._checks import finish_box_loss

from box_cases import EXTRA_INPUT_LOSSES, overlapping_pairs
from fused_agreement import assert_close_scaled

pytestmark = pytest.mark.skipif(not kernels.cpu_kernels_available(), reason="no C++ compiler for the fused kernels")

LOSSES = {
    "ciou": ciou_loss,
    "giou": giou_loss,
    "siou": siou_loss,
    **EXTRA_INPUT_LOSSES,  # a one-value and a per-box extra input
}
BATCH = (3, 40)


def _cases(dtype):
    g = torch.Generator().manual_seed(5)
    w_box = torch.rand(BATCH, generator=g, dtype=torch.float64).to(dtype)
    w_coord = torch.rand(BATCH + (4,), generator=g, dtype=torch.float64).to(dtype)
    return {
        "avg_float": dict(avg_factor=17.3),
        "avg_int": dict(avg_factor=23),
        "avg_tensor": dict(avg_factor=torch.tensor(41.0)),
        "weight_box": dict(weight=w_box),
        "weight_coord": dict(weight=w_coord),
        "weight_avg": dict(weight=w_box, avg_factor=7.0),
        "weight_sum": dict(weight=w_box, reduction="sum"),
    }


def _run(name, kw, path, upstream=1.0, dtype=torch.float32):
    """(value, pred's gradient, the loss's grad_fn name) by the fused one-pass call, the two-pass composition
    (per-box fused loss + finish_box_loss) or the reference path."""
    pred, target = overlapping_pairs(BATCH[0] * BATCH[1], dtype=dtype, seed=13)
    p = pred.view(BATCH + (4,)).clone().requires_grad_(True)
    t = target.view(BATCH + (4,))
    kw = dict(kw)
    reduction = kw.pop("reduction", "mean")
    fn = LOSSES[name]
    if path == "two_pass":
        loss = finish_box_loss(fn(p, t, reduction="none", impl="fused"), reduction, kw.get("weight"),
                               kw.get("avg_factor"))
    else:
        loss = fn(p, t, reduction=reduction, impl="fused" if path == "one_pass" else "reference", **kw)
    (loss * upstream if upstream != 1.0 else loss).backward()
    return loss.detach(), p.grad, loss.grad_fn.name()


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("case", sorted(_cases(torch.float32)))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gradient_has_the_two_pass_bits(name, case, dtype):
    kw = _cases(dtype)[case]
    value, grad, node = _run(name, kw, "one_pass", dtype=dtype)
    value2, grad2, _ = _run(name, kw, "two_pass", dtype=dtype)
    assert "BoxLossWeightedOnePass" in node
    assert torch.equal(grad, grad2)
    if "weight" in kw:
        assert torch.equal(value, value2)
    else:  # the kernel's double sum against torch's float sum
        assert_close_scaled(value, value2, 1e-6 if dtype == torch.float32 else 1e-13)


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("case", ["avg_tensor", "weight_coord", "weight_avg"])
def test_another_incoming_gradient_and_the_reference_agree(name, case):
    kw = _cases(torch.float32)[case]
    one = _run(name, kw, "one_pass", upstream=2.5)
    for other in (_run(name, kw, "two_pass", upstream=2.5), _run(name, kw, "reference", upstream=2.5)):
        assert_close_scaled(one[0], other[0], 1e-6)
        assert_close_scaled(one[1], other[1], 1e-6)


def test_weight_or_avg_factor_that_requires_grad_takes_the_two_pass_path():
    pred, target = overlapping_pairs(20, seed=2)
    p = pred.clone().requires_grad_(True)
    w = torch.rand(20, requires_grad=True)
    loss = ciou_loss(p, target, weight=w, impl="fused")
    assert "WeightedOnePass" not in loss.grad_fn.name()
    loss.backward()
    assert w.grad is not None and p.grad is not None
    avg = torch.tensor(9.0, requires_grad=True)
    ciou_loss(pred.clone().requires_grad_(True), target, avg_factor=avg, impl="fused").backward()
    assert avg.grad is not None and avg.grad.item() < 0  # d (S / a) / d a = -S / a^2


@pytest.mark.parametrize("upstream", [1.0, 3.0])
def test_second_backward_through_a_retained_graph_gives_the_same_bits(upstream):
    pred, target = overlapping_pairs(50, seed=8)
    p = pred.clone().requires_grad_(True)
    loss = giou_loss(p, target, weight=torch.rand(50), avg_factor=11.0, impl="fused") * upstream
    first, = torch.autograd.grad(loss, p, retain_graph=True)
    second, = torch.autograd.grad(loss, p)
    assert torch.equal(first, second)


def test_no_boxes_give_zero_connected_to_the_graph():
    p = torch.zeros(0, 4, requires_grad=True)
    loss = ciou_loss(p, torch.zeros(0, 4), weight=torch.zeros(0), avg_factor=4.0, impl="fused")
    assert loss.item() == 0.0
    loss.backward()
    assert p.grad.shape == (0, 4)


def test_avg_factor_with_sum_and_a_bad_weight_raise_as_the_two_pass_path_does():
    pred, target = overlapping_pairs(6, seed=3)
    p = pred.clone().requires_grad_(True)
    with pytest.raises(ValueError, match='avg_factor cannot be used with reduction="sum"'):
        ciou_loss(p, target, reduction="sum", avg_factor=3.0, impl="fused")
    with pytest.raises(ValueError, match=r"weight has shape \[5\]"):
        ciou_loss(p, target, weight=torch.ones(5), impl="fused")


def test_without_grad_the_value_is_the_two_pass_one():
    pred, target = overlapping_pairs(30, seed=6)
    w = torch.rand(30)
    with torch.no_grad():
        value = ciou_loss(pred, target, weight=w, avg_factor=5.0, impl="fused")
    assert torch.equal(value, finish_box_loss(ciou_loss(pred, target, reduction="none", impl="fused"), "mean", w, 5.0))
