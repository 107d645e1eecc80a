"""The Triton kernels (the CUDA path), run on CPU by Triton's interpreter (TRITON_INTERPRET=1).

The same agreement and numerics checks as test_fused.py, on the Triton path. On a machine with a GPU,
`test_cuda_matches_reference` runs the compiled kernels too (skipped here: no GPU on our CI).
"""

import importlib
import os

import pytest
import torch

from boxloss.boxes import ciou_loss, diou_loss, giou_loss, iou_loss
from boxloss.boxes import fused

from box_cases import overlapping_pairs, random_boxes
from fused_agreement import assert_close_scaled, run_loss

triton = pytest.importorskip("triton")

FNS = {"iou": iou_loss, "giou": giou_loss, "diou": diou_loss, "ciou": ciou_loss}
VARIANTS = [
    ("iou", {"mode": "linear"}),
    ("iou", {"mode": "square"}),
    ("iou", {"mode": "log"}),
    ("giou", {}),
    ("diou", {}),
    ("ciou", {}),
    ("ciou", {"gate_alpha": True}),
    ("ciou", {"grad_mode": "paper"}),
]


def _ids(v):
    return v[0] + "".join(f"-{x}" for x in v[1].values())


@pytest.fixture(scope="module")
def interpreted():
    """Reload the Triton module with the interpreter on, and route CPU tensors to it."""
    from boxloss.boxes.fused import _triton

    old = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    importlib.reload(_triton)
    fused._triton_on_cpu = True
    yield _triton
    fused._triton_on_cpu = False
    if old is None:
        del os.environ["TRITON_INTERPRET"]
    else:
        os.environ["TRITON_INTERPRET"] = old
    importlib.reload(_triton)


def _run(name, kw, pred, target, **extra):
    return run_loss(FNS[name], pred, target, "fused", **kw, **extra)


def _vs_cpp(name, kw, pred, target, **extra):
    """Triton (interpreted) against the C++ kernels, which test_fused.py checks against the reference;
    for exact-gradient variants also directly against the reference path."""
    tri = _run(name, kw, pred, target, **extra)
    fused._triton_on_cpu = False
    try:
        cpp = _run(name, kw, pred, target, **extra)
    finally:
        fused._triton_on_cpu = True
    for a, b in zip(tri, cpp):
        assert_close_scaled(a, b, 1e-6)
    return tri


@pytest.mark.parametrize("variant", VARIANTS, ids=_ids)
@pytest.mark.parametrize("fmt", ["xyxy", "xywh", "cxcywh"])
def test_agrees(interpreted, variant, fmt):
    from boxloss.boxes import box_convert

    name, kw = variant
    p, t = overlapping_pairs(200, dtype=torch.float32, seed=1)
    degenerate = torch.tensor([[1.0, 1, 1, 5], [2, 2, 2, 2], [5, 5, 3, 3], [0, 0, 0, 0]])
    deg_t = torch.tensor([[0.0, 0, 4, 4], [2, 2, 2, 2], [0, 0, 4, 4], [0, 0, 0, 0]])
    pred = torch.cat([p, random_boxes(20, dtype=torch.float32, seed=3) + 300, t[:10], degenerate])
    target = torch.cat([t, random_boxes(20, dtype=torch.float32, seed=4), t[:10], deg_t])
    pred, target = box_convert(pred, "xyxy", fmt), box_convert(target, "xyxy", fmt)
    loss, gp, gt = _vs_cpp(name, kw, pred, target, fmt=fmt)
    assert torch.isfinite(loss).all() and torch.isfinite(gp).all() and torch.isfinite(gt).all()
    assert (loss[220:230] == 0).all()  # identical boxes: exactly 0


@pytest.mark.parametrize("variant", VARIANTS[:6], ids=_ids)
def test_low_precision_mixed_empty(interpreted, variant):
    name, kw = variant
    p, t = overlapping_pairs(64, dtype=torch.float32, seed=2)
    loss, gp, _ = _vs_cpp(name, kw, (p * 50).bfloat16(), (t * 50).half())
    assert loss.dtype == torch.float32 and gp.dtype == torch.bfloat16
    _vs_cpp(name, kw, p, t, grad_target=False)
    e = torch.zeros(0, 4, requires_grad=True)
    out = FNS[name](e, torch.zeros(0, 4), impl="fused", **kw)
    assert out.item() == 0.0 and out.requires_grad
    out.backward()
    assert e.grad.shape == (0, 4)


def test_float64_is_not_triton(interpreted):
    p, t = overlapping_pairs(8, dtype=torch.float64, seed=3)
    with pytest.raises(RuntimeError, match="float32 only"):
        ciou_loss(p, t, impl="fused")
    out = ciou_loss(p, t, reduction="none")  # "auto" falls back to the reference path, in float64
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, ciou_loss(p, t, reduction="none", impl="reference"), rtol=0, atol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU on this machine")
@pytest.mark.parametrize("variant", VARIANTS[:7], ids=_ids)
def test_cuda_matches_reference(variant):
    name, kw = variant
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


def test_triton_missing_or_failing_falls_back(interpreted, monkeypatch):
    p, t = overlapping_pairs(16, dtype=torch.float32, seed=6)
    expected = ciou_loss(p, t, impl="reference")
    monkeypatch.setattr(interpreted, "triton", None)
    assert "not installed" in interpreted.unavailable_reason(torch.float32)
    with pytest.raises(RuntimeError, match="triton is not installed"):
        ciou_loss(p, t, impl="fused")
    torch.testing.assert_close(ciou_loss(p, t), expected, rtol=0, atol=0)
    monkeypatch.undo()

    def boom(*a, **k):
        raise RuntimeError("no ptxas for this GPU")

    monkeypatch.setattr(interpreted, "overlap_loss", boom)
    monkeypatch.setattr(interpreted, "_BROKEN", None)
    with pytest.raises(RuntimeError, match="no ptxas"):
        ciou_loss(p, t, impl="fused")
    with pytest.warns(RuntimeWarning, match="Triton kernels failed"):
        torch.testing.assert_close(ciou_loss(p, t), expected, rtol=0, atol=0)
    assert "failed earlier" in interpreted.unavailable_reason(torch.float32)
