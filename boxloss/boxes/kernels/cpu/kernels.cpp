// The fused CPU kernels: loops over boxes (OpenMP threads over chunks, one `omp simd` loop per chunk)
// running the heads of box_losses.h, Smooth L1 element-wise, and the C ABI of abi.h.
//
// Plain C++17 with OpenMP pragmas and no OpenMP or torch headers: it builds with any g++ / clang++, with
// or without OpenMP (then single-threaded). As one file:
//   c++ -O3 -std=c++17 -fPIC -shared -fopenmp -ffp-contract=off -fno-math-errno [-march=native]
//       -I boxloss/boxes/kernels/cpu boxloss/boxes/kernels/cpu/kernels.cpp -o libboxloss_kernels.so
// cpu.py compiles it as two parts in parallel instead (BL_PART below). -ffp-contract=off keeps a * b + c
// two roundings, as torch computes it; -fno-math-errno lets sqrt vectorise.
//
// Every (kind, variant, flags) is its own instantiation, so the loops hold no selects on uniform values.
// The dtype is a template parameter; so is the box format in the forward loops (whose per-box work is
// small enough for it to matter), while the backward loops take it as runtime coefficients (geometry.h).
// Per (kind, variant, flags, dtype): three forward loops (one per format) and two backward loops (both
// gradients, pred's only; the target's only runs the first into scratch, see run_loops).
#include <cstring>
#include <memory>
#include <new>

#include "abi.h"
#include "box_losses.h"

// The library in two parts that compile in about the same time: kinds [0, BL_SPLIT) with Smooth L1 and
// the ABI (BL_PART 0), kinds [BL_SPLIT, BL_NUM_KINDS) (BL_PART 1). cpu.py compiles them in parallel and
// links them, which nearly halves the first build's wait; without BL_PART this file is the whole library.
#define BL_SPLIT 12  // measured: ~20 s of CPU time each (GCC 12, -O3 -march=native)
#ifndef BL_PART
#define BL_WITH_LO 1
#define BL_WITH_HI 1
#else
#define BL_WITH_LO (BL_PART == 0)
#define BL_WITH_HI (BL_PART == 1)
#endif

namespace bl {
// One call of bl_box_loss, as the two parts pass it to each other (abi.h documents the fields).
struct Call {
  int dtype, kind, fmt, variant, flags;
  double eps, p0, p1, p2;
  int64_t n;
  const void *p, *t, *extra;
  int64_t extra_stride;
  const void* gout;
  int64_t gstride;
  void *out, *gp, *gt;
  int reduce, nthreads;
};
// the kinds of part 1 (BL_PART 1), called by bl_box_loss (part 0)
__attribute__((visibility("hidden"))) int box_loss_part1(const Call& c);
}  // namespace bl

namespace {

using namespace bl;

// One thread below 262,144 boxes: threads pay only for large batches, and on a loaded machine a
// waiting thread stalls for a scheduler time slice.
inline int pick_threads(int64_t n, int nthreads) { return n < 262144 ? 1 : (nthreads < 1 ? 1 : nthreads); }

// out[0] = the sum (reduce 1) or mean (reduce 2) of n elements from their per-chunk sums, added in chunk
// order in double: the same bits for any thread count.
template <typename T>
void write_reduced(T* out, int reduce, const double* chunk_sum, int64_t nchunks, int64_t n) {
  double total = 0;
  for (int64_t c = 0; c < nchunks; ++c) total += chunk_sum[c];
  out[0] = T(reduce == BL_REDUCE_MEAN ? total / double(n) : total);
}

// Threads take chunks; each chunk is one `omp simd` loop.
constexpr int64_t CHUNK = 1024;

// A per-box input with stride 0 (one value) or 1 (n values) as a chunk-local contiguous array, so that
// every load in the simd loop is a plain vector load (no gather): a stride-0 value is copied into `buf`
// once per thread. USED = false: an input the loop does not read (no buffer, nothing read).
template <typename T, bool USED> struct Stream {
  const T* base;
  int64_t stride;
  alignas(64) T buf[USED ? CHUNK : 1];
  Stream(const T* b, int64_t s) : base(b), stride(USED ? s : 0) {
    if (USED && stride == 0)
      for (int64_t j = 0; j < CHUNK; ++j) buf[j] = base[0];
  }
  const T* at(int64_t start) const { return stride ? base + start : buf; }
};

template <typename T> struct Args {  // a Call in dtype T
  int64_t n;
  const T *p, *t, *extra, *gout;
  int64_t extra_stride, gstride;
  T *out, *gp, *gt;
  Par<T> par;
  int fmt, reduce, nthreads;
  explicit Args(const Call& c)
      : n(c.n), p(static_cast<const T*>(c.p)), t(static_cast<const T*>(c.t)), extra(static_cast<const T*>(c.extra)),
        gout(static_cast<const T*>(c.gout)), extra_stride(c.extra_stride), gstride(c.gstride),
        out(static_cast<T*>(c.out)), gp(static_cast<T*>(c.gp)), gt(static_cast<T*>(c.gt)),
        par{T(c.eps), T(c.p0), T(c.p1), T(c.p2)}, fmt(c.fmt), reduce(c.reduce), nthreads(c.nthreads) {}
};

// KIND over the n pairs: the forward (GP = GT = false) or the backward (writes g * d loss / d pred, target
// into gp, gt where GP, GT), and the loss where out != NULL: out[i] = the loss of pair i, or with
// a.reduce its sum (1) or mean (2) in out[0] -- a sum per chunk, the chunks' sums added in order in
// double, so the result does not depend on the thread count. F: the box format (geometry.h).
template <typename T, int KIND, int VAR, int FLAGS, bool GP, bool GT, typename F>
void loop(const Args<T>& a, const F fm, double* chunk_sum) {
  constexpr bool BWD = GP || GT, EXTRA = Head<KIND>::EXTRA;
  const Par<T> par = a.par;  // local copies: provably not aliased by the stores below
  const int64_t n = a.n;
  const T *P = a.p, *Q = a.t;
  T *out = a.out, *gp = a.gp, *gt = a.gt;
  const int nt = pick_threads(n, a.nthreads);
  const int64_t nchunks = (n + CHUNK - 1) / CHUNK;
  const bool reduce = a.reduce != 0, per_box = out && !reduce;
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const Stream<T, EXTRA> ex(a.extra, a.extra_stride);
    const Stream<T, BWD> go(a.gout, a.gstride);
#pragma omp for schedule(static) nowait  // the region's end is the one barrier
    for (int64_t c = 0; c < nchunks; ++c) {
      const int64_t start = c * CHUNK, len = n - start < CHUNK ? n - start : CHUNK;
      const T *E = ex.at(start), *G = go.at(start);
      // the losses go to a chunk buffer (an unconditional store keeps the loop vectorised), then to out
      alignas(64) T loss[CHUNK];
#pragma omp simd
      for (int64_t j = 0; j < len; ++j) {
        const int64_t i = start + j;
        loss[j] = box<T, KIND, VAR, FLAGS, GP, GT>(P + 4 * i, Q + 4 * i, par, fm, EXTRA ? E[j] : T(0),
                                                   BWD ? G[j] : T(0), GP ? gp + 4 * i : nullptr,
                                                   GT ? gt + 4 * i : nullptr);
      }
      if (per_box) {
        std::memcpy(out + start, loss, sizeof(T) * len);
      } else if (reduce) {
        T sum = 0;
#pragma omp simd reduction(+ : sum)
        for (int64_t j = 0; j < len; ++j) sum += loss[j];
        chunk_sum[c] = sum;
      }
    }
  }
  if (reduce) write_reduced(out, a.reduce, chunk_sum, nchunks, n);
}

template <typename T, int KIND, int VAR, int FLAGS>
int run_loops(const Args<T>& a) {
  if (a.n == 0) {
    if (a.reduce) static_cast<T*>(a.out)[0] = T(0);  // the sum, and the mean, of no boxes: 0
    return BL_OK;
  }
  if (!a.out && !a.gp && !a.gt) return BL_OK;
  if (Head<KIND>::EXTRA && a.extra == nullptr) return BL_BAD_POINTER;
  std::unique_ptr<double[]> chunk_sums(a.reduce ? new (std::nothrow) double[(a.n + CHUNK - 1) / CHUNK] : nullptr);
  if (a.reduce && !chunk_sums) return BL_NO_MEMORY;
  double* sums = chunk_sums.get();
  if (!a.gp && !a.gt) {  // the forward does not depend on PAPER_GRAD: one instantiation for both
    constexpr int FF = FLAGS & ~BL_PAPER_GRAD;
    if (a.fmt == BL_XYXY) loop<T, KIND, VAR, FF, false, false>(a, FixedFmt<BL_XYXY>(), sums);
    else if (a.fmt == BL_XYWH) loop<T, KIND, VAR, FF, false, false>(a, FixedFmt<BL_XYWH>(), sums);
    else loop<T, KIND, VAR, FF, false, false>(a, FixedFmt<BL_CXCYWH>(), sums);
  } else if (a.gp && a.gt) {
    loop<T, KIND, VAR, FLAGS, true, true>(a, Fmt<T>(a.fmt), sums);
  } else if (a.gp) {
    loop<T, KIND, VAR, FLAGS, true, false>(a, Fmt<T>(a.fmt), sums);
  } else if (a.gt) {
    // only the target's gradient (rare: targets seldom require grad): both gradients, pred's into scratch,
    // rather than a third instantiation of every backward loop (a quarter of the build time)
    std::unique_ptr<T[]> scratch(new (std::nothrow) T[4 * a.n]);
    if (!scratch) return BL_NO_MEMORY;
    Args<T> b = a;
    b.gp = scratch.get();
    loop<T, KIND, VAR, FLAGS, true, true>(b, Fmt<T>(a.fmt), sums);
  }
  return BL_OK;
}

// runtime codes to template parameters: the kind, then its variant, then its flags
template <typename T, int KIND, int VAR, int FLAGS = 0>
int run_flags(int flags, const Args<T>& a) {
  if constexpr (FLAGS < Head<KIND>::FLAG_MASK) {
    if (flags != FLAGS) return run_flags<T, KIND, VAR, FLAGS + 1>(flags, a);
  }
  if (flags != FLAGS) return BL_BAD_FLAGS;
  return run_loops<T, KIND, VAR, FLAGS>(a);
}
template <typename T, int KIND, int VAR = 0>
int run_variant(int variant, int flags, const Args<T>& a) {
  if constexpr (VAR + 1 < Head<KIND>::NVAR) {
    if (variant != VAR) return run_variant<T, KIND, VAR + 1>(variant, flags, a);
  }
  if (variant != VAR) return BL_BAD_VARIANT;
  return run_flags<T, KIND, VAR>(flags, a);
}
template <typename T, int KIND, int END>  // kinds [KIND, END)
int run_kind(int kind, int variant, int flags, const Args<T>& a) {
  if constexpr (KIND < END) {
    if (kind == KIND) return run_variant<T, KIND>(variant, flags, a);
    return run_kind<T, KIND + 1, END>(kind, variant, flags, a);
  }
  return BL_BAD_KIND;
}
template <int FIRST, int END>  // kinds [FIRST, END), both dtypes
int run_call(const Call& c) {
  if (c.dtype == 0) return run_kind<float, FIRST, END>(c.kind, c.variant, c.flags, Args<float>(c));
  return run_kind<double, FIRST, END>(c.kind, c.variant, c.flags, Args<double>(c));
}

// ---- Smooth L1, element-wise: |d| < beta ? 0.5 d^2 / beta : |d| - 0.5 beta (beta = 0: |d|), d = p - t ----
template <typename T>
BL_INL T smooth_l1_grad(T p, T t, T g, T beta, T half_over_beta) {
  const T d = p - t;
  const T x = std::fabs(d);
  const T gx = (beta > T(0) && x < beta) ? g * (half_over_beta * x) + g * x * half_over_beta : g;
  return gx * sgn(d);  // torch's abs backward: sign, 0 at 0
}

// Smooth L1 over n elements, in one pass: the loss of each element where out != NULL (per element, or
// with reduce its sum / mean in out[0], summed as the box losses are), and g * dloss/dp into gp, -that
// into gt where GP, GT. ~0.3 ns per element: threads pay from ~1M elements (16 x the boxes' threshold);
// threads take chunks of 16 x CHUNK elements, each a run of CHUNK-long `omp simd` loops.
template <typename T, bool GP, bool GT>
void smooth_l1_loop(int64_t n, const T* p, const T* t, const T* gout, int64_t gstride, T* out, int reduce, T* gp,
                    T* gt, T beta, int nthreads, double* chunk_sum) {
  constexpr bool BWD = GP || GT;
  const int nt = pick_threads(n / 16, nthreads);
  const T half_over_beta = beta > T(0) ? T(0.5) / beta : T(0), half_beta = T(0.5) * beta;
  const int64_t nchunks = (n + 16 * CHUNK - 1) / (16 * CHUNK);
  const bool per_elem = out && !reduce, fwd = out != nullptr;
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const Stream<T, BWD> go(gout, gstride);
#pragma omp for schedule(static) nowait
    for (int64_t c = 0; c < nchunks; ++c) {
      const int64_t end = (c + 1) * 16 * CHUNK < n ? (c + 1) * 16 * CHUNK : n;
      double sum = 0;
      for (int64_t start = c * 16 * CHUNK; start < end; start += CHUNK) {
        const int64_t len = end - start < CHUNK ? end - start : CHUNK;
        const T *P = p + start, *Q = t + start, *G = go.at(start);
        alignas(64) T loss[CHUNK];
        if (fwd) {
#pragma omp simd
          for (int64_t j = 0; j < len; ++j) {
            const T x = std::fabs(P[j] - Q[j]);
            const T q = x < beta ? half_over_beta * x * x : x - half_beta;
            loss[j] = beta > T(0) ? q : x;
          }
          if (per_elem) {
            std::memcpy(out + start, loss, sizeof(T) * len);
          } else {
            T s = 0;
#pragma omp simd reduction(+ : s)
            for (int64_t j = 0; j < len; ++j) s += loss[j];
            sum += s;
          }
        }
        if constexpr (BWD) {
#pragma omp simd
          for (int64_t j = 0; j < len; ++j) {
            const T r = smooth_l1_grad(P[j], Q[j], G[j], beta, half_over_beta);
            if (GP) gp[start + j] = r;
            if (GT) gt[start + j] = -r;
          }
        }
      }
      if (reduce) chunk_sum[c] = sum;
    }
  }
}

template <typename T>
int smooth_l1(int64_t n, const void* p_, const void* t_, double beta_, const void* gout_, int64_t gstride,
              void* out_, int reduce, void* gp_, void* gt_, int nthreads) {
  const T *p = static_cast<const T*>(p_), *t = static_cast<const T*>(t_), *gout = static_cast<const T*>(gout_);
  T *out = static_cast<T*>(out_), *gp = static_cast<T*>(gp_), *gt = static_cast<T*>(gt_);
  const T beta = T(beta_);
  if (n == 0) {
    if (reduce) out[0] = T(0);
    return BL_OK;
  }
  std::unique_ptr<double[]> chunk_sums(reduce ? new (std::nothrow) double[(n + 16 * CHUNK - 1) / (16 * CHUNK)]
                                              : nullptr);
  if (reduce && !chunk_sums) return BL_NO_MEMORY;
  double* sums = chunk_sums.get();
  if (gp && gt) smooth_l1_loop<T, true, true>(n, p, t, gout, gstride, out, reduce, gp, gt, beta, nthreads, sums);
  else if (gp) smooth_l1_loop<T, true, false>(n, p, t, gout, gstride, out, reduce, gp, gt, beta, nthreads, sums);
  else if (gt) smooth_l1_loop<T, false, true>(n, p, t, gout, gstride, out, reduce, gp, gt, beta, nthreads, sums);
  else if (out) smooth_l1_loop<T, false, false>(n, p, t, gout, gstride, out, reduce, gp, gt, beta, nthreads, sums);
  if (reduce) write_reduced(out, reduce, sums, (n + 16 * CHUNK - 1) / (16 * CHUNK), n);
  return BL_OK;
}

// the checks both entry points share; BL_OK when the call may run
[[maybe_unused]] int check_call(int dtype, int64_t n, const void* p, const void* t, const void* gout, int64_t gstride,
                                void* out, void* gp, void* gt, int reduce = 0) {
  if (dtype != 0 && dtype != 1) return BL_BAD_DTYPE;
  if (reduce < BL_REDUCE_NONE || reduce > BL_REDUCE_MEAN) return BL_BAD_REDUCE;
  if (reduce && !out) return BL_BAD_POINTER;
  if (n < 0) return BL_BAD_SIZE;
  if ((gp || gt) && gstride != 0 && gstride != 1) return BL_BAD_STRIDE;
  if (n > 0 && (!p || !t || ((gp || gt) && !gout))) return BL_BAD_POINTER;
  return BL_OK;
}

}  // namespace

#if BL_WITH_HI
int bl::box_loss_part1(const Call& c) { return run_call<BL_SPLIT, BL_NUM_KINDS>(c); }
#endif

#if BL_WITH_LO
extern "C" {

__attribute__((visibility("default"))) int bl_abi_version(void) { return BL_ABI_VERSION; }

__attribute__((visibility("default"))) int bl_box_loss(int dtype, int kind, int fmt, int variant, int flags,
                                                       double eps, double p0, double p1, double p2, int64_t n,
                                                       const void* p, const void* t, const void* extra,
                                                       int64_t extra_stride, const void* gout, int64_t gstride,
                                                       void* out, int reduce, void* gp, void* gt, int nthreads) {
  if (const int rc = check_call(dtype, n, p, t, gout, gstride, out, gp, gt, reduce)) return rc;
  if (fmt < 0 || fmt > 2) return BL_BAD_FMT;
  if (extra_stride != 0 && extra_stride != 1) return BL_BAD_STRIDE;
  const Call c{dtype, kind, fmt, variant, flags, eps, p0, p1, p2, n, p, t, extra, extra_stride, gout, gstride,
               out, gp, gt, reduce, nthreads};
  return kind >= BL_SPLIT ? box_loss_part1(c) : run_call<0, BL_SPLIT>(c);
}

__attribute__((visibility("default"))) int bl_smooth_l1(int dtype, int64_t n, const void* p, const void* t,
                                                        double beta, const void* gout, int64_t gstride, void* out,
                                                        int reduce, void* gp, void* gt, int nthreads) {
  if (const int rc = check_call(dtype, n, p, t, gout, gstride, out, gp, gt, reduce)) return rc;
  if (dtype == 0) return smooth_l1<float>(n, p, t, beta, gout, gstride, out, reduce, gp, gt, nthreads);
  return smooth_l1<double>(n, p, t, beta, gout, gstride, out, reduce, gp, gt, nthreads);
}

}  // extern "C"
#endif
