"""Shared by the fused-kernel tests (core and newer losses): run a loss forward + backward with one
``impl`` and compare the fused path's value and gradients with the reference path's."""

import torch


def run_loss(fn, pred, target, impl, *, reduction="none", weight=None, grad_target=True, **kwargs):
    """Loss value and the gradients of ``pred`` and ``target`` under a non-uniform upstream gradient."""
    p = pred.detach().clone().requires_grad_(True)
    t = target.detach().clone().requires_grad_(grad_target)
    loss = fn(p, t, reduction=reduction, impl=impl, weight=weight, **kwargs)
    g = torch.linspace(0.5, 2.0, loss.numel(), dtype=loss.dtype).reshape(loss.shape) if loss.dim() else 1.0
    (loss * g).sum().backward()
    return loss.detach(), p.grad, t.grad


def assert_close_scaled(a, b, rtol):
    """``a == b`` up to ``rtol`` times the largest ``|b|`` (one ulp of the dtype for fp16/bf16)."""
    if b is None:
        assert a is None
        return
    assert a.dtype == b.dtype and a.shape == b.shape
    if a.dtype in (torch.float16, torch.bfloat16):
        # gradients reach fp16/bf16 inputs rounded to their dtype: fp32 rounding differences can flip that
        # rounding, so allow one ulp of the input dtype
        ulp = torch.finfo(a.dtype).eps
        torch.testing.assert_close(a.float(), b.float(), rtol=ulp, atol=ulp * 1e-3 * b.float().abs().max().item())
        return
    scale = b.abs().max().item() if b.numel() else 0.0
    torch.testing.assert_close(a, b, rtol=0, atol=rtol * max(scale, 1e-30) + 1e-30)


def assert_fused_agrees(fn, pred, target, rtol, **kwargs):
    """Fused and reference value and gradients agree; returns both ``(value, grad_pred, grad_target)``."""
    ref = run_loss(fn, pred, target, "reference", **kwargs)
    fus = run_loss(fn, pred, target, "fused", **kwargs)
    for a, b in zip(fus, ref):
        assert_close_scaled(a, b, rtol)
    return fus, ref
