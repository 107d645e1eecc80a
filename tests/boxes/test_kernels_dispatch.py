"""The core IoU-family losses (IoU, GIoU, DIoU, CIoU) and Smooth L1 / L1 through the fused dispatch
(boxloss/boxes/kernels/__init__.py) and the C++ kernels, against the reference path (the specification).

Values and gradients agree within 1e-6 in fp32 and 1e-12 in fp64 (normwise: |fused - ref| <= tol * max|ref|
per tensor; gradients to fp16/bf16 inputs within one ulp of that dtype) on random, disjoint, identical and
degenerate boxes in every format; gradcheck in fp64 through the fused kernels; every numerics-policy case
of docs/architecture.md ("Numerics policy"); impl selection and the default impl; the fallback to the
reference path without a compiler, after a failed build and with BOXLOSS_CPU_KERNELS=0 (for the core and
the newer losses and Smooth L1: one library serves them all); torch.compile(fullgraph=True).

The launchers themselves (every kind, flag and variant), the library's build, cache and compile
announcement are tested in test_kernels_cpu.py; the newer losses' dispatch in test_kernels_dispatch_newer.py.
"""

import re
import warnings

import pytest
import torch

import boxloss.boxes
from boxloss.boxes import ciou_loss, diou_loss, eiou_loss, get_box_loss, giou_loss, iou_loss, siou_loss, smooth_l1_loss
from boxloss.boxes import kernels
from boxloss.boxes.kernels import backends, cpu, cpu_node

from box_cases import overlapping_pairs, random_boxes
from fused_agreement import assert_close_scaled, assert_fused_agrees

pytestmark = pytest.mark.skipif(not kernels.cpu_kernels_available(), reason="no C++ compiler for the fused kernels")

FNS = {"iou": iou_loss, "giou": giou_loss, "diou": diou_loss, "ciou": ciou_loss}
VARIANTS = [
    ("iou", {"mode": "linear"}),
    ("iou", {"mode": "square"}),
    ("iou", {"mode": "log"}),
    ("giou", {}),
    ("diou", {}),
    ("ciou", {}),
    ("ciou", {"gate_alpha": True}),
]
FMTS = ("xyxy", "xywh", "cxcywh")


def _ids(v):
    return v[0] + "".join(f"-{x}" for x in v[1].values())


def _to_fmt(xyxy, fmt):
    from boxloss.boxes import box_convert

    return box_convert(xyxy, "xyxy", fmt)


_close = assert_close_scaled


def _agree(name, kw, pred, target, rtol, **extra):
    return assert_fused_agrees(FNS[name], pred, target, rtol, **kw, **extra)


def _pairs_all_regimes(dtype):
    """Overlapping pairs, disjoint pairs, identical pairs and degenerate boxes (0 width, 0x0, x2 < x1)."""
    p, t = overlapping_pairs(300, dtype=torch.float64, seed=3)
    far = random_boxes(50, seed=7) + 300.0
    degenerate = torch.tensor(
        [[1, 1, 1, 5], [2, 2, 2, 2], [5, 5, 3, 3], [0, 0, 0, 0], [4, 4, 1, 9], [3, 3, 3, 3]], dtype=torch.float64
    )
    deg_t = torch.tensor(
        [[0, 0, 4, 4], [2, 2, 2, 2], [0, 0, 4, 4], [0, 0, 0, 0], [4, 4, 1, 9], [1, 1, 2, 2]], dtype=torch.float64
    )
    pred = torch.cat([p, far, t[:20], degenerate])
    target = torch.cat([t, random_boxes(50, seed=8), t[:20], deg_t])
    return pred.to(dtype), target.to(dtype)


@pytest.mark.parametrize("variant", VARIANTS, ids=_ids)
@pytest.mark.parametrize("fmt", FMTS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_agrees_with_reference(variant, fmt, dtype):
    name, kw = variant
    pred, target = _pairs_all_regimes(dtype)
    rtol = 1e-6 if dtype == torch.float32 else 1e-12
    (loss, gp, gt), _ = _agree(name, kw, _to_fmt(pred, fmt), _to_fmt(target, fmt), rtol, fmt=fmt)
    assert torch.isfinite(loss).all() and torch.isfinite(gp).all() and torch.isfinite(gt).all()


@pytest.mark.parametrize("variant", VARIANTS, ids=_ids)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_reductions_weights_avg_factor(variant, reduction):
    name, kw = variant
    pred, target = overlapping_pairs(64, dtype=torch.float32, seed=5)
    w_box = torch.rand(64, generator=torch.Generator().manual_seed(0))
    w_coord = torch.rand(64, 4, generator=torch.Generator().manual_seed(1))
    for weight in (None, w_box, w_coord):
        _agree(name, kw, pred, target, 1e-6, reduction=reduction, weight=weight)
    if reduction == "mean":
        _agree(name, kw, pred, target, 1e-6, reduction="mean", weight=w_box, avg_factor=17.0)
        _agree(name, kw, pred, target, 1e-6, reduction="mean", avg_factor=torch.tensor(9.0))


@pytest.mark.parametrize("name", ["iou", "giou", "diou", "ciou"])
def test_gradcheck_fp64_through_fused_kernels(name):
    g = torch.Generator().manual_seed(11)
    pred, target = overlapping_pairs(8, dtype=torch.float64, seed=2)
    pred = pred + 0.01 * torch.rand(pred.shape, generator=g, dtype=torch.float64)  # away from ties/kinks
    kws = [{"mode": "linear"}, {"mode": "square"}, {"mode": "log"}] if name == "iou" else [{}]
    for fmt in FMTS:
        p = _to_fmt(pred, fmt).clone().requires_grad_(True)
        t = _to_fmt(target, fmt).clone().requires_grad_(True)
        for kw in kws:
            fn = lambda a, b, kw=kw, fmt=fmt: FNS[name](a, b, fmt=fmt, reduction="none", impl="fused", **kw)
            if name != "ciou":
                assert torch.autograd.gradcheck(fn, (p, t), eps=1e-6, atol=1e-7, rtol=1e-5)
                continue
            # alpha is a constant in backprop, so CIoU's gradient is not its derivative: check the fused
            # gradient against autograd through the reference (alpha detached) ...
            _agree(name, kw, p, t, 1e-12, fmt=fmt)
            # ... and gradcheck where alpha's derivative drops out: v = 0 (pred has the target's aspect ratio)
            same_ar = torch.cat([pred[:, :2], pred[:, :2] + 1.3 * (target[:, 2:] - target[:, :2])], -1)
            a = _to_fmt(same_ar, fmt).clone().requires_grad_(True)
            assert torch.autograd.gradcheck(fn, (a, t), eps=1e-6, atol=1e-7, rtol=1e-5)


def test_ciou_grad_modes():
    """"paper" drops the factor 1/(w^2+h^2) from dv/dw, dv/dh: for cxcywh boxes the v-part of the w, h
    gradient of pred is the exact one times (w^2 + (h+eps)^2); values and the cx, cy gradient are equal."""
    pred, target = overlapping_pairs(200, dtype=torch.float64, seed=4)
    p, t = _to_fmt(pred, "cxcywh"), _to_fmt(target, "cxcywh")
    eps = 1e-7
    out = {}
    for label, fn, kw in (
        ("exact", ciou_loss, {"grad_mode": "exact"}),
        ("paper", ciou_loss, {"grad_mode": "paper"}),
        ("diou", diou_loss, {}),
    ):
        x = p.clone().requires_grad_(True)
        loss = fn(x, t, fmt="cxcywh", reduction="none", impl="fused", eps=eps, **kw)
        loss.sum().backward()
        out[label] = (loss.detach(), x.grad)
    torch.testing.assert_close(out["exact"][0], out["paper"][0], rtol=0, atol=0)
    torch.testing.assert_close(out["exact"][1][:, :2], out["paper"][1][:, :2], rtol=1e-12, atol=1e-12)
    w, h = p[:, 2], p[:, 3] + eps
    v_exact = out["exact"][1][:, 2:] - out["diou"][1][:, 2:]
    v_paper = out["paper"][1][:, 2:] - out["diou"][1][:, 2:]
    torch.testing.assert_close(v_paper, v_exact * (w * w + h * h)[:, None], rtol=1e-9, atol=1e-12)
    # the default is "exact", which is what the reference computes
    _agree("ciou", {}, p, t, 1e-12, fmt="cxcywh")
    with pytest.raises(ValueError, match="grad_mode"):
        ciou_loss(p, t, fmt="cxcywh", grad_mode="paper", impl="reference")
    with pytest.raises(ValueError, match="grad_mode"):
        ciou_loss(p, t, grad_mode="bogus")


# ---------------------------------------------------------------- numerics policy, on the fused path


@pytest.mark.parametrize("variant", VARIANTS, ids=_ids)
def test_identical_boxes_give_exactly_zero(variant):
    name, kw = variant
    boxes = random_boxes(100, dtype=torch.float32, seed=9)
    p = boxes.clone().requires_grad_(True)
    loss = FNS[name](p, boxes, reduction="none", impl="fused", **kw)
    assert (loss == 0).all()
    loss.sum().backward()
    assert torch.isfinite(p.grad).all()


@pytest.mark.parametrize("variant", VARIANTS, ids=_ids)
def test_degenerate_boxes_finite_values_and_gradients(variant):
    name, kw = variant
    pred = torch.tensor([[1.0, 1, 1, 5], [2, 2, 2, 2], [5, 5, 3, 3], [0, 0, 0, 0], [7, 7, 7, 7]])
    target = torch.tensor([[0.0, 0, 4, 4], [2, 2, 2, 2], [0, 0, 4, 4], [0, 0, 0, 0], [1, 1, 2, 2]])
    (loss, gp, gt), _ = _agree(name, kw, pred, target, 1e-6)
    assert torch.isfinite(loss).all() and torch.isfinite(gp).all() and torch.isfinite(gt).all()


@pytest.mark.parametrize("variant", VARIANTS, ids=_ids)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_inputs(variant, dtype):
    name, kw = variant
    pred, target = overlapping_pairs(200, dtype=torch.float64, seed=6)
    pred, target = (pred * 50).to(dtype), (target * 50).to(dtype)  # coordinates up to 1e4: areas past fp16 max
    (loss, gp, gt), _ = _agree(name, kw, pred, target, 1e-6)
    assert loss.dtype == torch.float32 and gp.dtype == dtype and gt.dtype == dtype
    assert torch.isfinite(loss).all() and torch.isfinite(gp.float()).all()


@pytest.mark.parametrize("variant", VARIANTS, ids=_ids)
def test_mixed_dtypes(variant):
    name, kw = variant
    pred, target = overlapping_pairs(100, dtype=torch.float64, seed=12)
    (loss, gp, gt), _ = _agree(name, kw, pred.half(), target.float(), 1e-6)
    assert loss.dtype == torch.float32 and gp.dtype == torch.float16 and gt.dtype == torch.float32
    (loss, gp, gt), _ = _agree(name, kw, pred.float(), target, 1e-12)
    assert loss.dtype == torch.float64 and gp.dtype == torch.float32 and gt.dtype == torch.float64


@pytest.mark.parametrize("variant", VARIANTS, ids=_ids)
def test_empty_input(variant):
    name, kw = variant
    p = torch.zeros(0, 4, requires_grad=True)
    loss = FNS[name](p, torch.zeros(0, 4), impl="fused", **kw)
    assert loss.shape == () and loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert p.grad.shape == (0, 4)
    assert FNS[name](p, torch.zeros(0, 4), reduction="none", impl="fused", **kw).shape == (0,)


def test_broadcast_batch_and_noncontiguous():
    pred, target = overlapping_pairs(60, dtype=torch.float32, seed=13)
    batched = pred.reshape(3, 20, 4)
    _agree("ciou", {}, batched, target[:20], 1e-6)  # target broadcasts over the batch
    _agree("giou", {}, pred.t().contiguous().t(), target, 1e-6)
    _agree("diou", {}, torch.cat([pred, target], 1)[:, :4], target, 1e-6)  # strided rows
    _agree("iou", {"mode": "linear"}, pred[0], target[0], 1e-6)  # a single box [4] -> loss []


def test_gradient_only_where_needed():
    pred, target = overlapping_pairs(50, dtype=torch.float32, seed=14)
    (_, gp, gt), _ = _agree("ciou", {}, pred, target, 1e-6, grad_target=False)
    assert gt is None and gp is not None
    with torch.no_grad():
        loss = ciou_loss(pred.requires_grad_(True), target, impl="fused")
    assert loss.grad_fn is None
    assert ciou_loss(pred.detach(), target, impl="fused").grad_fn is None


# ---------------------------------------------------------------- dispatch and fallback


@pytest.fixture
def forward_calls(monkeypatch):
    """Records each call of the C++ backend's box-loss forward launchers (and runs it): the forward, and the
    forward+backward of a reduced loss with autograd."""
    calls = []
    module = backends.cpu()
    for name in ("box_loss_forward", "box_loss_forward_backward"):
        real = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, _real=real: calls.append(1) or _real(*a))
    real_node = cpu_node.box_loss_one_pass

    def node_counted(*args):  # the C++ autograd node makes the forward+backward kernel call itself
        out = real_node(*args)
        if out is not None:
            calls.append(1)
        return out

    monkeypatch.setattr(cpu_node, "box_loss_one_pass", node_counted)
    return calls


def test_impl_selection_and_default(forward_calls):
    calls = forward_calls
    pred, target = overlapping_pairs(20, dtype=torch.float32, seed=15)
    assert kernels.IMPLS == ("auto", "fused", "reference") and kernels.get_default_impl() == "auto"
    assert boxloss.boxes.set_default_impl is kernels.set_default_impl  # the public names are the dispatch's
    assert boxloss.boxes.get_default_impl is kernels.get_default_impl
    ciou_loss(pred, target, impl="reference")
    assert calls == []
    ciou_loss(pred, target)  # default "auto" -> fused on CPU
    assert calls == [1]
    ciou_loss(pred.clone().requires_grad_(True), target, impl="auto")  # with autograd: the one-pass launcher
    assert calls == [1, 1]
    previous = kernels.set_default_impl("reference")
    try:
        assert previous == "auto" and kernels.get_default_impl() == "reference"
        ciou_loss(pred, target)
        assert calls == [1, 1]
        ciou_loss(pred, target, impl="fused")
        assert calls == [1, 1, 1]
        assert kernels.set_default_impl("fused") == "reference"
        ciou_loss(pred, target)
        assert calls == [1, 1, 1, 1]
    finally:
        kernels.set_default_impl(previous)
    assert kernels.get_default_impl() == "auto"
    with pytest.raises(ValueError, match="impl"):
        ciou_loss(pred, target, impl="triton")
    with pytest.raises(ValueError, match="impl"):
        kernels.set_default_impl("fast")
    assert kernels.get_default_impl() == "auto"


def test_registry_passes_impl_and_grad_mode(forward_calls):
    pred, target = overlapping_pairs(20, dtype=torch.float32, seed=16)
    a = get_box_loss("ciou", impl="reference")(pred, target)
    assert forward_calls == []
    b = get_box_loss("ciou", impl="fused", grad_mode="paper")(pred, target)
    assert forward_calls == [1]
    torch.testing.assert_close(a, b, rtol=1e-6, atol=0)
    # grad_mode reaches the loss: the reference has no "paper" gradient, and the fused one is the paper's
    with pytest.raises(ValueError, match="grad_mode"):
        get_box_loss("ciou", impl="reference", grad_mode="paper")(pred, target)
    grads = {}
    for mode in ("exact", "paper"):
        p = pred.clone().requires_grad_(True)
        get_box_loss("ciou", grad_mode=mode)(p, target).backward()
        q = pred.clone().requires_grad_(True)
        ciou_loss(q, target, grad_mode=mode, impl="fused").backward()
        assert torch.equal(p.grad, q.grad), mode
        grads[mode] = p.grad
    assert not torch.allclose(grads["exact"], grads["paper"])


# every fused-kernel family on the one library: a core loss, a newer loss, Smooth L1
FALLBACK_LOSSES = {"ciou": ciou_loss, "siou": siou_loss, "eiou": eiou_loss, "smooth_l1": smooth_l1_loss}


@pytest.fixture
def library_state():
    """Restores the loaded library (and that it was tried) after a test that resets it."""
    saved = cpu.library()
    yield
    cpu._reset_for_tests(saved, tried=True)


def _assert_falls_back(pred, target, expected, warning):
    """The library is gone: the first fused call warns once (``warning``; None: it must not warn) and uses
    the reference path; after it, "auto" gives the reference's numbers silently and "fused" raises saying
    why."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = ciou_loss(pred, target, reduction="none")
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    if warning is None:
        assert messages == []
    else:
        assert len(messages) == 1 and re.search(warning, messages[0]), messages
    torch.testing.assert_close(first, expected["ciou"], rtol=0, atol=0)
    assert not kernels.cpu_kernels_available()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once only
        for name, fn in FALLBACK_LOSSES.items():
            torch.testing.assert_close(fn(pred, target, reduction="none"), expected[name], rtol=0, atol=0)
            p = pred.clone().requires_grad_(True)
            fn(p, target).backward()  # through the reference path's autograd
            assert torch.isfinite(p.grad).all()
            with pytest.raises(RuntimeError, match='impl="fused" cannot run: the CPU kernel library could not be'):
                fn(pred, target, impl="fused")


def _references(pred, target):
    return {name: fn(pred, target, reduction="none", impl="reference") for name, fn in FALLBACK_LOSSES.items()}


def test_fallback_without_compiler(monkeypatch, tmp_path, library_state):
    """No compiler: the library warns once and is None, "auto" uses the reference path and gives the same
    numbers, "fused" raises a RuntimeError saying why -- for the core losses, the newer ones and Smooth L1."""
    pred, target = overlapping_pairs(20, dtype=torch.float32, seed=17)
    expected = _references(pred, target)
    monkeypatch.setenv("CXX", "/nonexistent/c++")
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    cpu._reset_for_tests()
    _assert_falls_back(pred, target, expected,
                       "fused CPU kernels unavailable, using the reference .* no C\\+\\+ compiler")


def test_failed_build_falls_back(monkeypatch, tmp_path, library_state):
    """A compiler that fails (here: `false`) is reported, not crashed on: the same fallback."""
    pred, target = overlapping_pairs(20, dtype=torch.float32, seed=17)
    expected = _references(pred, target)
    monkeypatch.setenv("CXX", "false")
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    cpu._reset_for_tests()
    _assert_falls_back(pred, target, expected, "building the boxloss CPU kernels failed")


def test_disable_by_environment(monkeypatch, library_state):
    """BOXLOSS_CPU_KERNELS=0: no library (and no warning), "auto" uses the reference path, "fused" raises."""
    pred, target = overlapping_pairs(20, dtype=torch.float32, seed=25)
    expected = _references(pred, target)
    monkeypatch.setenv("BOXLOSS_CPU_KERNELS", "0")
    cpu._reset_for_tests()
    _assert_falls_back(pred, target, expected, None)


# ---------------------------------------------------------------- torch.compile


@pytest.mark.parametrize("variant", VARIANTS, ids=_ids)
def test_compile_fullgraph_default_impl(variant):
    name, kw = variant
    torch._dynamo.reset()
    pred, target = overlapping_pairs(32, dtype=torch.float32, seed=18)

    # compiled: the custom ops of kernels/ops.py (test_kernel_ops.py checks that they run the kernels)
    compiled = torch.compile(lambda p, t: FNS[name](p, t, **kw), fullgraph=True, backend="eager")
    p = pred.clone().requires_grad_(True)
    loss = compiled(p, target)
    loss.backward()
    q = pred.clone().requires_grad_(True)
    ref = FNS[name](q, target, **kw)  # eager: the fused kernels (autograd.Function)
    ref.backward()
    torch.testing.assert_close(loss, ref, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-8)


def test_compile_fullgraph_aot_eager():
    torch._dynamo.reset()
    pred, target = overlapping_pairs(32, dtype=torch.float32, seed=19)
    fn = torch.compile(lambda p, t: ciou_loss(p, t, impl="fused", gate_alpha=True), fullgraph=True, backend="aot_eager")
    p = pred.clone().requires_grad_(True)
    loss = fn(p, target)
    loss.backward()
    q = pred.clone().requires_grad_(True)
    ref = ciou_loss(q, target, impl="fused", gate_alpha=True)
    ref.backward()
    torch.testing.assert_close(loss, ref, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-8)


# ---------------------------------------------------------------- Smooth L1 / L1


@pytest.mark.parametrize("beta", [0.0, 0.1, 1.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_smooth_l1_agrees_with_reference(beta, dtype):
    g = torch.Generator().manual_seed(21)
    pred = torch.randn(500, 4, generator=g, dtype=torch.float64)
    target = pred + torch.randn(500, 4, generator=g, dtype=torch.float64) * torch.rand(500, 1, generator=g, dtype=torch.float64)
    target[:20] = pred[:20]  # zero difference: gradient 0, as torch's abs
    pred, target = pred.to(dtype), target.to(dtype)
    w = torch.rand(500, generator=g)
    out = []
    for impl in ("fused", "reference"):
        p, t = pred.clone().requires_grad_(True), target.clone().requires_grad_(True)
        loss = smooth_l1_loss(p, t, beta=beta, reduction="none", impl=impl)
        (loss * torch.linspace(0.5, 2, loss.numel(), dtype=loss.dtype).reshape(loss.shape)).sum().backward()
        weighted = smooth_l1_loss(pred, target, beta=beta, weight=w, avg_factor=7.0, impl=impl)
        out.append((loss.detach(), p.grad, t.grad, weighted))
    for a, b in zip(*out):
        _close(a, b, 1e-6 if dtype != torch.float64 else 1e-12)
    assert out[0][0].dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert (out[0][1][:20] == 0).all()


def test_smooth_l1_broadcast_empty_gradcheck_compile():
    from boxloss.boxes import l1_loss

    g = torch.Generator().manual_seed(22)
    pred = torch.randn(3, 10, 4, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.randn(10, 4, generator=g, dtype=torch.float64, requires_grad=True)
    fn = lambda a, b: smooth_l1_loss(a, b, beta=0.5, reduction="none", impl="fused")
    assert torch.autograd.gradcheck(fn, (pred, target))
    assert torch.autograd.gradcheck(lambda a, b: l1_loss(a, b, reduction="sum", impl="fused"), (pred, target))
    e = torch.zeros(0, 4, requires_grad=True)
    z = smooth_l1_loss(e, torch.zeros(0, 4), impl="fused")
    assert z.item() == 0.0 and z.requires_grad
    z.backward()
    torch._dynamo.reset()
    c = torch.compile(lambda a, b: smooth_l1_loss(a, b, beta=0.5), fullgraph=True, backend="eager")
    x = pred.detach().float().requires_grad_(True)
    torch.testing.assert_close(c(x, target.detach().float()), smooth_l1_loss(x, target.detach().float(), beta=0.5))
    assert get_box_loss("smooth_l1", impl="reference")(x, target.detach().float()).requires_grad
