// Scalar math for the per-box kernels: what <cmath> would give, written so that fp32 loops vectorise,
// and torch's backward rules for clamp, min and max.
//
// Why not <cmath> in fp32: libm's atanf, expf, logf, powf are scalar calls, and one call in an
// `omp simd` loop keeps the whole loop scalar (GCC's libmvec variants need -ffast-math, which would
// also change the arithmetic). So fp32 uses Cephes' polynomials (max error ~2 ulp; torch's Sleef is
// 1 ulp: well inside the 1e-6 the kernels are held to), written without branches or libm calls.
// fp64 uses libm (the fp64 loops are not the ones that need to be fast, and libm is within 1 ulp).
//
// Lessons recorded in the previous kernels, still true for GCC 12:
// - the per-box code must be inlined into the `omp simd` loops to vectorise, and GCC does not inline
//   it by itself: everything the loops call is BL_INL (always_inline);
// - no std::floor (it does not vectorise without -ffast-math): round by adding 1.5 * 2^23;
// - no select on x before a log: GCC threads the constant through the log into branches the
//   vectoriser rejects; mask results by a product instead;
// - no select on a value that is uniform across the loop (a runtime option): GCC's vectoriser rejects
//   it; such options are template parameters (VAR, FLAGS).
#ifndef BOXLOSS_VECMATH_H
#define BOXLOSS_VECMATH_H

#include <cmath>
#include <cstdint>
#include <cstring>

#define BL_INL inline __attribute__((always_inline))

namespace bl {

constexpr double kPi = 3.14159265358979323846;

// ---- torch's forward and backward rules of clamp, min, max ----
template <typename T> BL_INL T clamp0(T x) { return x < T(0) ? T(0) : x; }
template <typename T> BL_INL T clampmin(T x, T lo) { return x < lo ? lo : x; }
template <typename T> BL_INL T tmin(T a, T b) { return b < a ? b : a; }
template <typename T> BL_INL T tmax(T a, T b) { return b > a ? b : a; }
// clamp_min(x, lo) backward passes the gradient only where x > lo (ties get 0); callers write
// `x > lo ? g : 0` where they use it.
// torch.minimum / torch.maximum backward: the smaller (larger) input takes the gradient, ties split it.
template <typename T> BL_INL void min_bw(T a, T b, T g, T& ga, T& gb) {
  const T wa = a < b ? T(1) : (b < a ? T(0) : T(0.5));
  ga += wa * g;
  gb += (T(1) - wa) * g;
}
template <typename T> BL_INL void max_bw(T a, T b, T g, T& ga, T& gb) { min_bw(b, a, g, ga, gb); }
// sign, 0 at 0: torch's abs backward
template <typename T> BL_INL T sgn(T x) { return x > T(0) ? T(1) : (x < T(0) ? T(-1) : T(0)); }

// ---- atan: Cephes atanf (range reduction to |x| <= tan(pi/8), odd polynomial), without branches ----
BL_INL float v_atan(float a) {
  const float x = std::fabs(a);
  const bool big = x > 2.414213562373095f, mid = x > 0.4142135623730950f;
  const float y0 = big ? 1.5707963267948966f : (mid ? 0.7853981633974483f : 0.0f);
  const float xr = big ? -1.0f / x : (mid ? (x - 1.0f) / (x + 1.0f) : x);
  const float z = xr * xr;
  const float y = y0 + ((((8.05374449538e-2f * z - 1.38776856032e-1f) * z + 1.99777106478e-1f) * z
                         - 3.33329491539e-1f) * z * xr + xr);
  return a < 0.0f ? -y : y;
}
BL_INL double v_atan(double x) { return std::atan(x); }

// ---- exp, expm1, log, pow ----
BL_INL float bits_f(int32_t i) { float f; std::memcpy(&f, &i, 4); return f; }
BL_INL int32_t f_bits(float f) { int32_t i; std::memcpy(&i, &f, 4); return i; }
// Cephes expf: max error ~2 ulp; inf above 88.72, 0 below -87.34
BL_INL float v_exp(float a) {
  const float x0 = a > 88.0f ? 88.0f : (a < -87.0f ? -87.0f : a);
  const float fx = (x0 * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round to nearest
  float x = x0 - fx * 0.693359375f;
  x = x - fx * -2.12194440e-4f;
  const float y = ((((((1.9875691500e-4f * x + 1.3981999507e-3f) * x + 8.3334519073e-3f) * x + 4.1665795894e-2f) * x
                    + 1.6666665459e-1f) * x + 5.0000001201e-1f) * (x * x) + x) + 1.0f;
  const float r = y * bits_f((int32_t(fx) + 127) << 23);
  return a > 88.72283935546875f ? INFINITY : (a < -87.33654475f ? 0.0f : r);
}
BL_INL double v_exp(double x) { return std::exp(x); }
// expm1: its Taylor polynomial for |x| < 0.5 (relative error < 1e-8), exp(x) - 1 beyond
BL_INL float v_expm1(float x) {
  const float p = x * (1.0f + x * (0.5f + x * (1.0f / 6 + x * (1.0f / 24 + x * (1.0f / 120 + x * (1.0f / 720
                  + x * (1.0f / 5040 + x * (1.0f / 40320))))))));
  return std::fabs(x) < 0.5f ? p : v_exp(x) - 1.0f;
}
BL_INL double v_expm1(double x) { return std::expm1(x); }
// Cephes logf: log |x| for normal x; finite (about -88) for 0 and subnormals
BL_INL float v_log(float x) {
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
BL_INL double v_log(double x) { return std::log(x); }
// x^e for x > 0; finite for x = 0 and -1 < e (callers mask that case out by a product)
BL_INL float v_powp(float x, float e) { return v_exp(e * v_log(x)); }
BL_INL double v_powp(double x, double e) { return std::pow(x > 0.0 ? x : 1.0, e); }

// ---- _geometry.safe_pow for bases >= 0, and its derivative ----
// VAR (kinds.VARIANT_*, a template parameter): 0 exponent 1 (identity), 1 exponent 0.5 (sqrt, as torch's
// pow), 2 any other exponent e > 0 (0 and gradient 0 where the base is 0; fp32 via exp(e log x), fp64
// via libm's pow: within a few ulp of torch's x*x, x*x*x, pow).
template <int VAR, typename T> BL_INL T spow(T x, T e) {
  if constexpr (VAR == 0) {
    return x;
  } else {
    T r;
    if constexpr (VAR == 1) r = std::sqrt(x > T(0) ? x : T(1)); else r = v_powp(x, e);
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
    if constexpr (VAR == 1) r = T(1) / std::sqrt(x > T(0) ? x : T(1)); else r = v_powp(x, e - T(1));
    return (e * r) * (x > T(0) ? T(1) : T(0));
  }
}

}  // namespace bl

#endif  // BOXLOSS_VECMATH_H
