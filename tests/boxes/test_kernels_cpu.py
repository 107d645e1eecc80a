"""The unified fused CPU kernels (boxloss/boxes/kernels/cpu.py over cpu/*.h and cpu/kernels.cpp).

For every kind of kinds.py (CIoU's four flag combinations, every exponent variant), every box format,
fp32 and fp64, the launchers' loss and gradients (an upstream gradient random per box, and an expanded
scalar with stride 0) agree with the reference path (the public loss functions with impl="reference", the
specification) within 1e-6 in fp32 and 1e-12 in fp64, normwise (|fused - ref| <= tol * max|ref| per
tensor) -- as the public losses' fused path is held too (test_kernels_dispatch.py,
test_kernels_dispatch_newer.py) -- on random, disjoint, identical and degenerate boxes (zero width or
height, 0x0, x2 < x1) and on an integer grid (min/max ties, clamps hit exactly, |.| at 0); identical
boxes give exactly 0. Plus gradcheck in fp64 through a launcher-backed autograd.Function, Smooth L1, the
multi-threaded loops, bad codes, the ABI table against abi.h, and the build machinery (cache, the compile
announcement, no compiler, a failed build, BOXLOSS_CPU_KERNELS=0). What the public losses do then (the
fallback to the reference path) is in test_kernels_dispatch.py.

Skips only when no C++ compiler is found; a compiler that fails to build the library fails the tests.
"""

import ctypes
import logging
import math
import os
import re
import shutil
import subprocess
import sys
import tomllib
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from boxloss.boxes import (
    alpha_iou_loss,
    box_convert,
    ciou_loss,
    diou_loss,
    eiou_loss,
    focal_eiou_loss,
    giou_loss,
    inner_iou_loss,
    iou_loss,
    mpdiou_loss,
    shape_iou_loss,
    siou_loss,
    smooth_l1_loss,
    wiou_v1_loss,
    wiou_v3_loss,
)
from boxloss.boxes.kernels import cpu
from boxloss.boxes.kernels.kinds import (
    ALPHA_GATED,
    EXPONENT_KINDS,
    FMTS,
    KINDS,
    PAPER_GRAD,
    PER_BOX_EXTRA,
    VARIANT_ONE,
    VARIANT_POW,
    VARIANT_SCALE0,
    VARIANT_SQRT,
    variant_of,
)
from boxloss.boxes.overlaps import prepare_box_pair
from boxloss.boxes.siou import siou_per_box

from box_cases import overlapping_pairs, random_boxes
from fused_agreement import assert_close_scaled

pytestmark = pytest.mark.skipif(shutil.which(os.environ.get("CXX", "c++")) is None,
                                reason="no C++ compiler for the fused kernels")

EPS = 1e-7
REF_TOL = {torch.float32: 1e-6, torch.float64: 1e-12}


@pytest.fixture(scope="module", autouse=True)
def lib():
    """The library, built here (a failed build raises: a test failure, not a skip) and installed for the
    launchers; the previous state is restored afterwards."""
    saved = (cpu._LIBRARY.lib, cpu._LIBRARY.tried)
    built = cpu.build()
    cpu._reset_for_tests(built, tried=True)
    yield built
    cpu._reset_for_tests(*saved)


# ---------------------------------------------------------------- the cases: every kind, flag and variant


@dataclass
class Case:
    name: str  # a key of kinds.KINDS
    fn: object  # the public function (its reference path); None: `ref` only
    kw: dict = field(default_factory=dict)  # its loss-specific arguments
    variant: int = 0
    flags: int = 0
    p0: float = 0.0
    p1: float = 0.0
    p2: float = 0.0
    extra: object = None  # a float (one value), "per_box" (MPDIoU's image diagonals per box), or None
    ref: object = None  # a reference per-box function (p, t xyxy in the compute dtype) when fn is None

    @property
    def kind(self):
        return KINDS[self.name]

    def id(self):
        bits = [self.name] + [f"{k}={v}" for k, v in self.kw.items()]
        return "-".join(bits) + (f"-v{self.variant}" if self.kind in EXPONENT_KINDS else "")


def _exp(name, fn, key, e, **kw):
    return Case(name, fn, {key: e, **kw}, variant=variant_of(e), p0=e)


CASES = [
    Case("iou", iou_loss, {"mode": "linear"}),
    Case("iou_square", iou_loss, {"mode": "square"}),
    Case("iou_log", iou_loss, {"mode": "log"}),
    Case("giou", giou_loss),
    Case("diou", diou_loss),
    Case("ciou", ciou_loss),
    Case("ciou", ciou_loss, {"gate_alpha": True}, flags=ALPHA_GATED),
    Case("ciou", ciou_loss, {"grad_mode": "paper"}, flags=PAPER_GRAD),
    Case("ciou", ciou_loss, {"gate_alpha": True, "grad_mode": "paper"}, flags=ALPHA_GATED | PAPER_GRAD),
    Case("eiou", eiou_loss),
    *[_exp("focal_eiou", focal_eiou_loss, "gamma", e) for e in (1.0, 0.5, 2.0, 2.5)],
    *[_exp("siou", siou_loss, "theta", e) for e in (1.0, 4.0, 2.5)],
    # theta = 0.5 (sqrt) has no public path (siou_loss takes theta >= 1): the reference formula only
    Case("siou", None, {"theta": 0.5}, variant=VARIANT_SQRT, p0=0.5, ref=lambda p, t: siou_per_box(p, t, EPS, 0.5)[0]),
    *[_exp(f"alpha_{b}", alpha_iou_loss, "alpha", e, base=b) for b in ("iou", "giou", "diou", "ciou")
      for e in (1.0, 0.5, 3.0)],
    Case("wiou_v1", wiou_v1_loss),
    Case("wiou_v3", wiou_v3_loss, {"iou_mean": 0.3}, p1=math.log(1.9), p2=3.0, extra=0.3),
    Case("wiou_v3", wiou_v3_loss, {"iou_mean": 0.6, "alpha": 2.5, "delta": 2.0}, p1=math.log(2.5), p2=2.0,
         extra=0.6),
    Case("mpdiou", mpdiou_loss, {"img_size": (640, 480)}, extra=640.0**2 + 480.0**2),
    Case("mpdiou", mpdiou_loss, {"img_size": "per_box"}, extra="per_box"),
    *[Case(f"inner_{b}", inner_iou_loss, {"base": b}, p0=0.35) for b in ("iou", "giou", "diou", "ciou", "eiou", "siou")],
    Case("inner_iou", inner_iou_loss, {"base": "iou", "ratio": 1.3}, p0=0.65),
    Case("shape_iou", shape_iou_loss, {"scale": 0.0}, variant=VARIANT_SCALE0),
    *[_exp("shape_iou", shape_iou_loss, "scale", e) for e in (1.0, 0.5, 1.5)],
]


def _public_kw(kw, img_sizes):
    return dict(kw, img_size=img_sizes) if kw.get("img_size") == "per_box" else kw


def test_every_kind_flag_and_variant_is_covered():
    assert {c.kind for c in CASES} == set(KINDS.values())
    assert {c.flags for c in CASES if c.name == "ciou"} == {0, 1, 2, 3}
    for kind in EXPONENT_KINDS:
        want = {0, 1, 2, 3} if kind == KINDS["shape_iou"] else {0, 1, 2}
        assert {c.variant for c in CASES if c.kind == kind} == want, kind


# ---------------------------------------------------------------- boxes


DEGENERATE_P = [[1, 1, 1, 5], [2, 2, 2, 2], [5, 5, 3, 3], [0, 0, 0, 0], [4, 4, 1, 9], [3, 3, 3, 3], [1, 1, 3, 3],
                [7, 7, 7, 7], [1, 1, 5, 5]]
DEGENERATE_T = [[0, 0, 4, 4], [2, 2, 2, 2], [0, 0, 4, 4], [0, 0, 0, 0], [4, 4, 1, 9], [1, 1, 2, 2], [2, 1, 4, 3],
                [1, 1, 2, 2], [1, 1, 5, 5]]
# zero width, 0x0 on itself, inverted, both 0x0, both inverted, disjoint, same centre / other size, ..., identical
IDENTICAL = slice(350, 370)  # rows of _pairs_all_regimes that are identical pairs


def _integer_grid(n, seed=0):
    """Corners on a 5x5 grid: shared edges (min/max ties), equal sides, dx = 0 or dy = 0, clamps hit exactly;
    half valid boxes, half raw corners (inverted boxes included)."""
    g = torch.Generator().manual_seed(seed)
    p, t = (torch.randint(0, 5, (n, 4), generator=g).double() for _ in range(2))
    for b in (p, t):
        b[: n // 2, 2:] = b[: n // 2, :2] + torch.randint(0, 4, (n // 2, 2), generator=g).double()
    return p, t


def _pairs_all_regimes(dtype):
    """xyxy pairs: overlapping, disjoint, identical, degenerate, and integer-grid ties. In fp32 the grid's
    inverted pairs are left out: where both boxes are inverted c^2 is clamped to eps, rho^2/eps reaches 1e8
    and fp32's x^alpha = exp(alpha log x) (Alpha-IoU) is then ~5e-6 off torch's pow (fp64 keeps them: there
    only the tie and clamp rules can make a difference)."""
    p, t = overlapping_pairs(300, dtype=torch.float64, seed=3)
    far = random_boxes(50, seed=7) + 300.0
    gp, gt = _integer_grid(400)
    if dtype == torch.float32:
        gp, gt = gp[:200], gt[:200]
    pred = torch.cat([p, far, t[:20], torch.tensor(DEGENERATE_P, dtype=torch.float64), gp])
    target = torch.cat([t, random_boxes(50, seed=8), t[:20], torch.tensor(DEGENERATE_T, dtype=torch.float64), gt])
    return pred.to(dtype), target.to(dtype)


def _nested(p, t):
    inside = lambda a, b: (a[:, :2] >= b[:, :2]).all(-1) & (a[:, 2:] <= b[:, 2:]).all(-1)  # noqa: E731
    return inside(p, t) | inside(t, p)


# ---------------------------------------------------------------- the two paths


def _extra(case, n, dtype, img_sizes):
    if case.extra is None:
        return torch.zeros(1, dtype=dtype)  # what the dispatch passes to kinds that do not read it
    if case.extra == "per_box":
        s = img_sizes.to(dtype)
        return (s * s).sum(-1).clamp_min(EPS)  # mpdiou._img_diag2 of a tensor
    return torch.full((1,), max(case.extra, EPS), dtype=dtype)


def _launchers(case, p, t, fmt, grads, img_sizes):
    """Loss and, per upstream gradient, (grad_p, grad_t) through the launchers."""
    extra = _extra(case, p.shape[0], p.dtype, img_sizes)
    cfg = (case.kind, FMTS[fmt], case.variant, case.flags, EPS, case.p0, case.p1, case.p2)
    loss = cpu.box_loss_forward(*cfg, p, t, extra)
    return loss, [cpu.box_loss_backward(*cfg, p, t, extra, g, True, True) for g in grads]


def _autograd(case, p, t, fmt, grads, img_sizes, impl):
    """Loss and gradients through the public function (or the reference formula) with `impl`."""
    a, b = p.clone().requires_grad_(True), t.clone().requires_grad_(True)
    if case.fn is None:
        pa, pb = prepare_box_pair(a, b, fmt)
        loss = case.ref(pa, pb)
    else:
        loss = case.fn(a, b, fmt=fmt, reduction="none", eps=EPS, impl=impl, **_public_kw(case.kw, img_sizes))
    return loss.detach(), [torch.autograd.grad(loss, (a, b), g, retain_graph=True) for g in grads]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("fmt", list(FMTS))
@pytest.mark.parametrize("case", CASES, ids=Case.id)
def test_agrees_with_reference(case, fmt, dtype):
    pred, target = _pairs_all_regimes(dtype)
    n = pred.shape[0]
    p, t = box_convert(pred, "xyxy", fmt).contiguous(), box_convert(target, "xyxy", fmt).contiguous()
    gen = torch.Generator().manual_seed(1)
    img_sizes = torch.rand(n, 2, generator=gen, dtype=torch.float64) * 500 + 100
    grads = [torch.rand(n, generator=gen, dtype=dtype) + 0.5, torch.tensor(1.7, dtype=dtype).expand(n)]
    assert grads[1].stride(0) == 0

    loss, bwd = _launchers(case, p, t, fmt, grads, img_sizes)
    assert loss.dtype == dtype and loss.shape == (n,)
    assert torch.isfinite(loss).all()
    assert (loss[IDENTICAL] == 0).all()  # identical boxes: exactly 0
    for gp, gt in bwd:
        assert gp.dtype == dtype and gp.shape == p.shape and gt.shape == t.shape
        assert torch.isfinite(gp).all() and torch.isfinite(gt).all()

    # the reference; CIoU's "paper" gradient has none (its value has: CIoU's)
    rtol = REF_TOL[dtype]
    rloss, rbwd = _autograd(case, p, t, fmt, grads, img_sizes, "reference") if not case.flags & PAPER_GRAD else \
        _autograd(Case("ciou", ciou_loss, {"gate_alpha": bool(case.flags & ALPHA_GATED)}), p, t, fmt, grads,
                  img_sizes, "reference")
    assert_close_scaled(loss, rloss, rtol)
    if not case.flags & PAPER_GRAD:
        # Alpha-GIoU with alpha < 1 on nested boxes: the penalty |C \ U| / |C| is 0 up to rounding and
        # alpha x^(alpha - 1) magnifies that rounding noise on both paths (test_kernels_dispatch_newer.py,
        # test_alpha_giou_below_one): compare those pairs' gradients loosely, the others tightly
        loose = _nested(pred, target) if (case.name == "alpha_giou" and case.p0 < 1) else torch.zeros(n, dtype=torch.bool)
        for (gp, gt), (rp, rt) in zip(bwd, rbwd):
            assert_close_scaled(gp[~loose], rp[~loose], rtol)
            assert_close_scaled(gt[~loose], rt[~loose], rtol)
            assert_close_scaled(gp, rp, 1e-3 if dtype == torch.float32 else 1e-7)


def test_ciou_paper_gradient():
    """"paper" drops the factor 1/(w^2 + h^2) of d atan(w/h): for cxcywh boxes, the v-part of the w, h gradient
    of pred is the exact one times w^2 + (h + eps)^2; the cx, cy gradients and the values are the exact ones."""
    pred, target = overlapping_pairs(200, dtype=torch.float64, seed=4)
    p, t = box_convert(pred, "xyxy", "cxcywh"), box_convert(target, "xyxy", "cxcywh")
    g = torch.ones(200, dtype=torch.float64)
    run = lambda kind, flags: cpu.box_loss_backward(KINDS[kind], 2, 0, flags, EPS, 0, 0, 0, p, t, None, g, True, False)[0]  # noqa: E731
    for gated in (0, ALPHA_GATED):
        exact, paper, diou = run("ciou", gated), run("ciou", gated | PAPER_GRAD), run("diou", 0)
        torch.testing.assert_close(paper[:, :2], exact[:, :2], rtol=1e-12, atol=1e-12)
        w, h = p[:, 2], p[:, 3] + EPS
        torch.testing.assert_close(paper[:, 2:] - diou[:, 2:], (exact[:, 2:] - diou[:, 2:]) * (w * w + h * h)[:, None],
                                   rtol=1e-9, atol=1e-12)
        assert torch.equal(cpu.box_loss_forward(KINDS["ciou"], 2, 0, gated, EPS, 0, 0, 0, p, t, None),
                           cpu.box_loss_forward(KINDS["ciou"], 2, 0, gated | PAPER_GRAD, EPS, 0, 0, 0, p, t, None))


def test_gradient_only_where_needed_and_empty_input():
    p, t = (x.float().contiguous() for x in overlapping_pairs(50, seed=14))
    g = torch.rand(50)
    both = cpu.box_loss_backward(KINDS["siou"], 0, VARIANT_POW, 0, EPS, 4.0, 0, 0, p, t, None, g, True, True)
    gp, gt = cpu.box_loss_backward(KINDS["siou"], 0, VARIANT_POW, 0, EPS, 4.0, 0, 0, p, t, None, g, True, False)
    assert gt is None and torch.equal(gp, both[0])
    gp, gt = cpu.box_loss_backward(KINDS["siou"], 0, VARIANT_POW, 0, EPS, 4.0, 0, 0, p, t, None, g, False, True)
    assert gp is None and torch.equal(gt, both[1])
    assert cpu.box_loss_backward(KINDS["siou"], 0, VARIANT_POW, 0, EPS, 4.0, 0, 0, p, t, None, g, False, False) == (None, None)
    # n = 0: empty outputs, no call (an empty tensor's data_ptr may be NULL)
    e = torch.zeros(0, 4)
    for kind in KINDS.values():
        extra = torch.zeros(0) if kind in PER_BOX_EXTRA else torch.zeros(1)
        assert cpu.box_loss_forward(kind, 0, 0, 0, EPS, 0.5, 0, 1, e, e, extra).shape == (0,)
        gp, gt = cpu.box_loss_backward(kind, 0, 0, 0, EPS, 0.5, 0, 1, e, e, extra, torch.zeros(0), True, True)
        assert gp.shape == (0, 4) and gt.shape == (0, 4)
    assert cpu.smooth_l1_forward(torch.zeros(0), torch.zeros(0), 1.0).shape == (0,)


# ---------------------------------------------------------------- gradcheck through the launchers


class _LauncherLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, p, t, cfg, extra):
        ctx.save_for_backward(p, t)
        ctx.cfg, ctx.extra = cfg, extra
        return cpu.box_loss_forward(*cfg, p, t, extra)

    @staticmethod
    def backward(ctx, grad):
        p, t = ctx.saved_tensors
        gp, gt = cpu.box_loss_backward(*ctx.cfg, p, t, ctx.extra, grad.contiguous(), *ctx.needs_input_grad[:2])
        return gp, gt, None, None


# kinds whose gradient is the derivative of their value (no detached factor); not Alpha-GIoU with alpha < 1,
# whose gradient on nested boxes is rounding noise magnified (see test_agrees_with_reference)
GRADCHECKED = [c for c in CASES if c.name in ("iou", "iou_square", "iou_log", "giou", "diou", "eiou", "mpdiou",
                                              "alpha_iou", "alpha_diou", "inner_giou", "inner_siou")
               or (c.name == "alpha_giou" and c.p0 >= 1)
               or (c.name in ("siou", "shape_iou") and c.variant == VARIANT_POW)]


@pytest.mark.parametrize("case", GRADCHECKED, ids=Case.id)
def test_gradcheck_fp64(case):
    gen = torch.Generator().manual_seed(11)
    pred, target = overlapping_pairs(8, dtype=torch.float64, seed=2)
    pred = pred + 0.01 * torch.rand(pred.shape, generator=gen, dtype=torch.float64)  # away from ties and kinks
    extra = torch.rand(8, generator=gen, dtype=torch.float64) * 1e4 + 100 if case.extra == "per_box" else \
        torch.full((1,), case.extra or 0.0, dtype=torch.float64)
    for fmt in FMTS:
        p = box_convert(pred, "xyxy", fmt).contiguous().requires_grad_(True)
        t = box_convert(target, "xyxy", fmt).contiguous().requires_grad_(True)
        cfg = (case.kind, FMTS[fmt], case.variant, case.flags, EPS, case.p0, case.p1, case.p2)
        assert torch.autograd.gradcheck(lambda a, b: _LauncherLoss.apply(a, b, cfg, extra), (p, t),
                                        eps=1e-6, atol=1e-7, rtol=1e-5)


def test_gradcheck_ciou_where_alpha_drops_out():
    """CIoU's alpha is a constant in backprop, so its gradient is the derivative only where v = 0: pred with
    the target's aspect ratio."""
    pred, target = overlapping_pairs(8, dtype=torch.float64, seed=2)
    same_ar = torch.cat([pred[:, :2], pred[:, :2] + 1.3 * (target[:, 2:] - target[:, :2])], -1)
    for fmt in FMTS:
        p = box_convert(same_ar, "xyxy", fmt).contiguous().requires_grad_(True)
        t = box_convert(target, "xyxy", fmt).contiguous().requires_grad_(True)
        for flags in (0, ALPHA_GATED):
            cfg = (KINDS["ciou"], FMTS[fmt], 0, flags, EPS, 0.0, 0.0, 0.0)
            assert torch.autograd.gradcheck(lambda a, b: _LauncherLoss.apply(a, b, cfg, None), (p, t),
                                            eps=1e-6, atol=1e-7, rtol=1e-5)


# ---------------------------------------------------------------- Smooth L1


@pytest.mark.parametrize("beta", [0.0, 0.1, 1.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_smooth_l1(beta, dtype):
    gen = torch.Generator().manual_seed(21)
    pred = torch.randn(2000, generator=gen, dtype=torch.float64)
    target = pred + torch.randn(2000, generator=gen, dtype=torch.float64) * torch.rand(2000, generator=gen,
                                                                                       dtype=torch.float64)
    target[:50] = pred[:50]  # zero difference: gradient 0, as torch's abs
    pred, target = pred.to(dtype), target.to(dtype)
    grads = [torch.rand(2000, generator=gen, dtype=dtype) + 0.5, torch.tensor(0.7, dtype=dtype).expand(2000)]
    loss = cpu.smooth_l1_forward(pred, target, beta)
    bwd = [cpu.smooth_l1_backward(pred, target, beta, g, True, True) for g in grads]
    a, b = pred.clone().requires_grad_(True), target.clone().requires_grad_(True)
    ref = smooth_l1_loss(a, b, beta=beta, reduction="none", impl="reference")
    assert_close_scaled(loss, ref.detach(), REF_TOL[dtype])
    for g, (gp, gt) in zip(grads, bwd):
        rp, rt = torch.autograd.grad(ref, (a, b), g, retain_graph=True)
        assert_close_scaled(gp, rp, REF_TOL[dtype])
        assert_close_scaled(gt, rt, REF_TOL[dtype])
        assert (gp[:50] == 0).all()
    gp, gt = cpu.smooth_l1_backward(pred, target, beta, grads[0], False, True)
    assert gp is None and torch.equal(gt, bwd[0][1])
    p2, t2 = pred.reshape(500, 4), target.reshape(500, 4)  # any shape: element-wise
    assert torch.equal(cpu.smooth_l1_forward(p2, t2, beta), loss.reshape(500, 4))


# ---------------------------------------------------------------- threads


def test_multithreaded_loops_give_the_same_numbers():
    """From 262,144 boxes (Smooth L1: 16x as many elements) the loops use torch's thread count: per-box
    results do not depend on it (and the chunking, and stride-0 inputs, are handled in every thread)."""
    n = 270_000
    p, t = (x.float().contiguous() for x in overlapping_pairs(n, seed=23))
    grads = [torch.rand(n), torch.tensor(0.3).expand(n)]
    extra = torch.rand(n) * 1e5 + 1e3
    cases = [(KINDS["ciou"], 0, ALPHA_GATED, torch.zeros(1)), (KINDS["siou"], VARIANT_POW, 0, torch.zeros(1)),
             (KINDS["mpdiou"], 0, 0, extra), (KINDS["mpdiou"], 0, 0, extra[:1]), (KINDS["wiou_v3"], 0, 0, extra[:1])]
    sp, st = p.reshape(-1).repeat(4), t.reshape(-1).repeat(4)  # 4.3M elements
    threads = torch.get_num_threads()
    results = []
    try:
        for nt in (1, 2):
            torch.set_num_threads(nt)
            out = []
            for kind, variant, flags, ex in cases:
                cfg = (kind, 1, variant, flags, EPS, 4.0, math.log(1.9), 3.0)
                out.append(cpu.box_loss_forward(*cfg, p, t, ex))
                out += [x for g in grads for x in cpu.box_loss_backward(*cfg, p, t, ex, g, True, True)]
            out.append(cpu.smooth_l1_forward(sp, st, 0.5))
            out += cpu.smooth_l1_backward(sp, st, 0.5, torch.tensor(2.0).expand(sp.numel()), True, True)
            results.append(out)
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(*results):
        assert torch.equal(a, b)


# ---------------------------------------------------------------- bad codes and arguments


def test_bad_codes_raise():
    p, t = (x.float().contiguous() for x in overlapping_pairs(10, seed=5))
    ex = torch.zeros(1)
    g = torch.ones(10)
    ok = (KINDS["giou"], 0, 0, 0, EPS, 0.0, 0.0, 0.0)
    cpu.box_loss_forward(*ok, p, t, ex)
    bad = {
        "bad kind": [(99, 0, 0, 0), (-1, 0, 0, 0), (len(KINDS), 0, 0, 0)],
        "bad box format": [(KINDS["giou"], 3, 0, 0), (KINDS["giou"], -1, 0, 0)],
        "bad variant": [(KINDS["giou"], 0, VARIANT_SQRT, 0), (KINDS["siou"], 0, VARIANT_SCALE0, 0),
                        (KINDS["shape_iou"], 0, 4, 0)],
        "bad flags": [(KINDS["giou"], 0, 0, ALPHA_GATED), (KINDS["ciou"], 0, 0, 4), (KINDS["alpha_ciou"], 0, 0, PAPER_GRAD)],
    }
    for message, codes in bad.items():
        for codes_ in codes:
            with pytest.raises(RuntimeError, match=message):
                cpu.box_loss_forward(*codes_, EPS, 0.5, 0.0, 0.0, p, t, ex)
            with pytest.raises(RuntimeError, match=message):
                cpu.box_loss_backward(*codes_, EPS, 0.5, 0.0, 0.0, p, t, ex, g, True, True)
    with pytest.raises(RuntimeError, match="missing pointer"):  # MPDIoU reads its extra input
        cpu.box_loss_forward(KINDS["mpdiou"], 0, 0, 0, EPS, 0, 0, 0, p, t, None)
    for args in ((p.double(), t), (p[:, :3].contiguous(), t[:, :3].contiguous()), (p.t().contiguous().t(), t),
                 (p.half(), t.half()), (p, t[:5])):
        with pytest.raises(ValueError, match="contiguous float32/float64"):
            cpu.box_loss_forward(*ok, *args, ex)
    with pytest.raises(ValueError, match="extra must have 10 values"):
        cpu.box_loss_forward(KINDS["mpdiou"], 0, 0, 0, EPS, 0, 0, 0, p, t, torch.ones(3))


def test_raw_abi_return_codes(lib):
    """What the launchers cannot pass: bad dtype, strides, sizes, NULL pointers; n = 0 still checks codes."""
    p, t = (x.float().contiguous() for x in overlapping_pairs(4, seed=6))
    out = torch.empty(4)
    ptrs = (p.data_ptr(), t.data_ptr())
    call = lambda dtype=0, kind=1, n=4, ex=None, exs=0, gout=None, gs=0, o=out.data_ptr(), red=0, gp=None: (  # noqa: E731
        lib.bl_box_loss(dtype, kind, 0, 0, 0, EPS, 0, 0, 0, n, *ptrs, ex, exs, gout, gs, o, red, gp, None, 1))
    assert call() == 0
    assert call(dtype=2) == 1 and call(dtype=-1) == 1
    assert call(kind=23) == 2 and call(kind=23, n=0) == 2
    assert call(n=-1) == 8
    assert call(exs=2) == 6
    assert call(o=None, gp=out.data_ptr(), gout=out.data_ptr(), gs=5) == 6
    assert call(o=None, gp=out.data_ptr()) == 7  # backward without gout
    assert call(kind=KINDS["mpdiou"]) == 7
    assert call(red=3) == 10 and call(red=-1) == 10
    assert call(o=None, red=1) == 7  # a sum with nowhere to write it
    assert call(gp=out.data_ptr(), gout=out.data_ptr(), gs=2) == 6  # forward+backward checks the gradient's stride
    assert lib.bl_box_loss(0, 1, 0, 0, 0, EPS, 0, 0, 0, 0, None, None, None, 0, None, 0, None, 0, None, None, 1) == 0
    assert lib.bl_smooth_l1(2, 4, *ptrs, 1.0, None, 0, out.data_ptr(), 0, None, None, 1) == 1
    assert lib.bl_smooth_l1(0, 4, None, None, 1.0, None, 0, out.data_ptr(), 0, None, None, 1) == 7
    assert lib.bl_smooth_l1(0, 4, *ptrs, 1.0, None, 0, out.data_ptr(), 3, None, None, 1) == 10
    assert lib.bl_smooth_l1(0, 4, *ptrs, 1.0, None, 0, None, 2, None, None, 1) == 7  # a mean with no out
    assert lib.bl_abi_version() == cpu.ABI_VERSION


# ---------------------------------------------------------------- the ABI: one declaration, checked


_CTYPES = {"int": ctypes.c_int, "double": ctypes.c_double, "int64_t": ctypes.c_int64}


def _abi_header():
    return (cpu.SOURCE_DIR / "abi.h").read_text()


def test_abi_table_matches_the_header():
    """cpu.ABI (the ctypes declarations) and abi.h's prototypes are the same functions and signatures."""
    text = re.sub(r"//[^\n]*", "", _abi_header())
    protos = dict(re.findall(r"\bint\s+(bl_\w+)\s*\(([^)]*)\)\s*;", text))
    assert set(protos) == set(cpu.ABI)
    for name, params in protos.items():
        params = " ".join(params.split())
        want = []
        if params != "void":
            for param in params.split(","):
                ctype = ctypes.c_void_p if "*" in param else _CTYPES[param.split()[-2]]
                want.append(ctype)
        restype, argtypes = cpu.ABI[name]
        assert restype is ctypes.c_int and list(argtypes) == want, name
    assert f"#define BL_ABI_VERSION {cpu.ABI_VERSION}\n" in text


def test_codes_match_kinds_py():
    text = _abi_header()
    enum = dict((k, int(v)) for k, v in re.findall(r"\bBL_(\w+) = (-?\d+)", text))
    for name, code in KINDS.items():
        assert enum[name.upper()] == code, name
    assert enum["NUM_KINDS"] == len(KINDS) == max(KINDS.values()) + 1
    for name, code in FMTS.items():
        assert enum[name.upper()] == code
    assert (enum["ALPHA_GATED"], enum["PAPER_GRAD"]) == (ALPHA_GATED, PAPER_GRAD)
    assert [enum[f"VARIANT_{v}"] for v in ("ONE", "SQRT", "POW", "SCALE0")] == [
        VARIANT_ONE, VARIANT_SQRT, VARIANT_POW, VARIANT_SCALE0]
    assert sorted(v for k, v in enum.items() if k.startswith(("BAD_", "NO_MEMORY"))) == sorted(cpu.ERRORS)
    assert {name: enum[f"REDUCE_{name.upper()}"] for name in cpu.REDUCTIONS} == cpu.REDUCTIONS


def test_sources_are_package_data():
    """Every source file the cache key hashes ships with the package (pyproject's package-data)."""
    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["boxloss.boxes.kernels"]
    kernels = cpu.SOURCE_DIR.parent
    shipped = {p for g in globs for p in kernels.glob(g)}
    files = cpu.source_files()
    assert {f.name for f in files} >= {"abi.h", "vecmath.h", "geometry.h", "terms.h", "box_losses.h", "kernels.cpp"}
    assert set(files) <= shipped


# ---------------------------------------------------------------- build, cache, messages, fallback


def test_cache_key_covers_every_source_file(monkeypatch, tmp_path):
    src = tmp_path / "cpu"
    shutil.copytree(cpu.SOURCE_DIR, src)
    monkeypatch.setattr(cpu, "SOURCE_DIR", src)
    key = cpu._cache_key("c++", ["-O3"])
    assert key == cpu._cache_key("c++", ["-O3"])
    assert key != cpu._cache_key("c++", ["-O2"]) and key != cpu._cache_key("clang++", ["-O3"])
    for f in cpu.source_files():
        original = f.read_text()
        f.write_text(original + "\n// changed\n")
        assert cpu._cache_key("c++", ["-O3"]) != key, f.name
        f.write_text(original)
    assert cpu._cache_key("c++", ["-O3"]) == key


def test_abi_version_is_checked_at_load(tmp_path):
    """A library whose bl_abi_version() is not ABI_VERSION is refused (so is one without the ABI's symbols)."""
    src = tmp_path / "other.c"
    src.write_text("int bl_abi_version(void) { return 999; }\nint bl_box_loss(void) { return 0; }\n"
                   "int bl_smooth_l1(void) { return 0; }\n")
    so = tmp_path / "libother.so"
    subprocess.run([os.environ.get("CXX", "c++"), "-x", "c", "-shared", "-fPIC", str(src), "-o", str(so)], check=True)
    with pytest.raises(OSError, match=f"ABI version 999, expected {cpu.ABI_VERSION}"):
        cpu._load(str(so))
    src.write_text(f"int bl_abi_version(void) {{ return {cpu.ABI_VERSION}; }}\n")
    so = tmp_path / "libpartial.so"  # another path: dlopen would return the library already loaded
    subprocess.run([os.environ.get("CXX", "c++"), "-x", "c", "-shared", "-fPIC", str(src), "-o", str(so)], check=True)
    with pytest.raises(AttributeError):
        cpu._load(str(so))


def test_kernels_cpp_is_also_the_whole_library_in_one_file(tmp_path):
    """cpu.py builds kernels.cpp as two parts compiled in parallel (BL_PART 0 and 1); without BL_PART the file
    alone is the whole library (what a cpp_extension build would compile): same symbols, same numbers. -O0
    keeps this test short; with -ffp-contract=off the arithmetic is the same at every optimisation level."""
    so = tmp_path / "libone.so"
    subprocess.run([os.environ.get("CXX", "c++"), "-O0", "-std=c++17", "-fPIC", "-shared", "-ffp-contract=off",
                    "-I", str(cpu.SOURCE_DIR), str(cpu.SOURCE_DIR / "kernels.cpp"), "-o", str(so)], check=True)
    one = cpu._load(str(so))
    p, t = (x.contiguous() for x in overlapping_pairs(300, seed=9))
    g = torch.rand(300, dtype=torch.float64)
    for dtype, kind, variant in ((torch.float64, KINDS["ciou"], 0), (torch.float32, KINDS["siou"], VARIANT_POW),
                                 (torch.float32, KINDS["shape_iou"], VARIANT_SQRT), (torch.float64, KINDS["giou"], 0)):
        outs = []
        for lib_ in (one, cpu.library()):
            a, b, gg = p.to(dtype), t.to(dtype), g.to(dtype)
            out, gp, gt = torch.empty(300, dtype=dtype), torch.empty_like(a), torch.empty_like(b)
            for o, x, y in ((out.data_ptr(), None, None), (None, gp.data_ptr(), gt.data_ptr())):
                assert lib_.bl_box_loss(cpu._DTYPES[dtype], kind, 2, variant, 0, EPS, 0.5, 0.0, 0.0, 300, a.data_ptr(),
                                        b.data_ptr(), None, 0, gg.data_ptr(), 1, o, 0, x, y, 1) == 0
            outs.append((out, gp, gt))
        for x, y in zip(*outs):
            assert torch.equal(x, y)


@pytest.fixture
def fake_compiler(monkeypatch, tmp_path):
    """A compile that only records its target (nothing is compiled) and a loader that accepts it."""
    compiled = []

    def compile_(cxx, target, flags):
        compiled.append(target)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        open(target, "wb").close()

    monkeypatch.setattr(cpu, "_compile", compile_)
    monkeypatch.setattr(cpu, "_load", lambda path: ("lib", path))
    monkeypatch.setattr(cpu, "_announced", False)
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    monkeypatch.setenv("CXX", sys.executable)  # a program that exists; never run
    return compiled


def test_a_compile_is_announced_once_with_its_time(fake_compiler, tmp_path, caplog):
    """The first call of a fused loss compiles for ~20-40 s: one line says so when it starts (what, with which
    compiler, where, how long, cached afterwards), one when it ends (its time); a cached load, and a second
    compile in the same process, say nothing."""
    with caplog.at_level(logging.INFO, logger="boxloss.boxes.kernels"):
        lib = cpu.build()
        assert cpu.build() == lib  # cached: loaded, not compiled
        cpu.build(force=True)  # compiled again, not announced again
    assert len(fake_compiler) == 2 and lib == ("lib", fake_compiler[0])
    assert fake_compiler[0].startswith(os.path.join(os.path.realpath(tmp_path), "boxloss_kernels") + os.sep)
    messages = [r.getMessage() for r in caplog.records if r.name == "boxloss.boxes.kernels"]
    assert len(messages) == 2, messages
    folder = os.path.join(os.path.realpath(tmp_path), "boxloss_kernels")
    assert messages[0] == (f"boxloss: compiling the fused CPU kernels boxloss_kernels with {sys.executable} into "
                           f"{folder} (~20-40 s, once: later runs load the cached library) ...")
    assert re.fullmatch(r"boxloss: compiled boxloss_kernels in \d+\.\d s", messages[1]), messages[1]


def test_without_logging_configured_the_compile_is_printed(fake_compiler, monkeypatch, capsys):
    monkeypatch.setattr(cpu, "_log", logging.Logger("unconfigured"))  # no handlers anywhere
    cpu.build()
    cpu.build(force=True)  # compiled again, not announced again
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and lines[0].startswith("boxloss: compiling the fused CPU kernels boxloss_kernels with ")
    assert lines[1].startswith("boxloss: compiled boxloss_kernels in ")


def test_no_compiler_failed_build_and_disabled(monkeypatch, tmp_path, lib):
    """No compiler: build() raises and library() warns once and returns None; launchers raise saying why.
    A compiler that fails is reported with its flags. BOXLOSS_CPU_KERNELS=0 disables the library."""
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    p, t = (x.float().contiguous() for x in overlapping_pairs(5, seed=7))
    try:
        monkeypatch.setenv("CXX", "/nonexistent/c++")
        with pytest.raises(RuntimeError, match="no C\\+\\+ compiler"):
            cpu.build()
        cpu._reset_for_tests()
        with pytest.warns(RuntimeWarning, match="fused CPU kernels unavailable"):
            assert cpu.library() is None
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # warned once only
            assert cpu.library() is None
            with pytest.raises(RuntimeError, match="not available"):
                cpu.box_loss_forward(KINDS["iou"], 0, 0, 0, EPS, 0, 0, 0, p, t, None)
        monkeypatch.setenv("CXX", "false")
        with pytest.raises(RuntimeError, match="building the boxloss CPU kernels failed") as err:
            cpu.build()
        assert "-march=native" in str(err.value)
        monkeypatch.setenv("BOXLOSS_CPU_KERNELS", "0")
        cpu._reset_for_tests()
        assert cpu.library() is None
    finally:
        cpu._reset_for_tests(lib, tried=True)
