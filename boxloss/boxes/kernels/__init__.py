"""Fused forward+backward kernels of the box losses, and the dispatch between implementations.

One geometry core per backend -- C++ on CPU (``cpu/``: ``geometry.h``, ``terms.h``, ``box_losses.h``,
``kernels.cpp``, built on first use by ``cpu.py``), Triton on CUDA (``triton_geometry.py``,
``triton_losses.py``) -- on which every IoU-family loss is a small head (``kinds.py`` lists them), plus
Smooth L1 on CPU. Every loss takes ``impl=``:

- ``"auto"`` (the default, see ``set_default_impl``): the fused kernel where one applies -- CPU tensors
  (fp32/fp64 compute) when the C++ library builds, CUDA tensors with fp32 compute when Triton is
  installed and compiles -- and the reference (eager torch) path otherwise (a failed build or Triton
  compilation warns once);
- ``"fused"``: the fused kernel, or a RuntimeError saying why it cannot run;
- ``"reference"``: the eager torch formulas (the specification).

Under ``torch.compile`` the fused kernels are the custom ops of ``ops.py`` (a fake implementation for
tracing, the backward registered as autograd), so a compiled model keeps them: no graph break, no
fallback to the reference. In eager mode the same kernels run through ``functions.py``'s
``autograd.Function`` wrappers, which cost less per call.

Same numerics on every path: compute in fp32 (fp64 stays fp64), loss in the compute dtype, gradients
reach the inputs in their own dtype. A per-box or weighted loss is one pass forward saving only the
inputs and one pass backward writing only the gradients needed; an unweighted sum or mean on CPU
(``reduction="mean"`` / ``"sum"``, no ``weight`` / ``avg_factor``: what ``loss.backward()`` training
calls) is one pass computing the loss, its sum (in the kernel, chunk sums added in double) and its
gradient, whose backward only scales that gradient by the incoming one (``BoxLossOnePass`` and
``SmoothL1OnePass``, and the ops ``boxloss::box_loss_reduced`` / ``smooth_l1_reduced`` under compile). A
weighted or avg_factor sum / mean on CPU in eager mode (the call detectors make) is one pass too
(``BoxLossWeightedOnePass``), whose gradient keeps the two-pass path's bits for an incoming gradient of 1.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._checks import (
    REDUCTIONS, broadcast_shape, check_choice, check_tensor, compute_dtype, finish_box_loss, prepare_weight,
    sum_divisor,
)
from ..formats import BOX_FORMATS
from . import backends, cpu_node, functions, ops
from .kinds import ALPHA_GATED, FMTS, KINDS, PAPER_GRAD, PER_BOX_EXTRA, READS_EXTRA, variant_of

IMPLS = ("auto", "fused", "reference")
GRAD_MODES = ("exact", "paper")
_IOU_MODES = {"linear": "iou", "square": "iou_square", "log": "iou_log"}
_default_impl = "auto"


def set_default_impl(impl: str) -> str:
    """Set the implementation used when a loss is called with ``impl=None``; returns the previous one."""
    global _default_impl
    check_choice("impl", impl, IMPLS)
    previous, _default_impl = _default_impl, impl
    return previous


def get_default_impl() -> str:
    """The implementation used when a loss is called with ``impl=None`` ("auto" unless changed)."""
    return _default_impl


def cpu_kernels_available() -> bool:
    """True if the fused CPU kernel library is built and loaded (builds it on first call)."""
    return backends.cpu().library() is not None


def _unavailable(impl: str, why: str):
    if impl == "fused":
        raise RuntimeError(f'impl="fused" cannot run: {why}; use impl="auto" to fall back to the reference path')
    return None


def _chosen_impl(impl: str | None, reduction: str) -> str:
    """The implementation a call asked for (the default for None), after checking it and the reduction."""
    impl = _default_impl if impl is None else impl
    if impl != "reference":
        check_choice("impl", impl, IMPLS)
        check_choice("reduction", reduction, REDUCTIONS)
    return impl


def _flat_pair(pred: Tensor, target: Tensor, dtype: torch.dtype,
               boxes: bool = True) -> tuple[Tensor, Tensor, torch.Size]:
    """Cast to the compute dtype, broadcast, and view as ``[N, 4]`` (``boxes``) or flat, contiguous (copies
    only when needed); with the shape to view a result back to (the batch shape, or the whole shape)."""
    if pred.shape == target.shape and pred.dim() == (2 if boxes else 1) and pred.dtype == dtype == target.dtype \
            and pred.is_contiguous() and target.is_contiguous():
        return pred, target, pred.shape[:1]  # the common case, in ~1 us instead of ~4
    # torch.broadcast_shapes costs ~30 us: skip it in the common case of equal shapes
    shape = pred.shape if pred.shape == target.shape else broadcast_shape(pred, target, ("pred", "target"))
    p, t = pred.to(dtype), target.to(dtype)
    if p.shape != shape:
        p = p.expand(shape)
    if t.shape != shape:
        t = t.expand(shape)
    flat = (-1, 4) if boxes else (-1,)
    return p.reshape(flat).contiguous(), t.reshape(flat).contiguous(), shape[:-1] if boxes else shape


def _extra_tensor(extra, kind: int, batch: torch.Size, dtype, device, impl: str):
    """The kernels' extra input: ``[N]`` for kinds that read it per box, ``[1]`` otherwise; None (with
    impl="auto") where the kernels cannot take it."""
    if isinstance(extra, Tensor):
        if extra.requires_grad and torch.is_grad_enabled():
            return _unavailable(impl, "the fused kernels do not differentiate their extra input (img_size)")
        try:
            same = torch.broadcast_shapes(extra.shape, batch) == batch
        except RuntimeError:
            same = False  # the reference path raises its own error
        if not same:
            return _unavailable(impl, f"the extra input of shape {list(extra.shape)} broadcasts the boxes' batch "
                                      f"shape {list(batch)} to a larger one")
        ex = extra.detach().to(device=device, dtype=dtype)
    else:
        # torch.full, not torch.tensor: on CUDA torch.tensor(x, device=...) is a host-to-device copy that
        # synchronises the stream on every call; torch.full is a fill kernel
        ex = torch.full((), 0.0 if extra is None else float(extra), dtype=dtype, device=device)
    return ex.expand(batch).reshape(-1).contiguous() if kind in PER_BOX_EXTRA else ex.reshape(1)


def fused_box_loss(pred: Tensor, target: Tensor, kind: str, *, fmt: str = "xyxy", eps: float = 1e-7, variant: int = 0,
                   flags: int = 0, p0: float = 0.0, p1: float = 0.0, p2: float = 0.0, extra=None,
                   impl: str | None = None, reduction: str = "none", weight: Tensor | None = None,
                   avg_factor=None) -> Tensor | None:
    """The IoU-family loss ``kind`` (a key of ``kinds.KINDS``) through the fused path -- per box ``[...]``
    with reduction="none", weighted and reduced as ``_checks.finish_box_loss`` does otherwise -- or None
    where the caller should use the reference path (impl="reference", or no fused kernel for these
    tensors with impl="auto"). Loss-specific arguments are checked by the caller; ``variant``, ``flags``,
    ``p0..p2`` and ``extra`` are as in ``kinds.py`` (``extra``: a float, or a tensor broadcastable to the
    batch shape that does not require grad).

    On CPU an unweighted sum or mean is taken by the kernel, with the gradient in the same pass over the
    boxes (``functions.BoxLossOnePass`` in eager mode, ``ops.box_loss_reduced`` under compile); in eager
    mode a weighted / avg_factor one too (``functions.BoxLossWeightedOnePass``), unless the weight or a
    tensor avg_factor requires grad."""
    impl = _chosen_impl(impl, reduction)
    if impl == "reference":
        return None
    check_tensor("pred", pred, last_dim=4)
    check_tensor("target", target, last_dim=4)
    check_choice("fmt", fmt, BOX_FORMATS)
    if pred.is_cpu and target.is_cpu:  # (cheaper than comparing devices: this runs on every call)
        device_type = "cpu"
    else:
        if target.device != pred.device:
            return _unavailable(impl, f"pred is on {pred.device} and target on {target.device}")
        device_type = pred.device.type
    dtype = compute_dtype(pred, target)
    why = backends.why_unavailable(device_type, dtype, backends.TRITON_ON_CPU)
    if why is not None:
        return _unavailable(impl, why)
    code = KINDS[kind]
    p, t, batch = _flat_pair(pred, target, dtype)
    cfg = (code, FMTS[fmt], int(variant), int(flags), float(eps), float(p0), float(p1), float(p2))
    on_cpu = device_type == "cpu" and not backends.TRITON_ON_CPU
    compiling = torch.compiler.is_compiling()
    reduced = on_cpu and weight is None and avg_factor is None and reduction != "none"
    if on_cpu and extra is None and code not in READS_EXTRA and (reduced or not compiling):
        ex = None  # the CPU kernels take no extra input for these kinds (saves a fill per call)
    else:
        ex = _extra_tensor(extra, code, batch, dtype, pred.device, impl)
        if ex is None:
            return None
    grad = torch.is_grad_enabled() and (p.requires_grad or t.requires_grad)
    if on_cpu and grad and not compiling and reduction != "none" and not reduced and not (
            (isinstance(weight, Tensor) and weight.requires_grad)
            or (isinstance(avg_factor, Tensor) and avg_factor.requires_grad)):
        # weighted / avg_factor: the losses and the gradient in one pass, reduced as finish_box_loss does
        divisor = sum_divisor(reduction, avg_factor, batch.numel(), dtype)
        weight = prepare_weight(weight, batch, dtype, per_box_fold="mean")
        return functions.BoxLossWeightedOnePass.apply(p, t, ex, cfg, batch, weight, divisor)
    if reduced:
        # the kernel takes the sum / mean itself, and the gradient in the same pass (no view / mean nodes)
        if compiling:
            return ops.box_loss_reduced(p, t, ex, *cfg, reduction, grad and p.requires_grad,
                                        grad and t.requires_grad)[0]
        if grad:
            out = cpu_node.box_loss_one_pass(p, t, ex, cfg, reduction)  # the C++ node where it is built
            return out if out is not None else functions.BoxLossOnePass.apply(p, t, ex, cfg, reduction)
        return backends.cpu().box_loss_forward(*cfg, p, t, ex, reduction)
    if compiling:
        out = ops.box_loss(p, t, ex, *cfg)
    else:
        try:
            if torch.is_grad_enabled() and (p.requires_grad or t.requires_grad):
                out = functions.BoxLoss.apply(p, t, ex, cfg)
            else:
                out = backends.for_tensor(p).box_loss_forward(*cfg, p, t, ex)
        except Exception as e:  # noqa: BLE001 -- e.g. Triton cannot compile for this GPU / driver
            if impl == "fused" or not backends.uses_triton(pred.device):
                raise
            backends.triton().mark_broken(e)
            return None
    if out.shape != batch:
        out = out.view(batch)
    if reduction == "none" and weight is None:
        return out
    return finish_box_loss(out, reduction, weight, avg_factor)


def fused_overlap_loss(pred: Tensor, target: Tensor, kind: str, *, fmt: str = "xyxy", eps: float = 1e-7,
                       mode: str = "linear", alpha_mode: str = "constant", grad_mode: str = "exact",
                       impl: str | None = None, **finish) -> Tensor | None:
    """``fused_box_loss`` for IoU / GIoU / DIoU / CIoU with their options (``iou_losses.py``): ``mode``
    of IoU ("linear", "square", "log"), CIoU's ``alpha_mode`` ("constant" / "gated") and ``grad_mode``
    ("exact" / "paper"); ``finish``: ``reduction``, ``weight``, ``avg_factor``."""
    check_choice("grad_mode", grad_mode, GRAD_MODES)
    flags = (ALPHA_GATED if alpha_mode == "gated" else 0) | (PAPER_GRAD if grad_mode == "paper" else 0)
    return fused_box_loss(pred, target, _IOU_MODES[mode] if kind == "iou" else kind, fmt=fmt, eps=eps, flags=flags,
                          impl=impl, **finish)


def fused_smooth_l1(pred: Tensor, target: Tensor, beta: float, *, impl: str | None = None,
                    reduction: str = "none") -> Tensor | None:
    """Element-wise Smooth L1 (broadcast shape) through the fused CPU kernel -- or, with reduction "sum" /
    "mean", its sum / mean over all elements, taken in the kernel with the gradient in the same pass (the
    caller asks for it only when there is no weight) -- or None where the caller should use the reference
    path (impl="reference", non-CPU tensors with "auto"). Arguments are checked by the caller
    (``smooth_l1.smooth_l1_loss``)."""
    impl = _chosen_impl(impl, reduction)
    if impl == "reference":
        return None
    if not (pred.is_cpu and target.is_cpu):
        return _unavailable(impl, "the fused Smooth L1 kernel runs on CPU only (CUDA uses the reference path)")
    dtype = compute_dtype(pred, target)
    why = backends.why_unavailable("cpu", dtype)
    if why is not None:
        return _unavailable(impl, why)
    p, t, shape = _flat_pair(pred, target, dtype, boxes=False)
    beta = float(beta)
    grad = torch.is_grad_enabled() and (p.requires_grad or t.requires_grad)
    if reduction != "none":
        if torch.compiler.is_compiling():
            return ops.smooth_l1_reduced(p, t, beta, reduction, grad and p.requires_grad, grad and t.requires_grad)[0]
        if grad:
            return functions.SmoothL1OnePass.apply(p, t, beta, reduction)
        return backends.cpu().smooth_l1_forward(p, t, beta, reduction)
    if torch.compiler.is_compiling():
        return ops.smooth_l1(p, t, beta).view(shape)
    if grad:
        return functions.SmoothL1.apply(p, t, beta).view(shape)
    return backends.cpu().smooth_l1_forward(p, t, beta).view(shape)


__all__ = [
    "GRAD_MODES",
    "IMPLS",
    "cpu_kernels_available",
    "fused_box_loss",
    "fused_overlap_loss",
    "fused_smooth_l1",
    "get_default_impl",
    "set_default_impl",
    "variant_of",
]
