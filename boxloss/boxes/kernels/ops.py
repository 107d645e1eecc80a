"""The fused losses as torch custom ops, so that ``torch.compile`` keeps the fused kernels.

Two ops per kernel family, each with a fake (meta) implementation for tracing and the backward
registered as the forward's autograd formula:

- ``boxloss::box_loss(p, t, extra, kind, fmt, variant, flags, eps, p0, p1, p2) -> loss [N]`` and
  ``boxloss::box_loss_backward(grad, p, t, extra, ..., need_p, need_t) -> (grad_p, grad_t)`` for every
  IoU-family loss of ``kinds.KINDS``: ``p``, ``t`` are ``[N, 4]`` contiguous boxes in the compute dtype,
  ``extra`` the per-box extra input (``[N]``, or ``[1]`` for one value);
- ``boxloss::box_loss_reduced(p, t, extra, ..., reduction, need_p, need_t) -> (loss, grad_p, grad_t)`` (CPU): the
  sum or mean of the per-box losses and its gradient from one pass over the boxes; its registered backward
  multiplies the saved gradient by the incoming one (a pointwise product inductor fuses with what consumes
  the gradient; for a leaf input it is one more pass over the gradient, which eager mode skips when the
  incoming gradient is 1);
- ``boxloss::smooth_l1(p, t, beta) -> loss`` and ``boxloss::smooth_l1_backward`` element-wise, and
  ``boxloss::smooth_l1_reduced(p, t, beta, reduction, need_p, need_t)``, its one-pass sum / mean.

A gradient that is not needed comes back as an empty ``[0]`` tensor (an op's outputs are tensors) and
is turned into None for autograd. The CPU implementation runs the C++ kernels, the CUDA one the Triton
kernels (``backends.py`` picks them). The backward is not itself differentiable (as the hand-written
kernels' derivative; double backward raises).

For maintainers: torch's on-disk compile caches key a compiled backward on the forward graph, which
names the op but not its registered backward; after changing a backward formula here, a cache written
before the change served the old backward (seen once, with torch 2.14: it called an op removed since).
Change the op's name with its backward, or clear the cache (``/tmp/torchinductor_$USER``) when testing.

Eager calls do not go through these ops but through ``autograd.Function`` wrappers of the same
kernels (``functions.py``): the op machinery (schema parsing, the Python autograd wrapper) costs about
0.1 ms per forward+backward on the 2-core CPU, as much as the whole fused CIoU of 1e4 boxes
(docs/benchmarks.md, "Kernels under torch.compile"). ``torch.library.opcheck`` checks both ops
(tests/boxes/test_kernel_ops.py).
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import backends


def _empty(like: Tensor) -> Tensor:
    return like.new_empty(0)


def _or_empty(p: Tensor, t: Tensor, gp: Tensor | None, gt: Tensor | None) -> tuple[Tensor, Tensor]:
    """The gradients as an op returns them: an empty ``[0]`` tensor for one not computed."""
    return (gp if gp is not None else _empty(p)), (gt if gt is not None else _empty(t))


def _fake_grads(p: Tensor, t: Tensor, need_p: bool, need_t: bool) -> tuple[Tensor, Tensor]:
    return (torch.empty_like(p) if need_p else _empty(p)), (torch.empty_like(t) if need_t else _empty(t))


def _register_two_pass_autograd(op, backward_op, n_tensors: int) -> None:
    """``op``'s backward: ``backward_op(grad, *op's first n_tensors inputs (saved), *its other inputs, need_p,
    need_t)``, which recomputes the forward and writes the gradients needed."""

    def setup(ctx, inputs, output):
        ctx.save_for_backward(*inputs[:n_tensors])
        ctx.cfg = inputs[n_tensors:]

    def backward(ctx, grad):
        saved = ctx.saved_tensors
        need_p, need_t = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        gp, gt = backward_op(grad.to(saved[0].dtype), *saved, *ctx.cfg, need_p, need_t)
        return (gp if need_p else None), (gt if need_t else None), *(None,) * (len(ctx.needs_input_grad) - 2)

    op.register_autograd(backward, setup_context=setup)


def _reduced_setup(ctx, inputs, output):
    # the one-pass ops' inputs end with (..., reduction, need_p, need_t)
    ctx.save_for_backward(output[1], output[2])
    ctx.need, ctx.n_inputs = inputs[-2:], len(inputs)


def _reduced_backward(ctx, grad, _grad_gp, _grad_gt):
    # a product, not an in-place scaling of the saved gradient: the op's outputs must stay as returned
    # (opcheck's AOT test fails otherwise); inductor does it in place, in the saved gradient's buffer
    # (AOTAutograd donates it), fused with whatever consumes the gradient
    if torch.is_grad_enabled():  # create_graph=True: the product would give a second derivative of 0
        raise RuntimeError("boxloss: the fused kernels' gradient is not differentiable (double backward); "
                           'use impl="reference" for higher-order gradients')
    gp, gt = ctx.saved_tensors
    need_p, need_t = ctx.need
    return (gp * grad if need_p else None), (gt * grad if need_t else None), *(None,) * (ctx.n_inputs - 2)


# ---- box losses ------------------------------------------------------------------------------------


@torch.library.custom_op("boxloss::box_loss", mutates_args=(), device_types=("cpu", "cuda"))
def box_loss(p: Tensor, t: Tensor, extra: Tensor, kind: int, fmt: int, variant: int, flags: int, eps: float,
             p0: float, p1: float, p2: float) -> Tensor:
    """Per-box loss ``[N]`` of ``[N, 4]`` boxes through the fused kernel of ``p``'s device."""
    return backends.for_tensor(p).box_loss_forward(kind, fmt, variant, flags, eps, p0, p1, p2, p, t, extra)


@box_loss.register_fake
def _(p, t, extra, kind, fmt, variant, flags, eps, p0, p1, p2):
    return p.new_empty(p.shape[0])


@torch.library.custom_op("boxloss::box_loss_backward", mutates_args=(), device_types=("cpu", "cuda"))
def box_loss_backward(grad: Tensor, p: Tensor, t: Tensor, extra: Tensor, kind: int, fmt: int, variant: int, flags: int,
                      eps: float, p0: float, p1: float, p2: float, need_p: bool, need_t: bool) -> tuple[Tensor, Tensor]:
    """``(grad · dloss/dp, grad · dloss/dt)``; an empty ``[0]`` tensor for a gradient not needed."""
    return _or_empty(p, t, *backends.for_tensor(p).box_loss_backward(kind, fmt, variant, flags, eps, p0, p1, p2, p, t,
                                                                      extra, grad, need_p, need_t))


@box_loss_backward.register_fake
def _(grad, p, t, extra, kind, fmt, variant, flags, eps, p0, p1, p2, need_p, need_t):
    return _fake_grads(p, t, need_p, need_t)


_register_two_pass_autograd(box_loss, box_loss_backward, 3)


@torch.library.custom_op("boxloss::box_loss_reduced", mutates_args=(), device_types=("cpu",))
def box_loss_reduced(p: Tensor, t: Tensor, extra: Tensor | None, kind: int, fmt: int, variant: int, flags: int,
                     eps: float, p0: float, p1: float, p2: float, reduction: str, need_p: bool,
                     need_t: bool) -> tuple[Tensor, Tensor, Tensor]:
    """``(loss, dloss/dp, dloss/dt)`` of the sum or mean (``reduction``) of the per-box losses, from one pass
    over the boxes; an empty ``[0]`` tensor for a gradient not needed. ``extra`` is None for the kinds that
    do not read it."""
    cpu = backends.cpu()
    loss, gp, gt = cpu.box_loss_forward_backward(kind, fmt, variant, flags, eps, p0, p1, p2, p, t, extra,
                                                 cpu.reduction_scale(p.shape[0], reduction), need_p, need_t, reduction)
    return loss, *_or_empty(p, t, gp, gt)


@box_loss_reduced.register_fake
def _(p, t, extra, kind, fmt, variant, flags, eps, p0, p1, p2, reduction, need_p, need_t):
    return p.new_empty(()), *_fake_grads(p, t, need_p, need_t)


box_loss_reduced.register_autograd(_reduced_backward, setup_context=_reduced_setup)


# ---- Smooth L1 ---------------------------------------------------------------------------------------


@torch.library.custom_op("boxloss::smooth_l1", mutates_args=(), device_types=("cpu",))
def smooth_l1(p: Tensor, t: Tensor, beta: float) -> Tensor:
    """Element-wise Smooth L1 of flat contiguous tensors (the fused CPU kernel)."""
    return backends.cpu().smooth_l1_forward(p, t, beta)


@smooth_l1.register_fake
def _(p, t, beta):
    return torch.empty_like(p)


@torch.library.custom_op("boxloss::smooth_l1_backward", mutates_args=(), device_types=("cpu",))
def smooth_l1_backward(grad: Tensor, p: Tensor, t: Tensor, beta: float, need_p: bool, need_t: bool) -> tuple[Tensor, Tensor]:
    return _or_empty(p, t, *backends.cpu().smooth_l1_backward(p, t, beta, grad, need_p, need_t))


@smooth_l1_backward.register_fake
def _(grad, p, t, beta, need_p, need_t):
    return _fake_grads(p, t, need_p, need_t)


_register_two_pass_autograd(smooth_l1, smooth_l1_backward, 2)


@torch.library.custom_op("boxloss::smooth_l1_reduced", mutates_args=(), device_types=("cpu",))
def smooth_l1_reduced(p: Tensor, t: Tensor, beta: float, reduction: str, need_p: bool,
                      need_t: bool) -> tuple[Tensor, Tensor, Tensor]:
    """``(loss, dloss/dp, dloss/dt)`` of the sum or mean of element-wise Smooth L1, from one pass."""
    cpu = backends.cpu()
    loss, gp, gt = cpu.smooth_l1_forward_backward(p, t, beta, cpu.reduction_scale(p.numel(), reduction), need_p,
                                                  need_t, reduction)
    return loss, *_or_empty(p, t, gp, gt)


@smooth_l1_reduced.register_fake
def _(p, t, beta, reduction, need_p, need_t):
    return p.new_empty(()), *_fake_grads(p, t, need_p, need_t)


smooth_l1_reduced.register_autograd(_reduced_backward, setup_context=_reduced_setup)
