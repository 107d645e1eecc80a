"""The Triton kernels of the newer IoU-family losses (their CUDA path), run on CPU by Triton's interpreter
(TRITON_INTERPRET=1), against the C++ kernels (test_fused_newer.py checks those against the reference) and
the reference. On a machine with a GPU, `test_cuda_matches_reference` runs the compiled kernels too.
"""

import importlib
import os

import pytest
import torch

from boxloss.boxes import box_convert
from boxloss.boxes import fused

from box_cases import overlapping_pairs, random_boxes
from test_fused_newer import DEGENERATE_P, DEGENERATE_T, FNS, VARIANTS, _close, _ids, _run

triton = pytest.importorskip("triton")


@pytest.fixture(scope="module")
def interpreted():
    """Reload the Triton modules with the interpreter on, and route CPU tensors to them."""
    from boxloss.boxes.fused import _triton, _triton_newer

    old = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    importlib.reload(_triton)
    importlib.reload(_triton_newer)
    fused._triton_on_cpu = True
    yield _triton_newer
    fused._triton_on_cpu = False
    if old is None:
        del os.environ["TRITON_INTERPRET"]
    else:
        os.environ["TRITON_INTERPRET"] = old
    importlib.reload(_triton)
    importlib.reload(_triton_newer)


def _three_ways(name, kw, pred, target, **extra):
    """Triton (interpreted) against the C++ kernels and against the reference path."""
    tri = _run(name, kw, pred, target, "fused", **extra)
    fused._triton_on_cpu = False
    try:
        cpp = _run(name, kw, pred, target, "fused", **extra)
        ref = _run(name, kw, pred, target, "reference", **extra)
    finally:
        fused._triton_on_cpu = True
    for a, b, c in zip(tri, cpp, ref):
        _close(a, b, 1e-6)
        _close(a, c, 1e-6)
    return tri


@pytest.mark.parametrize("variant", VARIANTS, ids=_ids)
@pytest.mark.parametrize("fmt", ["xyxy", "xywh", "cxcywh"])
def test_agrees(interpreted, variant, fmt):
    name, kw = variant
    p, t = overlapping_pairs(120, dtype=torch.float32, seed=1)
    pred = torch.cat([p, random_boxes(20, dtype=torch.float32, seed=3) + 300, t[:10], torch.tensor(DEGENERATE_P).float()])
    target = torch.cat([t, random_boxes(20, dtype=torch.float32, seed=4), t[:10], torch.tensor(DEGENERATE_T).float()])
    pred, target = box_convert(pred, "xyxy", fmt), box_convert(target, "xyxy", fmt)
    loss, gp, gt = _three_ways(name, kw, pred, target, fmt=fmt)
    assert torch.isfinite(loss).all() and torch.isfinite(gp).all() and torch.isfinite(gt).all()
    assert (loss[140:150] == 0).all()  # identical boxes: exactly 0


# the first (default-argument) variant of these losses
SOME = [next(v for v in VARIANTS if v[0] == n) for n in ("eiou", "siou", "wiou_v1", "mpdiou", "shape_iou")]


@pytest.mark.parametrize("variant", SOME, ids=_ids)
def test_low_precision_weights_one_sided_empty(interpreted, variant):
    name, kw = variant
    p, t = overlapping_pairs(64, dtype=torch.float32, seed=2)
    kw16 = dict(kw, img_size=(2e4, 2e4)) if name == "mpdiou" else kw
    loss, gp, _ = _three_ways(name, kw16, (p * 50).bfloat16(), (t * 50).half())
    assert loss.dtype == torch.float32 and gp.dtype == torch.bfloat16
    _three_ways(name, kw, p, t, grad_target=False)
    _three_ways(name, kw, p, t, reduction="mean", weight=torch.rand(64, generator=torch.Generator().manual_seed(0)))
    e = torch.zeros(0, 4, requires_grad=True)
    out = FNS[name](e, torch.zeros(0, 4), impl="fused", **kw)
    assert out.item() == 0.0 and out.requires_grad
    out.backward()
    assert e.grad.shape == (0, 4)


def test_mpdiou_per_box_image_size(interpreted):
    p, t = overlapping_pairs(40, dtype=torch.float32, seed=7)
    sizes = torch.rand(40, 2, generator=torch.Generator().manual_seed(3)) * 500 + 100
    _three_ways("mpdiou", {"img_size": sizes}, p, t)


def test_float64_is_not_triton(interpreted):
    p, t = overlapping_pairs(8, dtype=torch.float64, seed=3)
    with pytest.raises(RuntimeError, match="float32 only"):
        FNS["siou"](p, t, impl="fused")
    fused._triton_on_cpu = False
    try:
        expected = FNS["siou"](p, t, impl="reference")
    finally:
        fused._triton_on_cpu = True
    torch.testing.assert_close(FNS["siou"](p, t), expected)  # "auto" falls back to the reference path


def test_triton_failing_falls_back(interpreted, monkeypatch):
    from boxloss.boxes.fused import _triton

    p, t = overlapping_pairs(16, dtype=torch.float32, seed=6)
    fused._triton_on_cpu = False
    try:
        expected = FNS["eiou"](p, t, impl="reference")
    finally:
        fused._triton_on_cpu = True

    def boom(*a, **k):
        raise RuntimeError("no ptxas for this GPU")

    monkeypatch.setattr(interpreted, "newer_loss", boom)
    monkeypatch.setattr(_triton, "_BROKEN", None)
    with pytest.raises(RuntimeError, match="no ptxas"):
        FNS["eiou"](p, t, impl="fused")
    with pytest.warns(RuntimeWarning, match="Triton kernels failed"):
        torch.testing.assert_close(FNS["eiou"](p, t), expected)
    assert "failed earlier" in interpreted.unavailable_reason(torch.float32)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU on this machine")
@pytest.mark.parametrize("variant", VARIANTS, ids=_ids)
def test_cuda_matches_reference(variant):
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
    """docs/architecture.md, "Numerics policy": no host-device synchronisation in loss code. The fused forward and backward on CUDA run
    under torch.cuda.set_sync_debug_mode("error") (a scalar extra input made with torch.tensor(x,
    device="cuda") would be a synchronising copy on every call)."""
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
