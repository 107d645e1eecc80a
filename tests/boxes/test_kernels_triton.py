"""The Triton box-loss kernels (``kernels/triton_losses.py`` on ``kernels/triton_geometry.py``).

On CPU, Triton's interpreter runs them: for every kind of ``kinds.py``, every box format, every CIoU flag
combination and every exponent variant, forward and backward (a random per-box gradient and an expanded
scalar one) agree with the eager reference (the public loss with ``impl="reference"``) within 1e-6
normwise (as ``fused_agreement.assert_close_scaled``), on random, disjoint, identical, degenerate (zero
width, 0x0, x2 < x1) and integer-tie boxes. Plus the launchers' contract: no launch for n = 0, an expanded gradient
passed with stride 0, one-sided gradients, argument checks, the availability state.

The same kernels through the public losses and the dispatch (``impl=``, dtype casts, broadcasting, the
fallbacks) are tested in test_kernels_dispatch_triton.py.

Interpreter isolation: ``TRITON_INTERPRET=1`` is set only while the module-scoped fixture ``interp`` imports
fresh copies of the Triton modules (``fused_agreement.interpreter_imports``; it imports triton itself if
nothing did before); it then restores the environment, ``sys.modules`` and the packages' attributes, so no
other test, nor this file's CUDA tests, sees the interpreter. On a machine with a GPU the CUDA tests run the
compiled kernels (``.ci/gpu``).
"""

import importlib.util
import math
import os
import types
import warnings

import pytest
import torch

from boxloss.boxes import (
    alpha_iou_loss, box_convert, ciou_loss, diou_loss, eiou_loss, focal_eiou_loss, giou_loss, inner_iou_loss,
    iou_loss, mpdiou_loss, shape_iou_loss, siou_loss, wiou_v1_loss, wiou_v3_loss,
)
from boxloss.boxes._geometry import box_parts
from boxloss.boxes.kernels.kinds import ALPHA_GATED, FMTS, KINDS, PAPER_GRAD, variant_of
from boxloss.boxes.overlaps import aligned_overlap, prepare_box_pair

from box_cases import overlapping_pairs, random_boxes
from fused_agreement import TRITON_MODULES, assert_close_scaled, interpreter_imports

if importlib.util.find_spec("triton") is None:  # a missing tool: the only reason to skip
    pytest.skip("triton is not installed", allow_module_level=True)

EPS = 1e-7


# ---- the eager references ---------------------------------------------------------------------------


class _PaperAtan(torch.autograd.Function):
    """atan(w / h) with the DIoU paper's derivative (h, -w): the exact one without its 1 / (w^2 + h^2)."""

    @staticmethod
    def forward(ctx, w, h):
        ctx.save_for_backward(w, h)
        return torch.atan(w / h)

    @staticmethod
    def backward(ctx, g):
        w, h = ctx.saved_tensors
        return g * h, -g * w


def paper_ciou_loss(pred, target, *, fmt="xyxy", gate_alpha=False, eps=EPS, **_):
    """``ciou_loss(grad_mode="paper", reduction="none")`` in eager torch (the reference has no paper mode):
    ``overlaps.aligned_overlap``'s CIoU with the paper's d atan(w / h)."""
    p, t = prepare_box_pair(pred, target, fmt)
    diou, iou = aligned_overlap(p, t, "diou", eps)
    g = box_parts(p, t)
    dv = _PaperAtan.apply(g.tw, g.th + eps) - _PaperAtan.apply(g.pw, g.ph + eps)
    v = 4.0 / math.pi**2 * dv * dv
    with torch.no_grad():
        alpha = v / (1 - iou + v).clamp_min(eps)
        if gate_alpha:
            alpha = alpha * (iou >= 0.5).to(alpha.dtype)
    return 1 - (diou - alpha * v)


# ---- the cases: every kind, CIoU flag combination and exponent variant --------------------------------

ONE, SQRT, POW, SCALE0 = 0, 1, 2, 3


def _case(label, kind, fn, kw=None, *, variant=ONE, flags=0, p0=0.0, p1=0.0, p2=0.0, extra=None, loose=False):
    """``extra``: None, a float (one value, [1]), or "img" (MPDIoU's per-box w^2 + h^2 from ``kw["img_size"]``).
    ``loose``: gradients agree with the reference only off nested boxes (see ``test_agrees``)."""
    return types.SimpleNamespace(label=label, kind=kind, fn=fn, kw=kw or {}, variant=variant, flags=flags, p0=p0, p1=p1,
                                 p2=p2, extra=extra, loose=loose)


def _img_sizes(n):
    return torch.rand(n, 2, generator=torch.Generator().manual_seed(3)) * 500 + 100


CASES = [
    _case("iou", "iou", iou_loss),
    _case("iou_square", "iou_square", iou_loss, {"mode": "square"}),
    _case("iou_log", "iou_log", iou_loss, {"mode": "log"}),
    _case("giou", "giou", giou_loss),
    _case("diou", "diou", diou_loss),
    _case("ciou", "ciou", ciou_loss),
    _case("ciou-gated", "ciou", ciou_loss, {"gate_alpha": True}, flags=ALPHA_GATED),
    _case("ciou-paper", "ciou", paper_ciou_loss, flags=PAPER_GRAD),
    _case("ciou-gated-paper", "ciou", paper_ciou_loss, {"gate_alpha": True}, flags=ALPHA_GATED | PAPER_GRAD),
    _case("eiou", "eiou", eiou_loss),
    _case("focal_eiou-0.5", "focal_eiou", focal_eiou_loss, {"gamma": 0.5}, variant=SQRT, p0=0.5),
    _case("focal_eiou-1", "focal_eiou", focal_eiou_loss, {"gamma": 1.0}, variant=ONE, p0=1.0),
    _case("focal_eiou-2", "focal_eiou", focal_eiou_loss, {"gamma": 2.0}, variant=POW, p0=2.0),
    _case("focal_eiou-0", "focal_eiou", focal_eiou_loss, {"gamma": 0.0}, variant=POW, p0=0.0),  # = EIoU
    _case("siou-4", "siou", siou_loss, {"theta": 4.0}, variant=POW, p0=4.0),
    _case("siou-1", "siou", siou_loss, {"theta": 1.0}, variant=ONE, p0=1.0),
    _case("siou-2.5", "siou", siou_loss, {"theta": 2.5}, variant=POW, p0=2.5),
    _case("alpha_iou-3", "alpha_iou", alpha_iou_loss, {"alpha": 3.0}, variant=POW, p0=3.0),
    _case("alpha_iou-0.5", "alpha_iou", alpha_iou_loss, {"alpha": 0.5}, variant=SQRT, p0=0.5),
    _case("alpha_iou-1", "alpha_iou", alpha_iou_loss, {"alpha": 1.0}, variant=ONE, p0=1.0),
    _case("alpha_giou-3", "alpha_giou", alpha_iou_loss, {"base": "giou", "alpha": 3.0}, variant=POW, p0=3.0),
    _case("alpha_giou-1", "alpha_giou", alpha_iou_loss, {"base": "giou", "alpha": 1.0}, variant=ONE, p0=1.0),
    _case("alpha_giou-0.5", "alpha_giou", alpha_iou_loss, {"base": "giou", "alpha": 0.5}, variant=SQRT, p0=0.5,
          loose=True),
    _case("alpha_diou-3", "alpha_diou", alpha_iou_loss, {"base": "diou", "alpha": 3.0}, variant=POW, p0=3.0),
    _case("alpha_diou-0.5", "alpha_diou", alpha_iou_loss, {"base": "diou", "alpha": 0.5}, variant=SQRT, p0=0.5),
    _case("alpha_diou-1", "alpha_diou", alpha_iou_loss, {"base": "diou", "alpha": 1.0}, variant=ONE, p0=1.0),
    _case("alpha_ciou-3", "alpha_ciou", alpha_iou_loss, {"base": "ciou", "alpha": 3.0}, variant=POW, p0=3.0),
    _case("alpha_ciou-0.5", "alpha_ciou", alpha_iou_loss, {"base": "ciou", "alpha": 0.5}, variant=SQRT, p0=0.5),
    _case("alpha_ciou-1", "alpha_ciou", alpha_iou_loss, {"base": "ciou", "alpha": 1.0}, variant=ONE, p0=1.0),
    _case("wiou_v1", "wiou_v1", wiou_v1_loss),
    _case("wiou_v3", "wiou_v3", wiou_v3_loss, {"iou_mean": 0.3}, p1=math.log(1.9), p2=3.0, extra=0.3),
    _case("wiou_v3-2.5-2", "wiou_v3", wiou_v3_loss, {"iou_mean": torch.tensor(0.6), "alpha": 2.5, "delta": 2.0},
          p1=math.log(2.5), p2=2.0, extra=0.6),
    _case("mpdiou", "mpdiou", mpdiou_loss, {"img_size": (640, 480)}, extra="img"),
    _case("mpdiou-per-box", "mpdiou", mpdiou_loss, {"img_size": "per-box"}, extra="img"),
    _case("inner_iou", "inner_iou", inner_iou_loss, p0=0.35),
    _case("inner_iou-1.3", "inner_iou", inner_iou_loss, {"ratio": 1.3}, p0=0.65),
    _case("inner_giou", "inner_giou", inner_iou_loss, {"base": "giou"}, p0=0.35),
    _case("inner_diou", "inner_diou", inner_iou_loss, {"base": "diou"}, p0=0.35),
    _case("inner_ciou-1.2", "inner_ciou", inner_iou_loss, {"base": "ciou", "ratio": 1.2}, p0=0.6),
    _case("inner_eiou", "inner_eiou", inner_iou_loss, {"base": "eiou"}, p0=0.35),
    _case("inner_siou", "inner_siou", inner_iou_loss, {"base": "siou"}, p0=0.35),
    _case("shape_iou-0", "shape_iou", shape_iou_loss, {"scale": 0.0}, variant=SCALE0, p0=0.0),
    _case("shape_iou-0.5", "shape_iou", shape_iou_loss, {"scale": 0.5}, variant=SQRT, p0=0.5),
    _case("shape_iou-1", "shape_iou", shape_iou_loss, {"scale": 1.0}, variant=ONE, p0=1.0),
    _case("shape_iou-1.5", "shape_iou", shape_iou_loss, {"scale": 1.5}, variant=POW, p0=1.5),
]
assert {c.kind for c in CASES} == set(KINDS)
# the first case of each kind (its default arguments); CIoU's flags all four
CUDA_CASES = [c for i, c in enumerate(CASES) if c.kind == "ciou" or c.kind not in {d.kind for d in CASES[:i]}]


def _ids(c):
    return c.label


# ---- boxes ------------------------------------------------------------------------------------------

DEGENERATE_P = [[1, 1, 1, 5], [2, 2, 2, 2], [5, 5, 3, 3], [0, 0, 0, 0], [4, 4, 1, 9], [2, 2, 2, 2], [7, 7, 7, 7]]
DEGENERATE_T = [[0, 0, 4, 4], [2, 2, 2, 2], [0, 0, 4, 4], [0, 0, 0, 0], [4, 4, 1, 9], [1, 1, 2, 2], [1, 1, 2, 2]]
# zero width; 0x0 on itself; inverted (x2 < x1); both 0x0 at 0; both inverted; 0x0 on a box's corner; 0x0 away
TIES_P = [[0, 0, 4, 4], [1, 1, 3, 3], [0, 0, 2, 2], [1, 1, 4, 3], [2, 0, 6, 4], [1, 2, 5, 6], [0, 0, 4, 4]]
TIES_T = [[0, 0, 2, 6], [3, 1, 5, 3], [1, 0, 3, 2], [0, 0, 4, 4], [0, 0, 4, 4], [1, 2, 5, 6], [1, 1, 3, 3]]
# integer-grid ties of min/max: shared x1 and y1; touching sides (zero-width intersection); shared y sides (twice,
# with overlaps of 1 and 2); a shared x2, nested; identical; nested with the same centre (dx = dy = 0)


def pairs(n_random=16, seed=1):
    """38 xyxy float32 pairs -- overlapping, disjoint, identical, degenerate, integer ties -- and the rows of the
    identical ones."""
    p, t = overlapping_pairs(n_random, dtype=torch.float32, seed=seed)
    pred = torch.cat([p, random_boxes(4, dtype=torch.float32, seed=seed + 2) + 300, t[:4],
                      torch.tensor(DEGENERATE_P + TIES_P, dtype=torch.float32)])
    target = torch.cat([t, random_boxes(4, dtype=torch.float32, seed=seed + 3), t[:4],
                        torch.tensor(DEGENERATE_T + TIES_T, dtype=torch.float32)])
    identical = list(range(n_random + 4, n_random + 8)) + [n_random + 8 + len(DEGENERATE_P) + 5]
    return pred, target, identical


def _nested(pred, target):
    """One box inside the other, or equal (xyxy): the enclosing box is the union."""
    inside = lambda a, b: (a[:, :2] >= b[:, :2]).all(-1) & (a[:, 2:] <= b[:, 2:]).all(-1)  # noqa: E731
    return inside(pred, target) | inside(target, pred)


def _reference_kwargs(case, n, device="cpu"):
    kw = dict(case.kw)
    if kw.get("img_size") == "per-box":
        kw["img_size"] = _img_sizes(n).to(device)
    return {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in kw.items()}


def _extra(case, kw, n, device="cpu"):
    """The kernels' extra input, as the dispatch builds it."""
    if case.extra == "img":
        size = kw["img_size"]
        if isinstance(size, torch.Tensor):
            return (size.float() * size.float()).sum(-1).clamp_min(EPS).contiguous()
        return torch.full((n,), max(float(size[0]) ** 2 + float(size[1]) ** 2, EPS), device=device)
    return torch.full((1,), 0.0 if case.extra is None else max(case.extra, EPS), device=device)


def _codes(case):
    return KINDS[case.kind], case.variant, case.flags, EPS, case.p0, case.p1, case.p2


# ---- running the two implementations ----------------------------------------------------------------


def run_reference(case, pred, target, fmt, grads):
    """Loss and, per upstream gradient in ``grads``, (grad pred, grad target) of the eager reference."""
    p = pred.detach().clone().requires_grad_(True)
    t = target.detach().clone().requires_grad_(True)
    kw = _reference_kwargs(case, len(pred), pred.device)
    loss = case.fn(p, t, fmt=fmt, reduction="none", impl="reference", **kw)
    out = [torch.autograd.grad(loss, (p, t), g, retain_graph=True) for g in grads]
    return loss.detach(), out


def run_kernels(mod, case, pred, target, fmt, grads, need=(True, True)):
    kind, variant, flags, eps, p0, p1, p2 = _codes(case)
    ex = _extra(case, _reference_kwargs(case, len(pred), pred.device), len(pred), pred.device)
    args = (kind, FMTS[fmt], variant, flags, eps, p0, p1, p2, pred, target, ex)
    loss = mod.box_loss_forward(*args)
    return loss, [mod.box_loss_backward(*args, g, *need) for g in grads]


# ---- the interpreter, isolated ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def interp():
    """An interpreted copy of ``triton_losses`` (the launchers), private to this file."""
    with interpreter_imports() as (_, losses):
        pass
    assert type(losses._box_loss_kernel).__name__ == "InterpretedFunction"
    return losses


# ---- tests --------------------------------------------------------------------------------------------


def _close(a, b, rtol=1e-6):
    assert torch.isfinite(a).all(), "non-finite values"
    assert_close_scaled(a, b, rtol)


@pytest.mark.parametrize("fmt", list(FMTS))
@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_agrees(interp, case, fmt):
    """Values and gradients (per-box and expanded scalar upstream) against the reference; identical boxes give
    exactly 0; one-sided gradients are the two-sided ones."""
    pred, target, identical = pairs()
    n = len(pred)
    grads = [torch.rand(n, generator=torch.Generator().manual_seed(7)) + 0.5, torch.full((1,), 0.7).expand(n)]
    p, t = box_convert(pred, "xyxy", fmt).contiguous(), box_convert(target, "xyxy", fmt).contiguous()
    loss, bwd = run_kernels(interp, case, p, t, fmt, grads)
    ref_loss, ref_bwd = run_reference(case, p, t, fmt, grads)

    assert loss.shape == (n,) and loss.dtype == torch.float32
    _close(loss, ref_loss)
    assert (loss[identical] == 0).all(), loss[identical]
    # alpha < 1 on the GIoU penalty: on nested boxes it is rounding noise (~1 ulp), which x^alpha's derivative
    # blows up differently on each path (tests/boxes/test_kernels_dispatch_newer.py::test_alpha_giou_below_one)
    rows = ~_nested(pred, target) if case.loose else torch.ones(n, dtype=torch.bool)
    for (gp, gt), (rp, rt) in zip(bwd, ref_bwd):
        assert gp.shape == (n, 4) and gt.shape == (n, 4)
        _close(gp[rows], rp[rows])
        _close(gt[rows], rt[rows])
        if case.loose:  # and the nested rows loosely, as test_kernels_cpu.py holds the C++ kernels there
            _close(gp, rp, 1e-3)
            _close(gt, rt, 1e-3)
    if fmt == "xyxy":
        _, one_sided = run_kernels(interp, case, p, t, fmt, grads[:1], need=(True, False))
        _, other_side = run_kernels(interp, case, p, t, fmt, grads[:1], need=(False, True))
        assert one_sided[0][1] is None and other_side[0][0] is None
        assert torch.equal(one_sided[0][0], bwd[0][0]) and torch.equal(other_side[0][1], bwd[0][1])


def test_paper_reference_is_ciou():
    """The eager paper-gradient reference has CIoU's values, and exact-mode gradients differ from it."""
    pred, target, _ = pairs()
    for gated in (False, True):
        p = pred.clone().requires_grad_(True)
        ref = ciou_loss(p, target, reduction="none", impl="reference", gate_alpha=gated)
        paper = paper_ciou_loss(p, target, gate_alpha=gated)
        assert torch.equal(ref, paper)
        (g_ref,) = torch.autograd.grad(ref.sum(), p)
        (g_paper,) = torch.autograd.grad(paper.sum(), p)
        assert not torch.allclose(g_ref, g_paper)


class _Spy:
    """Stands in for the kernel: records each launch's arguments and runs the real one."""

    def __init__(self, kernel):
        self.kernel, self.launches = kernel, []

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            self.launches.append((args, kwargs))
            return self.kernel[grid](*args, **kwargs)

        return launch


def test_gradient_strides_and_empty_input(interp, monkeypatch):
    """An expanded scalar gradient reaches the kernel as it is (stride 0, same storage); other strides and
    dtypes give the same result; n = 0 launches nothing; no gradient wanted launches nothing."""
    spy = _Spy(interp._box_loss_kernel)
    monkeypatch.setattr(interp, "_box_loss_kernel", spy)
    pred, target, _ = pairs()
    n = len(pred)
    codes = (KINDS["ciou"], 0, 0, 0, EPS, 0.0, 0.0, 0.0, pred, target, torch.ones(1))
    scalar = torch.full((1,), 0.7).expand(n)
    gp, gt = interp.box_loss_backward(*codes, scalar, True, True)
    args = spy.launches[-1][0]
    assert args[4] is scalar and args[5] == 0
    dense_p, dense_t = interp.box_loss_backward(*codes, torch.full((n,), 0.7), True, True)
    torch.testing.assert_close((gp, gt), (dense_p, dense_t), rtol=0, atol=0)
    spaced = torch.full((2 * n,), 0.7)[::2]  # stride 2: made contiguous
    torch.testing.assert_close(interp.box_loss_backward(*codes, spaced, True, True), (gp, gt), rtol=0, atol=0)
    as_double = torch.full((1,), 0.7, dtype=torch.float64).expand(n)  # cast to float32, still stride 0
    torch.testing.assert_close(interp.box_loss_backward(*codes, as_double, True, True), (gp, gt), rtol=0, atol=0)
    assert spy.launches[-1][0][5] == 0

    launches = len(spy.launches)
    assert interp.box_loss_backward(*codes, scalar, False, False) == (None, None)
    empty = torch.zeros(0, 4)
    empty_codes = codes[:8] + (empty, empty, torch.ones(1))
    assert interp.box_loss_forward(*empty_codes).shape == (0,)
    gp0, gt0 = interp.box_loss_backward(*empty_codes, torch.zeros(0), True, True)
    assert gp0.shape == (0, 4) and gt0.shape == (0, 4)
    mp_codes = (KINDS["mpdiou"],) + codes[1:8] + (empty, empty, torch.zeros(0))
    assert interp.box_loss_forward(*mp_codes).shape == (0,)
    assert len(spy.launches) == launches


def test_argument_checks(interp):
    """Codes the kernels do not have, an exponent that does not match its variant, a missing extra input and
    badly shaped boxes raise ValueError (before any launch); CIoU's flags are ignored by other kinds."""
    pred, target, _ = pairs()
    one = torch.ones(1)
    bad = [
        (len(KINDS), 0, 0, 0, EPS, 0.0, 0.0, 0.0, pred, target, one),  # unknown kind
        (KINDS["iou"], 3, 0, 0, EPS, 0.0, 0.0, 0.0, pred, target, one),  # unknown format
        (KINDS["ciou"], 0, 0, 4, EPS, 0.0, 0.0, 0.0, pred, target, one),  # unknown flag
        (KINDS["alpha_iou"], 0, ONE, 0, EPS, 3.0, 0.0, 0.0, pred, target, one),  # alpha 3 is VARIANT_POW
        (KINDS["shape_iou"], 0, POW, 0, EPS, 0.0, 0.0, 0.0, pred, target, one),  # scale 0 is VARIANT_SCALE0
        (KINDS["mpdiou"], 0, 0, 0, EPS, 0.0, 0.0, 0.0, pred, target, one),  # MPDIoU reads extra per box
        (KINDS["iou"], 0, 0, 0, EPS, 0.0, 0.0, 0.0, pred.double(), target.double(), one),
        (KINDS["iou"], 0, 0, 0, EPS, 0.0, 0.0, 0.0, pred.t().contiguous().t(), target, one),
    ]
    for codes in bad:
        with pytest.raises(ValueError):
            interp.box_loss_forward(*codes)
    assert variant_of(3.0) == POW
    plain = interp.box_loss_forward(KINDS["giou"], 0, 0, 0, EPS, 0.0, 0.0, 0.0, pred, target, one)
    flagged = interp.box_loss_forward(KINDS["giou"], 0, 0, ALPHA_GATED | PAPER_GRAD, EPS, 0.0, 0.0, 0.0, pred, target, one)
    assert torch.equal(plain, flagged)


def test_availability_and_broken_state(interp, monkeypatch):
    assert interp.unavailable_reason(torch.float32) is None
    assert "float32 only" in interp.unavailable_reason(torch.float64)
    assert "float32 only" in interp.unavailable_reason(torch.bfloat16)
    monkeypatch.setattr(interp, "triton", None)
    assert "not installed" in interp.unavailable_reason(torch.float32)
    monkeypatch.undo()
    monkeypatch.setattr(interp, "_BROKEN", None)
    with pytest.warns(RuntimeWarning, match="Triton kernels failed"):
        interp.mark_broken(RuntimeError("no ptxas for this GPU"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once only
        interp.mark_broken(RuntimeError("again"))
    assert "failed earlier" in interp.unavailable_reason(torch.float32)


def test_interpreter_does_not_leak(interp):
    """The fixture's copies are private: the modules importable by name are the ordinary ones."""
    from boxloss.boxes.kernels import triton_losses

    assert triton_losses is not interp
    if os.environ.get("TRITON_INTERPRET", "0") != "1":
        assert type(triton_losses._box_loss_kernel).__name__ == "JITFunction"


# the heaviest specialisations, and one of each part of the kernel the others do not reach
COMPILED = [("ciou-gated-paper", "xyxy"), ("siou-2.5", "xyxy"), ("shape_iou-1.5", "cxcywh"), ("shape_iou-0", "xywh"),
            ("inner_siou", "xyxy"), ("alpha_giou-0.5", "xyxy"), ("alpha_ciou-0.5", "xyxy"), ("wiou_v3", "xyxy"),
            ("mpdiou", "xyxy"), ("focal_eiou-0.5", "xyxy"), ("iou_log", "xyxy")]


@pytest.mark.slow
def test_compiles_for_a_cuda_target():
    """The interpreter runs Python, not Triton's compiler: compile the kernel (to an sm_90 cubin, which needs no
    GPU) for the specialisations COMPILED, forward and backward, so code only the compiler rejects fails on CPU
    machines too. Needs Triton's NVIDIA backend (its bundled ptxas): without it, a missing tool."""
    if importlib.util.find_spec("triton.backends.nvidia") is None:
        pytest.skip("triton has no NVIDIA backend")
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    with interpreter_imports(TRITON_MODULES, interpret="0") as (_, compiled):
        pass
    kernel = compiled._box_loss_kernel
    assert type(kernel).__name__ == "JITFunction"
    floats = ("eps", "expo", "half_ratio", "p1", "p2")
    signature = {a: "*fp32" if a.endswith("_ptr") else "fp32" if a in floats else "i32" for a in kernel.arg_names}
    by_label = {c.label: c for c in CASES}
    for label, fmt in COMPILED:
        case = by_label[label]
        consts, _, _ = compiled._config(KINDS[case.kind], FMTS[fmt], case.variant, case.flags, case.p0)
        for backward in (False, True):
            constexprs = dict(consts, BACKWARD=backward, NEED_P=backward, NEED_T=backward, BLOCK=compiled.BLOCK)
            sig = dict(signature, **{k: "constexpr" for k in constexprs})
            out = triton.compile(ASTSource(fn=kernel, signature=sig, constexprs=constexprs),
                                 target=GPUTarget("cuda", 90, 32))
            assert out.asm.get("cubin"), (label, fmt, backward)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU on this machine")
@pytest.mark.parametrize("case", CUDA_CASES, ids=_ids)
def test_cuda_matches_reference(case):
    """The compiled kernels on the GPU against the reference on the GPU (4096 overlapping pairs and the
    special boxes), per-box and expanded scalar upstream gradients; then again under
    ``torch.cuda.set_sync_debug_mode("error")``: no host-device synchronisation in the launchers."""
    from boxloss.boxes.kernels import triton_losses

    kernel_type = type(triton_losses._box_loss_kernel).__name__
    assert kernel_type == "JITFunction", "TRITON_INTERPRET=1: not the compiled kernels"
    p, t = overlapping_pairs(4096, dtype=torch.float32, seed=5)
    sp, st, _ = pairs()
    pred, target = torch.cat([p, sp]).cuda(), torch.cat([t, st]).cuda()
    n = len(pred)
    grads = [torch.rand(n, generator=torch.Generator().manual_seed(7)).cuda() + 0.5,
             torch.full((1,), 0.7, device="cuda").expand(n)]
    kind, variant, flags, eps, p0, p1, p2 = _codes(case)
    kw = _reference_kwargs(case, n, "cuda")
    args = (kind, 0, variant, flags, eps, p0, p1, p2, pred, target, _extra(case, kw, n, "cuda"))
    loss = triton_losses.box_loss_forward(*args)
    bwd = [triton_losses.box_loss_backward(*args, g, True, True) for g in grads]
    ref_loss, ref_bwd = run_reference(case, pred, target, "xyxy", grads)
    _close(loss.cpu(), ref_loss.cpu())
    for (gp, gt), (rp, rt) in zip(bwd, ref_bwd):
        _close(gp.cpu(), rp.cpu())
        _close(gt.cpu(), rt.cpu())
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        triton_losses.box_loss_forward(*args)
        triton_losses.box_loss_backward(*args, grads[1], True, True)  # compiled above: no compile in here
    finally:
        torch.cuda.set_sync_debug_mode(0)
