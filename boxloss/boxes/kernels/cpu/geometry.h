// The geometry of one box pair that every loss is built on, and its reverse-mode derivative.
//
// Forward: the eight xyxy corners, the widths (clamped at 0), intersection, union, IoU (`geo_iou`), the
// enclosing box C_w, C_h and the centre offset dx, dy (`geo_encl`), exactly as the reference computes
// them (`overlaps.aligned_overlap`, `_geometry.box_parts`: same clamps, same order of operations).
// Backward: a loss head returns the gradient of the loss with respect to those quantities (`GG`);
// `encl_back` and `iou_back` turn it into gradients of the eight corners with torch's rules (clamp_min
// passes the gradient only where x > bound, min/max ties split it in halves), and `store_box` into
// gradients of the inputs in their format.
#ifndef BOXLOSS_GEOMETRY_H
#define BOXLOSS_GEOMETRY_H

#include "vecmath.h"

namespace bl {

// The box format as coefficients, x1 = b0 - h b2, x2 = m b0 + s b2 (likewise y): branch-free, so the
// loops vectorise without one instantiation per format. Every product is by 0, 0.5 or 1, so the
// corners are exactly those of formats._to_xyxy.
template <typename T> struct Fmt {
  T h, m, s;
  explicit Fmt(int fmt) : h(fmt == 2 ? T(0.5) : T(0)), m(fmt == 0 ? T(0) : T(1)), s(fmt == 2 ? T(0.5) : T(1)) {}
};
template <typename T> BL_INL void load_box(const T* b, const Fmt<T>& f, T* c) {
  c[0] = b[0] - f.h * b[2];
  c[1] = b[1] - f.h * b[3];
  c[2] = f.m * b[0] + f.s * b[2];
  c[3] = f.m * b[1] + f.s * b[3];
}
// the transpose: d/d b0 = g_x1 + m g_x2, d/d b2 = s g_x2 - h g_x1
template <typename T> BL_INL void store_box(const T* g, const Fmt<T>& f, T* out) {
  out[0] = g[0] + f.m * g[2];
  out[1] = g[1] + f.m * g[3];
  out[2] = f.s * g[2] - f.h * g[0];
  out[3] = f.s * g[3] - f.h * g[1];
}

// A box format known at compile time (the same corners, bit for bit up to the sign of a zero, without
// the multiplications): the forward loops use it, whose per-box work is small enough for 12 extra
// operations per box to cost ~40% (IoU); the backward loops take the runtime coefficients.
template <int FMT> struct FixedFmt {};
template <int FMT, typename T> BL_INL void load_box(const T* b, FixedFmt<FMT>, T* c) {
  if constexpr (FMT == 0) {
    c[0] = b[0]; c[1] = b[1]; c[2] = b[2]; c[3] = b[3];
  } else if constexpr (FMT == 1) {
    c[0] = b[0]; c[1] = b[1]; c[2] = b[0] + b[2]; c[3] = b[1] + b[3];
  } else {
    c[0] = b[0] - T(0.5) * b[2]; c[1] = b[1] - T(0.5) * b[3]; c[2] = b[0] + T(0.5) * b[2]; c[3] = b[1] + T(0.5) * b[3];
  }
}
template <int FMT, typename T> BL_INL void store_box(const T* g, FixedFmt<FMT>, T* out) {
  if constexpr (FMT == 0) {
    out[0] = g[0]; out[1] = g[1]; out[2] = g[2]; out[3] = g[3];
  } else if constexpr (FMT == 1) {
    out[0] = g[0] + g[2]; out[1] = g[1] + g[3]; out[2] = g[2]; out[3] = g[3];
  } else {
    out[0] = g[0] + g[2]; out[1] = g[1] + g[3]; out[2] = T(0.5) * g[2] - T(0.5) * g[0]; out[3] = T(0.5) * g[3] - T(0.5) * g[1];
  }
}

template <typename T> struct Geo {
  T c[8];  // px1 py1 px2 py2 tx1 ty1 tx2 ty2
  T a1, a2, a3, a4;  // raw widths and heights (x2 - x1, ...): pw = max(a1, 0), ...
  T pw, ph, tw, th;
  T iwr, ihr, iw, ih;  // intersection width and height, raw and clamped at 0
  T inter, uni, U, iou;  // U = max(union, eps)
  T cwr, chr, cw, ch;  // enclosing box, raw and clamped at 0
  T dx, dy;  // centre offset, prediction minus target: 0.5 ((px1 + px2) - (tx1 + tx2))
};
// gradient of the loss with respect to the geometry quantities (union before its clamp)
template <typename T> struct GG { T iou = 0, uni = 0, pw = 0, ph = 0, tw = 0, th = 0, cw = 0, ch = 0, dx = 0, dy = 0; };

// widths, intersection, union and IoU of the boxes in G.c
template <typename T> BL_INL void geo_iou(Geo<T>& G, T eps) {
  const T* c = G.c;
  G.a1 = c[2] - c[0]; G.a2 = c[3] - c[1]; G.a3 = c[6] - c[4]; G.a4 = c[7] - c[5];
  G.pw = clamp0(G.a1); G.ph = clamp0(G.a2); G.tw = clamp0(G.a3); G.th = clamp0(G.a4);
  G.iwr = tmin(c[2], c[6]) - tmax(c[0], c[4]);
  G.ihr = tmin(c[3], c[7]) - tmax(c[1], c[5]);
  G.iw = clamp0(G.iwr); G.ih = clamp0(G.ihr);
  G.inter = G.iw * G.ih;
  G.uni = G.pw * G.ph + G.tw * G.th - G.inter;
  G.U = clampmin(G.uni, eps);
  G.iou = G.inter / G.U;
}
// enclosing box and centre offset
template <typename T> BL_INL void geo_encl(Geo<T>& G) {
  const T* c = G.c;
  G.cwr = tmax(c[2], c[6]) - tmin(c[0], c[4]);
  G.chr = tmax(c[3], c[7]) - tmin(c[1], c[5]);
  G.cw = clamp0(G.cwr); G.ch = clamp0(G.chr);
  G.dx = T(0.5) * ((c[0] + c[2]) - (c[4] + c[6]));
  G.dy = T(0.5) * ((c[1] + c[3]) - (c[5] + c[7]));
}

// from d/d iou, d/d union (before its clamp) and d/d widths down to the corners (gc += ...)
template <typename T> BL_INL void iou_back(const Geo<T>& G, const GG<T>& d, T eps, T* gc) {
  const T* c = G.c;
  T g_inter = d.iou / G.U;
  const T g_U = -d.iou * (G.iou / G.U);  // torch's div backward: -g (a / b) / b
  const T g_uni = d.uni + (G.uni > eps ? g_U : T(0));
  const T g_pw = d.pw + g_uni * G.ph, g_ph = d.ph + g_uni * G.pw;
  const T g_tw = d.tw + g_uni * G.th, g_th = d.th + g_uni * G.tw;
  g_inter -= g_uni;
  const T g_iwr = G.iwr > T(0) ? g_inter * G.ih : T(0);
  const T g_ihr = G.ihr > T(0) ? g_inter * G.iw : T(0);
  min_bw(c[2], c[6], g_iwr, gc[2], gc[6]); max_bw(c[0], c[4], -g_iwr, gc[0], gc[4]);
  min_bw(c[3], c[7], g_ihr, gc[3], gc[7]); max_bw(c[1], c[5], -g_ihr, gc[1], gc[5]);
  const T g_a1 = G.a1 > T(0) ? g_pw : T(0), g_a2 = G.a2 > T(0) ? g_ph : T(0);
  const T g_a3 = G.a3 > T(0) ? g_tw : T(0), g_a4 = G.a4 > T(0) ? g_th : T(0);
  gc[2] += g_a1; gc[0] -= g_a1; gc[3] += g_a2; gc[1] -= g_a2;
  gc[6] += g_a3; gc[4] -= g_a3; gc[7] += g_a4; gc[5] -= g_a4;
}
// from d/d C_w, C_h, dx, dy down to the corners (gc += ...)
template <typename T> BL_INL void encl_back(const Geo<T>& G, const GG<T>& d, T* gc) {
  const T* c = G.c;
  const T g_cwr = G.cwr > T(0) ? d.cw : T(0);
  const T g_chr = G.chr > T(0) ? d.ch : T(0);
  max_bw(c[2], c[6], g_cwr, gc[2], gc[6]); min_bw(c[0], c[4], -g_cwr, gc[0], gc[4]);
  max_bw(c[3], c[7], g_chr, gc[3], gc[7]); min_bw(c[1], c[5], -g_chr, gc[1], gc[5]);
  const T hx = T(0.5) * d.dx, hy = T(0.5) * d.dy;
  gc[0] += hx; gc[2] += hx; gc[4] -= hx; gc[6] -= hx;
  gc[1] += hy; gc[3] += hy; gc[5] -= hy; gc[7] -= hy;
}

// Inner-IoU's auxiliary boxes (inner_iou.inner_boxes): centre -/+ hr * (clamped) size, hr = ratio / 2
template <typename T> BL_INL void inner_boxes(const Geo<T>& G, T hr, Geo<T>& I) {
#pragma GCC unroll 2
  for (int b = 0; b < 8; b += 4) {
    const T cx = T(0.5) * (G.c[b] + G.c[b + 2]), cy = T(0.5) * (G.c[b + 1] + G.c[b + 3]);
    const T hw = hr * (b == 0 ? G.pw : G.tw), hh = hr * (b == 0 ? G.ph : G.th);
    I.c[b] = cx - hw; I.c[b + 1] = cy - hh; I.c[b + 2] = cx + hw; I.c[b + 3] = cy + hh;
  }
}
// their backward: corner gradients gi of the inner boxes to G's corners (gc) and widths (d)
template <typename T> BL_INL void inner_boxes_back(T hr, const T* gi, GG<T>& d, T* gc) {
#pragma GCC unroll 2
  for (int b = 0; b < 8; b += 4) {
    const T g_c = T(0.5) * (gi[b] + gi[b + 2]), g_m = T(0.5) * (gi[b + 1] + gi[b + 3]);
    gc[b] += g_c; gc[b + 2] += g_c; gc[b + 1] += g_m; gc[b + 3] += g_m;
    const T g_w = hr * (gi[b + 2] - gi[b]), g_h = hr * (gi[b + 3] - gi[b + 1]);
    if (b == 0) { d.pw += g_w; d.ph += g_h; } else { d.tw += g_w; d.th += g_h; }
  }
}

}  // namespace bl

#endif  // BOXLOSS_GEOMETRY_H
