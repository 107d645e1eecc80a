"""The fused kernels as torch custom ops (boxloss/boxes/kernels/ops.py): torch.library.opcheck for every
op and kind, and every registry loss under torch.compile(fullgraph=True) runs the fused kernel (no graph
break, no fallback to the reference) with the values and gradients of eager mode."""

import pytest
import torch

from boxloss.boxes import available_box_losses, ciou_loss, get_box_loss
from boxloss.boxes.kernels import backends, cpu_kernels_available, cpu_node, ops
from boxloss.boxes.kernels.kinds import EXPONENT_KINDS, KINDS, PER_BOX_EXTRA, READS_EXTRA, VARIANT_POW

from box_cases import overlapping_pairs

pytestmark = pytest.mark.skipif(not cpu_kernels_available(), reason="no C++ compiler for the fused kernels")


def _args(kind: int, dtype, n=12, seed=0):
    p, t = overlapping_pairs(n, dtype=dtype, seed=seed)
    extra = torch.full((n,), 900.0, dtype=dtype) if kind in PER_BOX_EXTRA else torch.full((1,), 0.4, dtype=dtype)
    variant = VARIANT_POW if kind in EXPONENT_KINDS else 0
    # p0 = 0.35 is a valid exponent, Inner-IoU half-ratio and Shape-IoU scale; p1 = log(alpha), p2 = delta of Wise-IoU v3
    return p.contiguous(), t.contiguous(), extra, kind, 0, variant, 0, 1e-7, 0.35, 0.5, 1.5


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", sorted(KINDS.values()), ids=sorted(KINDS, key=KINDS.get))
def test_opcheck_box_loss(kind, dtype):
    p, t, *rest = _args(kind, dtype)
    torch.library.opcheck(ops.box_loss, (p.requires_grad_(), t.requires_grad_(), *rest))


@pytest.mark.parametrize("flags", [0, 1, 2, 3])
def test_opcheck_ciou_flags_and_backward_op(flags):
    p, t, extra, kind, fmt, variant, _, eps, p0, p1, p2 = _args(KINDS["ciou"], torch.float64)
    torch.library.opcheck(ops.box_loss, (p.requires_grad_(), t, extra, kind, 2, variant, flags, eps, p0, p1, p2))
    for need_p, need_t in ((True, True), (True, False), (False, True)):
        grad = torch.rand(p.shape[0], dtype=p.dtype)
        torch.library.opcheck(ops.box_loss_backward,
                              (grad, p.detach(), t, extra, kind, 1, variant, flags, eps, p0, p1, p2, need_p, need_t))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", sorted(KINDS.values()), ids=sorted(KINDS, key=KINDS.get))
def test_opcheck_box_loss_reduced(kind, dtype):
    p, t, extra, *rest = _args(kind, dtype)
    # kinds that do not read the extra input take None (what the dispatch passes them)
    for ex in (extra,) if kind in READS_EXTRA else (extra, None):
        for reduction, need_p, need_t in (("mean", True, True), ("sum", True, False), ("mean", False, True),
                                          ("sum", False, False)):
            torch.library.opcheck(ops.box_loss_reduced, (p.detach().requires_grad_(need_p),
                                                         t.detach().requires_grad_(need_t), ex, *rest, reduction,
                                                         need_p, need_t))


def test_double_backward_through_a_reduced_op_raises():
    """The ops' backward is the kernels' hand-written derivative: a backward with create_graph=True raises,
    rather than giving a second derivative of 0."""
    p, t, extra, *rest = _args(KINDS["diou"], torch.float64)
    p.requires_grad_()
    loss = ops.box_loss_reduced(p, t, extra, *rest, "mean", True, False)[0]
    with pytest.raises(RuntimeError, match="not differentiable"):
        torch.autograd.grad(loss, p, create_graph=True)
    first, = torch.autograd.grad(ops.box_loss_reduced(p, t, extra, *rest, "mean", True, False)[0], p)
    assert torch.isfinite(first).all()


def test_opcheck_smooth_l1():
    p, t = overlapping_pairs(12, dtype=torch.float32, seed=3)
    torch.library.opcheck(ops.smooth_l1, (p.reshape(-1).requires_grad_(), t.reshape(-1), 0.25))
    torch.library.opcheck(ops.smooth_l1_backward, (torch.rand(48), p.reshape(-1), t.reshape(-1), 0.0, True, True))
    for reduction, need_p, need_t in (("mean", True, True), ("sum", True, False), ("mean", False, True),
                                      ("sum", False, False)):
        for beta in (0.0, 0.25):
            torch.library.opcheck(ops.smooth_l1_reduced, (p.reshape(-1).detach().requires_grad_(need_p),
                                                          t.reshape(-1).detach().requires_grad_(need_t), beta,
                                                          reduction, need_p, need_t))


@pytest.fixture
def kernel_calls(monkeypatch):
    """Counts the calls of the CPU backend's launchers."""
    calls = []
    module = backends.cpu()
    for name in ("box_loss_forward", "box_loss_backward", "box_loss_forward_backward", "smooth_l1_forward",
                 "smooth_l1_backward", "smooth_l1_forward_backward"):
        real = getattr(module, name)

        def counted(*args, _real=real, _name=name):
            calls.append(_name)
            return _real(*args)

        monkeypatch.setattr(module, name, counted)
    real_node = cpu_node.box_loss_one_pass

    def node_counted(*args):  # the C++ autograd node runs the forward+backward kernel call itself
        out = real_node(*args)
        if out is not None:
            calls.append("box_loss_forward_backward")
        return out

    monkeypatch.setattr(cpu_node, "box_loss_one_pass", node_counted)
    return calls


INDUCTOR = {"ciou", "eiou", "smooth_l1"}
KWARGS = {"mpdiou": {"img_size": (64.0, 48.0)}, "nwd": {"constant": 12.8}}
# losses without a fused kernel (yet): they must compile too, with eager's numbers
UNFUSED = {"nwd", "focaler_iou", "piou", "piou_v2", "balanced_l1"}  # the rest with aot_eager: the same graph capture, a cheaper compile


@pytest.mark.parametrize("name", available_box_losses())
def test_compiled_loss_runs_the_fused_kernel(name, kernel_calls):
    torch._dynamo.reset()  # each loss module is a new compile of the same forward: keep under the recompile limit
    pred, target = overlapping_pairs(64, dtype=torch.float32, seed=11)
    # fresh modules each (Wise-IoU v3's running mean is state)
    eager_mod, compiled_mod = get_box_loss(name, **KWARGS.get(name, {})), get_box_loss(name, **KWARGS.get(name, {}))
    compiled = torch.compile(compiled_mod, fullgraph=True, backend="inductor" if name in INDUCTOR else "aot_eager")

    p1 = pred.clone().requires_grad_()
    loss1 = compiled(p1, target)
    loss1.backward()
    if name in UNFUSED:
        assert kernel_calls == []
    elif name in ("l1", "smooth_l1"):
        assert kernel_calls == ["smooth_l1_forward_backward"], kernel_calls  # the mean: one pass
    else:
        # the box losses' mean: one pass for the loss and its gradient, no backward kernel (Wise-IoU v3 also
        # runs a forward for its running mean of 1 - IoU)
        assert kernel_calls.count("box_loss_forward_backward") == 1 and "box_loss_backward" not in kernel_calls, \
            kernel_calls

    p2 = pred.clone().requires_grad_()
    loss2 = eager_mod(p2, target)
    loss2.backward()
    torch.testing.assert_close(loss1, loss2, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(p1.grad, p2.grad, rtol=1e-5, atol=1e-7)


def test_paper_grad_mode_compiles_because_only_the_fused_path_has_it(kernel_calls):
    pred, target = overlapping_pairs(32, dtype=torch.float64, seed=5)
    fn = lambda p, t: ciou_loss(p, t, grad_mode="paper")  # noqa: E731
    p1, p2 = pred.clone().requires_grad_(), pred.clone().requires_grad_()
    torch.compile(fn, fullgraph=True, backend="aot_eager")(p1, target).backward()
    fn(p2, target).backward()
    # compiled (the custom op) and eager: the one-pass forward+backward each
    assert kernel_calls == ["box_loss_forward_backward", "box_loss_forward_backward"]
    torch.testing.assert_close(p1.grad, p2.grad, rtol=0, atol=0)


def test_reference_impl_under_compile_stays_the_reference(kernel_calls):
    pred, target = overlapping_pairs(16, dtype=torch.float32, seed=2)
    out = torch.compile(lambda p, t: ciou_loss(p, t, impl="reference"), fullgraph=True, backend="aot_eager")(pred, target)
    assert kernel_calls == [] and torch.isfinite(out)


def test_a_first_call_inside_torch_compile_builds_and_runs_the_fused_kernel(tmp_path):
    """In a fresh process whose first loss call is compiled with fullgraph=True, the kernel library is
    loaded while tracing (the availability check is a compile-time constant) and the op runs."""
    import os
    import subprocess
    import sys

    code = (
        "import torch, boxloss.boxes as B\n"
        "from boxloss.boxes.kernels import backends\n"
        "calls = []\n"
        "real = backends.cpu().box_loss_forward_backward\n"
        "backends.cpu().box_loss_forward_backward = lambda *a: calls.append(1) or real(*a)\n"
        "p = torch.tensor([[0., 0., 2., 2.], [1., 1., 3., 4.]], requires_grad=True)\n"
        "t = torch.tensor([[1., 1., 3., 3.], [1., 0., 3., 4.]])\n"
        "f = torch.compile(lambda a, b: B.ciou_loss(a, b, grad_mode='paper'), fullgraph=True, backend='aot_eager')\n"
        "f(p, t).backward()\n"
        "assert calls == [1] and torch.isfinite(p.grad).all(), calls\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-3000:]
