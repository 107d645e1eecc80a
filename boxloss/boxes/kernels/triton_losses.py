"""The fused box losses on CUDA: one Triton kernel for every kind of ``kinds.py``, and its launchers.

Each loss is a head on the geometry core of ``triton_geometry.py``: ``_head`` computes the loss from the
pair's geometry (IoU, union, widths, enclosing box, centre offset) and its gradient to that geometry;
MPDIoU's corner distances and Inner-IoU's scaled boxes add their own terms; ``geometry_bwd`` carries the
gradient to the 8 corners. One kernel does both passes (``BACKWARD``): forward writes the loss per box,
backward recomputes the forward and writes the gradients that are needed (``NEED_P``, ``NEED_T``).
Triton compiles each specialisation (kind, format, variant, flags, which gradients) on first use and
caches it in ``~/.triton/cache``.

The launchers are this module's interface, the same as the C++ backend's:

- ``unavailable_reason(dtype)``: None if the kernels can run for this compute dtype, else why not;
- ``mark_broken(error)``: a launch failed: warn once, and ``unavailable_reason`` says so from then on;
- ``box_loss_forward(kind, fmt, variant, flags, eps, p0, p1, p2, p, t, extra) -> loss [N]``;
- ``box_loss_backward(..., p, t, extra, grad, need_p, need_t) -> (grad_p | None, grad_t | None)``.

``p``, ``t``: ``[N, 4]`` contiguous float32 boxes (CUDA, or CPU under ``TRITON_INTERPRET=1``); ``extra``:
``[N]`` for the kinds of ``PER_BOX_EXTRA``, else ``[1]`` (only Wise-IoU v3 and MPDIoU read it); ``grad``:
``[N]``, read with its own stride, so an expanded scalar (stride 0) is never materialised. The launchers
look at shapes, strides and dtypes only, never at values: no host-device synchronisation. n = 0 launches
nothing. Codes are ``kinds.py``'s; the CIoU flags apply to kind ``ciou`` (Inner-CIoU's and Alpha-CIoU's
alpha is the constant, ungated one of their references).

Numerics: fp32, those of the eager reference (``kinds.py`` names it per kind) to rounding.
"""

from __future__ import annotations

import functools
import importlib
import os

import torch

from . import triton_geometry
from .kinds import (
    ALPHA_GATED, EXPONENT_KINDS, KINDS, PAPER_GRAD, PER_BOX_EXTRA, VARIANT_ONE, VARIANT_POW, VARIANT_SCALE0, variant_of,
)

triton, tl = triton_geometry.triton, triton_geometry.tl


def _interpreter_on() -> bool:
    knobs = getattr(triton, "knobs", None)
    if knobs is not None:
        return bool(knobs.runtime.interpret)
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


if triton is not None and triton_geometry.interpreted() != _interpreter_on():
    # this module is being (re)loaded with the interpreter switched on or off: its helpers must follow
    triton_geometry = importlib.reload(triton_geometry)

# boxes per program. With 4 warps, 256 is 2 boxes per thread: ptxas (sm_90) gives every specialisation at
# most ~110 registers and no spills; at 1024 (the old kernels' block) several backward passes reach the
# 255-register cap and spill (Inner-SIoU ~1.2 kB). Chosen from register counts, not yet timed on a GPU.
BLOCK = 256
_INNER_BASE = {KINDS["inner_" + b]: KINDS[b] for b in ("iou", "giou", "diou", "ciou", "eiou", "siou")}
_NO_ENCLOSING = frozenset(KINDS[k] for k in ("iou", "iou_square", "iou_log", "alpha_iou", "mpdiou"))
_BROKEN = None


def mark_broken(error: Exception) -> None:
    """A launch failed (no usable compiler/driver for this GPU): warn once, use the reference path."""
    global _BROKEN
    if _BROKEN is None:
        import warnings

        warnings.warn(
            f"boxloss: the Triton kernels failed ({error!r}); using the reference (eager torch) path on CUDA",
            RuntimeWarning,
            stacklevel=4,
        )
    _BROKEN = error


def unavailable_reason(dtype: torch.dtype) -> str | None:
    """None if the Triton kernels can run for this compute dtype, else why not."""
    if triton is None:
        return f"triton is not installed ({triton_geometry.IMPORT_ERROR})"
    if _BROKEN is not None:
        return f"the Triton kernels failed earlier in this process ({_BROKEN!r})"
    if dtype != torch.float32:
        return f"the Triton kernels compute in float32 only (got {dtype}; float64 uses the reference path)"
    return None


if triton is not None:
    from .triton_geometry import (
        ciou_alpha, ciou_aspect, ciou_aspect_bwd, clamp0, diou_penalty, diou_penalty_bwd, eiou_sides, eiou_sides_bwd,
        enclosing, geometry_bwd, giou_penalty, giou_penalty_bwd, inner_box, inner_box_bwd, load_boxes, overlap,
        overlap_bwd, safe_pow, safe_pow_grad, shape_iou_costs, shape_iou_costs_bwd, siou_costs, siou_costs_bwd,
        store_box_grad, zeros,
    )

    # the kind codes, as the constants a kernel can read
    _IOU, _GIOU, _DIOU, _CIOU = (tl.constexpr(KINDS[k]) for k in ("iou", "giou", "diou", "ciou"))
    _IOU_SQUARE, _IOU_LOG = tl.constexpr(KINDS["iou_square"]), tl.constexpr(KINDS["iou_log"])
    _EIOU, _FOCAL_EIOU, _SIOU = (tl.constexpr(KINDS[k]) for k in ("eiou", "focal_eiou", "siou"))
    _ALPHA_IOU, _ALPHA_GIOU = tl.constexpr(KINDS["alpha_iou"]), tl.constexpr(KINDS["alpha_giou"])
    _ALPHA_DIOU, _ALPHA_CIOU = tl.constexpr(KINDS["alpha_diou"]), tl.constexpr(KINDS["alpha_ciou"])
    _WIOU_V1, _WIOU_V3, _MPDIOU = (tl.constexpr(KINDS[k]) for k in ("wiou_v1", "wiou_v3", "mpdiou"))

    @triton.jit
    def _head(iou, uni, pw, ph, tw, th, cw, ch, dx, dy, extra, eps, expo, p1, p2, g,
              HEAD: tl.constexpr, VARIANT: tl.constexpr, GATED: tl.constexpr, PAPER: tl.constexpr):
        # the loss of kind HEAD on the geometry, and its gradient, for upstream g, to
        # (iou, uni, pw, ph, tw, th, cw, ch, dx, dy); MPDIoU's corner term is added by the kernel
        zero = zeros(iou)
        d_uni, d_pw, d_ph, d_tw, d_th = zero, zero, zero, zero, zero
        d_cw, d_ch, d_dx, d_dy = zero, zero, zero, zero
        if HEAD == _IOU or HEAD == _MPDIOU:
            loss = 1.0 - iou
            d_iou = -g
        elif HEAD == _IOU_SQUARE:
            loss = 1.0 - iou * iou
            d_iou = -(g * iou + g * iou)
        elif HEAD == _IOU_LOG:
            loss = -tl.log(tl.maximum(iou, eps))
            d_iou = tl.where(iou > eps, -g / tl.maximum(iou, eps), 0.0)
        elif HEAD == _GIOU:
            loss = 1.0 - (iou - giou_penalty(uni, cw, ch, eps))
            d_iou = -g
            d_uni, d_cw, d_ch = giou_penalty_bwd(uni, cw, ch, eps, g)
        elif HEAD == _DIOU or HEAD == _CIOU:
            diou = iou - diou_penalty(cw, ch, dx, dy, eps)
            d_iou = -g
            d_cw, d_ch, d_dx, d_dy = diou_penalty_bwd(cw, ch, dx, dy, eps, g)
            if HEAD == _DIOU:
                loss = 1.0 - diou
            else:
                v = ciou_aspect(pw, ph, tw, th, eps)
                alpha = ciou_alpha(iou, v, eps, GATED)
                loss = 1.0 - (diou - alpha * v)
                d_pw, d_ph, d_tw, d_th = ciou_aspect_bwd(pw, ph, tw, th, eps, g * alpha, PAPER)
        elif HEAD == _EIOU or HEAD == _FOCAL_EIOU:
            f = zero + 1.0
            if HEAD == _FOCAL_EIOU:
                f = safe_pow(iou, expo, VARIANT)  # IoU^gamma, detached
            ge = g * f
            sw, sh = eiou_sides(pw, ph, tw, th, cw, ch, eps)
            loss = f * (1.0 - (iou - diou_penalty(cw, ch, dx, dy, eps)) + sw + sh)
            d_iou = -ge
            d_cw, d_ch, d_dx, d_dy = diou_penalty_bwd(cw, ch, dx, dy, eps, ge)
            d_pw, d_ph, d_tw, d_th, s_cw, s_ch = eiou_sides_bwd(pw, ph, tw, th, cw, ch, eps, ge)
            d_cw += s_cw
            d_ch += s_ch
        elif HEAD == _SIOU:
            distance, shape = siou_costs(pw, ph, tw, th, cw, ch, dx, dy, eps, expo, VARIANT)
            loss = 1.0 - iou + 0.5 * (distance + shape)
            d_iou = -g
            d_pw, d_ph, d_tw, d_th, d_cw, d_ch, d_dx, d_dy = siou_costs_bwd(pw, ph, tw, th, cw, ch, dx, dy, eps, expo,
                                                                            0.5 * g, VARIANT)
        elif HEAD == _ALPHA_IOU or HEAD == _ALPHA_GIOU or HEAD == _ALPHA_DIOU or HEAD == _ALPHA_CIOU:
            loss = 1.0 - safe_pow(iou, expo, VARIANT)
            d_iou = -g * safe_pow_grad(iou, expo, VARIANT)
            if HEAD == _ALPHA_GIOU:  # + (IoU - GIoU)^alpha, clamped at 0 against rounding
                value = iou - giou_penalty(uni, cw, ch, eps)
                x = clamp0(iou - value)
                loss = loss + safe_pow(x, expo, VARIANT)
                gx = tl.where(iou - value > 0.0, g * safe_pow_grad(x, expo, VARIANT), 0.0)
                d_uni, d_cw, d_ch = giou_penalty_bwd(uni, cw, ch, eps, gx)
            if HEAD == _ALPHA_DIOU or HEAD == _ALPHA_CIOU:  # + (rho^2 / c^2)^alpha
                q = diou_penalty(cw, ch, dx, dy, eps)
                loss = loss + safe_pow(q, expo, VARIANT)
                d_cw, d_ch, d_dx, d_dy = diou_penalty_bwd(cw, ch, dx, dy, eps, g * safe_pow_grad(q, expo, VARIANT))
            if HEAD == _ALPHA_CIOU:  # + (beta* v)^alpha
                v = ciou_aspect(pw, ph, tw, th, eps)
                beta = ciou_alpha(iou, v, eps, False)
                bv = beta * v
                loss = loss + safe_pow(bv, expo, VARIANT)
                d_pw, d_ph, d_tw, d_th = ciou_aspect_bwd(pw, ph, tw, th, eps,
                                                         g * safe_pow_grad(bv, expo, VARIANT) * beta, False)
        elif HEAD == _WIOU_V1 or HEAD == _WIOU_V3:  # R L_IoU, R = exp(min(rho^2 / (c^2)*, 1)); v3: times r*
            lv = 1.0 - iou
            q = diou_penalty(cw, ch, dx, dy, eps)
            R = tl.exp(tl.minimum(q, 1.0))
            f = zero + 1.0
            if HEAD == _WIOU_V3:
                beta = lv / extra
                f = beta / (p2 * tl.exp((beta - p2) * p1))
            loss = f * R * lv
            d_iou = -g * (f * R)
            _, _, d_dx, d_dy = diou_penalty_bwd(cw, ch, dx, dy, eps, tl.where(q < 1.0, g * lv * f * R, 0.0))
        else:  # Shape-IoU
            distance, shape = shape_iou_costs(pw, ph, tw, th, cw, ch, dx, dy, eps, expo, VARIANT)
            loss = 1.0 - iou + distance + 0.5 * shape
            d_iou = -g
            d_pw, d_ph, d_tw, d_th, d_cw, d_ch, d_dx, d_dy = shape_iou_costs_bwd(pw, ph, tw, th, cw, ch, dx, dy, eps,
                                                                                 expo, g, 0.5 * g, VARIANT)
        return loss, d_iou, d_uni, d_pw, d_ph, d_tw, d_th, d_cw, d_ch, d_dx, d_dy

    @triton.jit
    def _mpdiou_distance(px1, py1, px2, py2, tx1, ty1, tx2, ty2, diag2):
        # MPDIoU's (d1^2 + d2^2) / (w_img^2 + h_img^2), d1, d2 the distances of the corners
        e0 = px1 - tx1
        e1 = py1 - ty1
        e2 = px2 - tx2
        e3 = py2 - ty2
        return ((e0 * e0 + e1 * e1) + (e2 * e2 + e3 * e3)) / diag2

    @triton.jit
    def _mpdiou_distance_bwd(px1, py1, px2, py2, tx1, ty1, tx2, ty2, diag2, g):
        gs = 2.0 * (g / diag2)
        g1 = gs * (px1 - tx1)
        g2 = gs * (py1 - ty1)
        g3 = gs * (px2 - tx2)
        g4 = gs * (py2 - ty2)
        return g1, g2, g3, g4, -g1, -g2, -g3, -g4

    @triton.jit(do_not_specialize=["grad_stride", "n"])
    def _box_loss_kernel(
        p_ptr, t_ptr, extra_ptr, out_ptr, grad_ptr, grad_stride, gp_ptr, gt_ptr, n, eps, expo, half_ratio, p1, p2,
        HEAD: tl.constexpr, INNER: tl.constexpr, FMT: tl.constexpr, VARIANT: tl.constexpr, GATED: tl.constexpr,
        PAPER: tl.constexpr, ENCLOSING: tl.constexpr, BACKWARD: tl.constexpr, NEED_P: tl.constexpr,
        NEED_T: tl.constexpr, BLOCK: tl.constexpr,
    ):
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        px1, py1, px2, py2 = load_boxes(p_ptr, offs, mask, FMT)
        tx1, ty1, tx2, ty2 = load_boxes(t_ptr, offs, mask, FMT)
        iou, uni, pw, ph, tw, th = overlap(px1, py1, px2, py2, tx1, ty1, tx2, ty2, eps)
        cw, ch, dx, dy = enclosing(px1, py1, px2, py2, tx1, ty1, tx2, ty2)
        zero = zeros(iou)
        if BACKWARD:
            g = tl.load(grad_ptr + offs * grad_stride, mask=mask, other=0.0)
        else:
            g = zero
        if HEAD == _MPDIOU:
            extra = tl.load(extra_ptr + offs, mask=mask, other=1.0)
        elif HEAD == _WIOU_V3:
            extra = tl.load(extra_ptr + offs * 0, mask=mask, other=1.0)
        else:
            extra = zero + 1.0
        loss, d_iou, d_uni, d_pw, d_ph, d_tw, d_th, d_cw, d_ch, d_dx, d_dy = _head(
            iou, uni, pw, ph, tw, th, cw, ch, dx, dy, extra, eps, expo, p1, p2, g, HEAD, VARIANT, GATED, PAPER)
        # gradients straight to the corners (MPDIoU's distances, Inner-IoU's box centres)
        gpx1, gpy1, gpx2, gpy2, gtx1, gty1, gtx2, gty2 = zero, zero, zero, zero, zero, zero, zero, zero
        if HEAD == _MPDIOU:
            loss = loss + _mpdiou_distance(px1, py1, px2, py2, tx1, ty1, tx2, ty2, extra)
            gpx1, gpy1, gpx2, gpy2, gtx1, gty1, gtx2, gty2 = _mpdiou_distance_bwd(px1, py1, px2, py2, tx1, ty1, tx2,
                                                                                  ty2, extra, g)
        if INNER:  # base + IoU - IoU(inner boxes): the base loss with its IoU replaced by the inner boxes'
            ix1, iy1, ix2, iy2 = inner_box(px1, py1, px2, py2, pw, ph, half_ratio)
            jx1, jy1, jx2, jy2 = inner_box(tx1, ty1, tx2, ty2, tw, th, half_ratio)
            inner, _, _, _, _, _ = overlap(ix1, iy1, ix2, iy2, jx1, jy1, jx2, jy2, eps)
            loss = loss + iou - inner
            d_iou += g
            a1, b1, a2, b2, c1, e1, c2, e2 = overlap_bwd(ix1, iy1, ix2, iy2, jx1, jy1, jx2, jy2, eps, -g, zero, zero,
                                                         zero, zero, zero)
            gpx1, gpy1, gpx2, gpy2, s_pw, s_ph = inner_box_bwd(a1, b1, a2, b2, half_ratio)
            gtx1, gty1, gtx2, gty2, s_tw, s_th = inner_box_bwd(c1, e1, c2, e2, half_ratio)
            d_pw += s_pw
            d_ph += s_ph
            d_tw += s_tw
            d_th += s_th
        if BACKWARD:
            a1, b1, a2, b2, c1, e1, c2, e2 = geometry_bwd(px1, py1, px2, py2, tx1, ty1, tx2, ty2, eps, d_iou, d_uni,
                                                          d_pw, d_ph, d_tw, d_th, d_cw, d_ch, d_dx, d_dy, ENCLOSING)
            if NEED_P:
                store_box_grad(gp_ptr, offs, mask, gpx1 + a1, gpy1 + b1, gpx2 + a2, gpy2 + b2, FMT)
            if NEED_T:
                store_box_grad(gt_ptr, offs, mask, gtx1 + c1, gty1 + e1, gtx2 + c2, gty2 + e2, FMT)
        else:
            tl.store(out_ptr + offs, loss, mask=mask)


@functools.lru_cache(maxsize=512)
def _config(kind: int, fmt: int, variant: int, flags: int, p0: float) -> tuple[dict, float, float]:
    """The kernel's constexprs, its exponent and Inner-IoU's half ratio for a call's codes (checked)."""
    if kind not in KINDS.values() or fmt not in (0, 1, 2) or flags & ~(ALPHA_GATED | PAPER_GRAD):
        raise ValueError(f"no Triton kernel for kind={kind!r}, fmt={fmt!r}, flags={flags!r} (codes of kinds.py)")
    if kind == KINDS["focal_eiou"] and p0 == 0:
        kind = KINDS["eiou"]  # IoU^0 = 1, disjoint boxes included
    head, expo, half_ratio = _INNER_BASE.get(kind, kind), p0, 0.0
    if kind in _INNER_BASE:  # p0 is ratio / 2; Inner-SIoU's theta is 4
        expo, half_ratio, variant = 4.0, p0, VARIANT_POW if head == KINDS["siou"] else VARIANT_ONE
    elif kind in EXPONENT_KINDS:
        expected = VARIANT_SCALE0 if kind == KINDS["shape_iou"] and p0 == 0 else variant_of(p0)
        if variant != expected:
            raise ValueError(f"kind {kind}: variant {variant} does not match the exponent p0={p0} "
                             f"(expected {expected})")
    else:
        variant = VARIANT_ONE
    is_ciou = kind == KINDS["ciou"]
    consts = dict(HEAD=head, INNER=kind in _INNER_BASE, FMT=fmt, VARIANT=variant,
                  GATED=is_ciou and bool(flags & ALPHA_GATED), PAPER=is_ciou and bool(flags & PAPER_GRAD),
                  ENCLOSING=head not in _NO_ENCLOSING)
    return consts, float(expo), float(half_ratio)


def _check(kind: int, p: torch.Tensor, t: torch.Tensor, extra: torch.Tensor | None) -> int:
    n = p.shape[0] if p.dim() == 2 else -1
    for name, x in (("p", p), ("t", t)):
        if x.dtype != torch.float32 or x.shape != (n, 4) or not x.is_contiguous() or x.device != p.device:
            raise ValueError(f"{name} must be a contiguous float32 [N, 4] tensor on one device with the other, got "
                             f"{x.dtype} {list(x.shape)} on {x.device}")
    if kind in (KINDS["mpdiou"], KINDS["wiou_v3"]) and n > 0:  # the kinds that read extra
        need = n if kind in PER_BOX_EXTRA else 1
        if (extra is None or extra.dtype != torch.float32 or extra.dim() != 1 or extra.shape[0] < need
                or (need > 1 and extra.stride(0) != 1) or extra.device != p.device):
            raise ValueError(f"kind {kind} reads extra: a float32 [{'N' if need > 1 else 1}] tensor on {p.device}")
    return n


def _launch(cfg, p, t, extra, out, grad, grad_stride, gp, gt, eps, p1, p2):
    if triton is None:
        raise RuntimeError(f"boxloss: no Triton kernels: {unavailable_reason(torch.float32)}")
    consts, expo, half_ratio = cfg
    n = p.shape[0]
    some = p  # for the pointers the specialisation does not read
    _box_loss_kernel[(triton.cdiv(n, BLOCK),)](
        p, t, some if extra is None else extra, some if out is None else out, some if grad is None else grad,
        grad_stride, some if gp is None else gp, some if gt is None else gt, n, float(eps), expo, half_ratio,
        float(p1), float(p2), BACKWARD=grad is not None, NEED_P=gp is not None, NEED_T=gt is not None, BLOCK=BLOCK,
        **consts,
    )


def box_loss_forward(kind: int, fmt: int, variant: int, flags: int, eps: float, p0: float, p1: float, p2: float,
                     p: torch.Tensor, t: torch.Tensor, extra: torch.Tensor | None) -> torch.Tensor:
    """Per-box loss ``[N]`` (float32) of ``[N, 4]`` contiguous float32 boxes; codes as in ``kinds.py``."""
    cfg = _config(int(kind), int(fmt), int(variant), int(flags), float(p0))
    n = _check(kind, p, t, extra)
    out = torch.empty(n, dtype=torch.float32, device=p.device)
    if n > 0:
        _launch(cfg, p, t, extra, out, None, 0, None, None, eps, p1, p2)
    return out


def box_loss_backward(kind: int, fmt: int, variant: int, flags: int, eps: float, p0: float, p1: float, p2: float,
                      p: torch.Tensor, t: torch.Tensor, extra: torch.Tensor | None, grad: torch.Tensor, need_p: bool,
                      need_t: bool) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """``(grad * dloss/dp, grad * dloss/dt)``, None for a gradient not needed. ``grad``: ``[N]``, read with
    its stride (0 for an expanded scalar: never materialised; another stride is made contiguous)."""
    cfg = _config(int(kind), int(fmt), int(variant), int(flags), float(p0))
    n = _check(kind, p, t, extra)
    gp = torch.empty_like(p) if need_p else None
    gt = torch.empty_like(t) if need_t else None
    if n == 0 or not (need_p or need_t):
        return gp, gt
    if grad.dim() != 1 or grad.shape[0] != n or grad.device != p.device:
        raise ValueError(f"grad must be a [{n}] tensor on {p.device}, got {list(grad.shape)} on {grad.device}")
    stride = grad.stride(0) if n > 1 else 0
    if stride not in (0, 1):
        grad, stride = grad.contiguous(), 1
    if grad.dtype != torch.float32:
        grad = grad[:1].float() if stride == 0 else grad.float()
    _launch(cfg, p, t, extra, None, grad, stride, gp, gt, eps, p1, p2)
    return gp, gt
