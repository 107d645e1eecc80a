// The penalty terms of the IoU-family losses, each written once: its value from the geometry
// (geometry.h), and its backward, which adds g * d term / d (geometry quantities) to a GG.
//
// Every backward is the hand-written reverse-mode derivative of exactly the graph its reference builds
// (overlaps.py, eiou.py, siou.py, wise_iou.py, shape_iou.py): same clamps (clamp_min passes the
// gradient only where x > bound, clamp_max only where x < bound), torch's min/max tie rule, `abs` with
// gradient 0 at 0, torch's div backward -g (a / b) / b, the same detached factors and the same order of
// evaluation, so values and gradients agree with the reference to rounding.
#ifndef BOXLOSS_TERMS_H
#define BOXLOSS_TERMS_H

#include "geometry.h"

namespace bl {

// ---- GIoU: (|C| - |U|) / |C|, |C| = max(C_w C_h, eps) ----
template <typename T> BL_INL T giou_q(const Geo<T>& G, T eps) {
  const T C = clampmin(G.cw * G.ch, eps);
  return (C - G.uni) / C;
}
template <typename T> BL_INL void giou_q_back(const Geo<T>& G, T eps, T g, GG<T>& d) {
  const T Craw = G.cw * G.ch, C = clampmin(Craw, eps);
  const T g_num = g / C;
  const T g_C = g_num - g * (((C - G.uni) / C) / C);
  d.uni -= g_num;
  const T g_Craw = Craw > eps ? g_C : T(0);
  d.cw += g_Craw * G.ch; d.ch += g_Craw * G.cw;
}

// ---- DIoU: rho^2 / c^2, c^2 = max(C_w^2 + C_h^2, eps) ----
template <typename T> BL_INL T dist_q(const Geo<T>& G, T eps) {
  return (G.dx * G.dx + G.dy * G.dy) / clampmin(G.cw * G.cw + G.ch * G.ch, eps);
}
template <typename T> BL_INL void dist_q_back(const Geo<T>& G, T eps, T g, GG<T>& d) {
  const T c2raw = G.cw * G.cw + G.ch * G.ch, c2 = clampmin(c2raw, eps);
  const T rho2 = G.dx * G.dx + G.dy * G.dy;
  const T g_rho2 = g / c2;
  const T g_c2 = c2raw > eps ? -g * ((rho2 / c2) / c2) : T(0);
  d.cw += T(2) * G.cw * g_c2; d.ch += T(2) * G.ch * g_c2;
  d.dx += T(2) * G.dx * g_rho2; d.dy += T(2) * G.dy * g_rho2;
}

// ---- CIoU's aspect term v = 4/pi^2 (atan(w_gt / (h_gt + eps)) - atan(w / (h + eps)))^2 ----
template <typename T> BL_INL T aspect_v(const Geo<T>& G, T eps, T& dv) {
  dv = v_atan(G.tw / (G.th + eps)) - v_atan(G.pw / (G.ph + eps));
  return T(4.0 / (kPi * kPi)) * dv * dv;
}
// PAPER: the DIoU paper's gradient, d atan(w/h)/dw and /dh without their factor 1/(w^2 + h^2)
// (h and -w instead of h / (w^2 + h^2) and -w / (w^2 + h^2); h here is h + eps)
template <bool PAPER = false, typename T> BL_INL void aspect_v_back(const Geo<T>& G, T eps, T dv, T g, GG<T>& d) {
  const T g_dv = T(2) * T(4.0 / (kPi * kPi)) * g * dv;
  const T hp = G.ph + eps, ht = G.th + eps;
  if constexpr (PAPER) {
    d.pw += -g_dv * hp; d.ph += g_dv * G.pw;
    d.tw += g_dv * ht; d.th += -g_dv * G.tw;
  } else {
    const T rp = G.pw / hp, rt = G.tw / ht;
    const T g_rp = -g_dv / (T(1) + rp * rp), g_rt = g_dv / (T(1) + rt * rt);
    d.pw += g_rp / hp; d.ph -= g_rp * rp / hp;
    d.tw += g_rt / ht; d.th -= g_rt * rt / ht;
  }
}
// CIoU's trade-off alpha = v / max(1 - IoU + v, eps), a constant in backprop; GATED: 0 where IoU < 0.5
// (as the reference: alpha * (iou >= 0.5))
template <bool GATED = false, typename T> BL_INL T ciou_alpha(const Geo<T>& G, T v, T eps) {
  const T alpha = v / clampmin(T(1) - G.iou + v, eps);
  if constexpr (GATED) return alpha * (G.iou >= T(0.5) ? T(1) : T(0));
  return alpha;
}

// ---- EIoU's side terms dw^2 / max(C_w^2, eps) (and the same for heights) ----
template <typename T> BL_INL T side_q(T w, T wt, T cw, T eps) {
  const T dw = w - wt;
  return dw * dw / clampmin(cw * cw, eps);
}
template <typename T> BL_INL void side_q_back(T w, T wt, T cw, T eps, T g, T& g_w, T& g_wt, T& g_cw) {
  const T dw = w - wt, Craw = cw * cw, C = clampmin(Craw, eps);
  const T g_dw = T(2) * dw * g / C;
  g_w += g_dw; g_wt -= g_dw;
  g_cw += Craw > eps ? T(2) * cw * (-g * (((dw * dw) / C) / C)) : T(0);
}
// L_EIoU = 1 - (IoU - rho^2/c^2) + side terms (eiou.eiou_per_box); the base of Focal-EIoU, Inner-EIoU
template <typename T> BL_INL T eiou_val(const Geo<T>& G, T eps) {
  const T diou = G.iou - dist_q(G, eps);
  return T(1) - diou + side_q(G.pw, G.tw, G.cw, eps) + side_q(G.ph, G.th, G.ch, eps);
}
template <typename T> BL_INL void eiou_back(const Geo<T>& G, T eps, T g, GG<T>& d) {
  d.iou -= g;
  dist_q_back(G, eps, g, d);
  side_q_back(G.pw, G.tw, G.cw, eps, g, d.pw, d.tw, d.cw);
  side_q_back(G.ph, G.th, G.ch, eps, g, d.ph, d.th, d.ch);
}

// ---- a relative side difference om = scale |w - wt| / max(max(w, wt), eps) (SIoU, Shape-IoU): backward ----
template <typename T> BL_INL void rel_diff_back(T w, T wt, T scale, T eps, T g_om, T& g_w, T& g_wt) {
  const T dw = w - wt, a = std::fabs(dw), mraw = tmax(w, wt), M = clampmin(mraw, eps);
  const T g_num = g_om / M;
  const T g_M = -g_om * (((scale * a) / M) / M);
  const T g_dw = sgn(dw) * (g_num * scale);
  g_w += g_dw; g_wt -= g_dw;
  max_bw(w, wt, mraw > eps ? g_M : T(0), g_w, g_wt);
}

// ---- L_SIoU = 1 - IoU + (distance + shape) / 2 (siou.siou_per_box); theta: the shape exponent ----
template <int VAR, typename T> BL_INL T siou_val(const Geo<T>& G, T eps, T theta) {
  const T dx2 = G.dx * G.dx, dy2 = G.dy * G.dy;
  const T angle = T(2) * std::fabs(G.dx) * std::fabs(G.dy) / clampmin(dx2 + dy2, eps);
  const T gamma = T(2) - angle;
  const T rx = dx2 / clampmin(G.cw * G.cw, eps), ry = dy2 / clampmin(G.ch * G.ch, eps);
  const T distance = -v_expm1(-gamma * rx) - v_expm1(-gamma * ry);
  const T ow = std::fabs(G.pw - G.tw) / clampmin(tmax(G.pw, G.tw), eps);
  const T oh = std::fabs(G.ph - G.th) / clampmin(tmax(G.ph, G.th), eps);
  const T shape = spow<VAR>(-v_expm1(-ow), theta) + spow<VAR>(-v_expm1(-oh), theta);
  return T(1) - G.iou + T(0.5) * (distance + shape);
}
template <int VAR, typename T> BL_INL void siou_back(const Geo<T>& G, T eps, T theta, T g, GG<T>& d) {
  d.iou -= g;
  const T hd = T(0.5) * g;
  const T dx2 = G.dx * G.dx, dy2 = G.dy * G.dy;
  const T ax = std::fabs(G.dx), ay = std::fabs(G.dy);
  const T Sraw = dx2 + dy2, S = clampmin(Sraw, eps);
  const T num = T(2) * ax * ay, angle = num / S, gamma = T(2) - angle;
  const T Cwraw = G.cw * G.cw, Cw = clampmin(Cwraw, eps), Chraw = G.ch * G.ch, Ch = clampmin(Chraw, eps);
  const T rx = dx2 / Cw, ry = dy2 / Ch;
  const T ex = v_expm1(-gamma * rx), ey = v_expm1(-gamma * ry);
  // distance = -ex - ey, ex = expm1(-gamma * rx)
  const T gux = -hd * (ex + T(1)), guy = -hd * (ey + T(1));  // d/d(-gamma * rx)
  const T g_gamma = -(gux * rx) - (guy * ry);
  const T g_rx = -gux * gamma, g_ry = -guy * gamma;
  const T g_num = -g_gamma / S;  // angle = num / S, gamma = 2 - angle
  const T g_S = Sraw > eps ? g_gamma * (angle / S) : T(0);
  const T g_dx2 = g_rx / Cw + g_S, g_dy2 = g_ry / Ch + g_S;
  d.cw += Cwraw > eps ? T(2) * G.cw * (-g_rx * (rx / Cw)) : T(0);
  d.ch += Chraw > eps ? T(2) * G.ch * (-g_ry * (ry / Ch)) : T(0);
  d.dx += T(2) * G.dx * g_dx2 + sgn(G.dx) * (T(2) * g_num * ay);
  d.dy += T(2) * G.dy * g_dy2 + sgn(G.dy) * (g_num * (T(2) * ax));
  // shape = spow(-expm1(-ow), theta) + ..., ow = |w - wt| / max(max(w, wt), eps)
  const T ow = std::fabs(G.pw - G.tw) / clampmin(tmax(G.pw, G.tw), eps);
  const T oh = std::fabs(G.ph - G.th) / clampmin(tmax(G.ph, G.th), eps);
  const T ew = v_expm1(-ow), eh = v_expm1(-oh);
  const T g_ow = hd * spow_d<VAR>(-ew, theta) * (ew + T(1));
  const T g_oh = hd * spow_d<VAR>(-eh, theta) * (eh + T(1));
  rel_diff_back(G.pw, G.tw, T(1), eps, g_ow, d.pw, d.tw);
  rel_diff_back(G.ph, G.th, T(1), eps, g_oh, d.ph, d.th);
}

// ---- Wise-IoU's distance attention R = exp(min(rho^2 / (c^2)*, 1)), (c^2)* = max(C_w^2 + C_h^2, eps)
// detached (wise_iou._wiou_v1_parts) ----
template <typename T> BL_INL T wise_r(const Geo<T>& G, T eps, T& xr) {
  const T c2 = clampmin(G.cw * G.cw + G.ch * G.ch, eps);
  xr = (G.dx * G.dx + G.dy * G.dy) / c2;
  return v_exp(xr < T(1) ? xr : T(1));
}
template <typename T> BL_INL void wise_r_back(const Geo<T>& G, T eps, T xr, T R, T g_R, GG<T>& d) {
  const T c2 = clampmin(G.cw * G.cw + G.ch * G.ch, eps);
  const T g_x = xr < T(1) ? g_R * R : T(0);
  const T g_rho2 = g_x / c2;
  d.dx += T(2) * G.dx * g_rho2; d.dy += T(2) * G.dy * g_rho2;
}

// ---- MPDIoU's corner distances (d1^2 + d2^2) / diag^2, diag^2 = w_img^2 + h_img^2 (unclamped corners;
// the corner gradient goes straight to gc) ----
template <typename T> BL_INL T corner_q(const Geo<T>& G, T diag2) {
  const T e0 = G.c[0] - G.c[4], e1 = G.c[1] - G.c[5], e2 = G.c[2] - G.c[6], e3 = G.c[3] - G.c[7];
  const T d1 = e0 * e0 + e1 * e1, d2 = e2 * e2 + e3 * e3;
  return (d1 + d2) / diag2;
}
template <typename T> BL_INL void corner_q_back(const Geo<T>& G, T diag2, T g, T* gc) {
  const T gs = T(2) * (g / diag2);
#pragma GCC unroll 4
  for (int k = 0; k < 4; ++k) {
    const T ge = gs * (G.c[k] - G.c[k + 4]);
    gc[k] += ge; gc[k + 4] -= ge;
  }
}

// ---- L_Shape-IoU = 1 - IoU + shape-weighted distance + (e_w^4 + e_h^4) / 2 (shape_iou.shape_iou_per_box):
// weights ww = 2 sw / max(sw + sh, eps), hh = 2 sh / max(sw + sh, eps), sw = w_gt^scale, sh = h_gt^scale
// (S0: scale 0, ww = hh = 1), e_w = expm1(-hh |w - w_gt| / max(max(w, w_gt), eps)). SV: spow's VAR of
// the scale. The value keeps its intermediates in a ShapeCost for the backward. ----
template <typename T> struct ShapeCost {
  T sw, sh, traw, total, ww, hh, c2raw, c2, dx2, dy2, distance, aw, ah, Mw, Mh, ew, eh, ew2, eh2;
};
template <bool S0, int SV, typename T> BL_INL T shape_iou_val(const Geo<T>& G, T eps, T scale, ShapeCost<T>& s) {
  s.sw = S0 ? T(1) : spow<SV>(G.tw, scale);
  s.sh = S0 ? T(1) : spow<SV>(G.th, scale);
  s.traw = s.sw + s.sh; s.total = clampmin(s.traw, eps);
  s.ww = S0 ? T(1) : T(2) * s.sw / s.total;
  s.hh = S0 ? T(1) : T(2) * s.sh / s.total;
  s.c2raw = G.cw * G.cw + G.ch * G.ch; s.c2 = clampmin(s.c2raw, eps);
  s.dx2 = G.dx * G.dx; s.dy2 = G.dy * G.dy;
  s.distance = (s.hh * s.dx2 + s.ww * s.dy2) / s.c2;
  s.aw = std::fabs(G.pw - G.tw); s.ah = std::fabs(G.ph - G.th);
  s.Mw = clampmin(tmax(G.pw, G.tw), eps); s.Mh = clampmin(tmax(G.ph, G.th), eps);
  s.ew = v_expm1(-(s.hh * s.aw / s.Mw)); s.eh = v_expm1(-(s.ww * s.ah / s.Mh));
  s.ew2 = s.ew * s.ew; s.eh2 = s.eh * s.eh;
  return T(1) - G.iou + s.distance + T(0.5) * (s.ew2 * s.ew2 + s.eh2 * s.eh2);
}
template <bool S0, int SV, typename T>
BL_INL void shape_iou_back(const Geo<T>& G, T eps, T scale, const ShapeCost<T>& s, T g, GG<T>& d) {
  d.iou -= g;
  const T g_N = g / s.c2;
  const T g_c2 = s.c2raw > eps ? -g * (s.distance / s.c2) : T(0);
  d.cw += T(2) * G.cw * g_c2; d.ch += T(2) * G.ch * g_c2;
  d.dx += T(2) * G.dx * (s.hh * g_N); d.dy += T(2) * G.dy * (s.ww * g_N);
  T g_hh = g_N * s.dx2, g_ww = g_N * s.dy2;
  const T hs = T(0.5) * g;
  const T g_ow = -(hs * T(4) * (s.ew2 * s.ew)) * (s.ew + T(1));  // d(expm1(-ow)^4)/d ow
  const T g_oh = -(hs * T(4) * (s.eh2 * s.eh)) * (s.eh + T(1));
  g_hh += g_ow * s.aw / s.Mw; g_ww += g_oh * s.ah / s.Mh;
  rel_diff_back(G.pw, G.tw, s.hh, eps, g_ow, d.pw, d.tw);
  rel_diff_back(G.ph, G.th, s.ww, eps, g_oh, d.ph, d.th);
  if constexpr (!S0) {  // ww = 2 sw / total, hh = 2 sh / total, total = max(sw + sh, eps), sw = w_gt^s
    const T g_total = -(g_ww * ((T(2) * s.sw / s.total) / s.total) + g_hh * ((T(2) * s.sh / s.total) / s.total));
    const T g_sw = T(2) * g_ww / s.total + (s.traw > eps ? g_total : T(0));
    const T g_sh = T(2) * g_hh / s.total + (s.traw > eps ? g_total : T(0));
    d.tw += g_sw * spow_d<SV>(G.tw, scale);
    d.th += g_sh * spow_d<SV>(G.th, scale);
  }
}

}  // namespace bl

#endif  // BOXLOSS_TERMS_H
