"""Dispatch of the newer IoU-family losses (EIoU, Focal-EIoU, SIoU, Alpha-IoU, Wise-IoU v1/v3, MPDIoU,
Inner-IoU, Shape-IoU) to their fused CPU kernels (`_cpu_source_newer.py`).

`impl` has the core losses' semantics (`boxloss.boxes.fused`): "auto" (default, see `set_default_impl`)
uses the fused kernel for CPU tensors when the kernel library builds and the reference path otherwise;
"fused" raises a RuntimeError saying why where it cannot run; "reference" is the eager torch formulas.
Under `torch.compile` every impl traces the reference. On CUDA the Triton kernels (`_triton_newer.py`, fp32
compute) run where Triton is installed and compiles, as for the core losses.

Same numerics as the core fused path: compute in fp32 (fp64 stays fp64; fp16/bf16 inputs are cast to
fp32 before the kernel), the loss in the compute dtype, gradients to each input in its own dtype, one
pass forward (saving only the inputs) and one pass backward that writes only the gradients needed.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._checks import check_choice, check_tensor, compute_dtype
from ..formats import BOX_FORMATS
from .. import fused as _pkg  # its _triton_on_cpu testing hook is read at call time
from . import IMPLS, _DTYPES, _FMTS, _flat_pair, _unavailable, get_default_impl
from . import _cpu_newer

KINDS = {
    "eiou": 0, "focal_eiou": 1, "siou": 2,
    "alpha_iou": 3, "alpha_giou": 4, "alpha_diou": 5, "alpha_ciou": 6,
    "wiou_v1": 7, "wiou_v3": 8, "mpdiou": 9,
    "inner_iou": 10, "inner_giou": 11, "inner_diou": 12, "inner_ciou": 13, "inner_eiou": 14, "inner_siou": 15,
    "shape_iou": 16,
}


def pow_mode(exponent: float) -> int:
    """How the kernels apply a loss's exponent e > 0 (`_geometry.safe_pow`): 0 for e = 1 (identity), 1 for
    e = 0.5 (sqrt), 2 otherwise (x^e, 0 where x = 0)."""
    if exponent == 1:
        return 0
    return 1 if exponent == 0.5 else 2


def _call(lib, cfg, n, p, t, ex, g=None, out=None, gp=None, gt=None):
    if n == 0:  # nothing to do; and empty tensors' data_ptr() is NULL, which the kernels read ex[0] from
        return
    dtype, kind, fmt, pmode, eps, p0, p1, p2 = cfg
    ptr = lambda x: x.data_ptr() if x is not None else None  # noqa: E731
    rc = lib.bl_newer(dtype, kind, fmt, pmode, eps, p0, p1, p2, n, p.data_ptr(), t.data_ptr(), ex.data_ptr(),
                      ptr(g), ptr(out), ptr(gp), ptr(gt), torch.get_num_threads())
    if rc != 0:
        raise RuntimeError(f"boxloss CPU kernel of a newer loss failed (code {rc})")


def _forward(p: Tensor, t: Tensor, ex: Tensor, cfg: tuple) -> Tensor:
    out = torch.empty(p.shape[0], dtype=p.dtype)
    _call(_cpu_newer.library(), cfg, p.shape[0], p, t, ex, out=out)
    return out


class _CpuNewerLoss(torch.autograd.Function):
    """Per-box newer IoU-family loss of [N, 4] contiguous fp32/fp64 boxes; `ex` a per-box extra input (MPDIoU's
    image diagonal, [N]; Wise-IoU v3's running mean, [1]; never differentiated); cfg = (dtype, kind, fmt,
    pmode, eps, p0, p1, p2) for the C++ kernel. Saves only the inputs; the backward recomputes the rest."""

    @staticmethod
    def forward(ctx, p: Tensor, t: Tensor, ex: Tensor, cfg: tuple) -> Tensor:
        ctx.save_for_backward(p, t, ex)
        ctx.cfg = cfg
        return _forward(p, t, ex, cfg)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        p, t, ex = ctx.saved_tensors
        grad = grad.to(p.dtype).reshape(-1).contiguous()  # per box (a broadcast scalar is materialised: 4 B/box)
        gp = torch.empty_like(p) if ctx.needs_input_grad[0] else None
        gt = torch.empty_like(t) if ctx.needs_input_grad[1] else None
        if gp is not None or gt is not None:
            _call(_cpu_newer.library(), ctx.cfg, p.shape[0], p, t, ex, g=grad, gp=gp, gt=gt)
        return gp, gt, None, None


def fused_newer_loss(
    pred: Tensor,
    target: Tensor,
    kind: str,
    *,
    fmt: str = "xyxy",
    eps: float = 1e-7,
    p0: float = 0.0,
    p1: float = 0.0,
    p2: float = 0.0,
    pmode: int = 0,
    extra=None,
    impl: str | None = None,
) -> Tensor | None:
    """Per-box loss `[...]` of the newer loss `kind` (a key of KINDS) through the fused path, or None where the
    caller should use the reference path (impl="reference", under torch.compile, or no fused kernel for these
    tensors with impl="auto"). Loss-specific arguments are checked by the caller; p0..p2 and pmode are as
    documented in `_cpu_source_newer.py`. `extra`: a float, or a tensor broadcastable to the batch shape
    (MPDIoU's w_img^2 + h_img^2, Wise-IoU v3's running mean); a tensor that requires grad is not supported
    by the kernels (impl="auto" then uses the reference path)."""
    impl = get_default_impl() if impl is None else impl
    check_choice("impl", impl, IMPLS)
    if impl == "reference" or torch.compiler.is_compiling():
        return None
    check_tensor("pred", pred, last_dim=4)
    check_tensor("target", target, last_dim=4)
    check_choice("fmt", fmt, BOX_FORMATS)
    device = pred.device
    if target.device != device:
        return _unavailable(impl, f"pred is on {device} and target on {target.device}")
    triton_path = device.type == "cuda" or (device.type == "cpu" and _pkg._triton_on_cpu)
    if device.type != "cpu" and not triton_path:
        return _unavailable(impl, f"no fused kernel for device type {device.type!r}")
    if isinstance(extra, Tensor) and extra.requires_grad and torch.is_grad_enabled():
        return _unavailable(impl, f"the fused {kind} kernel does not differentiate its extra input (img_size)")
    dtype = compute_dtype(pred, target)
    if triton_path:
        from . import _triton_newer

        why = _triton_newer.unavailable_reason(dtype)
        if why is not None:
            return _unavailable(impl, why)
    elif _cpu_newer.library() is None:
        return _unavailable(impl, "the CPU kernel library could not be built (see the earlier warning)")
    p, t, batch = _flat_pair(pred, target, dtype)
    if isinstance(extra, Tensor):
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
    # the kernels read MPDIoU's extra per box ([N]), the others' as one value ([1])
    ex = ex.expand(batch).reshape(-1).contiguous() if kind == "mpdiou" else ex.reshape(1)
    if triton_path:
        try:
            return _triton_newer.newer_loss(p, t, ex, KINDS[kind], int(pmode), _FMTS[fmt], eps, p0, p1, p2).view(batch)
        except Exception as e:  # noqa: BLE001 -- e.g. Triton cannot compile for this GPU / driver
            if impl == "fused":
                raise
            _triton_newer.mark_broken(e)
            return None
    cfg = (_DTYPES[dtype], KINDS[kind], _FMTS[fmt], int(pmode), float(eps), float(p0), float(p1), float(p2))
    if torch.is_grad_enabled() and (p.requires_grad or t.requires_grad):
        out = _CpuNewerLoss.apply(p, t, ex, cfg)
    else:
        out = _forward(p, t, ex, cfg)
    return out.view(batch)
