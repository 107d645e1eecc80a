"""Eager autograd wrappers of the fused kernels: the same kernels as the custom ops of ``ops.py``,
without the op machinery's per-call cost (the dispatch in ``__init__.py`` uses the ops under
``torch.compile`` and these otherwise).

One pass forward (saving only the inputs), one pass backward that recomputes what it needs and writes
only the gradients required; the incoming gradient is passed as is (an expanded scalar keeps its
stride 0 and is never materialised).
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import backends


class BoxLoss(torch.autograd.Function):
    """Per-box loss of ``[N, 4]`` contiguous boxes; ``cfg = (kind, fmt, variant, flags, eps, p0, p1, p2)``."""

    @staticmethod
    def forward(ctx, p: Tensor, t: Tensor, extra: Tensor, cfg: tuple) -> Tensor:
        ctx.save_for_backward(p, t, extra)
        ctx.cfg = cfg
        return backends.for_tensor(p).box_loss_forward(*cfg, p, t, extra)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        p, t, extra = ctx.saved_tensors
        need_p, need_t = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if not (need_p or need_t):
            return None, None, None, None
        gp, gt = backends.for_tensor(p).box_loss_backward(*ctx.cfg, p, t, extra, grad.to(p.dtype), need_p, need_t)
        return gp, gt, None, None


class SmoothL1(torch.autograd.Function):
    """Element-wise Smooth L1 of flat contiguous CPU tensors."""

    @staticmethod
    def forward(ctx, p: Tensor, t: Tensor, beta: float) -> Tensor:
        ctx.save_for_backward(p, t)
        ctx.beta = beta
        return backends.cpu().smooth_l1_forward(p, t, beta)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        p, t = ctx.saved_tensors
        need_p, need_t = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        gp, gt = backends.cpu().smooth_l1_backward(p, t, ctx.beta, grad.to(p.dtype), need_p, need_t)
        return gp, gt, None
