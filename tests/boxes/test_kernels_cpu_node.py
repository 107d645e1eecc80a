"""The C++ autograd node of the one-pass sum / mean (boxloss/boxes/kernels/cpu_node.py over
cpu/autograd_node.cpp): it builds where ninja and a C++ compiler exist (a failed build is a failure, never
a skip), gives the Python node's values and gradients bit for bit, refuses create_graph, is used by the
dispatch, and is skipped -- with the reason -- when disabled. Its one-pass semantics (retained second
backward, in-place changes, no boxes, the target's gradient) are the parametrised tests of
test_kernels_one_pass.py.
"""

import os
import shutil
import subprocess
import sys

import pytest
import torch

from boxloss.boxes import ciou_loss, giou_loss, iou_loss, kernels, siou_loss
from boxloss.boxes.kernels import cpu_node

from box_cases import EXTRA_INPUT_LOSSES, overlapping_pairs

pytestmark = [
    pytest.mark.skipif(not kernels.cpu_kernels_available(), reason="no C++ compiler for the fused kernels"),
    pytest.mark.skipif(shutil.which("ninja") is None, reason="ninja is not installed: no C++ autograd node"),
]
LOSSES = {
    "iou": iou_loss,
    "giou": giou_loss,
    "ciou": ciou_loss,
    "siou": siou_loss,
    **EXTRA_INPUT_LOSSES,  # a one-value and a per-box extra input
}


def test_the_node_builds_and_loads():
    assert cpu_node.module() is not None, cpu_node.why_not()
    assert cpu_node.why_not() is None
    assert cpu_node.module().abi_version() == kernels.cpu.ABI_VERSION


def _run(name, reduction, dtype, upstream, python_node):
    pred, target = overlapping_pairs(300, dtype=dtype, seed=31)
    p = pred.clone().requires_grad_(True)
    t = target.clone().requires_grad_(True)
    saved = (cpu_node._NODE.module, cpu_node._NODE.tried)
    if python_node:
        cpu_node._reset_for_tests(None, tried=True)
    try:
        loss = LOSSES[name](p, t, reduction=reduction, impl="fused")
    finally:
        cpu_node._reset_for_tests(*saved)
    (loss * upstream).backward()
    return loss.grad_fn.name(), loss.detach(), p.grad, t.grad


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("upstream", [1.0, 2.5])
def test_same_bits_as_the_python_node(name, reduction, dtype, upstream):
    cpp = _run(name, reduction, dtype, upstream, python_node=False)
    py = _run(name, reduction, dtype, upstream, python_node=True)
    assert "BoxLossOnePassNode" in cpp[0] and py[0] == "BoxLossOnePassBackward"
    for a, b in zip(cpp[1:], py[1:]):
        assert torch.equal(a, b)


def test_the_dispatch_uses_the_cpp_node():
    pred, target = overlapping_pairs(10, seed=1)
    loss = ciou_loss(pred.clone().requires_grad_(True), target, impl="fused")
    assert "CppNode" in loss.grad_fn.name() and "BoxLossOnePassNode" in loss.grad_fn.name()


def test_create_graph_raises():
    pred, target = overlapping_pairs(10, seed=2)
    p = pred.clone().requires_grad_(True)
    loss = giou_loss(p, target, impl="fused")
    with pytest.raises(RuntimeError, match="not differentiable"):
        torch.autograd.grad(loss, p, create_graph=True)


def _python(code: str, **env):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                          env={**os.environ, **env})


def test_disabled_by_the_environment_and_cached_loads_say_nothing():
    code = ("import torch, boxloss.boxes as B\nfrom boxloss.boxes.kernels import cpu_node\n"
            "p = torch.tensor([[0., 0., 2., 2.]], requires_grad=True)\n"
            "B.ciou_loss(p, torch.tensor([[1., 1., 3., 3.]]), impl='fused').backward()\n"
            "print(cpu_node.why_not())\n")
    off = _python(code, BOXLOSS_CPU_NODE="0")
    assert off.returncode == 0, off.stderr
    assert off.stdout.strip() == "disabled by BOXLOSS_CPU_NODE=0"
    on = _python(code)  # built by this session's earlier tests: a cached load, silent
    assert on.returncode == 0, on.stderr
    assert on.stdout.strip() == "None" and "compiling" not in on.stderr


def test_bad_inputs_raise_instead_of_reaching_the_kernel():
    node, fn = cpu_node.module(), kernels.cpu.box_loss_address()
    boxes = torch.rand(5, 4, requires_grad=True)
    cfg = (3, 0, 0, 0, 1e-7, 0.0, 0.0, 0.0)
    for p, t, extra in [(boxes, torch.rand(4, 4), None), (boxes, torch.rand(5, 4, dtype=torch.float64), None),
                        (torch.rand(5, 3, requires_grad=True), torch.rand(5, 3), None),
                        (boxes, torch.rand(5, 4), torch.rand(3))]:
        with pytest.raises(RuntimeError, match="boxloss: the"):
            node.box_loss_one_pass(p, t, extra, fn, *cfg, 2)
