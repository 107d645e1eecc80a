"""The one-pass path of an unweighted sum / mean on CPU (``kernels.functions.BoxLossOnePass``, its C++
twin of ``cpu_node.py`` -- every test runs with both -- and the kernel's ``reduce`` code): the kernel
computes the loss, its sum and the gradient in one pass over the boxes, and the backward only scales that
gradient.

Checked here: values and gradients against the reference path (upstream gradient 1, as ``loss.backward()``
gives, and another), gradcheck (which also requires a repeated backward to give the same bits), a second
backward through a retained graph, the target's gradient alone, no boxes, the graph's single node, and
the kernel's sum: independent of the thread count and equal to the per-box losses' sum.
"""

import shutil

import pytest
import torch

from boxloss.boxes import ciou_loss, diou_loss, giou_loss, iou_loss, l1_loss, siou_loss, smooth_l1_loss
from boxloss.boxes import kernels
from boxloss.boxes.kernels import cpu, cpu_node
from boxloss.boxes.kernels.kinds import KINDS

from box_cases import EXTRA_INPUT_LOSSES, overlapping_pairs
from fused_agreement import assert_close_scaled

pytestmark = pytest.mark.skipif(not kernels.cpu_kernels_available(), reason="no C++ compiler for the fused kernels")


@pytest.fixture(autouse=True, params=["cpp_node", "python_node"])
def one_pass_node(request):
    """Every test runs with the C++ autograd node (cpu_node.py) and with the Python one (functions.py)."""
    if request.param == "cpp_node":
        if cpu_node.module() is None:
            if shutil.which("ninja") is None:
                pytest.skip("ninja is not installed: no C++ autograd node (the Python node serves)")
            pytest.fail(f"the C++ autograd node did not build: {cpu_node.why_not()}")
        yield request.param
        return
    saved = (cpu_node._NODE.module, cpu_node._NODE.tried)
    cpu_node._reset_for_tests(None, tried=True)
    yield request.param
    cpu_node._reset_for_tests(*saved)

LOSSES = {
    "iou": iou_loss,
    "giou": giou_loss,
    "diou": diou_loss,
    "ciou": ciou_loss,
    "siou": siou_loss,
    **EXTRA_INPUT_LOSSES,  # a one-value and a per-box extra input
    "smooth_l1": lambda p, t, **kw: smooth_l1_loss(p, t, beta=0.5, **kw),
    "l1": l1_loss,
}
TOL = {torch.float32: 1e-6, torch.float64: 1e-12}


def _run(fn, pred, target, impl, reduction, upstream, grad_target=False):
    p = pred.detach().clone().requires_grad_(True)
    t = target.detach().clone().requires_grad_(grad_target)
    loss = fn(p, t, reduction=reduction, impl=impl)
    (loss * upstream).backward()
    return loss.detach(), p.grad, t.grad


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("upstream", [1.0, 2.5])
def test_one_pass_agrees_with_reference(name, reduction, dtype, upstream):
    pred, target = overlapping_pairs(500, dtype=dtype, seed=21)
    fused = _run(LOSSES[name], pred, target, "fused", reduction, upstream, grad_target=True)
    ref = _run(LOSSES[name], pred, target, "reference", reduction, upstream, grad_target=True)
    for a, b in zip(fused, ref):
        assert_close_scaled(a, b, TOL[dtype])


def test_reduced_loss_is_one_node():
    pred, target = overlapping_pairs(10, seed=1)
    loss = ciou_loss(pred.clone().requires_grad_(True), target, impl="fused")
    assert "BoxLossOnePass" in loss.grad_fn.name()
    assert loss.grad_fn.next_functions[0][0].name().endswith("AccumulateGrad")  # no view / mean in between


@pytest.mark.parametrize("fn", [giou_loss, diou_loss])  # (CIoU's alpha is a constant in backprop: no gradcheck)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_gradcheck_through_the_one_pass_path(fn, reduction):
    pred, target = overlapping_pairs(12, dtype=torch.float64, seed=4)
    p = pred.clone().requires_grad_(True)
    t = target.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: fn(a, b, reduction=reduction, impl="fused"), (p, t))


@pytest.mark.parametrize("upstream", [1.0, 3.0])
def test_second_backward_through_a_retained_graph_gives_the_same_bits(upstream):
    pred, target = overlapping_pairs(50, seed=8)
    p = pred.clone().requires_grad_(True)
    loss = giou_loss(p, target, impl="fused") * upstream
    first, = torch.autograd.grad(loss, p, retain_graph=True)
    second, = torch.autograd.grad(loss, p, retain_graph=True)
    third, = torch.autograd.grad(loss, p)
    assert torch.equal(first, second) and torch.equal(first, third)
    p.grad = None
    (giou_loss(p, target, impl="fused") * upstream).backward()
    assert torch.equal(p.grad, first)


def test_second_backward_without_retain_graph_raises_as_autograd_does():
    pred, target = overlapping_pairs(20, seed=9)
    p = pred.clone().requires_grad_(True)
    loss = ciou_loss(p, target, impl="fused")
    loss.backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        loss.backward()


def test_an_input_changed_in_place_before_a_retained_second_backward_is_detected():
    pred, target = overlapping_pairs(20, seed=10)
    p = pred.clone().requires_grad_(True)
    loss = ciou_loss(p, target, impl="fused")
    torch.autograd.grad(loss, p, retain_graph=True)
    with torch.no_grad():
        p.add_(0.5)  # an optimizer step
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        torch.autograd.grad(loss, p)


def test_gradient_of_the_target_alone():
    pred, target = overlapping_pairs(40, dtype=torch.float64, seed=3)
    t = target.clone().requires_grad_(True)
    diou_loss(pred, t, reduction="sum", impl="fused").backward()
    t_ref = target.clone().requires_grad_(True)
    diou_loss(pred, t_ref, reduction="sum", impl="reference").backward()
    assert_close_scaled(t.grad, t_ref.grad, 1e-12)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_no_boxes_give_zero_and_an_empty_gradient(reduction):
    p = torch.zeros(0, 4, requires_grad=True)
    loss = ciou_loss(p, torch.zeros(0, 4), reduction=reduction, impl="fused")
    assert loss.shape == () and loss.item() == 0.0
    loss.backward()
    assert p.grad.shape == (0, 4)


def test_kernel_sum_is_independent_of_the_thread_count_and_matches_the_per_box_losses():
    """Above the kernels' threshold (262,144 boxes) two threads split the chunks; the chunk sums are added
    in order, so the sum is the same bits with one thread or two."""
    pred, target = (x.contiguous() for x in overlapping_pairs(300_000, seed=12))
    cfg = (KINDS["ciou"], 0, 0, 0, 1e-7, 0.0, 0.0, 0.0)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = cpu.box_loss_forward(*cfg, pred, target, None, "sum")
        one_pass_1 = cpu.box_loss_forward_backward(*cfg, pred, target, None, 0.5, True, True, "mean")
        torch.set_num_threads(2)
        two = cpu.box_loss_forward(*cfg, pred, target, None, "sum")
        mean = cpu.box_loss_forward(*cfg, pred, target, None, "mean")
        one_pass_2 = cpu.box_loss_forward_backward(*cfg, pred, target, None, 0.5, True, True, "mean")
    finally:
        torch.set_num_threads(threads)
    per_box = cpu.box_loss_forward(*cfg, pred, target, None).double().sum()
    assert torch.equal(one, two) and one.shape == ()
    for a, b in zip(one_pass_1, one_pass_2):  # the training path too: loss and both gradients
        assert torch.equal(a, b)
    assert torch.equal(one_pass_2[0], mean)
    torch.testing.assert_close(one.double(), per_box, rtol=1e-6, atol=0)
    torch.testing.assert_close(mean.double(), per_box / len(pred), rtol=1e-6, atol=0)


def test_smooth_l1_kernel_sum_is_independent_of_the_thread_count():
    """Smooth L1 takes threads from 16 x 262,144 elements; its chunk sums are added in order too."""
    pred, target = (x.reshape(-1).contiguous() for x in overlapping_pairs(1_100_000, seed=13))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = cpu.smooth_l1_forward(pred, target, 0.5, "sum")
        one_pass_1 = cpu.smooth_l1_forward_backward(pred, target, 0.5, 1.0, True, False, "sum")
        torch.set_num_threads(2)
        two = cpu.smooth_l1_forward(pred, target, 0.5, "sum")
        one_pass_2 = cpu.smooth_l1_forward_backward(pred, target, 0.5, 1.0, True, False, "sum")
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, two) and torch.equal(one_pass_1[0], one) and torch.equal(one_pass_2[0], one)
    assert torch.equal(one_pass_1[1], one_pass_2[1]) and one_pass_1[2] is None
    torch.testing.assert_close(one.double(), cpu.smooth_l1_forward(pred, target, 0.5).double().sum(), rtol=1e-6, atol=0)


def test_bad_reduction_code_is_refused():
    pred, target = overlapping_pairs(4, seed=2)
    with pytest.raises(ValueError, match="reduction='max' is not supported"):
        cpu.box_loss_forward(KINDS["iou"], 0, 0, 0, 1e-7, 0.0, 0.0, 0.0, pred.contiguous(), target.contiguous(), None,
                             "max")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_compute_in_fp32_and_get_gradients_in_their_dtype(dtype):
    pred, target = overlapping_pairs(200, seed=17)
    fused = _run(ciou_loss, pred.to(dtype), target.to(dtype), "fused", "mean", 1.0, grad_target=True)
    ref = _run(ciou_loss, pred.to(dtype), target.to(dtype), "reference", "mean", 1.0, grad_target=True)
    assert fused[0].dtype == torch.float32 and fused[1].dtype == dtype and fused[2].dtype == dtype
    for a, b in zip(fused, ref):
        assert_close_scaled(a, b, 1e-6)
