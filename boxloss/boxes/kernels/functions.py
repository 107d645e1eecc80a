"""Eager autograd wrappers of the fused kernels: the same kernels as the custom ops of ``ops.py``,
without the op machinery's per-call cost (the dispatch in ``__init__.py`` uses the ops under
``torch.compile`` and these otherwise).

``BoxLoss`` and ``SmoothL1`` (per-element losses, and weighted ones): one pass forward saving only the
inputs, one pass backward that recomputes what it needs and writes only the gradients required; the
incoming gradient is passed as is (an expanded scalar keeps its stride 0 and is never materialised).
``BoxLossOnePass`` and ``SmoothL1OnePass`` (an unweighted sum / mean on CPU): one pass computing the
loss, its sum and its gradient, and a backward that only scales that gradient; ``BoxLossWeightedOnePass``
the same for a weighted / avg_factor sum or mean, with the two-pass path's bits.
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import backends


def _once_differentiable(backward):
    """``torch.autograd.function.once_differentiable``, without its cost (~5 us: a no_grad context) in the
    usual backward, which runs with grad mode off already; with create_graph=True it is the original."""
    checked = torch.autograd.function.once_differentiable(backward)

    def wrapper(ctx, *grads):
        return checked(ctx, *grads) if torch.is_grad_enabled() else backward(ctx, *grads)

    return wrapper


def _keep(ctx, backward, before: tuple, inputs: tuple, after: tuple) -> None:
    """Keep what recomputes the gradients: ``backward(*before, *inputs, *after, grad, need_p, need_t)``. The
    inputs go through save_for_backward (~2 us): so a second backward without retain_graph raises, an
    input changed in place is detected, and the inputs are released after the backward."""
    ctx.save_for_backward(*inputs)
    ctx.regrad = (backward, before, after)


def _recompute(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:
    backward, before, after = ctx.regrad
    return backward(*before, *ctx.saved_tensors, *after, grad, ctx.needs_input_grad[0], ctx.needs_input_grad[1])


class _TwoPass(torch.autograd.Function):
    """A per-element (or weighted) loss: the forward saves only the inputs (subclasses give it; it calls
    ``_keep``), the backward recomputes what it needs in one pass and writes only the gradients required."""

    @staticmethod
    @_once_differentiable
    def backward(ctx, grad: Tensor):
        gp, gt = _recompute(ctx, grad.to(ctx.saved_tensors[0].dtype))
        return (gp, gt) + (None,) * (len(ctx.needs_input_grad) - 2)


class BoxLoss(_TwoPass):
    """Per-box loss of ``[N, 4]`` contiguous boxes; ``cfg = (kind, fmt, variant, flags, eps, p0, p1, p2)``."""

    @staticmethod
    def forward(ctx, p: Tensor, t: Tensor, extra: Tensor, cfg: tuple) -> Tensor:
        backend = backends.for_tensor(p)
        _keep(ctx, backend.box_loss_backward, cfg, (p, t, extra), ())
        return backend.box_loss_forward(*cfg, p, t, extra)


class SmoothL1(_TwoPass):
    """Element-wise Smooth L1 of flat contiguous CPU tensors."""

    @staticmethod
    def forward(ctx, p: Tensor, t: Tensor, beta: float) -> Tensor:
        cpu = backends.cpu()
        _keep(ctx, cpu.smooth_l1_backward, (), (p, t), (beta,))
        return cpu.smooth_l1_forward(p, t, beta)


class _OnePass(torch.autograd.Function):
    """The sum or mean of a loss over contiguous CPU tensors, with its gradient computed in the same pass
    (the kernels' forward+backward mode, which also takes the sum); subclasses give the forward, unweighted
    or weighted.

    The backward scales that gradient by the incoming one -- in place, handing the buffer to autograd, and
    not at all when it is 1 (``loss.backward()``) -- so a forward+backward reads the inputs once, and the
    graph has one node instead of the per-element node, a view and a mean (each costs ~10-25 us of autograd
    engine time at small N). A second backward through a retained graph recomputes the gradient, with the
    same arithmetic (the same bits). Per-element and weighted losses go through ``BoxLoss`` / ``SmoothL1``:
    there the upstream gradient differs per element and enters the kernel's backward, as autograd would
    propagate it.
    """

    @staticmethod
    @_once_differentiable
    def backward(ctx, grad: Tensor):
        grads, ctx.grads = ctx.grads, None
        if grads is None:  # a second backward (retain_graph=True): the first one handed the buffers over
            scale = ctx.scale  # what the forward's pass was given
            grads = _recompute(ctx, scale if isinstance(scale, Tensor) else torch.full((1,), scale, dtype=grad.dtype))
        if float(grad) != 1.0:
            for x in grads:
                if x is not None:
                    x.mul_(grad)
        return (grads[0], grads[1]) + (None,) * (len(ctx.needs_input_grad) - 2)


class BoxLossOnePass(_OnePass):
    """``_OnePass`` for a box loss of ``[N, 4]`` boxes; ``cfg`` as for ``BoxLoss``."""

    @staticmethod
    def forward(ctx, p: Tensor, t: Tensor, extra: Tensor | None, cfg: tuple, reduction: str) -> Tensor:
        cpu = backends.cpu()
        ctx.scale = cpu.reduction_scale(p.shape[0], reduction)
        out, *ctx.grads = cpu.box_loss_forward_backward(*cfg, p, t, extra, ctx.scale, *ctx.needs_input_grad[:2],
                                                        reduction)
        _keep(ctx, cpu.box_loss_backward, cfg, (p, t, extra), ())
        return out


class BoxLossWeightedOnePass(_OnePass):
    """``_OnePass`` for a box loss of ``[N, 4]`` boxes with a per-box ``weight`` (batch shape) and / or a
    ``divisor`` (``_checks.sum_divisor``: the mean's count or avg_factor; None for a sum). The kernel's pass
    is given the gradient autograd would give each box's loss for an incoming 1 -- ``1 / divisor``
    (DivBackward) times ``weight`` (MulBackward), by the same torch ops -- so the gradient has the two-pass
    path's bits. The value: with a weight, the per-box losses weighted and summed by ``finish_box_loss``'s
    own ops (the same bits); without, their sum taken by the kernel (in double, as ``BoxLossOnePass``: it
    can differ from torch's float sum in the last bits), then divided by the same divisor."""

    @staticmethod
    def forward(ctx, p: Tensor, t: Tensor, extra: Tensor | None, cfg: tuple, batch: torch.Size,
                weight: Tensor | None, divisor) -> Tensor:
        cpu = backends.cpu()
        g = torch.ones((), dtype=p.dtype)
        if divisor is not None:
            g = g / divisor
        if weight is not None:
            g = (g * weight).reshape(-1)
        ctx.scale = g
        if weight is None:  # the kernel sums the losses, as for BoxLossOnePass
            total, *ctx.grads = cpu.box_loss_forward_backward(*cfg, p, t, extra, g, *ctx.needs_input_grad[:2], "sum")
        else:
            out, *ctx.grads = cpu.box_loss_forward_backward(*cfg, p, t, extra, g, *ctx.needs_input_grad[:2])
            total = (out.view(batch) * weight).sum()
        _keep(ctx, cpu.box_loss_backward, cfg, (p, t, extra), ())
        return total if divisor is None else total / divisor


class SmoothL1OnePass(_OnePass):
    """``_OnePass`` for Smooth L1 of flat tensors (the mean is over all elements)."""

    @staticmethod
    def forward(ctx, p: Tensor, t: Tensor, beta: float, reduction: str) -> Tensor:
        cpu = backends.cpu()
        ctx.scale = cpu.reduction_scale(p.numel(), reduction)
        out, *ctx.grads = cpu.smooth_l1_forward_backward(p, t, beta, ctx.scale, *ctx.needs_input_grad[:2], reduction)
        _keep(ctx, cpu.smooth_l1_backward, (), (p, t), (beta,))
        return out
