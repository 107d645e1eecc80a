"""The public losses on their CUDA path: the fused dispatch (``impl=``, dtype casts, broadcasting, weights,
one-sided gradients, empty input, the fallbacks when Triton is missing, fails or cannot take the dtype) over
the Triton kernels, which Triton's interpreter runs on CPU (TRITON_INTERPRET=1).

Every variant of the core losses (CIoU's "paper" gradient included) and of the newer losses, in every box
format, against the C++ kernels (test_kernels_dispatch.py and test_kernels_dispatch_newer.py check those
against the reference) and against the reference path (CIoU's "paper" gradient has none: the C++ kernels
only), within 1e-6 normwise (``fused_agreement.assert_close_scaled``). The Triton launchers on their own
(every kind, flag and variant; gradient strides; argument checks) are tested in test_kernels_triton.py.

Interpreter isolation: ``TRITON_INTERPRET=1`` is set only while the module-scoped fixture ``interp`` imports
private copies of the Triton modules (``fused_agreement.interpreter_imports``), and the function-scoped
fixture ``triton_path`` installs them for ``backends.triton()`` and sets ``backends.TRITON_ON_CPU`` for one
test only (``fused_agreement.triton_on_cpu``), restoring both after it. No other test, nor this file's
CUDA tests, sees the interpreter. On a machine with a GPU the CUDA tests run the compiled kernels through the
public losses (``.ci/gpu``).
"""

import importlib.util
import os
import warnings

import pytest
import torch

from boxloss.boxes import box_convert, ciou_loss, eiou_loss, siou_loss, smooth_l1_loss
from boxloss.boxes import kernels
from boxloss.boxes.kernels import backends

from box_cases import overlapping_pairs, random_boxes
from fused_agreement import assert_close_scaled, cpu_kernels, interpreter_imports, run_loss, triton_on_cpu
from test_kernels_dispatch import FNS as CORE_FNS
from test_kernels_dispatch import VARIANTS as CORE_VARIANTS
from test_kernels_dispatch_newer import DEGENERATE_P, DEGENERATE_T
from test_kernels_dispatch_newer import FNS as NEWER_FNS
from test_kernels_dispatch_newer import VARIANTS as NEWER_VARIANTS

if importlib.util.find_spec("triton") is None:  # a missing tool: the only reason to skip
    pytest.skip("triton is not installed", allow_module_level=True)

FNS = {**CORE_FNS, **NEWER_FNS}
PAPER = ("ciou", {"grad_mode": "paper"})
VARIANTS = CORE_VARIANTS + [PAPER] + NEWER_VARIANTS
# the variants the reference path has (not CIoU's "paper" gradient)
WITH_REFERENCE = [v for v in VARIANTS if v is not PAPER]
# IoU's three modes, GIoU, DIoU, CIoU, and the first (default-argument) variant of some newer losses
SOME = CORE_VARIANTS[:6] + [next(v for v in NEWER_VARIANTS if v[0] == n)
                            for n in ("eiou", "siou", "wiou_v1", "mpdiou", "shape_iou")]
NEEDS_CPP = pytest.mark.skipif(not kernels.cpu_kernels_available(), reason="no C++ compiler for the fused kernels")


def _ids(v):
    return v[0] + "".join(f"-{k}={x.item() if isinstance(x, torch.Tensor) else x}" for k, x in v[1].items())


@pytest.fixture(scope="module")
def interp():
    """Private interpreted copies of the Triton modules (triton_geometry, triton_losses)."""
    with interpreter_imports() as modules:
        pass
    assert type(modules[-1]._box_loss_kernel).__name__ == "InterpretedFunction"
    return modules


@pytest.fixture
def triton_path(interp):
    """For this test only: CPU tensors reach the interpreted Triton kernels through the public losses."""
    with triton_on_cpu(interp) as module:
        yield module


def _close(a, b, rtol=1e-6):
    if a is not None:
        assert torch.isfinite(a.float()).all(), "non-finite values"
    assert_close_scaled(a, b, rtol)


def _three_ways(name, kw, pred, target, **extra):
    """The public loss with impl="fused" on the Triton path against the C++ kernels and the reference path
    (CIoU's "paper" gradient: the C++ kernels only); returns the Triton path's (loss, grad pred, grad target)."""
    tri = run_loss(FNS[name], pred, target, "fused", **kw, **extra)
    with cpu_kernels():
        cpp = run_loss(FNS[name], pred, target, "fused", **kw, **extra)
        ref = None if (name, kw) == PAPER else run_loss(FNS[name], pred, target, "reference", **kw, **extra)
    for a, b in zip(tri, cpp):
        _close(a, b)
    if ref is not None:
        for a, c in zip(tri, ref):
            _close(a, c)
    return tri


# ---------------------------------------------------------------- routing


@NEEDS_CPP
def test_public_losses_run_the_triton_kernels(triton_path, monkeypatch):
    """With the routing on, a fused box loss runs the Triton launchers, never the C++ ones (forward without a
    graph, forward + backward with one); Smooth L1 has no Triton kernel and stays on C++; ``cpu_kernels()``
    routes back to C++."""
    calls = []
    for backend, label in ((triton_path, "triton"), (backends.cpu(), "cpp")):
        for fn in ("box_loss_forward", "box_loss_backward"):
            real = getattr(backend, fn)
            monkeypatch.setattr(backend, fn, lambda *a, _real=real, _c=(label, fn): calls.append(_c) or _real(*a))
    pred, target = overlapping_pairs(16, dtype=torch.float32, seed=8)
    ciou_loss(pred, target)
    eiou_loss(pred.half(), target, impl="fused")
    p = pred.clone().requires_grad_(True)
    siou_loss(p, target).backward()
    assert calls == [("triton", "box_loss_forward")] * 3 + [("triton", "box_loss_backward")]
    calls.clear()
    with cpu_kernels():
        ciou_loss(pred, target)
    assert calls == [("cpp", "box_loss_forward")]
    assert torch.isfinite(smooth_l1_loss(pred, target, impl="fused"))


# ---------------------------------------------------------------- agreement


@NEEDS_CPP
@pytest.mark.parametrize("variant", VARIANTS, ids=_ids)
@pytest.mark.parametrize("fmt", ["xyxy", "xywh", "cxcywh"])
def test_agrees(triton_path, variant, fmt):
    """Overlapping, disjoint, identical and degenerate (zero width, 0x0, x2 < x1) pairs; identical boxes give
    exactly 0."""
    name, kw = variant
    p, t = overlapping_pairs(120, dtype=torch.float32, seed=1)
    pred = torch.cat([p, random_boxes(20, dtype=torch.float32, seed=3) + 300, t[:10], torch.tensor(DEGENERATE_P).float()])
    target = torch.cat([t, random_boxes(20, dtype=torch.float32, seed=4), t[:10], torch.tensor(DEGENERATE_T).float()])
    pred, target = box_convert(pred, "xyxy", fmt), box_convert(target, "xyxy", fmt)
    loss, gp, gt = _three_ways(name, kw, pred, target, fmt=fmt)
    assert torch.isfinite(loss).all() and torch.isfinite(gp).all() and torch.isfinite(gt).all()
    assert (loss[140:150] == 0).all()  # identical boxes: exactly 0


@NEEDS_CPP
@pytest.mark.parametrize("variant", SOME, ids=_ids)
def test_low_precision_weights_one_sided_empty(triton_path, variant):
    """bf16 / fp16 boxes (cast to fp32 before the kernel: fp32 loss, gradients in the input dtype), a
    per-box weight with "mean", a gradient for pred only, and empty input."""
    name, kw = variant
    p, t = overlapping_pairs(64, dtype=torch.float32, seed=2)
    kw16 = dict(kw, img_size=(2e4, 2e4)) if name == "mpdiou" else kw
    loss, gp, _ = _three_ways(name, kw16, (p * 50).bfloat16(), (t * 50).half())
    assert loss.dtype == torch.float32 and gp.dtype == torch.bfloat16
    _, _, gt = _three_ways(name, kw, p, t, grad_target=False)
    assert gt is None
    _three_ways(name, kw, p, t, reduction="mean", weight=torch.rand(64, generator=torch.Generator().manual_seed(0)))
    e = torch.zeros(0, 4, requires_grad=True)
    out = FNS[name](e, torch.zeros(0, 4), impl="fused", **kw)
    assert out.item() == 0.0 and out.requires_grad
    out.backward()
    assert e.grad.shape == (0, 4)


@NEEDS_CPP
def test_mpdiou_per_box_image_size(triton_path):
    p, t = overlapping_pairs(40, dtype=torch.float32, seed=7)
    sizes = torch.rand(40, 2, generator=torch.Generator().manual_seed(3)) * 500 + 100
    _three_ways("mpdiou", {"img_size": sizes}, p, t)
    _three_ways("mpdiou", {"img_size": sizes[:20]}, p.reshape(2, 20, 4), t[:20])  # broadcast over a batch


# ---------------------------------------------------------------- where Triton cannot run


@pytest.mark.parametrize("name", ["ciou", "siou"])
def test_float64_is_not_triton(triton_path, name):
    """The Triton kernels compute in fp32 only: fp64 boxes get the reference path with "auto" (in fp64) and a
    RuntimeError saying why with "fused"."""
    p, t = overlapping_pairs(8, dtype=torch.float64, seed=3)
    with pytest.raises(RuntimeError, match='impl="fused" cannot run: .*float32 only'):
        FNS[name](p, t, impl="fused")
    out = FNS[name](p, t, reduction="none")  # "auto" falls back to the reference path, in float64
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, FNS[name](p, t, reduction="none", impl="reference"), rtol=0, atol=0)


def test_triton_missing_or_failing_falls_back(triton_path, monkeypatch):
    """Triton not installed: "fused" says so, "auto" uses the reference. A launch that fails (no usable
    compiler or driver for this GPU): "fused" raises it; "auto" warns once, marks the Triton path broken and
    uses the reference path from then on, for every loss."""
    p, t = overlapping_pairs(16, dtype=torch.float32, seed=6)
    expected = {name: FNS[name](p, t, impl="reference") for name in ("ciou", "eiou")}
    with monkeypatch.context() as m:
        m.setattr(triton_path, "triton", None)
        assert "not installed" in triton_path.unavailable_reason(torch.float32)
        for name in ("ciou", "eiou"):
            with pytest.raises(RuntimeError, match="triton is not installed"):
                FNS[name](p, t, impl="fused")
            torch.testing.assert_close(FNS[name](p, t), expected[name], rtol=0, atol=0)

    def boom(*a, **k):
        raise RuntimeError("no ptxas for this GPU")

    monkeypatch.setattr(triton_path, "box_loss_forward", boom)
    monkeypatch.setattr(triton_path, "_BROKEN", None)
    with pytest.raises(RuntimeError, match="no ptxas"):
        ciou_loss(p, t, impl="fused")
    assert triton_path.unavailable_reason(torch.float32) is None  # impl="fused" does not mark it broken
    with pytest.warns(RuntimeWarning, match="Triton kernels failed"):
        torch.testing.assert_close(ciou_loss(p, t), expected["ciou"], rtol=0, atol=0)
    assert "failed earlier" in triton_path.unavailable_reason(torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once only
        torch.testing.assert_close(eiou_loss(p, t), expected["eiou"], rtol=0, atol=0)
        with pytest.raises(RuntimeError, match='impl="fused" cannot run: the Triton kernels failed earlier'):
            eiou_loss(p, t, impl="fused")


def test_interpreter_does_not_leak(interp):
    """The routing and the interpreted copies last for one test: afterwards TRITON_INTERPRET is what it was,
    ``backends`` routes CPU tensors to C++ and finds the ordinary Triton module."""
    from boxloss.boxes.kernels import triton_losses

    env = os.environ.get("TRITON_INTERPRET")
    with triton_on_cpu(interp) as module:
        assert backends.TRITON_ON_CPU and backends.triton() is module is not triton_losses
        assert os.environ.get("TRITON_INTERPRET") == env
    assert not backends.TRITON_ON_CPU and os.environ.get("TRITON_INTERPRET") == env
    assert backends.triton() is triton_losses
    from boxloss.boxes.kernels import triton_geometry, triton_losses as again

    assert again is triton_losses and triton_geometry is not interp[0]
    if env in (None, "", "0"):
        assert type(triton_losses._box_loss_kernel).__name__ == "JITFunction"


# ---------------------------------------------------------------- CUDA: the compiled kernels


def _assert_compiled_kernels():
    from boxloss.boxes.kernels import triton_losses

    assert not backends.TRITON_ON_CPU
    kernel_type = type(backends.triton()._box_loss_kernel).__name__
    assert backends.triton() is triton_losses and kernel_type == "JITFunction", "not the compiled kernels"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU on this machine")
@pytest.mark.parametrize("variant", WITH_REFERENCE, ids=_ids)
def test_cuda_matches_reference(variant):
    _assert_compiled_kernels()
    name, kw = variant
    kw = {k: (v.cuda() if isinstance(v, torch.Tensor) else v) for k, v in kw.items()}
    p, t = overlapping_pairs(4096, dtype=torch.float32, seed=5)
    out = []
    for impl in ("fused", "reference"):
        a = p.cuda().requires_grad_(True)
        b = t.cuda().requires_grad_(True)
        loss = FNS[name](a, b, reduction="none", impl=impl, **kw)
        loss.sum().backward()
        out.append((loss.detach().cpu(), a.grad.cpu(), b.grad.cpu()))
    for x, y in zip(*out):
        torch.testing.assert_close(x, y, rtol=0, atol=1e-6 * y.abs().max().item())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU on this machine")
@pytest.mark.parametrize("variant", VARIANTS, ids=_ids)
def test_cuda_no_host_sync(variant):
    """docs/architecture.md, "Numerics policy": no host-device synchronisation in loss code. The public
    losses' fused forward and backward on CUDA (the dispatch and the launchers) run under
    torch.cuda.set_sync_debug_mode("error") (a scalar extra input made with torch.tensor(x, device="cuda")
    would be a synchronising copy on every call)."""
    _assert_compiled_kernels()
    name, kw = variant
    kw = {k: (v.cuda() if isinstance(v, torch.Tensor) else v) for k, v in kw.items()}
    p, t = overlapping_pairs(256, dtype=torch.float32, seed=5)
    p, t = p.cuda().requires_grad_(True), t.cuda()
    FNS[name](p, t, reduction="none", impl="fused", **kw).sum().backward()  # compile first (may sync)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        loss = FNS[name](p, t, reduction="none", impl="fused", **kw)
        loss.backward(torch.ones_like(loss))
    finally:
        torch.cuda.set_sync_debug_mode(0)
