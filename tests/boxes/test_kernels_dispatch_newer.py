"""The newer IoU-family losses (EIoU, Focal-EIoU, SIoU, Alpha-IoU, Wise-IoU v1/v3, MPDIoU, Inner-IoU,
Shape-IoU) through the fused dispatch (boxloss/boxes/kernels/__init__.py) and the C++ kernels, against their
reference path (the specification, tested on its own in test_newer_losses*.py).

Values and gradients agree within 1e-6 in fp32 and 1e-12 in fp64 (normwise: |fused - ref| <= tol * max|ref|
per tensor; gradients to fp16/bf16 inputs within one ulp of that dtype) on random, disjoint, identical and
degenerate boxes in every format and for every kernel variant (each exponent path); gradcheck in fp64
through the fused kernels; the numerics policy of docs/architecture.md ("Numerics policy"); dispatch and
errors; Wise-IoU v3's running mean updated exactly as on the reference path; torch.compile(fullgraph=True).

The core and the newer losses share one library: its fallback (no compiler, a failed build,
BOXLOSS_CPU_KERNELS=0) is tested for both in test_kernels_dispatch.py, its launchers in test_kernels_cpu.py.
"""

import pytest
import torch

from boxloss.boxes import (
    WIoUv3Loss,
    alpha_iou_loss,
    box_convert,
    ciou_loss,
    eiou_loss,
    focal_eiou_loss,
    get_box_loss,
    inner_iou_loss,
    mpdiou_loss,
    shape_iou_loss,
    siou_loss,
    wiou_v1_loss,
    wiou_v3_loss,
)
from boxloss.boxes import kernels
from boxloss.boxes.kernels import backends

from box_cases import overlapping_pairs, random_boxes
from fused_agreement import assert_close_scaled, assert_fused_agrees, run_loss

pytestmark = pytest.mark.skipif(not kernels.cpu_kernels_available(), reason="no C++ compiler for the fused kernels")

FNS = {
    "eiou": eiou_loss, "focal_eiou": focal_eiou_loss, "siou": siou_loss, "alpha_iou": alpha_iou_loss,
    "wiou_v1": wiou_v1_loss, "wiou_v3": wiou_v3_loss, "mpdiou": mpdiou_loss, "inner_iou": inner_iou_loss,
    "shape_iou": shape_iou_loss,
}
# every kernel kind and every exponent path (identity, sqrt, general power; Shape-IoU's scale 0)
VARIANTS = [
    ("eiou", {}),
    ("focal_eiou", {}),
    ("focal_eiou", {"gamma": 0.0}),
    ("focal_eiou", {"gamma": 1.0}),
    ("focal_eiou", {"gamma": 2.0}),
    ("siou", {}),
    ("siou", {"theta": 1.0}),
    ("siou", {"theta": 2.5}),
    ("alpha_iou", {}),
    ("alpha_iou", {"alpha": 0.5}),
    ("alpha_iou", {"alpha": 1.0, "base": "giou"}),
    ("alpha_iou", {"base": "giou"}),
    ("alpha_iou", {"base": "diou"}),
    ("alpha_iou", {"base": "diou", "alpha": 0.5}),
    ("alpha_iou", {"base": "ciou"}),
    ("alpha_iou", {"base": "ciou", "alpha": 0.5}),
    ("alpha_iou", {"base": "ciou", "alpha": 20.0}),
    ("wiou_v1", {}),
    ("wiou_v3", {"iou_mean": 0.3}),
    ("wiou_v3", {"iou_mean": torch.tensor(0.6), "alpha": 2.5, "delta": 2.0}),
    ("mpdiou", {"img_size": (640, 480)}),
    ("inner_iou", {}),
    ("inner_iou", {"ratio": 1.3}),
    ("inner_iou", {"base": "giou"}),
    ("inner_iou", {"base": "diou"}),
    ("inner_iou", {"base": "ciou", "ratio": 1.2}),
    ("inner_iou", {"base": "eiou"}),
    ("inner_iou", {"base": "siou"}),
    ("shape_iou", {}),
    ("shape_iou", {"scale": 0.5}),
    ("shape_iou", {"scale": 1.0}),
    ("shape_iou", {"scale": 1.5}),
]
FMTS = ("xyxy", "xywh", "cxcywh")
# losses whose gradient is the derivative of their value (no detached factor): gradcheck applies directly
GRADCHECKED = [v for v in VARIANTS if v[0] in ("eiou", "siou", "mpdiou", "shape_iou")
               or (v[0] == "alpha_iou" and v[1].get("base") != "ciou")
               or (v[0] == "inner_iou" and v[1].get("base") != "ciou")]


def _ids(v):
    return v[0] + "".join(f"-{k}={x.item() if isinstance(x, torch.Tensor) else x}" for k, x in v[1].items())


def _run(name, kw, pred, target, impl, **extra):
    return run_loss(FNS[name], pred, target, impl, **kw, **extra)


_close = assert_close_scaled


def _agree(name, kw, pred, target, rtol, **extra):
    return assert_fused_agrees(FNS[name], pred, target, rtol, **kw, **extra)


DEGENERATE_P = [[1, 1, 1, 5], [2, 2, 2, 2], [5, 5, 3, 3], [0, 0, 0, 0], [4, 4, 1, 9], [3, 3, 3, 3], [1, 1, 3, 3],
                [7, 7, 7, 7], [1, 1, 5, 5]]
DEGENERATE_T = [[0, 0, 4, 4], [2, 2, 2, 2], [0, 0, 4, 4], [0, 0, 0, 0], [4, 4, 1, 9], [1, 1, 2, 2], [2, 1, 4, 3],
                [1, 1, 2, 2], [1, 1, 5, 5]]
# zero width, 0x0 on itself, inverted, both 0x0, both inverted, disjoint, same centre / other size ... identical


def _pairs_all_regimes(dtype):
    """Overlapping pairs, disjoint pairs, identical pairs and degenerate boxes (0 width, 0x0, x2 < x1)."""
    p, t = overlapping_pairs(300, dtype=torch.float64, seed=3)
    far = random_boxes(50, seed=7) + 300.0
    pred = torch.cat([p, far, t[:20], torch.tensor(DEGENERATE_P, dtype=torch.float64)])
    target = torch.cat([t, random_boxes(50, seed=8), t[:20], torch.tensor(DEGENERATE_T, dtype=torch.float64)])
    return pred.to(dtype), target.to(dtype)


@pytest.mark.parametrize("variant", VARIANTS, ids=_ids)
@pytest.mark.parametrize("fmt", FMTS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_agrees_with_reference(variant, fmt, dtype):
    name, kw = variant
    pred, target = _pairs_all_regimes(dtype)
    rtol = 1e-6 if dtype == torch.float32 else 1e-12
    (loss, gp, gt), _ = _agree(name, kw, box_convert(pred, "xyxy", fmt), box_convert(target, "xyxy", fmt), rtol,
                               fmt=fmt)
    assert torch.isfinite(loss).all() and torch.isfinite(gp).all() and torch.isfinite(gt).all()


def _nested(pred, target):
    """One box inside the other (or equal): the enclosing box is the union."""
    inside = lambda a, b: (a[:, :2] >= b[:, :2]).all(-1) & (a[:, 2:] <= b[:, 2:]).all(-1)  # noqa: E731
    return inside(pred, target) | inside(target, pred)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_alpha_giou_below_one(dtype):
    """Alpha-GIoU with alpha < 1 on nested boxes: the penalty |C \\ U| / |C| is 0 up to rounding (~1 ulp), and
    d/dx x^alpha = alpha x^(alpha - 1) turns that rounding noise into a large gradient -- on the reference
    path as on the fused one, each with its own rounding, so the two agree there only loosely. Everywhere
    else they agree to the usual tolerance; values agree everywhere."""
    pred, target = _pairs_all_regimes(dtype)
    nested = _nested(pred, target)
    assert 10 < int(nested.sum()) < len(pred) - 100
    tight = 1e-6 if dtype == torch.float32 else 1e-12
    kw = {"base": "giou", "alpha": 0.5}
    fus, ref = _agree("alpha_iou", kw, pred[~nested], target[~nested], tight)
    (loss, gp, gt), (rloss, rgp, rgt) = (_run("alpha_iou", kw, pred, target, impl) for impl in ("fused", "reference"))
    _close(loss, rloss, tight)
    assert torch.isfinite(gp).all() and torch.isfinite(gt).all()
    _close(gp, rgp, 1e-3 if dtype == torch.float32 else 1e-7)


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


@pytest.mark.parametrize("variant", GRADCHECKED, ids=_ids)
def test_gradcheck_fp64_through_fused_kernels(variant):
    name, kw = variant
    g = torch.Generator().manual_seed(11)
    pred, target = overlapping_pairs(8, dtype=torch.float64, seed=2)
    pred = pred + 0.01 * torch.rand(pred.shape, generator=g, dtype=torch.float64)  # away from ties/kinks
    for fmt in FMTS:
        p = box_convert(pred, "xyxy", fmt).clone().requires_grad_(True)
        t = box_convert(target, "xyxy", fmt).clone().requires_grad_(True)
        fn = lambda a, b, fmt=fmt: FNS[name](a, b, fmt=fmt, reduction="none", impl="fused", **kw)  # noqa: E731
        assert torch.autograd.gradcheck(fn, (p, t), eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("variant", [v for v in VARIANTS if v not in GRADCHECKED], ids=_ids)
def test_detached_factor_gradients_fp64(variant):
    """Focal-EIoU's IoU^gamma, Alpha-CIoU's beta, Wise-IoU's (c^2)* and focusing r, Inner-CIoU's alpha are
    constants in backprop, so their gradient is not the derivative of the value (gradcheck cannot apply;
    test_newer_losses.py checks the reference against frozen twins): the fused gradient must equal autograd
    through the reference in fp64, in every format."""
    name, kw = variant
    pred, target = overlapping_pairs(64, dtype=torch.float64, seed=2)
    for fmt in FMTS:
        _agree(name, kw, box_convert(pred, "xyxy", fmt), box_convert(target, "xyxy", fmt), 1e-12, fmt=fmt)


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
    q = boxes.clone().requires_grad_(True)
    FNS[name](q, boxes, reduction="none", impl="reference", **kw).sum().backward()
    _close(p.grad, q.grad, 1e-6)


@pytest.mark.parametrize("variant", VARIANTS, ids=_ids)
def test_ties_on_an_integer_grid(variant):
    """Corners on a 5x5 integer grid: shared edges (min/max ties, split in halves), equal widths (max ties,
    |w - w_gt| = 0), dx = 0 or dy = 0 (|.| at 0), clamps hit exactly (zero widths, inverted boxes) -- the
    kinks where a hand-written backward most easily differs from autograd. fp64, so only the tie and clamp
    rules can make a difference."""
    name, kw = variant
    g = torch.Generator().manual_seed(0)
    pred, target = (torch.randint(0, 5, (2000, 4), generator=g).double() for _ in range(2))
    for b in (pred, target):  # half of them valid boxes (x2 >= x1), half raw corners (inverted ones included)
        b[:1000, 2:] = b[:1000, :2] + torch.randint(0, 4, (1000, 2), generator=g).double()
    if name == "alpha_iou" and kw.get("alpha", 3.0) > 3:
        pred, target = pred[:1000], target[:1000]  # inverted pairs: (rho^2 / eps)^20 overflows on both paths
    (loss, gp, gt), _ = _agree(name, kw, pred, target, 1e-12)
    assert torch.isfinite(loss).all() and torch.isfinite(gp).all() and torch.isfinite(gt).all()


@pytest.mark.parametrize("variant", VARIANTS, ids=_ids)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_degenerate_boxes_finite_values_and_gradients(variant, dtype):
    name, kw = variant
    pred, target = torch.tensor(DEGENERATE_P, dtype=dtype), torch.tensor(DEGENERATE_T, dtype=dtype)
    (loss, gp, gt), _ = _agree(name, kw, pred, target, 1e-6 if dtype == torch.float32 else 1e-12)
    assert torch.isfinite(loss).all() and torch.isfinite(gp).all() and torch.isfinite(gt).all()


@pytest.mark.parametrize("variant", VARIANTS, ids=_ids)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_inputs(variant, dtype):
    """fp16/bf16 boxes are cast to fp32 before the kernel (the core losses' policy): fp32 loss, gradients in
    the input dtype; coordinates up to 1e4, whose areas overflow fp16."""
    name, kw = variant
    pred, target = overlapping_pairs(200, dtype=torch.float64, seed=6)
    pred, target = (pred * 50).to(dtype), (target * 50).to(dtype)
    kw = dict(kw, img_size=(2e4, 2e4)) if name == "mpdiou" else kw
    (loss, gp, gt), _ = _agree(name, kw, pred, target, 1e-6)
    assert loss.dtype == torch.float32 and gp.dtype == dtype and gt.dtype == dtype
    assert torch.isfinite(loss).all() and torch.isfinite(gp.float()).all()


@pytest.mark.parametrize("name", ["eiou", "siou", "wiou_v1", "shape_iou"])
def test_mixed_dtypes(name):
    pred, target = overlapping_pairs(100, dtype=torch.float64, seed=12)
    (loss, gp, gt), _ = _agree(name, {}, pred.half(), target.float(), 1e-6)
    assert loss.dtype == torch.float32 and gp.dtype == torch.float16 and gt.dtype == torch.float32
    (loss, gp, gt), _ = _agree(name, {}, pred.float(), target, 1e-12)
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
    _agree("siou", {}, pred.reshape(3, 20, 4), target[:20], 1e-6)  # target broadcasts over the batch
    _agree("eiou", {}, pred.t().contiguous().t(), target, 1e-6)
    _agree("shape_iou", {"scale": 1.5}, torch.cat([pred, target], 1)[:, :4], target, 1e-6)  # strided rows
    _agree("wiou_v1", {}, pred[0], target[0], 1e-6)  # a single box [4] -> loss []
    # MPDIoU with a per-box image size [..., 2], broadcast over a batch
    sizes = torch.rand(20, 2, generator=torch.Generator().manual_seed(3)) * 500 + 100
    _agree("mpdiou", {"img_size": sizes}, pred.reshape(3, 20, 4), target[:20], 1e-6)
    _agree("mpdiou", {"img_size": torch.tensor([640.0, 480.0])}, pred, target, 1e-6)
    # an image size that enlarges the batch shape ([3, 1, 2] against 20 boxes -> loss [3, 20]): the kernels
    # take one diagonal per box, so "auto" uses the reference path and "fused" says why
    per_image = torch.tensor([[[640.0, 480.0]], [[320.0, 240.0]], [[100.0, 100.0]]])
    loss = mpdiou_loss(pred[:20], target[:20], img_size=per_image, reduction="none")
    assert loss.shape == (3, 20)
    torch.testing.assert_close(loss, mpdiou_loss(pred[:20], target[:20], img_size=per_image, reduction="none",
                                                 impl="reference"))
    with pytest.raises(RuntimeError, match="broadcasts the boxes' batch shape"):
        mpdiou_loss(pred[:20], target[:20], img_size=per_image, impl="fused")


def test_multithreaded_loops():
    """From 262,144 boxes the kernels use torch's thread count: the same numbers as the reference."""
    pred, target = overlapping_pairs(270_000, dtype=torch.float32, seed=23)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for name, kw in (("siou", {}), ("inner_iou", {"base": "ciou"}), ("alpha_iou", {"alpha": 2.5})):
            _agree(name, kw, pred, target, 1e-6)
    finally:
        torch.set_num_threads(threads)


def test_gradient_only_where_needed():
    pred, target = overlapping_pairs(50, dtype=torch.float32, seed=14)
    (_, gp, gt), _ = _agree("siou", {}, pred, target, 1e-6, grad_target=False)
    assert gt is None and gp is not None
    p = pred.clone()
    t = target.clone().requires_grad_(True)
    shape_iou_loss(p, t, impl="fused").backward()  # only the target requires grad
    ref = target.clone().requires_grad_(True)
    shape_iou_loss(p, ref, impl="reference").backward()
    _close(t.grad, ref.grad, 1e-6)
    with torch.no_grad():
        assert eiou_loss(pred.requires_grad_(True), target, impl="fused").grad_fn is None
    assert eiou_loss(pred.detach(), target, impl="fused").grad_fn is None


# ---------------------------------------------------------------- dispatch and errors


@pytest.fixture
def forward_calls(monkeypatch):
    """Records each call of the C++ backend's box-loss forward launcher (and runs it)."""
    calls = []
    module = backends.cpu()
    real = module.box_loss_forward
    monkeypatch.setattr(module, "box_loss_forward", lambda *a: calls.append(1) or real(*a))
    return calls


def test_impl_selection_and_default(forward_calls):
    pred, target = overlapping_pairs(20, dtype=torch.float32, seed=15)
    calls = forward_calls
    for name, kw in VARIANTS:
        calls.clear()
        FNS[name](pred, target, impl="reference", **kw)
        assert calls == [], name
        FNS[name](pred, target, **kw)  # default "auto" -> fused on CPU
        assert calls == [1], name
    calls.clear()
    previous = kernels.set_default_impl("reference")
    try:
        eiou_loss(pred, target)
        assert calls == []
        eiou_loss(pred, target, impl="fused")
        assert calls == [1]
    finally:
        kernels.set_default_impl(previous)
    for name, kw in VARIANTS:
        with pytest.raises(ValueError, match="impl"):
            FNS[name](pred, target, impl="triton", **kw)


@pytest.mark.parametrize("name", ["eiou", "siou", "alpha_iou", "wiou_v1", "inner_iou", "shape_iou", "focal_eiou"])
def test_registry_passes_impl(name, forward_calls):
    pred, target = overlapping_pairs(20, dtype=torch.float32, seed=16)
    calls = forward_calls
    a = get_box_loss(name, impl="reference")(pred, target)
    assert calls == []
    b = get_box_loss(name, impl="fused", loss_weight=2.0)(pred, target)
    assert calls == [1]
    torch.testing.assert_close(2 * a, b, rtol=1e-6, atol=0)
    m = get_box_loss("mpdiou", img_size=(100, 100), impl="fused")
    torch.testing.assert_close(m(pred, target), mpdiou_loss(pred, target, img_size=(100, 100), impl="reference"))


def test_unsupported_device_error_matches_core():
    """impl="fused" where no fused kernel applies raises the core losses' RuntimeError; "auto" computes the
    reference formulas there."""
    pred, target = torch.zeros(5, 4, device="meta"), torch.zeros(5, 4, device="meta")
    with pytest.raises(RuntimeError) as core:
        ciou_loss(pred, target, impl="fused")
    for name, kw in VARIANTS:
        if isinstance(kw.get("iou_mean"), torch.Tensor):
            kw = dict(kw, iou_mean=0.5)
        with pytest.raises(RuntimeError) as err:
            FNS[name](pred, target, impl="fused", **kw)
        assert str(err.value) == str(core.value)
        assert FNS[name](pred, target, reduction="none", **kw).shape == (5,)
    # mismatched devices: the same message as the core losses
    cpu = torch.zeros(5, 4)
    with pytest.raises(RuntimeError, match='impl="fused" cannot run: pred is on cpu and target on meta'):
        eiou_loss(cpu, target, impl="fused")


def test_cuda_float64_error_matches_core():
    """On CUDA the Triton kernels compute in fp32 only: fp64 CUDA boxes get the reference path with "auto" and
    the core losses' error with "fused". Checked without a GPU by faking the device type."""

    class FakeCuda(torch.Tensor):
        @property
        def device(self):
            return torch.device("cuda", 0)

        @property
        def is_cpu(self):
            return False

    p = torch.zeros(3, 4, dtype=torch.float64).as_subclass(FakeCuda)
    with pytest.raises(RuntimeError) as core:
        kernels.fused_overlap_loss(p, p, "ciou", impl="fused")
    with pytest.raises(RuntimeError) as err:
        kernels.fused_box_loss(p, p, "siou", impl="fused")
    assert str(err.value) == str(core.value) and 'impl="fused" cannot run' in str(err.value)
    assert "float32 only" in str(err.value)
    assert kernels.fused_box_loss(p, p, "siou", impl="auto") is None
    assert kernels.fused_overlap_loss(p, p, "ciou", impl="auto") is None


def test_mpdiou_img_size_requiring_grad():
    """The kernel does not differentiate img_size: with a tensor img_size that requires grad, "auto" uses the
    reference path (the gradient reaches img_size) and "fused" raises."""
    pred, target = overlapping_pairs(20, dtype=torch.float32, seed=24)
    size = torch.tensor([300.0, 200.0], requires_grad=True)
    mpdiou_loss(pred, target, img_size=size).backward()
    assert size.grad is not None and torch.isfinite(size.grad).all() and (size.grad != 0).all()
    with pytest.raises(RuntimeError, match="img_size"):
        mpdiou_loss(pred, target, img_size=size, impl="fused")


# ---------------------------------------------------------------- Wise-IoU v3's running mean


def _train_steps(loss_fn, steps):
    out = []
    for step in range(steps):
        pred, target = overlapping_pairs(50, dtype=torch.float32, seed=100 + step)
        w = torch.rand(50, generator=torch.Generator().manual_seed(step))
        w[:5] = 0
        p = pred.clone().requires_grad_(True)
        loss = loss_fn(p, target, weight=w if step % 2 else None)
        loss.backward()
        out.append((loss.detach(), p.grad, loss_fn.iou_mean.clone()))
    return out


def test_wiou_v3_module_state_matches_reference():
    """The running mean is updated from the same L_IoU values, before the loss, in training mode only: the
    buffer after every step equals the reference path's exactly; losses and gradients agree."""
    ref = WIoUv3Loss(momentum=0.3, impl="reference")
    fus = WIoUv3Loss(momentum=0.3, impl="fused")
    auto = WIoUv3Loss(momentum=0.3)
    a, b, c = _train_steps(ref, 6), _train_steps(fus, 6), _train_steps(auto, 6)
    for (lr, gr, mr), (lf, gf, mf), (_, _, ma) in zip(a, b, c):
        assert torch.equal(mr, mf) and torch.equal(mr, ma)
        _close(lf, lr, 1e-6)
        _close(gf, gr, 1e-6)
    assert not torch.equal(a[0][2], a[-1][2])  # the mean moved
    fus.eval()
    before = fus.iou_mean.clone()
    pred, target = overlapping_pairs(30, dtype=torch.float32, seed=9)
    torch.testing.assert_close(fus(pred, target), wiou_v3_loss(pred, target, iou_mean=before, impl="reference"))
    assert torch.equal(fus.iou_mean, before)


# ---------------------------------------------------------------- torch.compile


@pytest.mark.parametrize("name,kw", [("eiou", {}), ("siou", {}), ("alpha_iou", {"base": "ciou"}),
                                     ("inner_iou", {"base": "siou"}), ("shape_iou", {"scale": 1.5})])
def test_compile_fullgraph_default_impl(name, kw):
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
