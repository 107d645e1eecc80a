"""Triton kernels of the newer IoU-family losses on CUDA tensors (fp32 compute; fp16/bf16 inputs are cast to
fp32 first, fp64 CUDA tensors use the reference path), the same math as their C++ kernels
(`_cpu_source_newer.py`): one geometry core (IoU, enclosing box, centre offset, and their backward) and a
head per loss, each the reverse-mode derivative of its reference graph.

Imported only when a CUDA tensor reaches a newer loss. Reuses `_triton`'s helpers and its availability
state (a failed launch marks both modules broken). Tested on CPU with `TRITON_INTERPRET=1`
(tests/boxes/test_fused_newer_triton.py), against the C++ kernels and the reference.
"""

from __future__ import annotations

import math

import torch

from . import _triton
from ._triton import BLOCK, mark_broken, tl, triton, unavailable_reason  # noqa: F401 -- re-exported

if triton is not None:
    _atan, _wmin, _load_xyxy, _store_grad = _triton._atan, _triton._wmin, _triton._load_xyxy, _triton._store_grad

    @triton.jit
    def _c0(x):
        return tl.where(x < 0.0, 0.0, x)

    @triton.jit
    def _sgn(x):
        return tl.where(x > 0.0, 1.0, tl.where(x < 0.0, -1.0, 0.0))

    @triton.jit
    def _expm1(x):
        p = x * (1.0 + x * (0.5 + x * (1.0 / 6 + x * (1.0 / 24 + x * (1.0 / 120 + x * (1.0 / 720
            + x * (1.0 / 5040 + x * (1.0 / 40320))))))))
        return tl.where(tl.abs(x) < 0.5, p, tl.exp(x) - 1.0)

    @triton.jit
    def _spow(x, e, VAR: tl.constexpr):
        # _geometry.safe_pow for x >= 0; VAR 0: e = 1, 1: e = 0.5, 2: any other e > 0
        if VAR == 0:
            r = x
        else:
            xs = tl.where(x > 0.0, x, 1.0)
            if VAR == 1:
                r = tl.sqrt(xs)
            else:
                r = tl.exp(e * tl.log(xs))
            r = tl.where(x > 0.0, r, 0.0)
        return r

    @triton.jit
    def _spow_d(x, e, VAR: tl.constexpr):
        if VAR == 0:
            r = x * 0.0 + 1.0
        else:
            xs = tl.where(x > 0.0, x, 1.0)
            if VAR == 1:
                r = 1.0 / tl.sqrt(xs)
            else:
                r = tl.exp((e - 1.0) * tl.log(xs))
            r = tl.where(x > 0.0, e * r, 0.0)
        return r

    @triton.jit
    def _iou_fwd(px1, py1, px2, py2, tx1, ty1, tx2, ty2, eps):
        pw = _c0(px2 - px1)
        ph = _c0(py2 - py1)
        tw = _c0(tx2 - tx1)
        th = _c0(ty2 - ty1)
        iwr = tl.minimum(px2, tx2) - tl.maximum(px1, tx1)
        ihr = tl.minimum(py2, ty2) - tl.maximum(py1, ty1)
        inter = _c0(iwr) * _c0(ihr)
        uni = pw * ph + tw * th - inter
        U = tl.maximum(uni, eps)
        return pw, ph, tw, th, iwr, ihr, inter, uni, U, inter / U

    @triton.jit
    def _iou_bwd(px1, py1, px2, py2, tx1, ty1, tx2, ty2, eps, d_iou, d_uni, d_pw, d_ph, d_tw, d_th):
        # from d/d iou, d/d union (before its clamp) and d/d widths to the eight corners
        pw, ph, tw, th, iwr, ihr, inter, uni, U, iou = _iou_fwd(px1, py1, px2, py2, tx1, ty1, tx2, ty2, eps)
        g_inter = d_iou / U
        g_uni = d_uni + tl.where(uni > eps, -d_iou * (iou / U), 0.0)
        g_pw = d_pw + g_uni * ph
        g_ph = d_ph + g_uni * pw
        g_tw = d_tw + g_uni * th
        g_th = d_th + g_uni * tw
        g_inter -= g_uni
        g_iwr = tl.where(iwr > 0.0, g_inter * _c0(ihr), 0.0)
        g_ihr = tl.where(ihr > 0.0, g_inter * _c0(iwr), 0.0)
        wx2 = _wmin(px2, tx2)  # share of min(px2, tx2) going to px2
        wy2 = _wmin(py2, ty2)
        wx1 = _wmin(tx1, px1)  # share of max(px1, tx1) going to px1
        wy1 = _wmin(ty1, py1)
        g_a1 = tl.where(px2 - px1 > 0.0, g_pw, 0.0)
        g_a2 = tl.where(py2 - py1 > 0.0, g_ph, 0.0)
        g_a3 = tl.where(tx2 - tx1 > 0.0, g_tw, 0.0)
        g_a4 = tl.where(ty2 - ty1 > 0.0, g_th, 0.0)
        gpx1 = -g_iwr * wx1 - g_a1
        gpy1 = -g_ihr * wy1 - g_a2
        gpx2 = g_iwr * wx2 + g_a1
        gpy2 = g_ihr * wy2 + g_a2
        gtx1 = -g_iwr * (1.0 - wx1) - g_a3
        gty1 = -g_ihr * (1.0 - wy1) - g_a4
        gtx2 = g_iwr * (1.0 - wx2) + g_a3
        gty2 = g_ihr * (1.0 - wy2) + g_a4
        return gpx1, gpy1, gpx2, gpy2, gtx1, gty1, gtx2, gty2

    @triton.jit
    def _encl_bwd(px1, py1, px2, py2, tx1, ty1, tx2, ty2, d_cw, d_ch, d_dx, d_dy):
        # C_w = max(px2, tx2) - min(px1, tx1) clamped at 0; dx = ((px1 + px2) - (tx1 + tx2)) / 2
        g_cwr = tl.where(tl.maximum(px2, tx2) - tl.minimum(px1, tx1) > 0.0, d_cw, 0.0)
        g_chr = tl.where(tl.maximum(py2, ty2) - tl.minimum(py1, ty1) > 0.0, d_ch, 0.0)
        sx2 = _wmin(tx2, px2)  # share of max(px2, tx2) going to px2
        sy2 = _wmin(ty2, py2)
        sx1 = _wmin(px1, tx1)  # share of min(px1, tx1) going to px1
        sy1 = _wmin(py1, ty1)
        hx = 0.5 * d_dx
        hy = 0.5 * d_dy
        gpx1 = -g_cwr * sx1 + hx
        gpy1 = -g_chr * sy1 + hy
        gpx2 = g_cwr * sx2 + hx
        gpy2 = g_chr * sy2 + hy
        gtx1 = -g_cwr * (1.0 - sx1) - hx
        gty1 = -g_chr * (1.0 - sy1) - hy
        gtx2 = g_cwr * (1.0 - sx2) - hx
        gty2 = g_chr * (1.0 - sy2) - hy
        return gpx1, gpy1, gpx2, gpy2, gtx1, gty1, gtx2, gty2

    @triton.jit
    def _siou(pw, ph, tw, th, cw, ch, dx, dy, iou, eps, theta, g, VAR: tl.constexpr):
        # value of siou.siou_per_box and its gradient to (iou, pw, ph, tw, th, cw, ch, dx, dy), for upstream g
        dx2 = dx * dx
        dy2 = dy * dy
        ax = tl.abs(dx)
        ay = tl.abs(dy)
        Sraw = dx2 + dy2
        S = tl.maximum(Sraw, eps)
        num = 2.0 * ax * ay
        angle = num / S
        gamma = 2.0 - angle
        Cwraw = cw * cw
        Cw = tl.maximum(Cwraw, eps)
        Chraw = ch * ch
        Ch = tl.maximum(Chraw, eps)
        rx = dx2 / Cw
        ry = dy2 / Ch
        ex = _expm1(-gamma * rx)
        ey = _expm1(-gamma * ry)
        mw = tl.maximum(tl.maximum(pw, tw), eps)
        mh = tl.maximum(tl.maximum(ph, th), eps)
        ow = tl.abs(pw - tw) / mw
        oh = tl.abs(ph - th) / mh
        ew = _expm1(-ow)
        eh = _expm1(-oh)
        loss = 1.0 - iou + 0.5 * ((-ex - ey) + (_spow(-ew, theta, VAR) + _spow(-eh, theta, VAR)))
        hd = 0.5 * g
        gux = -hd * (ex + 1.0)
        guy = -hd * (ey + 1.0)
        g_gamma = -(gux * rx) - (guy * ry)
        g_rx = -gux * gamma
        g_ry = -guy * gamma
        g_num = -g_gamma / S
        g_S = tl.where(Sraw > eps, g_gamma * (angle / S), 0.0)
        g_dx2 = g_rx / Cw + g_S
        g_dy2 = g_ry / Ch + g_S
        d_cw = tl.where(Cwraw > eps, 2.0 * cw * (-g_rx * (rx / Cw)), 0.0)
        d_ch = tl.where(Chraw > eps, 2.0 * ch * (-g_ry * (ry / Ch)), 0.0)
        d_dx = 2.0 * dx * g_dx2 + _sgn(dx) * (2.0 * g_num * ay)
        d_dy = 2.0 * dy * g_dy2 + _sgn(dy) * (g_num * (2.0 * ax))
        g_ow = hd * _spow_d(-ew, theta, VAR) * (ew + 1.0)
        g_oh = hd * _spow_d(-eh, theta, VAR) * (eh + 1.0)
        dpw, dtw = _shape_cost_bwd(pw, tw, 1.0, eps, g_ow)
        dph, dth = _shape_cost_bwd(ph, th, 1.0, eps, g_oh)
        return loss, -g, dpw, dph, dtw, dth, d_cw, d_ch, d_dx, d_dy

    @triton.jit
    def _shape_cost_bwd(w, wt, scale, eps, g_om):
        # om = scale * |w - wt| / max(max(w, wt), eps): gradient to (w, wt)
        dw = w - wt
        mraw = tl.maximum(w, wt)
        M = tl.maximum(mraw, eps)
        g_M = tl.where(mraw > eps, -g_om * (((scale * tl.abs(dw)) / M) / M), 0.0)
        g_dw = _sgn(dw) * ((g_om / M) * scale)
        sw = _wmin(wt, w)  # share of max(w, wt) going to w
        return g_dw + g_M * sw, -g_dw + g_M * (1.0 - sw)

    @triton.jit
    def _newer_kernel(
        p_ptr, t_ptr, ex_ptr, out_ptr, gout_ptr, gstride, gp_ptr, gt_ptr, n, eps, p0, p1, p2, K,
        KIND: tl.constexpr, VAR: tl.constexpr, FMT: tl.constexpr, BACKWARD: tl.constexpr, GP: tl.constexpr,
        GT: tl.constexpr, BLOCK: tl.constexpr,
    ):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        px1, py1, px2, py2 = _load_xyxy(p_ptr, offs, mask, FMT)
        tx1, ty1, tx2, ty2 = _load_xyxy(t_ptr, offs, mask, FMT)
        pw, ph, tw, th, iwr, ihr, inter, uni, U, iou = _iou_fwd(px1, py1, px2, py2, tx1, ty1, tx2, ty2, eps)
        cw = _c0(tl.maximum(px2, tx2) - tl.minimum(px1, tx1))
        ch = _c0(tl.maximum(py2, ty2) - tl.minimum(py1, ty1))
        dx = 0.5 * ((px1 + px2) - (tx1 + tx2))
        dy = 0.5 * ((py1 + py2) - (ty1 + ty2))
        if KIND == 9:
            extra = tl.load(ex_ptr + offs, mask=mask, other=1.0)
        else:
            extra = tl.load(ex_ptr + offs * 0, mask=mask, other=1.0)
        zero = tl.full([BLOCK], 0.0, tl.float32)  # (tl.zeros_like is a jit function: breaks the reloaded interpreter)
        if BACKWARD:
            g = tl.load(gout_ptr + offs * gstride, mask=mask, other=0.0)
        else:
            g = zero
        # gradient of the loss to the geometry (iou, union, widths, C_w, C_h, dx, dy) and directly to corners
        d_iou = zero
        d_uni = zero
        d_pw = zero
        d_ph = zero
        d_tw = zero
        d_th = zero
        d_cw = zero
        d_ch = zero
        d_dx = zero
        d_dy = zero
        c2raw = cw * cw + ch * ch
        c2 = tl.maximum(c2raw, eps)
        rho2 = dx * dx + dy * dy
        q_dist = rho2 / c2  # rho^2 / c^2
        g_c2 = tl.where(c2raw > eps, -(q_dist / c2), 0.0)  # d q_dist / d c2, per unit upstream
        if KIND == 0 or KIND == 1 or KIND == 14:  # EIoU (Focal-EIoU: times (IoU^gamma)*; Inner-EIoU's base)
            f = zero + 1.0
            if KIND == 1:
                f = _spow(iou, p0, VAR)
            Cw_raw = cw * cw
            Ch_raw = ch * ch
            Cw = tl.maximum(Cw_raw, eps)
            Ch = tl.maximum(Ch_raw, eps)
            dw = pw - tw
            dh = ph - th
            base = 1.0 - (iou - q_dist) + dw * dw / Cw + dh * dh / Ch
            loss = f * base
            ge = g * f
            d_iou = -ge
            d_cw = 2.0 * cw * (ge * g_c2) + tl.where(Cw_raw > eps, 2.0 * cw * (-ge * (((dw * dw) / Cw) / Cw)), 0.0)
            d_ch = 2.0 * ch * (ge * g_c2) + tl.where(Ch_raw > eps, 2.0 * ch * (-ge * (((dh * dh) / Ch) / Ch)), 0.0)
            d_dx = 2.0 * dx * (ge / c2)
            d_dy = 2.0 * dy * (ge / c2)
            d_pw = 2.0 * dw * ge / Cw
            d_tw = -d_pw
            d_ph = 2.0 * dh * ge / Ch
            d_th = -d_ph
        elif KIND == 2 or KIND == 15:  # SIoU (theta = p0; Inner-SIoU's base: theta = 4)
            if KIND == 2:
                loss, d_iou, d_pw, d_ph, d_tw, d_th, d_cw, d_ch, d_dx, d_dy = _siou(
                    pw, ph, tw, th, cw, ch, dx, dy, iou, eps, p0, g, VAR)
            else:
                loss, d_iou, d_pw, d_ph, d_tw, d_th, d_cw, d_ch, d_dx, d_dy = _siou(
                    pw, ph, tw, th, cw, ch, dx, dy, iou, eps, 4.0, g, 2)
            base = loss
        elif KIND >= 3 and KIND <= 6:  # Alpha-IoU
            loss = 1.0 - _spow(iou, p0, VAR)
            d_iou = -g * _spow_d(iou, p0, VAR)
            if KIND == 4:  # + (IoU - GIoU)^alpha
                Craw = cw * ch
                C = tl.maximum(Craw, eps)
                q = (C - uni) / C
                value = iou - q
                x = _c0(iou - value)
                loss = loss + _spow(x, p0, VAR)
                gx = tl.where(iou - value > 0.0, g * _spow_d(x, p0, VAR), 0.0)
                g_C = tl.where(Craw > eps, gx / C - gx * (q / C), 0.0)
                d_uni = -(gx / C)
                d_cw = g_C * ch
                d_ch = g_C * cw
            if KIND >= 5:  # + (rho^2 / c^2)^alpha
                loss = loss + _spow(q_dist, p0, VAR)
                gq = g * _spow_d(q_dist, p0, VAR)
                d_cw = 2.0 * cw * (gq * g_c2)
                d_ch = 2.0 * ch * (gq * g_c2)
                d_dx = 2.0 * dx * (gq / c2)
                d_dy = 2.0 * dy * (gq / c2)
            if KIND == 6:  # + (beta* v)^alpha
                hp = ph + eps
                ht = th + eps
                rp = pw / hp
                rt = tw / ht
                dv = _atan(rt) - _atan(rp)
                v = K * dv * dv
                beta = v / tl.maximum(1.0 - iou + v, eps)
                bv = beta * v
                loss = loss + _spow(bv, p0, VAR)
                g_dv = 2.0 * K * (g * _spow_d(bv, p0, VAR) * beta) * dv
                g_rp = -g_dv / (1.0 + rp * rp)
                g_rt = g_dv / (1.0 + rt * rt)
                d_pw = g_rp / hp
                d_ph = -(g_rp * rp / hp)
                d_tw = g_rt / ht
                d_th = -(g_rt * rt / ht)
            base = loss
        elif KIND == 7 or KIND == 8:  # Wise-IoU: R = exp(min(rho^2 / (c^2)*, 1)), v3 times r
            lv = 1.0 - iou
            R = tl.exp(tl.minimum(q_dist, 1.0))
            f = zero + 1.0
            if KIND == 8:
                beta = lv / extra
                f = beta / (p2 * tl.exp((beta - p2) * p1))
            loss = f * R * lv
            d_iou = -g * (f * R)
            g_x = tl.where(q_dist < 1.0, (g * lv) * f * R, 0.0)
            d_dx = 2.0 * dx * (g_x / c2)
            d_dy = 2.0 * dy * (g_x / c2)
            base = loss
        elif KIND == 9:  # MPDIoU
            e0 = px1 - tx1
            e1 = py1 - ty1
            e2 = px2 - tx2
            e3 = py2 - ty2
            loss = 1.0 - iou + ((e0 * e0 + e1 * e1) + (e2 * e2 + e3 * e3)) / extra
            d_iou = -g
            base = loss
        elif KIND == 16:  # Shape-IoU (VAR 3: scale 0)
            if VAR == 3:
                ww = zero + 1.0
                hh = zero + 1.0
                sw = zero
                sh = zero
                total = zero + 1.0
            else:
                sw = _spow(tw, p0, VAR)
                sh = _spow(th, p0, VAR)
                total = tl.maximum(sw + sh, eps)
                ww = 2.0 * sw / total
                hh = 2.0 * sh / total
            N = hh * (dx * dx) + ww * (dy * dy)
            distance = N / c2
            aw = tl.abs(pw - tw)
            ah = tl.abs(ph - th)
            Mw = tl.maximum(tl.maximum(pw, tw), eps)
            Mh = tl.maximum(tl.maximum(ph, th), eps)
            ew = _expm1(-(hh * aw / Mw))
            eh = _expm1(-(ww * ah / Mh))
            ew2 = ew * ew
            eh2 = eh * eh
            loss = 1.0 - iou + distance + 0.5 * (ew2 * ew2 + eh2 * eh2)
            d_iou = -g
            g_N = g / c2
            gc2 = tl.where(c2raw > eps, -g * (distance / c2), 0.0)
            d_cw = 2.0 * cw * gc2
            d_ch = 2.0 * ch * gc2
            d_dx = 2.0 * dx * (hh * g_N)
            d_dy = 2.0 * dy * (ww * g_N)
            g_ow = -(0.5 * g * 4.0 * (ew2 * ew)) * (ew + 1.0)
            g_oh = -(0.5 * g * 4.0 * (eh2 * eh)) * (eh + 1.0)
            g_hh = g_N * (dx * dx) + g_ow * aw / Mw
            g_ww = g_N * (dy * dy) + g_oh * ah / Mh
            d_pw, d_tw = _shape_cost_bwd(pw, tw, hh, eps, g_ow)
            d_ph, d_th = _shape_cost_bwd(ph, th, ww, eps, g_oh)
            if VAR != 3:
                traw = sw + sh
                g_total = -(g_ww * ((2.0 * sw / total) / total) + g_hh * ((2.0 * sh / total) / total))
                g_sw = 2.0 * g_ww / total + tl.where(traw > eps, g_total, 0.0)
                g_sh = 2.0 * g_hh / total + tl.where(traw > eps, g_total, 0.0)
                d_tw += g_sw * _spow_d(tw, p0, VAR)
                d_th += g_sh * _spow_d(th, p0, VAR)
            base = loss
        else:  # KIND 10..13: Inner-IoU's IoU, GIoU, DIoU, CIoU bases
            base = 1.0 - iou
            d_iou = -g
            if KIND == 11:
                Craw = cw * ch
                C = tl.maximum(Craw, eps)
                q = (C - uni) / C
                base = 1.0 - (iou - q)
                g_C = tl.where(Craw > eps, g / C - g * (q / C), 0.0)
                d_uni = -(g / C)
                d_cw = g_C * ch
                d_ch = g_C * cw
            if KIND == 12 or KIND == 13:
                d_cw = 2.0 * cw * (g * g_c2)
                d_ch = 2.0 * ch * (g * g_c2)
                d_dx = 2.0 * dx * (g / c2)
                d_dy = 2.0 * dy * (g / c2)
                base = 1.0 - (iou - q_dist)
            if KIND == 13:
                hp = ph + eps
                ht = th + eps
                rp = pw / hp
                rt = tw / ht
                dv = _atan(rt) - _atan(rp)
                v = K * dv * dv
                alpha = v / tl.maximum(1.0 - iou + v, eps)
                base = 1.0 - ((iou - q_dist) - alpha * v)
                g_dv = 2.0 * K * (g * alpha) * dv
                g_rp = -g_dv / (1.0 + rp * rp)
                g_rt = g_dv / (1.0 + rt * rt)
                d_pw = g_rp / hp
                d_ph = -(g_rp * rp / hp)
                d_tw = g_rt / ht
                d_th = -(g_rt * rt / ht)
            loss = base
        gpx1 = zero
        gpy1 = zero
        gpx2 = zero
        gpy2 = zero
        gtx1 = zero
        gty1 = zero
        gtx2 = zero
        gty2 = zero
        if KIND >= 10:
            if KIND != 16:  # Inner-IoU: base + IoU - IoU(inner boxes scaled by ratio = 2 p0 about the centres)
                pcx = 0.5 * (px1 + px2)
                pcy = 0.5 * (py1 + py2)
                tcx = 0.5 * (tx1 + tx2)
                tcy = 0.5 * (ty1 + ty2)
                ix1 = pcx - p0 * pw
                iy1 = pcy - p0 * ph
                ix2 = pcx + p0 * pw
                iy2 = pcy + p0 * ph
                jx1 = tcx - p0 * tw
                jy1 = tcy - p0 * th
                jx2 = tcx + p0 * tw
                jy2 = tcy + p0 * th
                _, _, _, _, _, _, _, _, _, inner = _iou_fwd(ix1, iy1, ix2, iy2, jx1, jy1, jx2, jy2, eps)
                loss = base + iou - inner
                d_iou += g
                a1, b1, a2, b2, c1, e1, c2_, e2 = _iou_bwd(ix1, iy1, ix2, iy2, jx1, jy1, jx2, jy2, eps, -g, zero,
                                                           zero, zero, zero, zero)
                gpx1 = 0.5 * (a1 + a2)
                gpx2 = gpx1
                gpy1 = 0.5 * (b1 + b2)
                gpy2 = gpy1
                gtx1 = 0.5 * (c1 + c2_)
                gtx2 = gtx1
                gty1 = 0.5 * (e1 + e2)
                gty2 = gty1
                d_pw += p0 * (a2 - a1)
                d_ph += p0 * (b2 - b1)
                d_tw += p0 * (c2_ - c1)
                d_th += p0 * (e2 - e1)
        if not BACKWARD:
            tl.store(out_ptr + offs, loss, mask=mask)
        else:
            if KIND == 9:
                gs = 2.0 * (g / extra)
                gpx1 += gs * (px1 - tx1)
                gpy1 += gs * (py1 - ty1)
                gpx2 += gs * (px2 - tx2)
                gpy2 += gs * (py2 - ty2)
                gtx1 -= gs * (px1 - tx1)
                gty1 -= gs * (py1 - ty1)
                gtx2 -= gs * (px2 - tx2)
                gty2 -= gs * (py2 - ty2)
            a1, b1, a2, b2, c1, e1, c2_, e2 = _encl_bwd(px1, py1, px2, py2, tx1, ty1, tx2, ty2, d_cw, d_ch, d_dx,
                                                        d_dy)
            f1, h1, f2, h2, k1, m1, k2, m2 = _iou_bwd(px1, py1, px2, py2, tx1, ty1, tx2, ty2, eps, d_iou, d_uni,
                                                      d_pw, d_ph, d_tw, d_th)
            if GP:
                _store_grad(gp_ptr, offs, mask, gpx1 + a1 + f1, gpy1 + b1 + h1, gpx2 + a2 + f2, gpy2 + b2 + h2, FMT)
            if GT:
                _store_grad(gt_ptr, offs, mask, gtx1 + c1 + k1, gty1 + e1 + m1, gtx2 + c2_ + k2, gty2 + e2 + m2,
                            FMT)


def _launch(p, t, ex, out, gout, gstride, gp, gt, cfg, backward):
    kind, var, fmt, eps, p0, p1, p2 = cfg
    n = p.shape[0]
    if n == 0:
        return
    dummy = p  # unused pointer arguments
    _newer_kernel[(triton.cdiv(n, BLOCK),)](
        p, t, ex, out if out is not None else dummy, gout if gout is not None else dummy, gstride,
        gp if gp is not None else dummy, gt if gt is not None else dummy, n, eps, p0, p1, p2, 4.0 / math.pi**2,
        KIND=kind, VAR=var, FMT=fmt, BACKWARD=backward, GP=gp is not None, GT=gt is not None, BLOCK=BLOCK,
    )


class _TritonNewerLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, p, t, ex, cfg):
        out = torch.empty(p.shape[0], dtype=p.dtype, device=p.device)
        _launch(p, t, ex, out, None, 0, None, None, cfg, False)
        ctx.save_for_backward(p, t, ex)
        ctx.cfg = cfg
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        p, t, ex = ctx.saved_tensors
        from . import _kernel_grad

        grad, gstride = _kernel_grad(grad, p.dtype)
        gp = torch.empty_like(p) if ctx.needs_input_grad[0] else None
        gt = torch.empty_like(t) if ctx.needs_input_grad[1] else None
        if gp is not None or gt is not None:
            _launch(p, t, ex, None, grad, gstride, gp, gt, ctx.cfg, True)
        return gp, gt, None, None


def newer_loss(p, t, ex, kind: int, var: int, fmt: int, eps: float, p0: float, p1: float, p2: float):
    """Per-box loss of [N, 4] contiguous float32 boxes on one device (CUDA, or CPU when interpreting); `ex` the
    extra input ([N] for MPDIoU, [1] otherwise) on the same device; codes as for the C++ kernels."""
    cfg = (kind, var, fmt, float(eps), float(p0), float(p1), float(p2))
    if torch.is_grad_enabled() and (p.requires_grad or t.requires_grad):
        return _TritonNewerLoss.apply(p, t, ex, cfg)
    out = torch.empty(p.shape[0], dtype=p.dtype, device=p.device)
    _launch(p, t, ex, out, None, 0, None, None, cfg, False)
    return out
