"""C++ source of the fused CPU kernels (compiled once per machine by `_cpu.py`, called through ctypes).

Plain C++17 with OpenMP pragmas (and no OpenMP or torch headers), so it builds with any g++/clang++,
with or without OpenMP (then single-threaded).
The forward and backward of every IoU-family loss are one loop over boxes each; the backward is the
hand-written reverse-mode derivative of exactly the graph `overlaps.aligned_overlap` builds (same
clamps, same tie rule for min/max -- ties split the gradient in halves as torch does --, clamp_min passing
the gradient only where x > bound as torch does, same `eps` placement), so values and gradients match the reference path to rounding.

Kinds: 0 iou (linear), 1 giou, 2 diou, 3 ciou, 4 iou (square), 5 iou (log). Formats: 0 xyxy, 1 xywh,
2 cxcywh. CIoU alpha: 0 constant, 1 gated (iou >= 0.5).
CIoU grad mode: 0 exact (d atan(w/h)), 1 paper (the DIoU paper drops the 1/(w^2+h^2) factor).
"""

# Includes and scalar helpers (clamps, min/max backward with torch's tie rule, a vectorisable atanf), inside
# an open anonymous namespace; the newer losses' kernels (_cpu_source_newer.py) start from the same prelude.
CPU_PRELUDE = r"""
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

struct Prm {
  int alpha_mode;  // ciou: 0 constant, 1 gated
  int grad_mode;   // ciou: 0 exact, 1 paper
  double eps;
};

template <typename T> inline T clamp0(T x) { return x < T(0) ? T(0) : x; }
template <typename T> inline T clampmin(T x, T lo) { return x < lo ? lo : x; }
template <typename T> inline T tmin(T a, T b) { return b < a ? b : a; }
template <typename T> inline T tmax(T a, T b) { return b > a ? b : a; }
// float atan: Cephes atanf (range reduction to |x| <= tan(pi/8), odd polynomial), written without
// branches so loops vectorize; max error ~2 ulp (torch's Sleef atan: 1 ulp), well inside 1e-6 relative.
inline float my_atan(float a) {
  const float x = std::fabs(a);
  const bool big = x > 2.414213562373095f, mid = x > 0.4142135623730950f;
  const float y0 = big ? 1.5707963267948966f : (mid ? 0.7853981633974483f : 0.0f);
  const float xr = big ? -1.0f / x : (mid ? (x - 1.0f) / (x + 1.0f) : x);
  const float z = xr * xr;
  const float y = y0 + ((((8.05374449538e-2f * z - 1.38776856032e-1f) * z + 1.99777106478e-1f) * z
                         - 3.33329491539e-1f) * z * xr + xr);
  return a < 0.0f ? -y : y;
}
inline double my_atan(double x) { return std::atan(x); }
inline float my_log(float x) { return std::log(x); }
inline double my_log(double x) { return std::log(x); }

// torch.minimum / torch.maximum backward: the smaller (larger) input takes the gradient, ties split it.
template <typename T> inline void min_bw(T a, T b, T g, T& ga, T& gb) {
  const T wa = a < b ? T(1) : (b < a ? T(0) : T(0.5));
  ga += wa * g; gb += (T(1) - wa) * g;
}
template <typename T> inline void max_bw(T a, T b, T g, T& ga, T& gb) { min_bw(b, a, g, ga, gb); }

"""

CPU_SOURCE = CPU_PRELUDE + r"""template <typename T, int FMT> inline void load_xyxy(const T* b, T& x1, T& y1, T& x2, T& y2) {
  if (FMT == 0) { x1 = b[0]; y1 = b[1]; x2 = b[2]; y2 = b[3]; }
  else if (FMT == 1) { x1 = b[0]; y1 = b[1]; x2 = b[0] + b[2]; y2 = b[1] + b[3]; }
  else { T hw = T(0.5) * b[2], hh = T(0.5) * b[3]; x1 = b[0] - hw; y1 = b[1] - hh; x2 = b[0] + hw; y2 = b[1] + hh; }
}

template <typename T, int FMT> inline void store_grad(T g1, T g2, T g3, T g4, T* out) {
  if (FMT == 0) { out[0] = g1; out[1] = g2; out[2] = g3; out[3] = g4; }
  else if (FMT == 1) { out[0] = g1 + g3; out[1] = g2 + g4; out[2] = g3; out[3] = g4; }
  else { out[0] = g1 + g3; out[1] = g2 + g4; out[2] = T(0.5) * (g3 - g1); out[3] = T(0.5) * (g4 - g2); }
}

// One box pair: returns the loss, writes the IoU to *iou_out; if gp / gt are not null, writes
// g * d loss / d pred (resp. target) in the box format FMT.
template <typename T, int KIND, int FMT, bool GP, bool GT>
inline T box_loss(const T* pb, const T* tb, const Prm& prm, T g, T* gp, T* gt, T* iou_out) {
  const T eps = T(prm.eps);
  const T K = T(4.0 / (M_PI * M_PI));
  T px1, py1, px2, py2, tx1, ty1, tx2, ty2;
  load_xyxy<T, FMT>(pb, px1, py1, px2, py2);
  load_xyxy<T, FMT>(tb, tx1, ty1, tx2, ty2);
  const T a1 = px2 - px1, a2 = py2 - py1, a3 = tx2 - tx1, a4 = ty2 - ty1;
  const T pw = clamp0(a1), ph = clamp0(a2), tw = clamp0(a3), th = clamp0(a4);
  const T iwr = tmin(px2, tx2) - tmax(px1, tx1);
  const T ihr = tmin(py2, ty2) - tmax(py1, ty1);
  const T iw = clamp0(iwr), ih = clamp0(ihr);
  const T inter = iw * ih;
  const T uni = pw * ph + tw * th - inter;
  const T U = clampmin(uni, eps);
  const T iou = inter / U;
  *iou_out = iou;

  T loss;
  T cwr = 0, chr = 0, cw = 0, ch = 0, Craw = 0, C = 0, c2raw = 0, c2 = 0, dx = 0, dy = 0, rho2 = 0;
  T rp = 0, rt = 0, dv = 0, v = 0, alpha = 0;
  if (KIND == 0) loss = T(1) - iou;
  else if (KIND == 4) loss = T(1) - iou * iou;
  else if (KIND == 5) loss = -my_log(clampmin(iou, eps));
  else {
    cwr = tmax(px2, tx2) - tmin(px1, tx1);
    chr = tmax(py2, ty2) - tmin(py1, ty1);
    cw = clamp0(cwr); ch = clamp0(chr);
    if (KIND == 1) {
      Craw = cw * ch;
      C = clampmin(Craw, eps);
      loss = T(1) - (iou - (C - uni) / C);
    } else {
      c2raw = cw * cw + ch * ch;
      c2 = clampmin(c2raw, eps);
      dx = (px1 + px2) - (tx1 + tx2);
      dy = (py1 + py2) - (ty1 + ty2);
      rho2 = T(0.25) * (dx * dx + dy * dy);
      const T diou = iou - rho2 / c2;
      if (KIND == 2) {
        loss = T(1) - diou;
      } else {
        rt = tw / (th + eps);
        rp = pw / (ph + eps);
        dv = my_atan(rt) - my_atan(rp);
        v = K * dv * dv;
        alpha = v / clampmin(T(1) - iou + v, eps);
        alpha = (prm.alpha_mode == 1 && !(iou >= T(0.5))) ? T(0) * alpha : alpha;
        loss = T(1) - (diou - alpha * v);
      }
    }
  }
  if (!GP && !GT) return loss;

  // ---- backward: g = d L / d loss ----
  T g_iou = 0, g_pw = 0, g_ph = 0, g_tw = 0, g_th = 0, g_uni = 0, g_cw = 0, g_ch = 0, g_dx = 0, g_dy = 0;
  if (KIND == 0) g_iou = -g;
  else if (KIND == 4) g_iou = -(g * iou + g * iou);
  else if (KIND == 5) g_iou = iou > eps ? -g / clampmin(iou, eps) : T(0);
  else {
    g_iou = -g;
    if (KIND == 1) {
      // loss = 1 - iou + (C - uni) / C
      const T g_num = g / C;
      const T g_C = g_num - g * (C - uni) / (C * C);
      g_uni -= g_num;
      const T g_Craw = Craw > eps ? g_C : T(0);
      g_cw = g_Craw * ch; g_ch = g_Craw * cw;
    } else {
      // loss = 1 - iou + rho2 / c2 (+ alpha * v)
      const T g_rho2 = g / c2;
      const T g_c2 = -g * rho2 / (c2 * c2);
      const T g_c2raw = c2raw > eps ? g_c2 : T(0);
      g_cw = T(2) * g_c2raw * cw; g_ch = T(2) * g_c2raw * ch;
      g_dx = T(0.5) * g_rho2 * dx; g_dy = T(0.5) * g_rho2 * dy;
      if (KIND == 3) {
        const T g_dv = T(2) * K * (g * alpha) * dv;  // v = K dv^2, alpha constant
        const T hp = ph + eps, ht = th + eps;
        // exact: d atan(w/h)/dw = 1/(h (1 + (w/h)^2)), d/dh = -(w/h)/(h (1 + (w/h)^2));
        // paper (the DIoU paper): the same with the factor 1/(w^2+h^2) replaced by 1, i.e. h and -w.
        const bool paper = prm.grad_mode == 1;
        const T g_rp = -g_dv / (T(1) + rp * rp);
        const T g_rt = g_dv / (T(1) + rt * rt);
        g_pw += paper ? -g_dv * hp : g_rp / hp;
        g_ph += paper ? g_dv * pw : -(g_rp * rp / hp);
        g_tw += paper ? g_dv * ht : g_rt / ht;
        g_th += paper ? -g_dv * tw : -(g_rt * rt / ht);
      }
    }
  }
  // iou = inter / U
  T g_inter = g_iou / U;
  const T g_U = -g_iou * inter / (U * U);
  g_uni += uni > eps ? g_U : T(0);
  // uni = pw*ph + tw*th - inter
  g_pw += g_uni * ph; g_ph += g_uni * pw; g_tw += g_uni * th; g_th += g_uni * tw;
  g_inter -= g_uni;
  const T g_iwr = iwr > T(0) ? g_inter * ih : T(0);
  const T g_ihr = ihr > T(0) ? g_inter * iw : T(0);
  T gpx1 = 0, gpy1 = 0, gpx2 = 0, gpy2 = 0, gtx1 = 0, gty1 = 0, gtx2 = 0, gty2 = 0;
  min_bw(px2, tx2, g_iwr, gpx2, gtx2); max_bw(px1, tx1, -g_iwr, gpx1, gtx1);
  min_bw(py2, ty2, g_ihr, gpy2, gty2); max_bw(py1, ty1, -g_ihr, gpy1, gty1);
  if (KIND >= 1 && KIND <= 3) {
    const T g_cwr = cwr > T(0) ? g_cw : T(0);
    const T g_chr = chr > T(0) ? g_ch : T(0);
    max_bw(px2, tx2, g_cwr, gpx2, gtx2); min_bw(px1, tx1, -g_cwr, gpx1, gtx1);
    max_bw(py2, ty2, g_chr, gpy2, gty2); min_bw(py1, ty1, -g_chr, gpy1, gty1);
    gpx1 += g_dx; gpx2 += g_dx; gtx1 -= g_dx; gtx2 -= g_dx;
    gpy1 += g_dy; gpy2 += g_dy; gty1 -= g_dy; gty2 -= g_dy;
  }
  const T g_a1 = a1 > T(0) ? g_pw : T(0), g_a2 = a2 > T(0) ? g_ph : T(0);
  const T g_a3 = a3 > T(0) ? g_tw : T(0), g_a4 = a4 > T(0) ? g_th : T(0);
  gpx2 += g_a1; gpx1 -= g_a1; gpy2 += g_a2; gpy1 -= g_a2;
  gtx2 += g_a3; gtx1 -= g_a3; gty2 += g_a4; gty1 -= g_a4;
  if (GP) store_grad<T, FMT>(gpx1, gpy1, gpx2, gpy2, gp);
  if (GT) store_grad<T, FMT>(gtx1, gty1, gtx2, gty2, gt);
  return loss;
}

inline int pick_threads(int64_t n, int nthreads) { return n < 262144 ? 1 : (nthreads < 1 ? 1 : nthreads); }

// Loops run in chunks: threads take chunks, each chunk is one `omp simd` loop.
constexpr int64_t CHUNK = 1024;

template <typename T, int KIND, int FMT>
void overlap_fwd(int64_t n, const T* p, const T* t, T* out, const Prm& prm, int nthreads) {
  const int nt = pick_threads(n, nthreads);
  const int64_t nchunks = (n + CHUNK - 1) / CHUNK;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
  for (int64_t c = 0; c < nchunks; ++c) {
    const int64_t end = (c + 1) * CHUNK < n ? (c + 1) * CHUNK : n;
#pragma omp simd
    for (int64_t i = c * CHUNK; i < end; ++i) {
      T iou;
      out[i] = box_loss<T, KIND, FMT, false, false>(p + 4 * i, t + 4 * i, prm, T(0), nullptr, nullptr, &iou);
    }
  }
}

template <typename T, int KIND, int FMT, bool GP, bool GT>
void overlap_bwd_loop(int64_t n, const T* p, const T* t, const T* gout, int64_t gstride, T* gp, T* gt,
                      const Prm& prm, int nthreads) {
  const int nt = pick_threads(n, nthreads);
  const int64_t nchunks = (n + CHUNK - 1) / CHUNK;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
  for (int64_t c = 0; c < nchunks; ++c) {
    const int64_t end = (c + 1) * CHUNK < n ? (c + 1) * CHUNK : n;
#pragma omp simd
    for (int64_t i = c * CHUNK; i < end; ++i) {
      T iou;
      box_loss<T, KIND, FMT, GP, GT>(p + 4 * i, t + 4 * i, prm, gout[i * gstride], gp + 4 * i, gt + 4 * i, &iou);
    }
  }
}

template <typename T, int KIND, int FMT>
void overlap_bwd(int64_t n, const T* p, const T* t, const T* gout, int64_t gstride, T* gp, T* gt,
                 const Prm& prm, int nthreads) {
  if (gp && gt) overlap_bwd_loop<T, KIND, FMT, true, true>(n, p, t, gout, gstride, gp, gt, prm, nthreads);
  else if (gp) overlap_bwd_loop<T, KIND, FMT, true, false>(n, p, t, gout, gstride, gp, gt, prm, nthreads);
  else if (gt) overlap_bwd_loop<T, KIND, FMT, false, true>(n, p, t, gout, gstride, gp, gt, prm, nthreads);
}

// Gradient descent on (cx, cy, w, h) boxes, the DIoU paper's simulation: every case runs `iters`
// steps B <- B - lr[it] * (2 - IoU) * dL/dB, and err[it] += |B - B_gt|_1 after step it.
// Cases go in blocks of SB; each step is one `omp simd` loop across the block (padding lanes hold
// identical boxes, whose gradient and error are exactly 0).
template <typename T, int KIND>
void simulate(int64_t n, T* boxes, const T* targets, int iters, const double* lr, const Prm& prm,
              double* err, int nthreads) {
  constexpr int SB = 64;
  const int nt = nthreads < 1 ? 1 : nthreads;
  const int64_t nblocks = (n + SB - 1) / SB;
  std::memset(err, 0, sizeof(double) * iters);
#pragma omp parallel num_threads(nt)
  {
    std::vector<double> local(iters, 0.0);
    alignas(64) T b[4 * SB];
    alignas(64) T tb[4 * SB];
#pragma omp for schedule(dynamic, 16)
    for (int64_t blk = 0; blk < nblocks; ++blk) {
      const int64_t start = blk * SB;
      const int m = int(n - start < SB ? n - start : SB);
      for (int j = 0; j < SB; ++j)
        for (int k = 0; k < 4; ++k) {
          const int64_t src = 4 * (start + (j < m ? j : 0)) + k;
          tb[4 * j + k] = targets[src];
          b[4 * j + k] = j < m ? boxes[src] : targets[src];
        }
      for (int it = 0; it < iters; ++it) {
        const T rate = T(lr[it]);
        T e = 0;
#pragma omp simd reduction(+ : e)
        for (int j = 0; j < SB; ++j) {
          T gb[4];
          T iou;
          box_loss<T, KIND, 2, true, false>(b + 4 * j, tb + 4 * j, prm, T(1), gb, nullptr, &iou);
          const T step = rate * (T(2) - iou);
          for (int k = 0; k < 4; ++k) {
            b[4 * j + k] -= step * gb[k];
            e += std::fabs(b[4 * j + k] - tb[4 * j + k]);
          }
        }
        local[it] += double(e);
      }
      for (int j = 0; j < m; ++j)
        for (int k = 0; k < 4; ++k) boxes[4 * (start + j) + k] = b[4 * j + k];
    }
#pragma omp critical
    for (int it = 0; it < iters; ++it) err[it] += local[it];
  }
}

template <typename T, int KIND>
int fwd_fmt(int fmt, int64_t n, const void* p, const void* t, void* out, const Prm& prm, int nt) {
  const T* P = static_cast<const T*>(p); const T* Q = static_cast<const T*>(t);
  T* O = static_cast<T*>(out);
  switch (fmt) {
    case 0: overlap_fwd<T, KIND, 0>(n, P, Q, O, prm, nt); return 0;
    case 1: overlap_fwd<T, KIND, 1>(n, P, Q, O, prm, nt); return 0;
    case 2: overlap_fwd<T, KIND, 2>(n, P, Q, O, prm, nt); return 0;
  }
  return 1;
}

template <typename T, int KIND>
int bwd_fmt(int fmt, int64_t n, const void* p, const void* t, const void* g, int64_t gs, void* gp, void* gt,
            const Prm& prm, int nt) {
  const T* P = static_cast<const T*>(p); const T* Q = static_cast<const T*>(t); const T* G = static_cast<const T*>(g);
  T* GP = static_cast<T*>(gp); T* GT = static_cast<T*>(gt);
  switch (fmt) {
    case 0: overlap_bwd<T, KIND, 0>(n, P, Q, G, gs, GP, GT, prm, nt); return 0;
    case 1: overlap_bwd<T, KIND, 1>(n, P, Q, G, gs, GP, GT, prm, nt); return 0;
    case 2: overlap_bwd<T, KIND, 2>(n, P, Q, G, gs, GP, GT, prm, nt); return 0;
  }
  return 1;
}

template <typename T>
int fwd_kind(int kind, int fmt, int64_t n, const void* p, const void* t, void* out, const Prm& prm, int nt) {
  switch (kind) {
    case 0: return fwd_fmt<T, 0>(fmt, n, p, t, out, prm, nt);
    case 1: return fwd_fmt<T, 1>(fmt, n, p, t, out, prm, nt);
    case 2: return fwd_fmt<T, 2>(fmt, n, p, t, out, prm, nt);
    case 3: return fwd_fmt<T, 3>(fmt, n, p, t, out, prm, nt);
    case 4: return fwd_fmt<T, 4>(fmt, n, p, t, out, prm, nt);
    case 5: return fwd_fmt<T, 5>(fmt, n, p, t, out, prm, nt);
  }
  return 1;
}

template <typename T>
int bwd_kind(int kind, int fmt, int64_t n, const void* p, const void* t, const void* g, int64_t gs, void* gp,
             void* gt, const Prm& prm, int nt) {
  switch (kind) {
    case 0: return bwd_fmt<T, 0>(fmt, n, p, t, g, gs, gp, gt, prm, nt);
    case 1: return bwd_fmt<T, 1>(fmt, n, p, t, g, gs, gp, gt, prm, nt);
    case 2: return bwd_fmt<T, 2>(fmt, n, p, t, g, gs, gp, gt, prm, nt);
    case 3: return bwd_fmt<T, 3>(fmt, n, p, t, g, gs, gp, gt, prm, nt);
    case 4: return bwd_fmt<T, 4>(fmt, n, p, t, g, gs, gp, gt, prm, nt);
    case 5: return bwd_fmt<T, 5>(fmt, n, p, t, g, gs, gp, gt, prm, nt);
  }
  return 1;
}

// Smooth L1, element-wise: |d| < beta ? 0.5 d^2 / beta : |d| - 0.5 beta (beta = 0: |d|), d = p - t.
template <typename T>
inline T smooth_l1_grad(T p, T t, T g, T beta, T half_over_beta) {
  const T d = p - t;
  const T x = std::fabs(d);
  const T gx = (beta > T(0) && x < beta) ? g * (half_over_beta * x) + g * x * half_over_beta : g;
  const T sg = d > T(0) ? T(1) : (d < T(0) ? T(-1) : T(0));  // torch's abs backward: sign, 0 at 0
  return gx * sg;
}

template <typename T>
void smooth_l1_fwd(int64_t n, const T* p, const T* t, T* out, T beta, int nthreads) {
  const int nt = pick_threads(n / 16, nthreads);  // ~0.3 ns per element: threads pay from ~1M elements
  const T half_over_beta = beta > T(0) ? T(0.5) / beta : T(0), half_beta = T(0.5) * beta;
  const int64_t nchunks = (n + 16 * CHUNK - 1) / (16 * CHUNK);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
  for (int64_t c = 0; c < nchunks; ++c) {
    const int64_t end = (c + 1) * 16 * CHUNK < n ? (c + 1) * 16 * CHUNK : n;
#pragma omp simd
    for (int64_t i = c * 16 * CHUNK; i < end; ++i) {
      const T x = std::fabs(p[i] - t[i]);
      const T q = x < beta ? half_over_beta * x * x : x - half_beta;
      out[i] = beta > T(0) ? q : x;
    }
  }
}

template <typename T, bool GP, bool GT>
void smooth_l1_bwd_loop(int64_t n, const T* p, const T* t, const T* gout, int64_t gstride, T* gp, T* gt, T beta,
                        int nthreads) {
  const int nt = pick_threads(n / 16, nthreads);
  const T half_over_beta = beta > T(0) ? T(0.5) / beta : T(0);
  const int64_t nchunks = (n + 16 * CHUNK - 1) / (16 * CHUNK);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
  for (int64_t c = 0; c < nchunks; ++c) {
    const int64_t end = (c + 1) * 16 * CHUNK < n ? (c + 1) * 16 * CHUNK : n;
    if (gstride == 0) {
      const T g = gout[0];
#pragma omp simd
      for (int64_t i = c * 16 * CHUNK; i < end; ++i) {
        const T r = smooth_l1_grad(p[i], t[i], g, beta, half_over_beta);
        if (GP) gp[i] = r;
        if (GT) gt[i] = -r;
      }
    } else {
#pragma omp simd
      for (int64_t i = c * 16 * CHUNK; i < end; ++i) {
        const T r = smooth_l1_grad(p[i], t[i], gout[i * gstride], beta, half_over_beta);
        if (GP) gp[i] = r;
        if (GT) gt[i] = -r;
      }
    }
  }
}

template <typename T>
void smooth_l1_bwd(int64_t n, const T* p, const T* t, const T* gout, int64_t gstride, T* gp, T* gt, T beta,
                   int nthreads) {
  if (gp && gt) smooth_l1_bwd_loop<T, true, true>(n, p, t, gout, gstride, gp, gt, beta, nthreads);
  else if (gp) smooth_l1_bwd_loop<T, true, false>(n, p, t, gout, gstride, gp, gt, beta, nthreads);
  else if (gt) smooth_l1_bwd_loop<T, false, true>(n, p, t, gout, gstride, gp, gt, beta, nthreads);
}

}  // namespace

extern "C" {

int bl_smooth_l1_fwd(int dtype, int64_t n, const void* p, const void* t, void* out, double beta, int nthreads) {
  if (dtype == 0) smooth_l1_fwd<float>(n, (const float*)p, (const float*)t, (float*)out, float(beta), nthreads);
  else if (dtype == 1) smooth_l1_fwd<double>(n, (const double*)p, (const double*)t, (double*)out, beta, nthreads);
  else return 1;
  return 0;
}

int bl_smooth_l1_bwd(int dtype, int64_t n, const void* p, const void* t, const void* g, int64_t gstride, void* gp,
                     void* gt, double beta, int nthreads) {
  if (dtype == 0)
    smooth_l1_bwd<float>(n, (const float*)p, (const float*)t, (const float*)g, gstride, (float*)gp, (float*)gt,
                         float(beta), nthreads);
  else if (dtype == 1)
    smooth_l1_bwd<double>(n, (const double*)p, (const double*)t, (const double*)g, gstride, (double*)gp,
                          (double*)gt, beta, nthreads);
  else return 1;
  return 0;
}


int bl_version() { return 2; }

// dtype: 0 float32, 1 float64. Returns 0 on success.
int bl_overlap_fwd(int dtype, int kind, int fmt, int alpha_mode, double eps, int64_t n,
                   const void* p, const void* t, void* out, int nthreads) {
  const Prm prm{alpha_mode, 0, eps};
  if (dtype == 0) return fwd_kind<float>(kind, fmt, n, p, t, out, prm, nthreads);
  if (dtype == 1) return fwd_kind<double>(kind, fmt, n, p, t, out, prm, nthreads);
  return 1;
}

int bl_overlap_bwd(int dtype, int kind, int fmt, int alpha_mode, int grad_mode, double eps, int64_t n,
                   const void* p, const void* t, const void* gout, int64_t gstride, void* gp, void* gt,
                   int nthreads) {
  const Prm prm{alpha_mode, grad_mode, eps};
  if (dtype == 0) return bwd_kind<float>(kind, fmt, n, p, t, gout, gstride, gp, gt, prm, nthreads);
  if (dtype == 1) return bwd_kind<double>(kind, fmt, n, p, t, gout, gstride, gp, gt, prm, nthreads);
  return 1;
}

int bl_simulate(int dtype, int kind, int grad_mode, double eps, int64_t n, void* boxes, const void* targets,
                int iters, const double* lr, double* err, int nthreads) {
  const Prm prm{0, grad_mode, eps};
  if (dtype == 0) {
    float* B = static_cast<float*>(boxes); const float* G = static_cast<const float*>(targets);
    switch (kind) {
      case 0: simulate<float, 0>(n, B, G, iters, lr, prm, err, nthreads); return 0;
      case 1: simulate<float, 1>(n, B, G, iters, lr, prm, err, nthreads); return 0;
      case 2: simulate<float, 2>(n, B, G, iters, lr, prm, err, nthreads); return 0;
      case 3: simulate<float, 3>(n, B, G, iters, lr, prm, err, nthreads); return 0;
    }
  } else if (dtype == 1) {
    double* B = static_cast<double*>(boxes); const double* G = static_cast<const double*>(targets);
    switch (kind) {
      case 0: simulate<double, 0>(n, B, G, iters, lr, prm, err, nthreads); return 0;
      case 1: simulate<double, 1>(n, B, G, iters, lr, prm, err, nthreads); return 0;
      case 2: simulate<double, 2>(n, B, G, iters, lr, prm, err, nthreads); return 0;
      case 3: simulate<double, 3>(n, B, G, iters, lr, prm, err, nthreads); return 0;
    }
  }
  return 1;
}

}  // extern "C"
"""
