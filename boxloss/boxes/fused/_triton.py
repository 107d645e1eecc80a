"""Triton kernels for the IoU-family losses on CUDA tensors (fp32 compute; fp16/bf16 inputs are cast to
fp32 first, fp64 CUDA tensors use the reference path).

Imported only when a CUDA tensor reaches a loss, so `boxloss.boxes` needs torch alone. The math is the
C++ kernels' (`_cpu_source.py`), itself the reverse-mode derivative of `overlaps.aligned_overlap`:
one kernel launch forward (loss per box), one backward (gradients for the inputs that need them).
Triton compiles each specialisation (kind x format x which gradients) on first use and caches it in
`~/.triton/cache`. Tested on CPU with `TRITON_INTERPRET=1` (see tests/boxes/test_fused_triton.py).
"""

from __future__ import annotations

import math
import os

import torch

try:  # noqa: SIM105 -- the import is the availability test
    import triton
    import triton.language as tl

    _IMPORT_ERROR = None
except Exception as e:  # noqa: BLE001
    triton = tl = None
    _IMPORT_ERROR = e

_KINDS = {"iou": 0, "giou": 1, "diou": 2, "ciou": 3}
_IOU_MODE_KINDS = {"linear": 0, "square": 4, "log": 5}
_FMTS = {"xyxy": 0, "xywh": 1, "cxcywh": 2}
BLOCK = 1024


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


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
    """None if the Triton path can run for this compute dtype, else why not."""
    if triton is None:
        return f"triton is not installed ({_IMPORT_ERROR})"
    if _BROKEN is not None:
        return f"the Triton kernels failed earlier in this process ({_BROKEN!r})"
    if dtype != torch.float32:
        return f"the Triton kernels compute in float32 only (got {dtype}; float64 uses the reference path)"
    return None


if triton is not None:

    @triton.jit
    def _atan(a):
        # Cephes atanf, branch-free (as the C++ kernels' my_atan)
        x = tl.abs(a)
        big = x > 2.414213562373095
        mid = x > 0.4142135623730950
        y0 = tl.where(big, 1.5707963267948966, tl.where(mid, 0.7853981633974483, 0.0))
        xr = tl.where(big, -1.0 / tl.where(big, x, 1.0), tl.where(mid, (x - 1.0) / (x + 1.0), x))
        z = xr * xr
        y = y0 + ((((8.05374449538e-2 * z - 1.38776856032e-1) * z + 1.99777106478e-1) * z - 3.33329491539e-1) * z * xr + xr)
        return tl.where(a < 0.0, -y, y)

    @triton.jit
    def _wmin(a, b):
        # share of the gradient of min(a, b) that goes to a (ties split in halves, as torch)
        return tl.where(a < b, 1.0, tl.where(b < a, 0.0, 0.5))

    @triton.jit
    def _load_xyxy(ptr, offs, mask, FMT: tl.constexpr):
        a = tl.load(ptr + offs * 4 + 0, mask=mask, other=0.0)
        b = tl.load(ptr + offs * 4 + 1, mask=mask, other=0.0)
        c = tl.load(ptr + offs * 4 + 2, mask=mask, other=0.0)
        d = tl.load(ptr + offs * 4 + 3, mask=mask, other=0.0)
        if FMT == 0:
            x1, y1, x2, y2 = a, b, c, d
        elif FMT == 1:
            x1, y1, x2, y2 = a, b, a + c, b + d
        else:
            hw = 0.5 * c
            hh = 0.5 * d
            x1, y1, x2, y2 = a - hw, b - hh, a + hw, b + hh
        return x1, y1, x2, y2

    @triton.jit
    def _store_grad(ptr, offs, mask, g1, g2, g3, g4, FMT: tl.constexpr):
        if FMT == 0:
            o1, o2, o3, o4 = g1, g2, g3, g4
        elif FMT == 1:
            o1, o2, o3, o4 = g1 + g3, g2 + g4, g3, g4
        else:
            o1, o2, o3, o4 = g1 + g3, g2 + g4, 0.5 * (g3 - g1), 0.5 * (g4 - g2)
        tl.store(ptr + offs * 4 + 0, o1, mask=mask)
        tl.store(ptr + offs * 4 + 1, o2, mask=mask)
        tl.store(ptr + offs * 4 + 2, o3, mask=mask)
        tl.store(ptr + offs * 4 + 3, o4, mask=mask)

    @triton.jit
    def _overlap_kernel(
        p_ptr, t_ptr, out_ptr, gout_ptr, gstride, gp_ptr, gt_ptr, n, eps, K,
        KIND: tl.constexpr, FMT: tl.constexpr, GATED: tl.constexpr, PAPER: tl.constexpr,
        BACKWARD: tl.constexpr, GP: tl.constexpr, GT: tl.constexpr, BLOCK: tl.constexpr,
    ):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        px1, py1, px2, py2 = _load_xyxy(p_ptr, offs, mask, FMT)
        tx1, ty1, tx2, ty2 = _load_xyxy(t_ptr, offs, mask, FMT)
        a1 = px2 - px1
        a2 = py2 - py1
        a3 = tx2 - tx1
        a4 = ty2 - ty1
        pw = tl.maximum(a1, 0.0)
        ph = tl.maximum(a2, 0.0)
        tw = tl.maximum(a3, 0.0)
        th = tl.maximum(a4, 0.0)
        iwr = tl.minimum(px2, tx2) - tl.maximum(px1, tx1)
        ihr = tl.minimum(py2, ty2) - tl.maximum(py1, ty1)
        iw = tl.maximum(iwr, 0.0)
        ih = tl.maximum(ihr, 0.0)
        inter = iw * ih
        uni = pw * ph + tw * th - inter
        U = tl.maximum(uni, eps)
        iou = inter / U
        zero = tl.full([BLOCK], 0.0, tl.float32)  # (tl.zeros_like is a jit function: breaks the reloaded interpreter)
        cwr = zero
        chr = zero
        cw = zero
        ch = zero
        Craw = zero
        C = zero
        c2raw = zero
        c2 = zero
        dx = zero
        dy = zero
        rho2 = zero
        rp = zero
        rt = zero
        dv = zero
        v = zero
        alpha = zero
        if KIND == 0:
            loss = 1.0 - iou
        elif KIND == 4:
            loss = 1.0 - iou * iou
        elif KIND == 5:
            loss = -tl.log(tl.maximum(iou, eps))
        else:
            cwr = tl.maximum(px2, tx2) - tl.minimum(px1, tx1)
            chr = tl.maximum(py2, ty2) - tl.minimum(py1, ty1)
            cw = tl.maximum(cwr, 0.0)
            ch = tl.maximum(chr, 0.0)
            if KIND == 1:
                Craw = cw * ch
                C = tl.maximum(Craw, eps)
                loss = 1.0 - (iou - (C - uni) / C)
            else:
                c2raw = cw * cw + ch * ch
                c2 = tl.maximum(c2raw, eps)
                dx = (px1 + px2) - (tx1 + tx2)
                dy = (py1 + py2) - (ty1 + ty2)
                rho2 = 0.25 * (dx * dx + dy * dy)
                diou = iou - rho2 / c2
                if KIND == 2:
                    loss = 1.0 - diou
                else:
                    rt = tw / (th + eps)
                    rp = pw / (ph + eps)
                    dv = _atan(rt) - _atan(rp)
                    v = K * dv * dv
                    alpha = v / tl.maximum(1.0 - iou + v, eps)
                    if GATED:
                        alpha = tl.where(iou >= 0.5, alpha, 0.0 * alpha)
                    loss = 1.0 - (diou - alpha * v)
        if not BACKWARD:
            tl.store(out_ptr + offs, loss, mask=mask)
        else:
            g = tl.load(gout_ptr + offs * gstride, mask=mask, other=0.0)
            g_pw = zero
            g_ph = zero
            g_tw = zero
            g_th = zero
            g_uni = zero
            g_cw = zero
            g_ch = zero
            g_dx = zero
            g_dy = zero
            if KIND == 0:
                g_iou = -g
            elif KIND == 4:
                g_iou = -(g * iou + g * iou)
            elif KIND == 5:
                g_iou = tl.where(iou > eps, -g / tl.maximum(iou, eps), 0.0)
            else:
                g_iou = -g
                if KIND == 1:
                    g_num = g / C
                    g_C = g_num - g * (C - uni) / (C * C)
                    g_uni = -g_num
                    g_Craw = tl.where(Craw > eps, g_C, 0.0)
                    g_cw = g_Craw * ch
                    g_ch = g_Craw * cw
                else:
                    g_rho2 = g / c2
                    g_c2 = -g * rho2 / (c2 * c2)
                    g_c2raw = tl.where(c2raw > eps, g_c2, 0.0)
                    g_cw = 2.0 * g_c2raw * cw
                    g_ch = 2.0 * g_c2raw * ch
                    g_dx = 0.5 * g_rho2 * dx
                    g_dy = 0.5 * g_rho2 * dy
                    if KIND == 3:
                        g_dv = 2.0 * K * (g * alpha) * dv
                        hp = ph + eps
                        ht = th + eps
                        if PAPER:
                            g_pw = -g_dv * hp
                            g_ph = g_dv * pw
                            g_tw = g_dv * ht
                            g_th = -g_dv * tw
                        else:
                            g_rp = -g_dv / (1.0 + rp * rp)
                            g_rt = g_dv / (1.0 + rt * rt)
                            g_pw = g_rp / hp
                            g_ph = -(g_rp * rp / hp)
                            g_tw = g_rt / ht
                            g_th = -(g_rt * rt / ht)
            g_inter = g_iou / U
            g_U = -g_iou * inter / (U * U)
            g_uni += tl.where(uni > eps, g_U, 0.0)
            g_pw += g_uni * ph
            g_ph += g_uni * pw
            g_tw += g_uni * th
            g_th += g_uni * tw
            g_inter -= g_uni
            g_iwr = tl.where(iwr > 0.0, g_inter * ih, 0.0)
            g_ihr = tl.where(ihr > 0.0, g_inter * iw, 0.0)
            # min(px2, tx2) and max(px1, tx1) in the intersection, max(px2, tx2), min(px1, tx1) in C
            wx2 = _wmin(px2, tx2)
            wy2 = _wmin(py2, ty2)
            wx1 = _wmin(tx1, px1)  # share of max(px1, tx1) going to px1
            wy1 = _wmin(ty1, py1)
            g_a1 = tl.where(a1 > 0.0, g_pw, 0.0)
            g_a2 = tl.where(a2 > 0.0, g_ph, 0.0)
            g_a3 = tl.where(a3 > 0.0, g_tw, 0.0)
            g_a4 = tl.where(a4 > 0.0, g_th, 0.0)
            gx2 = g_iwr * wx2
            gtx2 = g_iwr * (1.0 - wx2)
            gx1 = -g_iwr * wx1
            gtx1 = -g_iwr * (1.0 - wx1)
            gy2 = g_ihr * wy2
            gty2 = g_ihr * (1.0 - wy2)
            gy1 = -g_ihr * wy1
            gty1 = -g_ihr * (1.0 - wy1)
            if KIND >= 1 and KIND <= 3:
                g_cwr = tl.where(cwr > 0.0, g_cw, 0.0)
                g_chr = tl.where(chr > 0.0, g_ch, 0.0)
                # max(px2, tx2): px2 takes the share min would give tx2; min(px1, tx1): share wmin(px1, tx1)
                gx2 += g_cwr * (1.0 - wx2)
                gtx2 += g_cwr * wx2
                gx1 -= g_cwr * (1.0 - wx1)
                gtx1 -= g_cwr * wx1
                gy2 += g_chr * (1.0 - wy2)
                gty2 += g_chr * wy2
                gy1 -= g_chr * (1.0 - wy1)
                gty1 -= g_chr * wy1
                gx1 += g_dx
                gx2 += g_dx
                gtx1 -= g_dx
                gtx2 -= g_dx
                gy1 += g_dy
                gy2 += g_dy
                gty1 -= g_dy
                gty2 -= g_dy
            gx2 += g_a1
            gx1 -= g_a1
            gy2 += g_a2
            gy1 -= g_a2
            gtx2 += g_a3
            gtx1 -= g_a3
            gty2 += g_a4
            gty1 -= g_a4
            if GP:
                _store_grad(gp_ptr, offs, mask, gx1, gy1, gx2, gy2, FMT)
            if GT:
                _store_grad(gt_ptr, offs, mask, gtx1, gty1, gtx2, gty2, FMT)


def _launch(p, t, out, gout, gstride, gp, gt, cfg, backward):
    kind, fmt, gated, paper, eps = cfg
    n = p.shape[0]
    if n == 0:
        return
    dummy = p  # unused pointer arguments
    grid = (triton.cdiv(n, BLOCK),)
    _overlap_kernel[grid](
        p, t, out if out is not None else dummy, gout if gout is not None else dummy, gstride,
        gp if gp is not None else dummy, gt if gt is not None else dummy, n, eps, 4.0 / math.pi**2,
        KIND=kind, FMT=fmt, GATED=gated, PAPER=paper, BACKWARD=backward, GP=gp is not None, GT=gt is not None,
        BLOCK=BLOCK,
    )


class _TritonOverlapLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, p, t, cfg):
        out = torch.empty(p.shape[0], dtype=p.dtype, device=p.device)
        _launch(p, t, out, None, 0, None, None, cfg, False)
        ctx.save_for_backward(p, t)
        ctx.cfg = cfg
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        p, t = ctx.saved_tensors
        from . import _kernel_grad  # the package is loaded before this lazily imported module

        grad, gstride = _kernel_grad(grad, p.dtype)
        gp = torch.empty_like(p) if ctx.needs_input_grad[0] else None
        gt = torch.empty_like(t) if ctx.needs_input_grad[1] else None
        if gp is not None or gt is not None:
            _launch(p, t, None, grad, gstride, gp, gt, ctx.cfg, True)
        return gp, gt, None


def overlap_loss(p, t, kind, fmt, eps, mode, alpha_mode, grad_mode):
    """Per-box loss of [N, 4] contiguous float32 boxes on one device (CUDA, or CPU when interpreting)."""
    code = _IOU_MODE_KINDS[mode] if kind == "iou" else _KINDS[kind]
    cfg = (code, _FMTS[fmt], alpha_mode == "gated", grad_mode == "paper", float(eps))
    if torch.is_grad_enabled() and (p.requires_grad or t.requires_grad):
        return _TritonOverlapLoss.apply(p, t, cfg)
    out = torch.empty(p.shape[0], dtype=p.dtype, device=p.device)
    _launch(p, t, out, None, 0, None, None, cfg, False)
    return out
