"""Fused forward+backward kernels for the IoU-family losses (and Smooth L1 on CPU), and the dispatch
between implementations. The newer losses (EIoU ... Shape-IoU) dispatch in `newer.py`, with the same
`impl` semantics and default, to their own CPU kernel library (`_cpu_newer.py`) and Triton kernels
(`_triton_newer.py`).

Every IoU-family loss takes `impl=`:

- ``"auto"`` (the default, see `set_default_impl`): the fused kernel where one applies -- CPU tensors
  (fp32/fp64 compute) when the C++ kernel library builds, CUDA tensors with fp32 compute when Triton is
  installed and compiles -- and the reference (eager torch) path otherwise (a failed build or Triton
  compilation warns once);
- ``"fused"``: the fused kernel, or a RuntimeError saying why it cannot run;
- ``"reference"``: `overlaps.aligned_overlap`, the eager torch formulas (the specification).

Under `torch.compile` (`torch.compiler.is_compiling()`) every impl traces the reference path, which
inductor fuses itself, so `torch.compile(fullgraph=True)` works with any setting.

The fused path computes one pass forward (the loss, nothing else saved but the inputs) and one pass
backward (the hand-derived gradient, recomputing the few intermediates it needs), writes gradients only
for the inputs that require them, and does no gradient work at all when no input requires grad.
Same numerics as the reference: compute in fp32 (fp64 stays fp64), loss in the compute dtype,
gradients reach the inputs in their own dtype.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._checks import broadcast_shape, check_choice, check_tensor, compute_dtype
from ..formats import BOX_FORMATS
from . import _cpu

IMPLS = ("auto", "fused", "reference")
GRAD_MODES = ("exact", "paper")
_KINDS = {"iou": 0, "giou": 1, "diou": 2, "ciou": 3}
_IOU_MODE_KINDS = {"linear": 0, "square": 4, "log": 5}  # the C++ kernels specialise iou_loss per mode
_FMTS = {"xyxy": 0, "xywh": 1, "cxcywh": 2}
_ALPHAS = {"constant": 0, "gated": 1}
_DTYPES = {torch.float32: 0, torch.float64: 1}

_default_impl = "auto"
# Testing hook: route CPU tensors to the Triton kernels (with TRITON_INTERPRET=1, Triton's interpreter
# runs them on CPU); tests/boxes/test_fused_triton.py sets it.
_triton_on_cpu = False


def set_default_impl(impl: str) -> str:
    """Set the implementation used when a loss is called with `impl=None`; returns the previous one."""
    global _default_impl
    check_choice("impl", impl, IMPLS)
    previous, _default_impl = _default_impl, impl
    return previous


def get_default_impl() -> str:
    """The implementation used when a loss is called with `impl=None` ("auto" unless changed)."""
    return _default_impl


def cpu_kernels_available() -> bool:
    """True if the fused CPU kernel library is built and loaded (builds it on first call)."""
    return _cpu.library() is not None


def _kernel_grad(grad: Tensor, dtype: torch.dtype) -> tuple[Tensor, int]:
    """The incoming gradient as the kernels read it: `dtype`, 1-D, stride 0 (broadcast scalar) or 1."""
    grad = grad.to(dtype)
    if grad.dim() != 1 or grad.stride(0) not in (0, 1):
        grad = grad.contiguous()
    return grad, (grad.stride(0) if grad.numel() > 1 else 0)


class _CpuOverlapLoss(torch.autograd.Function):
    """Per-box IoU-family loss of [N, 4] contiguous fp32/fp64 boxes; cfg = (dtype, kind, fmt,
    alpha_mode, grad_mode, eps) as codes for the C++ kernels. Saves only the inputs; the backward recomputes what it needs."""

    @staticmethod
    def forward(ctx, p: Tensor, t: Tensor, cfg: tuple) -> Tensor:
        out = _cpu_forward(p, t, cfg)
        ctx.save_for_backward(p, t)
        ctx.cfg = cfg
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        p, t = ctx.saved_tensors
        need_p, need_t = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        dtype, kind, fmt, alpha, grad_mode, eps = ctx.cfg
        grad, gstride = _kernel_grad(grad, p.dtype)
        gp = torch.empty_like(p) if need_p else None
        gt = torch.empty_like(t) if need_t else None
        rc = _cpu.library().bl_overlap_bwd(
            dtype, kind, fmt, alpha, grad_mode, eps, p.shape[0], p.data_ptr(), t.data_ptr(),
            grad.data_ptr(), gstride, gp.data_ptr() if need_p else None, gt.data_ptr() if need_t else None,
            torch.get_num_threads(),
        )
        if rc != 0:
            raise RuntimeError(f"boxloss CPU backward kernel failed (code {rc})")
        return gp, gt, None


def _cpu_forward(p: Tensor, t: Tensor, cfg: tuple) -> Tensor:
    dtype, kind, fmt, alpha, _, eps = cfg
    out = torch.empty(p.shape[0], dtype=p.dtype)
    rc = _cpu.library().bl_overlap_fwd(
        dtype, kind, fmt, alpha, eps, p.shape[0], p.data_ptr(), t.data_ptr(), out.data_ptr(),
        torch.get_num_threads(),
    )
    if rc != 0:
        raise RuntimeError(f"boxloss CPU forward kernel failed (code {rc})")
    return out


class _CpuSmoothL1(torch.autograd.Function):
    """Element-wise Smooth L1 of flat contiguous fp32/fp64 tensors; cfg = (dtype code, beta)."""

    @staticmethod
    def forward(ctx, p: Tensor, t: Tensor, cfg: tuple) -> Tensor:
        out = _cpu_smooth_l1_forward(p, t, cfg)
        ctx.save_for_backward(p, t)
        ctx.cfg = cfg
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        p, t = ctx.saved_tensors
        grad, gstride = _kernel_grad(grad, p.dtype)
        gp = torch.empty_like(p) if ctx.needs_input_grad[0] else None
        gt = torch.empty_like(t) if ctx.needs_input_grad[1] else None
        dtype, beta = ctx.cfg
        rc = _cpu.library().bl_smooth_l1_bwd(
            dtype, p.numel(), p.data_ptr(), t.data_ptr(), grad.data_ptr(), gstride,
            gp.data_ptr() if gp is not None else None, gt.data_ptr() if gt is not None else None, beta,
            torch.get_num_threads(),
        )
        if rc != 0:
            raise RuntimeError(f"boxloss CPU smooth L1 backward kernel failed (code {rc})")
        return gp, gt, None


def _cpu_smooth_l1_forward(p: Tensor, t: Tensor, cfg: tuple) -> Tensor:
    out = torch.empty(p.numel(), dtype=p.dtype)
    rc = _cpu.library().bl_smooth_l1_fwd(cfg[0], p.numel(), p.data_ptr(), t.data_ptr(), out.data_ptr(), cfg[1],
                                         torch.get_num_threads())
    if rc != 0:
        raise RuntimeError(f"boxloss CPU smooth L1 forward kernel failed (code {rc})")
    return out


def fused_smooth_l1(pred: Tensor, target: Tensor, beta: float, *, impl: str | None = None) -> Tensor | None:
    """Element-wise Smooth L1 (unreduced, broadcast shape) through the fused CPU kernel, or None where the
    caller should use the reference path (impl="reference", torch.compile, non-CPU tensors with "auto").
    Arguments are checked by the caller (`smooth_l1.smooth_l1_loss`)."""
    impl = _default_impl if impl is None else impl
    check_choice("impl", impl, IMPLS)
    if impl == "reference" or torch.compiler.is_compiling():
        return None
    if pred.device.type != "cpu" or target.device.type != "cpu":
        return _unavailable(impl, "the fused Smooth L1 kernel runs on CPU only (CUDA uses the reference path)")
    lib = _cpu.library()
    if lib is None:
        return _unavailable(impl, "the CPU kernel library could not be built (see the earlier warning)")
    dtype = compute_dtype(pred, target)
    shape = pred.shape if pred.shape == target.shape else broadcast_shape(pred, target, ("pred", "target"))
    p, t = pred.to(dtype), target.to(dtype)
    p = (p if p.shape == shape else p.expand(shape)).reshape(-1).contiguous()
    t = (t if t.shape == shape else t.expand(shape)).reshape(-1).contiguous()
    cfg = (_DTYPES[dtype], float(beta))
    if torch.is_grad_enabled() and (p.requires_grad or t.requires_grad):
        return _CpuSmoothL1.apply(p, t, cfg).view(shape)
    return _cpu_smooth_l1_forward(p, t, cfg).view(shape)


def _flat_pair(pred: Tensor, target: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor, torch.Size]:
    """Cast to the compute dtype, broadcast, and view as [N, 4] contiguous (copies only when needed)."""
    # torch.broadcast_shapes costs ~30 us: skip it in the common case of equal shapes
    shape = pred.shape if pred.shape == target.shape else broadcast_shape(pred, target, ("pred", "target"))
    p, t = pred.to(dtype), target.to(dtype)
    if p.shape != shape:
        p = p.expand(shape)
    if t.shape != shape:
        t = t.expand(shape)
    return p.reshape(-1, 4).contiguous(), t.reshape(-1, 4).contiguous(), shape[:-1]


def _unavailable(impl: str, why: str):
    if impl == "fused":
        raise RuntimeError(f'impl="fused" cannot run: {why}; use impl="auto" to fall back to the reference path')
    return None


def fused_overlap_loss(
    pred: Tensor,
    target: Tensor,
    kind: str,
    *,
    fmt: str = "xyxy",
    eps: float = 1e-7,
    mode: str = "linear",
    alpha_mode: str = "constant",
    grad_mode: str = "exact",
    impl: str | None = None,
) -> Tensor | None:
    """Per-box loss `[...]` of an IoU-family `kind` through the fused path, or None where the caller should
    use the reference path (impl="reference", under torch.compile, or no fused kernel for these tensors
    with impl="auto"). Arguments as in `iou_losses`; `alpha_mode` is "constant" or "gated" (CIoU)."""
    impl = _default_impl if impl is None else impl
    check_choice("impl", impl, IMPLS)
    check_choice("grad_mode", grad_mode, GRAD_MODES)
    if impl == "reference" or torch.compiler.is_compiling():
        return None
    check_tensor("pred", pred, last_dim=4)
    check_tensor("target", target, last_dim=4)
    check_choice("fmt", fmt, BOX_FORMATS)
    dtype = compute_dtype(pred, target)
    device = pred.device
    if target.device != device:
        return _unavailable(impl, f"pred is on {device} and target on {target.device}")
    if device.type == "cuda" or (device.type == "cpu" and _triton_on_cpu):
        from . import _triton

        why = _triton.unavailable_reason(dtype)
        if why is not None:
            return _unavailable(impl, why)
        p, t, batch = _flat_pair(pred, target, dtype)
        try:
            return _triton.overlap_loss(p, t, kind, fmt, eps, mode, alpha_mode, grad_mode).view(batch)
        except Exception as e:  # noqa: BLE001 -- e.g. Triton cannot compile for this GPU / driver
            if impl == "fused":
                raise
            _triton.mark_broken(e)
            return None
    if device.type == "cpu":
        lib = _cpu.library()
        if lib is None:
            return _unavailable(impl, "the CPU kernel library could not be built (see the earlier warning)")
        code = _IOU_MODE_KINDS[mode] if kind == "iou" else _KINDS[kind]
        cfg = (_DTYPES[dtype], code, _FMTS[fmt], _ALPHAS[alpha_mode],
               GRAD_MODES.index(grad_mode), float(eps))
        p, t, batch = _flat_pair(pred, target, dtype)
        if torch.is_grad_enabled() and (p.requires_grad or t.requires_grad):
            out = _CpuOverlapLoss.apply(p, t, cfg)
        else:
            out = _cpu_forward(p, t, cfg)
        return out.view(batch)
    return _unavailable(impl, f"no fused kernel for device type {device.type!r}")


__all__ = [
    "GRAD_MODES",
    "IMPLS",
    "cpu_kernels_available",
    "fused_overlap_loss",
    "fused_smooth_l1",
    "get_default_impl",
    "set_default_impl",
]
