"""C++ source of the fused CPU kernels of the newer IoU-family losses (EIoU, Focal-EIoU, SIoU, Alpha-IoU,
Wise-IoU v1/v3, MPDIoU, Inner-IoU, Shape-IoU), compiled by `_cpu_newer.py` into its own library.

It starts from the core kernels' prelude (`_cpu_source.CPU_PRELUDE`: clamps, torch's min/max tie rule,
the vectorisable atanf) and shares one geometry core between all losses:

- `geo_iou` / `iou_back`: widths (clamped at 0), intersection, union, IoU and their reverse-mode
  derivative down to the eight xyxy corners -- also used for Inner-IoU's scaled boxes;
- `geo_encl` / `encl_back`: the enclosing box (C_w, C_h) and the centre offset (dx, dy) (half the
  corner sums, as `_geometry.box_parts`) and their derivative.

Each loss is a small "head" over that geometry: it computes its value from the geometry and, in backward,
the gradient of the loss with respect to the geometry quantities (`GG`: iou, union, the four widths,
C_w, C_h, dx, dy), which the shared backward turns into corner gradients. Every head is the hand-written
reverse-mode derivative of exactly the graph its reference (`eiou.py`, `siou.py`, ...) builds: same
clamps (`clamp_min` passes the gradient only where x > bound, `clamp_max` only where x < bound), same
tie rule for min/max, `abs` with gradient 0 at 0, the same detached factors, the same evaluation order
of sums, so values and gradients agree with the reference to rounding.

Kinds (the Python side in `newer.py` maps names to them):
0 eiou, 1 focal_eiou (p0 = gamma), 2 siou (p0 = theta), 3..6 alpha-iou with base iou/giou/diou/ciou
(p0 = alpha), 7 wiou_v1, 8 wiou_v3 (extra = iou_mean, p1 = log(alpha), p2 = delta), 9 mpdiou
(extra = w_img^2 + h_img^2 per box or broadcast), 10..15 inner-iou with base iou/giou/diou/ciou/eiou/siou
(p0 = ratio / 2), 16 shape_iou (p0 = scale). `pmode` says how the loss's exponent p0 is applied (`spow`'s VAR): 0 exponent 1, 1 exponent 0.5, 2 any
other exponent > 0 (Focal-EIoU with gamma = 0 is EIoU, kind 0); Shape-IoU with scale 0 is pmode 3.

fp32 loops are vectorised (`omp simd`): no libm calls (branch-free exp, expm1, log and pow polynomials
here, Cephes' atanf in the prelude), no control flow (selects), box format as coefficients.
"""

from ._cpu_source import CPU_PRELUDE

NEWER_SOURCE = CPU_PRELUDE + r"""
// the per-box code must be inlined into the `omp simd` loops to vectorise (GCC does not inline it by itself)
#define BL_INL inline __attribute__((always_inline))

struct NPrm {
  double eps, p0, p1, p2;
  int pmode;  // how p0 is used as an exponent: the VAR of spow (3: Shape-IoU with scale 0)
  int fmt;    // 0 xyxy, 1 xywh, 2 cxcywh
};
// The box format as coefficients (branch-free, so the loops vectorise; every product is by 0, 0.5 or 1, so
// the results are exactly those of formats._to_xyxy): x1 = b0 - h b2, x2 = m b0 + s b2.
template <typename T> struct Fmt {
  T h, m, s;
  explicit Fmt(int fmt) : h(fmt == 2 ? T(0.5) : T(0)), m(fmt == 0 ? T(0) : T(1)), s(fmt == 2 ? T(0.5) : T(1)) {}
};

// ---- float exp / expm1 / log / pow without branches or libm calls, so that `omp simd` loops vectorise
// (libm's are scalar calls). Cephes' expf and logf polynomials (max error ~2 ulp); expm1 by its Taylor
// polynomial for |x| < 0.5 (relative error < 1e-8) and exp(x) - 1 beyond. fp64 uses libm.
BL_INL float bits_f(int32_t i) { float f; std::memcpy(&f, &i, 4); return f; }
BL_INL int32_t f_bits(float f) { int32_t i; std::memcpy(&i, &f, 4); return i; }
BL_INL float my_exp(float a) {
  const float x0 = a > 88.0f ? 88.0f : (a < -87.0f ? -87.0f : a);
  // round to nearest by adding and subtracting 1.5 * 2^23 (std::floor does not vectorise without -ffast-math)
  const float fx = (x0 * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  float x = x0 - fx * 0.693359375f;
  x = x - fx * -2.12194440e-4f;
  const float y = ((((((1.9875691500e-4f * x + 1.3981999507e-3f) * x + 8.3334519073e-3f) * x + 4.1665795894e-2f) * x
                    + 1.6666665459e-1f) * x + 5.0000001201e-1f) * (x * x) + x) + 1.0f;
  const float r = y * bits_f((int32_t(fx) + 127) << 23);
  return a > 88.72283935546875f ? INFINITY : (a < -87.33654475f ? 0.0f : r);
}
BL_INL double my_exp(double x) { return std::exp(x); }
BL_INL float my_expm1(float x) {
  const float p = x * (1.0f + x * (0.5f + x * (1.0f / 6 + x * (1.0f / 24 + x * (1.0f / 120 + x * (1.0f / 720
                  + x * (1.0f / 5040 + x * (1.0f / 40320))))))));
  return std::fabs(x) < 0.5f ? p : my_exp(x) - 1.0f;
}
BL_INL double my_expm1(double x) { return std::expm1(x); }
BL_INL float my_logp(float x) {  // log |x| for normal x; finite (about -88) for 0 and subnormals
  const int32_t i = f_bits(x);
  int32_t e = ((i >> 23) & 0xff) - 126;
  float m = bits_f((i & 0x007fffff) | 0x3f000000);  // |x| = m 2^e, m in [0.5, 1)
  const bool small = m < 0.707106781186547524f;
  e = small ? e - 1 : e;
  m = small ? (m + m) - 1.0f : m - 1.0f;
  const float z = m * m;
  float y = ((((((((7.0376836292e-2f * m - 1.1514610310e-1f) * m + 1.1676998740e-1f) * m - 1.2420140846e-1f) * m
                 + 1.4249322787e-1f) * m - 1.6668057665e-1f) * m + 2.0000714765e-1f) * m - 2.4999993993e-1f) * m
             + 3.3333331174e-1f) * m * z;
  const float fe = float(e);
  y += -2.12194440e-4f * fe;
  y += -0.5f * z;
  return (m + y) + 0.693359375f * fe;
}
// x^e for x > 0; finite for x = 0 and -1 < e (the callers mask that case out by a product). No select on x
// before the log: GCC would thread the constant through the log into branches the vectoriser rejects.
BL_INL float my_powp(float x, float e) { return my_exp(e * my_logp(x)); }
BL_INL double my_powp(double x, double e) { return std::pow(x > 0.0 ? x : 1.0, e); }
template <typename T> BL_INL T sgn(T x) { return x > T(0) ? T(1) : (x < T(0) ? T(-1) : T(0)); }
// _geometry.safe_pow for bases >= 0 and its derivative. VAR (compile time, so that the loops hold no selects
// on uniform values, which GCC's vectoriser rejects): 0 exponent 1 (identity), 1 exponent 0.5 (sqrt, as
// torch's pow), 2 any other exponent e > 0 (0 and gradient 0 where the base is 0; fp32 via exp(e log x),
// fp64 via libm's pow: within a few ulp of torch's x*x, x*x*x, pow).
template <int VAR, typename T> BL_INL T spow(T x, T e) {
  if constexpr (VAR == 0) {
    return x;
  } else {
    T r;
    if constexpr (VAR == 1) r = std::sqrt(x > T(0) ? x : T(1)); else r = my_powp(x, e);
    // a product, not a select: GCC would sink the pow into a branch, which the vectoriser rejects (r is
    // finite where x <= 0, so this is exactly 0 there)
    return r * (x > T(0) ? T(1) : T(0));
  }
}
template <int VAR, typename T> BL_INL T spow_d(T x, T e) {
  if constexpr (VAR == 0) {
    return T(1);
  } else {
    T r;
    if constexpr (VAR == 1) r = T(1) / std::sqrt(x > T(0) ? x : T(1)); else r = my_powp(x, e - T(1));
    return (e * r) * (x > T(0) ? T(1) : T(0));
  }
}

// ---- the shared geometry core ----
template <typename T> struct Geo {
  T c[8];  // px1 py1 px2 py2 tx1 ty1 tx2 ty2 (xyxy)
  T a1, a2, a3, a4, pw, ph, tw, th, iwr, ihr, iw, ih, inter, uni, U, iou;
  T cwr, chr, cw, ch, dx, dy;
};
// gradient of the loss with respect to the geometry quantities
template <typename T> struct GG { T iou = 0, uni = 0, pw = 0, ph = 0, tw = 0, th = 0, cw = 0, ch = 0, dx = 0, dy = 0; };

template <typename T> BL_INL void load_any(const T* b, const Fmt<T>& f, T* c) {
  c[0] = b[0] - f.h * b[2];
  c[1] = b[1] - f.h * b[3];
  c[2] = f.m * b[0] + f.s * b[2];
  c[3] = f.m * b[1] + f.s * b[3];
}
// the transpose: d/d b0 = g_x1 + m g_x2, d/d b2 = s g_x2 - h g_x1
template <typename T> BL_INL void store_any(const T* g, const Fmt<T>& f, T* out) {
  out[0] = g[0] + f.m * g[2];
  out[1] = g[1] + f.m * g[3];
  out[2] = f.s * g[2] - f.h * g[0];
  out[3] = f.s * g[3] - f.h * g[1];
}

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
template <typename T> BL_INL void geo_encl(Geo<T>& G) {
  const T* c = G.c;
  G.cwr = tmax(c[2], c[6]) - tmin(c[0], c[4]);
  G.chr = tmax(c[3], c[7]) - tmin(c[1], c[5]);
  G.cw = clamp0(G.cwr); G.ch = clamp0(G.chr);
  G.dx = T(0.5) * ((c[0] + c[2]) - (c[4] + c[6]));
  G.dy = T(0.5) * ((c[1] + c[3]) - (c[5] + c[7]));
}
// IoU part backward: from d/d iou, d/d union (before its clamp) and d/d widths to the corners (gc += ...)
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

// ---- penalty terms shared by several heads: value, and backward given the term's gradient g ----
// GIoU: q = (|C| - |U|) / |C|, |C| = max(C_w C_h, eps)
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
// DIoU: rho^2 / c^2, c^2 = max(C_w^2 + C_h^2, eps)
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
// CIoU's aspect term v = 4/pi^2 (atan(w_gt / (h_gt + eps)) - atan(w / (h + eps)))^2
template <typename T> BL_INL T aspect_v(const Geo<T>& G, T eps, T& dv) {
  dv = my_atan(G.tw / (G.th + eps)) - my_atan(G.pw / (G.ph + eps));
  return T(4.0 / (M_PI * M_PI)) * dv * dv;
}
template <typename T> BL_INL void aspect_v_back(const Geo<T>& G, T eps, T dv, T g, GG<T>& d) {
  const T g_dv = T(2) * T(4.0 / (M_PI * M_PI)) * g * dv;
  const T hp = G.ph + eps, ht = G.th + eps, rp = G.pw / hp, rt = G.tw / ht;
  const T g_rp = -g_dv / (T(1) + rp * rp), g_rt = g_dv / (T(1) + rt * rt);
  d.pw += g_rp / hp; d.ph -= g_rp * rp / hp;
  d.tw += g_rt / ht; d.th -= g_rt * rt / ht;
}
// EIoU's width/height terms dw^2 / max(C_w^2, eps) + dh^2 / max(C_h^2, eps), one axis at a time
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
// EIoU loss = 1 - (iou - rho^2/c^2) + side terms (eiou.eiou_per_box)
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
// SIoU loss (siou.siou_per_box) and its derivative
template <int VAR, typename T> BL_INL T siou_val(const Geo<T>& G, T eps, T theta) {
  const T dx2 = G.dx * G.dx, dy2 = G.dy * G.dy;
  const T angle = T(2) * std::fabs(G.dx) * std::fabs(G.dy) / clampmin(dx2 + dy2, eps);
  const T gamma = T(2) - angle;
  const T rx = dx2 / clampmin(G.cw * G.cw, eps), ry = dy2 / clampmin(G.ch * G.ch, eps);
  const T distance = -my_expm1(-gamma * rx) - my_expm1(-gamma * ry);
  const T ow = std::fabs(G.pw - G.tw) / clampmin(tmax(G.pw, G.tw), eps);
  const T oh = std::fabs(G.ph - G.th) / clampmin(tmax(G.ph, G.th), eps);
  const T shape = spow<VAR>(-my_expm1(-ow), theta) + spow<VAR>(-my_expm1(-oh), theta);
  return T(1) - G.iou + T(0.5) * (distance + shape);
}
template <typename T> BL_INL void shape_cost_back(T w, T wt, T scale, T eps, T g_om, T& g_w, T& g_wt) {
  // om = scale * |w - wt| / max(max(w, wt), eps)
  const T dw = w - wt, a = std::fabs(dw), mraw = tmax(w, wt), M = clampmin(mraw, eps);
  const T g_num = g_om / M;
  const T g_M = -g_om * (((scale * a) / M) / M);
  const T g_dw = sgn(dw) * (g_num * scale);
  g_w += g_dw; g_wt -= g_dw;
  max_bw(w, wt, mraw > eps ? g_M : T(0), g_w, g_wt);
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
  const T ex = my_expm1(-gamma * rx), ey = my_expm1(-gamma * ry);
  // distance = -ex - ey, ex = expm1(-gamma * rx)
  const T gux = -hd * (ex + T(1)), guy = -hd * (ey + T(1));  // d/d(-gamma * rx)
  const T g_gamma = -(gux * rx) - (guy * ry);
  const T g_rx = -gux * gamma, g_ry = -guy * gamma;
  const T g_num = -g_gamma / S;  // angle = num / S, gamma = 2 - angle
  const T g_S = Sraw > eps ? g_gamma * (angle / S) : T(0);
  T g_dx2 = g_rx / Cw + g_S, g_dy2 = g_ry / Ch + g_S;
  d.cw += Cwraw > eps ? T(2) * G.cw * (-g_rx * (rx / Cw)) : T(0);
  d.ch += Chraw > eps ? T(2) * G.ch * (-g_ry * (ry / Ch)) : T(0);
  d.dx += T(2) * G.dx * g_dx2 + sgn(G.dx) * (T(2) * g_num * ay);
  d.dy += T(2) * G.dy * g_dy2 + sgn(G.dy) * (g_num * (T(2) * ax));
  // shape = spow(-expm1(-ow), theta) + ..., ow = |w - wt| / max(max(w, wt), eps)
  const T ow = std::fabs(G.pw - G.tw) / clampmin(tmax(G.pw, G.tw), eps);
  const T oh = std::fabs(G.ph - G.th) / clampmin(tmax(G.ph, G.th), eps);
  const T ew = my_expm1(-ow), eh = my_expm1(-oh);
  const T g_ow = hd * spow_d<VAR>(-ew, theta) * (ew + T(1));
  const T g_oh = hd * spow_d<VAR>(-eh, theta) * (eh + T(1));
  shape_cost_back(G.pw, G.tw, T(1), eps, g_ow, d.pw, d.tw);
  shape_cost_back(G.ph, G.th, T(1), eps, g_oh, d.ph, d.th);
}

// One box pair of loss KIND: the value; with BWD, writes g * d loss / d pred (resp. target) to gp / gt
// where they are not null.
template <typename T, int KIND, int VAR, bool GP, bool GT>
BL_INL T newer_box(const T* pb, const T* tb, const NPrm& prm, const Fmt<T>& fm, T extra, T g, T* gp, T* gt) {
  constexpr bool BWD = GP || GT;
  const T eps = T(prm.eps), p0 = T(prm.p0);
  Geo<T> G;
  load_any(pb, fm, G.c);
  load_any(tb, fm, G.c + 4);
  geo_iou(G, eps);
  geo_encl(G);
  GG<T> d;
  T gc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  T loss;
  if constexpr (KIND == 0) {  // EIoU
    loss = eiou_val(G, eps);
    if (BWD) eiou_back(G, eps, g, d);
  } else if constexpr (KIND == 1) {  // Focal-EIoU: (IoU^gamma)* L_EIoU
    const T f = spow<VAR>(G.iou, p0);
    loss = f * eiou_val(G, eps);
    if (BWD) eiou_back(G, eps, g * f, d);
  } else if constexpr (KIND == 2) {  // SIoU
    loss = siou_val<VAR>(G, eps, p0);
    if (BWD) siou_back<VAR>(G, eps, p0, g, d);
  } else if constexpr (KIND >= 3 && KIND <= 6) {  // Alpha-IoU (alpha_iou.alpha_iou_per_box)
    loss = T(1) - spow<VAR>(G.iou, p0);
    if (BWD) d.iou -= g * spow_d<VAR>(G.iou, p0);
    if constexpr (KIND == 4) {  // + (IoU - GIoU)^alpha, IoU - GIoU computed as the reference does
      const T value = G.iou - giou_q(G, eps);
      const T x = clamp0(G.iou - value);
      loss = loss + spow<VAR>(x, p0);
      if (BWD) {
        const T gx = (G.iou - value) > T(0) ? g * spow_d<VAR>(x, p0) : T(0);
        // d(iou - (iou - q)) / d iou = 1 - 1: nothing reaches the IoU (autograd's two parts cancel exactly)
        giou_q_back(G, eps, gx, d);
      }
    } else if constexpr (KIND >= 5) {  // + (rho^2/c^2)^alpha [+ (beta* v)^alpha]
      const T q = dist_q(G, eps);
      loss = loss + spow<VAR>(q, p0);
      if (BWD) dist_q_back(G, eps, g * spow_d<VAR>(q, p0), d);
      if constexpr (KIND == 6) {
        T dv;
        const T v = aspect_v(G, eps, dv);
        const T beta = v / clampmin(T(1) - G.iou + v, eps);  // a constant in backprop
        const T bv = beta * v;
        loss = loss + spow<VAR>(bv, p0);
        if (BWD) aspect_v_back(G, eps, dv, g * spow_d<VAR>(bv, p0) * beta, d);
      }
    }
  } else if constexpr (KIND == 7 || KIND == 8) {  // Wise-IoU: R = exp(min(rho^2 / (c^2)*, 1)), L = [r] R (1 - IoU)
    const T l = T(1) - G.iou;
    const T c2 = clampmin(G.cw * G.cw + G.ch * G.ch, eps);
    const T rho2 = G.dx * G.dx + G.dy * G.dy;
    const T xr = rho2 / c2;
    const T R = my_exp(xr < T(1) ? xr : T(1));
    T f = T(1);
    if constexpr (KIND == 8) {  // r = beta / (delta exp((beta - delta) log alpha)), beta = l* / iou_mean
      const T beta = l / extra, delta = T(prm.p2);
      f = beta / (delta * my_exp((beta - delta) * T(prm.p1)));
      loss = f * R * l;
    } else {
      loss = R * l;
    }
    if (BWD) {
      const T fR = f * R;
      d.iou -= g * fR;
      const T g_R = KIND == 8 ? (g * l) * f : g * l;
      const T g_x = xr < T(1) ? g_R * R : T(0);
      const T g_rho2 = g_x / c2;
      d.dx += T(2) * G.dx * g_rho2; d.dy += T(2) * G.dy * g_rho2;
    }
  } else if constexpr (KIND == 9) {  // MPDIoU: 1 - IoU + (d1^2 + d2^2) / diag^2 (unclamped corners)
    const T e0 = G.c[0] - G.c[4], e1 = G.c[1] - G.c[5], e2 = G.c[2] - G.c[6], e3 = G.c[3] - G.c[7];
    const T d1 = e0 * e0 + e1 * e1, d2 = e2 * e2 + e3 * e3;
    loss = T(1) - G.iou + (d1 + d2) / extra;
    if (BWD) {
      d.iou -= g;
      const T gs = T(2) * (g / extra);
      const T ge[4] = {gs * e0, gs * e1, gs * e2, gs * e3};
#pragma GCC unroll 4
      for (int k = 0; k < 4; ++k) { gc[k] += ge[k]; gc[k + 4] -= ge[k]; }
    }
  } else if constexpr (KIND >= 10 && KIND <= 15) {  // Inner-IoU: L_base + IoU - IoU(inner boxes)
    T base, dv = 0, alpha = 0;
    if constexpr (KIND == 10) base = T(1) - G.iou;
    else if constexpr (KIND == 11) base = T(1) - (G.iou - giou_q(G, eps));
    else if constexpr (KIND == 12) base = T(1) - (G.iou - dist_q(G, eps));
    else if constexpr (KIND == 13) {
      const T v = aspect_v(G, eps, dv);
      alpha = v / clampmin(T(1) - G.iou + v, eps);  // a constant in backprop
      base = T(1) - ((G.iou - dist_q(G, eps)) - alpha * v);
    } else if constexpr (KIND == 14) base = eiou_val(G, eps);
    else base = siou_val<2>(G, eps, T(4));
    // inner boxes: centre -/+ (ratio / 2) * clamped size
    Geo<T> I;
    const T hr = p0;
#pragma GCC unroll 2
    for (int b = 0; b < 8; b += 4) {
      const T cx = T(0.5) * (G.c[b] + G.c[b + 2]), cy = T(0.5) * (G.c[b + 1] + G.c[b + 3]);
      const T hw = hr * (b == 0 ? G.pw : G.tw), hh = hr * (b == 0 ? G.ph : G.th);
      I.c[b] = cx - hw; I.c[b + 1] = cy - hh; I.c[b + 2] = cx + hw; I.c[b + 3] = cy + hh;
    }
    geo_iou(I, eps);
    loss = base + G.iou - I.iou;
    if (BWD) {
      d.iou += g;
      if constexpr (KIND <= 13) d.iou -= g;
      if constexpr (KIND == 11) giou_q_back(G, eps, g, d);
      if constexpr (KIND == 12 || KIND == 13) dist_q_back(G, eps, g, d);
      if constexpr (KIND == 13) aspect_v_back(G, eps, dv, g * alpha, d);
      if constexpr (KIND == 14) eiou_back(G, eps, g, d);
      if constexpr (KIND == 15) siou_back<2>(G, eps, T(4), g, d);
      GG<T> di;
      di.iou = -g;
      T gi[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      iou_back(I, di, eps, gi);
#pragma GCC unroll 2
      for (int b = 0; b < 8; b += 4) {
        const T g_c = T(0.5) * (gi[b] + gi[b + 2]), g_m = T(0.5) * (gi[b + 1] + gi[b + 3]);
        gc[b] += g_c; gc[b + 2] += g_c; gc[b + 1] += g_m; gc[b + 3] += g_m;
        const T g_w = hr * (gi[b + 2] - gi[b]), g_h = hr * (gi[b + 3] - gi[b + 1]);
        if (b == 0) { d.pw += g_w; d.ph += g_h; } else { d.tw += g_w; d.th += g_h; }
      }
    }
  } else {  // KIND 16, Shape-IoU (shape_iou.shape_iou_per_box)
    constexpr bool s0 = VAR == 3;  // scale 0: ww = hh = 1
    constexpr int SV = s0 ? 0 : VAR;
    const T sw = s0 ? T(1) : spow<SV>(G.tw, p0), sh = s0 ? T(1) : spow<SV>(G.th, p0);
    const T traw = sw + sh, total = clampmin(traw, eps);
    const T ww = s0 ? T(1) : T(2) * sw / total, hh = s0 ? T(1) : T(2) * sh / total;
    const T c2raw = G.cw * G.cw + G.ch * G.ch, c2 = clampmin(c2raw, eps);
    const T dx2 = G.dx * G.dx, dy2 = G.dy * G.dy;
    const T N = hh * dx2 + ww * dy2;
    const T distance = N / c2;
    const T aw = std::fabs(G.pw - G.tw), ah = std::fabs(G.ph - G.th);
    const T Mw = clampmin(tmax(G.pw, G.tw), eps), Mh = clampmin(tmax(G.ph, G.th), eps);
    const T ow = hh * aw / Mw, oh = ww * ah / Mh;
    const T ew = my_expm1(-ow), eh = my_expm1(-oh);
    const T ew2 = ew * ew, eh2 = eh * eh;
    loss = T(1) - G.iou + distance + T(0.5) * (ew2 * ew2 + eh2 * eh2);
    if (BWD) {
      d.iou -= g;
      const T g_N = g / c2;
      const T g_c2 = c2raw > eps ? -g * (distance / c2) : T(0);
      d.cw += T(2) * G.cw * g_c2; d.ch += T(2) * G.ch * g_c2;
      d.dx += T(2) * G.dx * (hh * g_N); d.dy += T(2) * G.dy * (ww * g_N);
      T g_hh = g_N * dx2, g_ww = g_N * dy2;
      const T hs = T(0.5) * g;
      const T g_ow = -(hs * T(4) * (ew2 * ew)) * (ew + T(1));  // d(expm1(-ow)^4)/d ow
      const T g_oh = -(hs * T(4) * (eh2 * eh)) * (eh + T(1));
      g_hh += g_ow * aw / Mw; g_ww += g_oh * ah / Mh;
      shape_cost_back(G.pw, G.tw, hh, eps, g_ow, d.pw, d.tw);
      shape_cost_back(G.ph, G.th, ww, eps, g_oh, d.ph, d.th);
      // s != 0: ww = 2 sw / total, hh = 2 sh / total, total = max(sw + sh, eps), sw = w_gt^s
      const T g_total = -(g_ww * ((T(2) * sw / total) / total) + g_hh * ((T(2) * sh / total) / total));
      const T g_sw = T(2) * g_ww / total + (traw > eps ? g_total : T(0));
      const T g_sh = T(2) * g_hh / total + (traw > eps ? g_total : T(0));
      d.tw += s0 ? T(0) : g_sw * spow_d<SV>(G.tw, p0);
      d.th += s0 ? T(0) : g_sh * spow_d<SV>(G.th, p0);
    }
  }
  if (!BWD) return loss;
  encl_back(G, d, gc);
  iou_back(G, d, eps, gc);
  if (GP) store_any(gc, fm, gp);
  if (GT) store_any(gc + 4, fm, gt);
  return loss;
}

// threads from 262,144 boxes up, as the core kernels (a waiting thread stalls for a time slice on a loaded machine)
inline int newer_threads(int64_t n, int nthreads) { return n < 262144 ? 1 : (nthreads < 1 ? 1 : nthreads); }
constexpr int64_t NCHUNK = 1024;

// gout is a per-box array (the caller materialises a broadcast), so every load is a plain vector load; ex is
// per box for MPDIoU (kind 9: the image diagonal may differ per box) and one value for the others.
template <typename T, int KIND, int VAR>
void newer_fwd(int64_t n, const T* p, const T* t, const T* ex, T* out, const NPrm& prm_in, int nthreads) {
  const NPrm prm = prm_in;  // local copies: provably not aliased by the stores below
  const Fmt<T> fm(prm.fmt);
  const T ex0 = ex[0];
  const int nt = newer_threads(n, nthreads);
  const int64_t nchunks = (n + NCHUNK - 1) / NCHUNK;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
  for (int64_t c = 0; c < nchunks; ++c) {
    const int64_t end = (c + 1) * NCHUNK < n ? (c + 1) * NCHUNK : n;
#pragma omp simd
    for (int64_t i = c * NCHUNK; i < end; ++i)
      out[i] = newer_box<T, KIND, VAR, false, false>(p + 4 * i, t + 4 * i, prm, fm, KIND == 9 ? ex[i] : ex0, T(0),
                                                     nullptr, nullptr);
  }
}

template <typename T, int KIND, int VAR, bool GP, bool GT>
void newer_bwd(int64_t n, const T* p, const T* t, const T* ex, const T* gout, T* gp, T* gt, const NPrm& prm_in,
               int nthreads) {
  const NPrm prm = prm_in;
  const Fmt<T> fm(prm.fmt);
  const T ex0 = ex[0];
  const int nt = newer_threads(n, nthreads);
  const int64_t nchunks = (n + NCHUNK - 1) / NCHUNK;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
  for (int64_t c = 0; c < nchunks; ++c) {
    const int64_t end = (c + 1) * NCHUNK < n ? (c + 1) * NCHUNK : n;
#pragma omp simd
    for (int64_t i = c * NCHUNK; i < end; ++i)
      newer_box<T, KIND, VAR, GP, GT>(p + 4 * i, t + 4 * i, prm, fm, KIND == 9 ? ex[i] : ex0, gout[i], gp + 4 * i,
                                      gt + 4 * i);
  }
}

template <typename T, int KIND, int VAR>
int newer_run(int64_t n, const void* p, const void* t, const void* ex, const void* g, void* out, void* gp, void* gt,
              const NPrm& prm, int nt) {
  const T* P = static_cast<const T*>(p); const T* Q = static_cast<const T*>(t);
  const T* E = static_cast<const T*>(ex); const T* G = static_cast<const T*>(g);
  T* GP = static_cast<T*>(gp); T* GT = static_cast<T*>(gt);
  if (out) newer_fwd<T, KIND, VAR>(n, P, Q, E, static_cast<T*>(out), prm, nt);
  else if (gp && gt) newer_bwd<T, KIND, VAR, true, true>(n, P, Q, E, G, GP, GT, prm, nt);
  else if (gp) newer_bwd<T, KIND, VAR, true, false>(n, P, Q, E, G, GP, GT, prm, nt);
  else if (gt) newer_bwd<T, KIND, VAR, false, true>(n, P, Q, E, G, GP, GT, prm, nt);
  return 0;
}

template <typename T>
int newer_kind(int kind, int64_t n, const void* p, const void* t, const void* ex, const void* g, void* out, void* gp,
               void* gt, const NPrm& prm, int nt) {
  // kinds with an exponent are instantiated per exponent variant (pmode = VAR of spow; 3: Shape-IoU's scale 0)
  const int v = prm.pmode;
#define BL_NK(K) case K: return newer_run<T, K, 0>(n, p, t, ex, g, out, gp, gt, prm, nt);
#define BL_NKP(K) case K: return v == 0 ? newer_run<T, K, 0>(n, p, t, ex, g, out, gp, gt, prm, nt) \
                           : v == 1 ? newer_run<T, K, 1>(n, p, t, ex, g, out, gp, gt, prm, nt) \
                                    : newer_run<T, K, 2>(n, p, t, ex, g, out, gp, gt, prm, nt);
  switch (kind) {
    BL_NK(0) BL_NKP(1) BL_NKP(2) BL_NKP(3) BL_NKP(4) BL_NKP(5) BL_NKP(6) BL_NK(7) BL_NK(8)
    BL_NK(9) BL_NK(10) BL_NK(11) BL_NK(12) BL_NK(13) BL_NK(14) BL_NK(15)
    case 16: return v == 3 ? newer_run<T, 16, 3>(n, p, t, ex, g, out, gp, gt, prm, nt)
                  : v == 0 ? newer_run<T, 16, 0>(n, p, t, ex, g, out, gp, gt, prm, nt)
                  : v == 1 ? newer_run<T, 16, 1>(n, p, t, ex, g, out, gp, gt, prm, nt)
                           : newer_run<T, 16, 2>(n, p, t, ex, g, out, gp, gt, prm, nt);
  }
#undef BL_NK
#undef BL_NKP
  return 1;
}

}  // namespace

extern "C" {

int bl_newer_version() { return 1; }

// Forward (out != null: writes the per-box loss) or backward (out == null: writes gp / gt where not
// null, from the incoming per-box gradient g). ex: the extra input, [n] for MPDIoU, [1] otherwise.
// dtype: 0 float32, 1 float64. Returns 0 on success.
int bl_newer(int dtype, int kind, int fmt, int pmode, double eps, double p0, double p1, double p2, int64_t n,
             const void* p, const void* t, const void* ex, const void* g, void* out, void* gp, void* gt, int nthreads) {
  if (fmt < 0 || fmt > 2) return 1;
  const NPrm prm{eps, p0, p1, p2, pmode, fmt};
  if (dtype == 0) return newer_kind<float>(kind, n, p, t, ex, g, out, gp, gt, prm, nthreads);
  if (dtype == 1) return newer_kind<double>(kind, n, p, t, ex, g, out, gp, gt, prm, nthreads);
  return 1;
}

}  // extern "C"
"""
