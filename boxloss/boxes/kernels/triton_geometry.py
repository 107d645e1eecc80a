"""The Triton side of the fused box losses' geometry core: every ``@triton.jit`` helper, written once.

The losses (``triton_losses.py``) are small heads on these helpers. Each piece of math has its value
and its reverse-mode derivative side by side, ``term(...)`` and ``term_bwd(..., g)``; a ``_bwd`` takes
the same inputs as its forward plus the upstream gradient ``g`` and recomputes the intermediates it
needs (the compiler shares them with the forward; nothing is stored between launches).

- scalar helpers: ``clamp0``, ``share_of_min`` (torch's tie rule), ``sign``, branch-free ``atan``
  (Cephes' atanf) and ``expm1``, ``safe_pow`` / ``safe_pow_grad`` (``_geometry.safe_pow`` per VARIANT);
- boxes in and gradients out in the three formats: ``load_boxes``, ``store_box_grad``;
- the geometry: ``overlap`` (widths, union, IoU), ``enclosing`` (enclosing box, half centre offset) and
  ``geometry_bwd`` from their gradients to the 8 corners (``overlap_bwd`` + ``enclosing_bwd``);
- the penalty terms: ``giou_penalty`` (C - U) / C, ``diou_penalty`` rho^2 / c^2, CIoU's ``ciou_aspect``
  v (exact or paper derivative) and ``ciou_alpha``, EIoU's ``eiou_sides``, ``shape_ratio`` (SIoU's and
  Shape-IoU's omega), ``siou_costs``, ``shape_iou_costs``, and Inner-IoU's ``inner_box``.

Conventions (those of the eager reference, so that values and gradients agree to rounding): fp32;
widths clamped at 0; ``eps`` only bounds denominators from below, never added (except CIoU's aspect
ratio w / (h + eps), as the reference); ``clamp_min`` passes the gradient only where x > bound,
``clamp_max`` only where x < bound; min/max give the gradient to the smaller/larger input and split it
in halves on ties; ``abs`` has gradient 0 at 0. Only ``triton.language`` builtins are used (no
``tl.zeros_like`` and other library jit functions), so the module also runs under ``TRITON_INTERPRET=1``
when it is imported, or reloaded, with the interpreter on.
"""

from __future__ import annotations

try:  # noqa: SIM105 -- the import is the availability test
    import triton
    import triton.language as tl

    IMPORT_ERROR = None
except Exception as e:  # noqa: BLE001
    triton = tl = None
    IMPORT_ERROR = e

from .kinds import VARIANT_ONE, VARIANT_SCALE0, VARIANT_SQRT

if tl is not None:  # how an exponent is applied, as constants a kernel can read (any other VARIANT: x^e)
    _ONE, _SQRT, _SCALE0 = (tl.constexpr(v) for v in (VARIANT_ONE, VARIANT_SQRT, VARIANT_SCALE0))


def interpreted() -> bool:
    """Whether this module's functions were made by Triton's interpreter (TRITON_INTERPRET=1 at import)."""
    return triton is not None and type(clamp0).__name__ == "InterpretedFunction"


if triton is not None:

    # ---- scalar helpers ------------------------------------------------------------------------------

    @triton.jit
    def zeros(x):
        return tl.full(x.shape, 0.0, tl.float32)

    @triton.jit
    def clamp0(x):
        # clamp_min(x, 0), NaN passing through as in torch
        return tl.where(x < 0.0, 0.0, x)

    @triton.jit
    def share_of_min(a, b):
        # the share of d min(a, b) going to a (ties split in halves, as torch); 1 - it goes to b.
        # The share of d max(a, b) going to a is share_of_min(b, a).
        return tl.where(a < b, 1.0, tl.where(b < a, 0.0, 0.5))

    @triton.jit
    def sign(x):
        return tl.where(x > 0.0, 1.0, tl.where(x < 0.0, -1.0, 0.0))

    @triton.jit
    def atan(a):
        # Cephes atanf, branch-free (as the C++ kernels' my_atan)
        x = tl.abs(a)
        big = x > 2.414213562373095
        mid = x > 0.4142135623730950
        y0 = tl.where(big, 1.5707963267948966, tl.where(mid, 0.7853981633974483, 0.0))
        xr = tl.where(big, -1.0 / tl.where(big, x, 1.0), tl.where(mid, (x - 1.0) / (x + 1.0), x))
        z = xr * xr
        y = y0 + ((((8.05374449538e-2 * z - 1.38776856032e-1) * z + 1.99777106478e-1) * z - 3.33329491539e-1)
                  * z * xr + xr)
        return tl.where(a < 0.0, -y, y)

    @triton.jit
    def expm1(x):
        # Taylor polynomial for |x| < 0.5 (relative error < 1e-8), exp(x) - 1 beyond
        p = x * (1.0 + x * (0.5 + x * (1.0 / 6 + x * (1.0 / 24 + x * (1.0 / 120 + x * (1.0 / 720
            + x * (1.0 / 5040 + x * (1.0 / 40320))))))))
        return tl.where(tl.abs(x) < 0.5, p, tl.exp(x) - 1.0)

    @triton.jit
    def safe_pow(x, e, VARIANT: tl.constexpr):
        # _geometry.safe_pow for x >= 0: x^e, 0 where x = 0 (VARIANT 0: e = 1, 1: e = 0.5, 2: any e > 0)
        if VARIANT == _ONE:
            r = x
        else:
            xs = tl.where(x > 0.0, x, 1.0)
            if VARIANT == _SQRT:
                r = tl.sqrt(xs)
            else:
                r = tl.exp(e * tl.log(xs))
            r = tl.where(x > 0.0, r, 0.0)
        return r

    @triton.jit
    def safe_pow_grad(x, e, VARIANT: tl.constexpr):
        # d safe_pow / dx: e x^(e - 1), 0 where x = 0 (finite for e < 1)
        if VARIANT == _ONE:
            r = zeros(x) + 1.0
        else:
            xs = tl.where(x > 0.0, x, 1.0)
            if VARIANT == _SQRT:
                r = 1.0 / tl.sqrt(xs)
            else:
                r = tl.exp((e - 1.0) * tl.log(xs))
            r = tl.where(x > 0.0, e * r, 0.0)
        return r

    # ---- boxes in, gradients out ---------------------------------------------------------------------

    @triton.jit
    def load_boxes(ptr, offs, mask, FMT: tl.constexpr):
        # [N, 4] boxes in FMT (0 xyxy, 1 xywh, 2 cxcywh) as xyxy corners (formats._to_xyxy's arithmetic)
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
    def store_box_grad(ptr, offs, mask, g1, g2, g3, g4, FMT: tl.constexpr):
        # gradients to the xyxy corners, stored as gradients to the FMT coordinates (load_boxes' transpose)
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

    # ---- the geometry: overlap, enclosing box, and their derivative to the corners --------------------

    @triton.jit
    def overlap(px1, py1, px2, py2, tx1, ty1, tx2, ty2, eps):
        # IoU = inter / max(union, eps), widths and the intersection's sides clamped at 0
        pw = clamp0(px2 - px1)
        ph = clamp0(py2 - py1)
        tw = clamp0(tx2 - tx1)
        th = clamp0(ty2 - ty1)
        iw = clamp0(tl.minimum(px2, tx2) - tl.maximum(px1, tx1))
        inter = iw * clamp0(tl.minimum(py2, ty2) - tl.maximum(py1, ty1))
        uni = pw * ph + tw * th - inter
        return inter / tl.maximum(uni, eps), uni, pw, ph, tw, th

    @triton.jit
    def overlap_bwd(px1, py1, px2, py2, tx1, ty1, tx2, ty2, eps, d_iou, d_uni, d_pw, d_ph, d_tw, d_th):
        # from the gradients to overlap()'s outputs (the union's before its clamp) to the 8 corners
        iwr = tl.minimum(px2, tx2) - tl.maximum(px1, tx1)
        ihr = tl.minimum(py2, ty2) - tl.maximum(py1, ty1)
        iou, uni, pw, ph, tw, th = overlap(px1, py1, px2, py2, tx1, ty1, tx2, ty2, eps)
        U = tl.maximum(uni, eps)
        g_inter = d_iou / U
        g_uni = d_uni + tl.where(uni > eps, -d_iou * (iou / U), 0.0)
        g_inter -= g_uni
        g_iwr = tl.where(iwr > 0.0, g_inter * clamp0(ihr), 0.0)
        g_ihr = tl.where(ihr > 0.0, g_inter * clamp0(iwr), 0.0)
        g_pw = tl.where(px2 - px1 > 0.0, d_pw + g_uni * ph, 0.0)
        g_ph = tl.where(py2 - py1 > 0.0, d_ph + g_uni * pw, 0.0)
        g_tw = tl.where(tx2 - tx1 > 0.0, d_tw + g_uni * th, 0.0)
        g_th = tl.where(ty2 - ty1 > 0.0, d_th + g_uni * tw, 0.0)
        sx2 = share_of_min(px2, tx2)  # min(px2, tx2): share of px2
        sy2 = share_of_min(py2, ty2)
        sx1 = share_of_min(tx1, px1)  # max(px1, tx1): share of px1
        sy1 = share_of_min(ty1, py1)
        return (-g_iwr * sx1 - g_pw, -g_ihr * sy1 - g_ph, g_iwr * sx2 + g_pw, g_ihr * sy2 + g_ph,
                -g_iwr * (1.0 - sx1) - g_tw, -g_ihr * (1.0 - sy1) - g_th,
                g_iwr * (1.0 - sx2) + g_tw, g_ihr * (1.0 - sy2) + g_th)

    @triton.jit
    def enclosing(px1, py1, px2, py2, tx1, ty1, tx2, ty2):
        # the enclosing box's sides (clamped at 0) and half the centre offset, prediction minus target
        cw = clamp0(tl.maximum(px2, tx2) - tl.minimum(px1, tx1))
        ch = clamp0(tl.maximum(py2, ty2) - tl.minimum(py1, ty1))
        dx = 0.5 * ((px1 + px2) - (tx1 + tx2))
        dy = 0.5 * ((py1 + py2) - (ty1 + ty2))
        return cw, ch, dx, dy

    @triton.jit
    def enclosing_bwd(px1, py1, px2, py2, tx1, ty1, tx2, ty2, d_cw, d_ch, d_dx, d_dy):
        g_cwr = tl.where(tl.maximum(px2, tx2) - tl.minimum(px1, tx1) > 0.0, d_cw, 0.0)
        g_chr = tl.where(tl.maximum(py2, ty2) - tl.minimum(py1, ty1) > 0.0, d_ch, 0.0)
        sx2 = share_of_min(tx2, px2)  # max(px2, tx2): share of px2
        sy2 = share_of_min(ty2, py2)
        sx1 = share_of_min(px1, tx1)  # min(px1, tx1): share of px1
        sy1 = share_of_min(py1, ty1)
        hx = 0.5 * d_dx
        hy = 0.5 * d_dy
        return (-g_cwr * sx1 + hx, -g_chr * sy1 + hy, g_cwr * sx2 + hx, g_chr * sy2 + hy,
                -g_cwr * (1.0 - sx1) - hx, -g_chr * (1.0 - sy1) - hy,
                g_cwr * (1.0 - sx2) - hx, g_chr * (1.0 - sy2) - hy)

    @triton.jit
    def geometry_bwd(px1, py1, px2, py2, tx1, ty1, tx2, ty2, eps,
                     d_iou, d_uni, d_pw, d_ph, d_tw, d_th, d_cw, d_ch, d_dx, d_dy, ENCLOSING: tl.constexpr):
        # overlap_bwd + enclosing_bwd (the latter only if the loss reads the enclosing box or the offset)
        a1, b1, a2, b2, c1, e1, c2, e2 = overlap_bwd(px1, py1, px2, py2, tx1, ty1, tx2, ty2, eps,
                                                     d_iou, d_uni, d_pw, d_ph, d_tw, d_th)
        if ENCLOSING:
            f1, h1, f2, h2, k1, m1, k2, m2 = enclosing_bwd(px1, py1, px2, py2, tx1, ty1, tx2, ty2,
                                                           d_cw, d_ch, d_dx, d_dy)
            a1 += f1
            b1 += h1
            a2 += f2
            b2 += h2
            c1 += k1
            e1 += m1
            c2 += k2
            e2 += m2
        return a1, b1, a2, b2, c1, e1, c2, e2

    # ---- penalty terms ------------------------------------------------------------------------------

    @triton.jit
    def giou_penalty(uni, cw, ch, eps):
        # GIoU's |C \ U| / |C| = (C - U) / C, C = max(cw ch, eps)
        C = tl.maximum(cw * ch, eps)
        return (C - uni) / C

    @triton.jit
    def giou_penalty_bwd(uni, cw, ch, eps, g):
        # -> d/d (uni, cw, ch)
        Craw = cw * ch
        C = tl.maximum(Craw, eps)
        q = (C - uni) / C
        g_C = tl.where(Craw > eps, g / C - g * (q / C), 0.0)
        return -(g / C), g_C * ch, g_C * cw

    @triton.jit
    def diou_penalty(cw, ch, dx, dy, eps):
        # DIoU's rho^2 / c^2, c^2 = max(cw^2 + ch^2, eps)
        return (dx * dx + dy * dy) / tl.maximum(cw * cw + ch * ch, eps)

    @triton.jit
    def diou_penalty_bwd(cw, ch, dx, dy, eps, g):
        # -> d/d (cw, ch, dx, dy)
        c2raw = cw * cw + ch * ch
        c2 = tl.maximum(c2raw, eps)
        q = (dx * dx + dy * dy) / c2
        g_c2 = tl.where(c2raw > eps, g * -(q / c2), 0.0)
        return 2.0 * cw * g_c2, 2.0 * ch * g_c2, 2.0 * dx * (g / c2), 2.0 * dy * (g / c2)

    @triton.jit
    def ciou_aspect(pw, ph, tw, th, eps):
        # CIoU's v = 4 / pi^2 (atan(tw / (th + eps)) - atan(pw / (ph + eps)))^2
        dv = atan(tw / (th + eps)) - atan(pw / (ph + eps))
        return 0.40528473456935109 * dv * dv

    @triton.jit
    def ciou_alpha(iou, v, eps, GATED: tl.constexpr):
        # CIoU's trade-off alpha = v / max(1 - IoU + v, eps), constant in backprop; GATED: 0 where IoU < 0.5
        alpha = v / tl.maximum(1.0 - iou + v, eps)
        if GATED:
            alpha = tl.where(iou >= 0.5, alpha, 0.0 * alpha)
        return alpha

    @triton.jit
    def ciou_aspect_bwd(pw, ph, tw, th, eps, g, PAPER: tl.constexpr):
        # -> d/d (pw, ph, tw, th). PAPER: the DIoU paper's d atan(w / h) = (h, -w), without 1 / (w^2 + h^2)
        hp = ph + eps
        ht = th + eps
        rp = pw / hp
        rt = tw / ht
        g_dv = 2.0 * 0.40528473456935109 * g * (atan(rt) - atan(rp))
        if PAPER:
            d_pw, d_ph, d_tw, d_th = -g_dv * hp, g_dv * pw, g_dv * ht, -g_dv * tw
        else:
            g_rp = -g_dv / (1.0 + rp * rp)
            g_rt = g_dv / (1.0 + rt * rt)
            d_pw, d_ph, d_tw, d_th = g_rp / hp, -(g_rp * rp / hp), g_rt / ht, -(g_rt * rt / ht)
        return d_pw, d_ph, d_tw, d_th

    @triton.jit
    def eiou_sides(pw, ph, tw, th, cw, ch, eps):
        # EIoU's (pw - tw)^2 / max(cw^2, eps) and (ph - th)^2 / max(ch^2, eps)
        dw = pw - tw
        dh = ph - th
        return dw * dw / tl.maximum(cw * cw, eps), dh * dh / tl.maximum(ch * ch, eps)

    @triton.jit
    def eiou_sides_bwd(pw, ph, tw, th, cw, ch, eps, g):
        # -> d/d (pw, ph, tw, th, cw, ch) of their sum
        dw = pw - tw
        dh = ph - th
        Cw_raw = cw * cw
        Ch_raw = ch * ch
        Cw = tl.maximum(Cw_raw, eps)
        Ch = tl.maximum(Ch_raw, eps)
        d_pw = 2.0 * dw * g / Cw
        d_ph = 2.0 * dh * g / Ch
        d_cw = tl.where(Cw_raw > eps, 2.0 * cw * (-g * (((dw * dw) / Cw) / Cw)), 0.0)
        d_ch = tl.where(Ch_raw > eps, 2.0 * ch * (-g * (((dh * dh) / Ch) / Ch)), 0.0)
        return d_pw, d_ph, -d_pw, -d_ph, d_cw, d_ch

    @triton.jit
    def shape_ratio(w, wt, scale, eps):
        # omega = scale |w - wt| / max(max(w, wt), eps) (SIoU with scale 1, Shape-IoU's weighted one)
        return scale * tl.abs(w - wt) / tl.maximum(tl.maximum(w, wt), eps)

    @triton.jit
    def shape_ratio_bwd(w, wt, scale, eps, g):
        # -> d/d (w, wt, scale)
        dw = w - wt
        mraw = tl.maximum(w, wt)
        M = tl.maximum(mraw, eps)
        g_M = tl.where(mraw > eps, -g * (((scale * tl.abs(dw)) / M) / M), 0.0)
        g_dw = sign(dw) * ((g / M) * scale)
        s = share_of_min(wt, w)  # max(w, wt): share of w
        return g_dw + g_M * s, -g_dw + g_M * (1.0 - s), g * tl.abs(dw) / M

    @triton.jit
    def _siou_parts(cw, ch, dx, dy, eps):
        # SIoU's angle cost: gamma = 2 - sin(2 alpha); rho_x = dx^2 / max(cw^2, eps), rho_y likewise
        dx2 = dx * dx
        dy2 = dy * dy
        S = tl.maximum(dx2 + dy2, eps)
        angle = 2.0 * tl.abs(dx) * tl.abs(dy) / S
        return dx2, dy2, S, angle, 2.0 - angle, dx2 / tl.maximum(cw * cw, eps), dy2 / tl.maximum(ch * ch, eps)

    @triton.jit
    def siou_costs(pw, ph, tw, th, cw, ch, dx, dy, eps, theta, VARIANT: tl.constexpr):
        # SIoU's distance cost sum(1 - exp(-gamma rho)) and shape cost sum((1 - exp(-omega))^theta)
        _, _, _, _, gamma, rx, ry = _siou_parts(cw, ch, dx, dy, eps)
        distance = -expm1(-gamma * rx) - expm1(-gamma * ry)
        ew = expm1(-shape_ratio(pw, tw, 1.0, eps))
        eh = expm1(-shape_ratio(ph, th, 1.0, eps))
        return distance, safe_pow(-ew, theta, VARIANT) + safe_pow(-eh, theta, VARIANT)

    @triton.jit
    def siou_costs_bwd(pw, ph, tw, th, cw, ch, dx, dy, eps, theta, g, VARIANT: tl.constexpr):
        # -> d/d (pw, ph, tw, th, cw, ch, dx, dy) of distance + shape
        dx2, dy2, S, angle, gamma, rx, ry = _siou_parts(cw, ch, dx, dy, eps)
        Sraw = dx2 + dy2
        Cwraw = cw * cw
        Chraw = ch * ch
        ex = expm1(-gamma * rx)
        ey = expm1(-gamma * ry)
        gux = -g * (ex + 1.0)
        guy = -g * (ey + 1.0)
        g_gamma = -(gux * rx) - (guy * ry)
        g_rx = -gux * gamma
        g_ry = -guy * gamma
        g_num = -g_gamma / S
        g_S = tl.where(Sraw > eps, g_gamma * (angle / S), 0.0)
        Cw = tl.maximum(Cwraw, eps)
        Ch = tl.maximum(Chraw, eps)
        d_cw = tl.where(Cwraw > eps, 2.0 * cw * (-g_rx * (rx / Cw)), 0.0)
        d_ch = tl.where(Chraw > eps, 2.0 * ch * (-g_ry * (ry / Ch)), 0.0)
        d_dx = 2.0 * dx * (g_rx / Cw + g_S) + sign(dx) * (2.0 * g_num * tl.abs(dy))
        d_dy = 2.0 * dy * (g_ry / Ch + g_S) + sign(dy) * (g_num * (2.0 * tl.abs(dx)))
        ew = expm1(-shape_ratio(pw, tw, 1.0, eps))
        eh = expm1(-shape_ratio(ph, th, 1.0, eps))
        d_pw, d_tw, _ = shape_ratio_bwd(pw, tw, 1.0, eps, g * safe_pow_grad(-ew, theta, VARIANT) * (ew + 1.0))
        d_ph, d_th, _ = shape_ratio_bwd(ph, th, 1.0, eps, g * safe_pow_grad(-eh, theta, VARIANT) * (eh + 1.0))
        return d_pw, d_ph, d_tw, d_th, d_cw, d_ch, d_dx, d_dy

    @triton.jit
    def _shape_weights(tw, th, eps, scale, VARIANT: tl.constexpr):
        # Shape-IoU's ww = 2 tw^s / max(tw^s + th^s, eps), hh likewise (1, 1 for scale 0)
        if VARIANT == _SCALE0:
            sw = zeros(tw)
            sh = sw
            total = sw + 1.0
            ww = total
            hh = total
        else:
            sw = safe_pow(tw, scale, VARIANT)
            sh = safe_pow(th, scale, VARIANT)
            total = tl.maximum(sw + sh, eps)
            ww = 2.0 * sw / total
            hh = 2.0 * sh / total
        return sw, sh, total, ww, hh

    @triton.jit
    def shape_iou_costs(pw, ph, tw, th, cw, ch, dx, dy, eps, scale, VARIANT: tl.constexpr):
        # Shape-IoU's distance (hh dx^2 + ww dy^2) / c^2 and shape cost sum((1 - exp(-omega))^4)
        _, _, _, ww, hh = _shape_weights(tw, th, eps, scale, VARIANT)
        distance = (hh * (dx * dx) + ww * (dy * dy)) / tl.maximum(cw * cw + ch * ch, eps)
        ew = expm1(-shape_ratio(pw, tw, hh, eps))
        eh = expm1(-shape_ratio(ph, th, ww, eps))
        ew2 = ew * ew
        eh2 = eh * eh
        return distance, ew2 * ew2 + eh2 * eh2

    @triton.jit
    def shape_iou_costs_bwd(pw, ph, tw, th, cw, ch, dx, dy, eps, scale, g_dist, g_shape, VARIANT: tl.constexpr):
        # -> d/d (pw, ph, tw, th, cw, ch, dx, dy) of g_dist * distance + g_shape * shape
        sw, sh, total, ww, hh = _shape_weights(tw, th, eps, scale, VARIANT)
        c2raw = cw * cw + ch * ch
        c2 = tl.maximum(c2raw, eps)
        distance = (hh * (dx * dx) + ww * (dy * dy)) / c2
        g_N = g_dist / c2
        g_c2 = tl.where(c2raw > eps, -g_dist * (distance / c2), 0.0)
        ew = expm1(-shape_ratio(pw, tw, hh, eps))
        eh = expm1(-shape_ratio(ph, th, ww, eps))
        g_ow = -(g_shape * 4.0 * (ew * ew * ew)) * (ew + 1.0)
        g_oh = -(g_shape * 4.0 * (eh * eh * eh)) * (eh + 1.0)
        d_pw, d_tw, s_hh = shape_ratio_bwd(pw, tw, hh, eps, g_ow)
        d_ph, d_th, s_ww = shape_ratio_bwd(ph, th, ww, eps, g_oh)
        if VARIANT != _SCALE0:
            g_hh = g_N * (dx * dx) + s_hh
            g_ww = g_N * (dy * dy) + s_ww
            g_total = -(g_ww * ((2.0 * sw / total) / total) + g_hh * ((2.0 * sh / total) / total))
            g_total = tl.where(sw + sh > eps, g_total, 0.0)
            d_tw += (2.0 * g_ww / total + g_total) * safe_pow_grad(tw, scale, VARIANT)
            d_th += (2.0 * g_hh / total + g_total) * safe_pow_grad(th, scale, VARIANT)
        return d_pw, d_ph, d_tw, d_th, 2.0 * cw * g_c2, 2.0 * ch * g_c2, 2.0 * dx * (hh * g_N), 2.0 * dy * (ww * g_N)

    @triton.jit
    def inner_box(x1, y1, x2, y2, w, h, half_ratio):
        # Inner-IoU's auxiliary box: same centre, sides ratio * (w, h) (w, h already clamped at 0)
        cx = 0.5 * (x1 + x2)
        cy = 0.5 * (y1 + y2)
        return cx - half_ratio * w, cy - half_ratio * h, cx + half_ratio * w, cy + half_ratio * h

    @triton.jit
    def inner_box_bwd(g1, g2, g3, g4, half_ratio):
        # from the inner corners' gradients -> d/d (x1, y1, x2, y2) through the centre, and d/d (w, h)
        gx = 0.5 * (g1 + g3)
        gy = 0.5 * (g2 + g4)
        return gx, gy, gx, gy, half_ratio * (g3 - g1), half_ratio * (g4 - g2)
