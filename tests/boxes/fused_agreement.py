"""Shared by the fused-kernel tests: run a loss forward + backward with one ``impl`` and compare the fused
path's value and gradients with the reference path's; and run the Triton kernels on CPU under Triton's
interpreter without letting ``TRITON_INTERPRET`` (or the interpreted modules) leak to other tests."""

import contextlib
import importlib
import os
import sys

import torch

# the Triton modules of the fused kernels, in import order (triton_losses imports triton_geometry)
TRITON_MODULES = ("boxloss.boxes.kernels.triton_geometry", "boxloss.boxes.kernels.triton_losses")


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


# ---------------------------------------------------------------- Triton's interpreter, isolated


@contextlib.contextmanager
def _swapped_modules(modules):
    """Make ``modules`` ({dotted name: module or None}) what importing those names gives -- ``sys.modules`` and
    the parent packages' attributes -- and restore both on exit."""
    saved = {}
    for name, module in modules.items():
        parent, _, child = name.rpartition(".")
        pkg = importlib.import_module(parent)
        saved[name] = (sys.modules.get(name), pkg, child, pkg.__dict__.get(child))
        sys.modules.pop(name, None)
        pkg.__dict__.pop(child, None)
        if module is not None:
            sys.modules[name] = module
            setattr(pkg, child, module)
    try:
        yield
    finally:
        for name, (module, pkg, child, attr) in saved.items():
            sys.modules.pop(name, None)
            if module is not None:
                sys.modules[name] = module
            if attr is None:
                pkg.__dict__.pop(child, None)
            else:
                setattr(pkg, child, attr)


@contextlib.contextmanager
def interpreter_imports(names=TRITON_MODULES, interpret="1"):
    """Import fresh copies of the modules ``names`` with TRITON_INTERPRET=``interpret``; restore the
    environment, ``sys.modules`` and the parent packages' attributes on exit, so that nobody else sees the
    copies. Use it as ``with interpreter_imports() as (geometry, losses): pass``: the copies keep working
    after the block (an interpreted kernel runs on the interpreter whatever the environment says then)."""
    env = os.environ.get("TRITON_INTERPRET")
    with _swapped_modules(dict.fromkeys(names)):
        os.environ["TRITON_INTERPRET"] = interpret
        try:
            yield [importlib.import_module(name) for name in names]
        finally:
            if env is None:
                os.environ.pop("TRITON_INTERPRET", None)
            else:
                os.environ["TRITON_INTERPRET"] = env


@contextlib.contextmanager
def triton_on_cpu(modules):
    """Route the fused dispatch's CPU tensors to the Triton kernels of ``modules`` (the copies that
    ``interpreter_imports`` made, in ``TRITON_MODULES`` order) for the duration of the block: installs them
    where ``backends.triton()`` finds them and sets ``backends.TRITON_ON_CPU``; restores both on exit."""
    from boxloss.boxes.kernels import backends

    old = backends.TRITON_ON_CPU
    with _swapped_modules(dict(zip(TRITON_MODULES, modules))):
        backends.TRITON_ON_CPU = True
        try:
            assert backends.triton() is modules[-1]
            yield modules[-1]
        finally:
            backends.TRITON_ON_CPU = old


@contextlib.contextmanager
def cpu_kernels():
    """Inside a ``triton_on_cpu`` block: CPU tensors go to the C++ kernels again until the block ends."""
    from boxloss.boxes.kernels import backends

    old = backends.TRITON_ON_CPU
    backends.TRITON_ON_CPU = False
    try:
        yield
    finally:
        backends.TRITON_ON_CPU = old
