// One head per loss KIND (abi.h, kinds.py): the loss of one box pair composed from the geometry
// (geometry.h) and the terms (terms.h), and, with BWD, its backward: g * d loss / d (geometry
// quantities) added to `d` (corner gradients a head produces itself, MPDIoU's and Inner-IoU's, go to
// `gc`). The loops of kernels.cpp run `box` over the pairs; `box` finishes the backward with the
// shared `encl_back` / `iou_back`.
//
// Each head is a specialisation of Head<KIND> with its traits: ENCL (it uses the enclosing box and
// centre offset), EXTRA (it reads the per-box extra input), NVAR (how many exponent VARIANTs it is
// instantiated for: 1, 3, or 4 for Shape-IoU's scale 0) and FLAG_MASK (the flag bits it takes).
#ifndef BOXLOSS_BOX_LOSSES_H
#define BOXLOSS_BOX_LOSSES_H

#include "abi.h"
#include "terms.h"

namespace bl {

template <typename T> struct Par { T eps, p0, p1, p2; };

template <bool ENCL_, bool EXTRA_ = false, int NVAR_ = 1, int FLAG_MASK_ = 0> struct Traits {
  static constexpr bool ENCL = ENCL_, EXTRA = EXTRA_;
  static constexpr int NVAR = NVAR_, FLAG_MASK = FLAG_MASK_;
};
template <int KIND> struct Head;

// the signature every head has
#define BL_HEAD_RUN                                                                                 \
  template <int VAR, int FLAGS, bool BWD, typename T>                                               \
  static BL_INL T run([[maybe_unused]] const Geo<T>& G, [[maybe_unused]] const Par<T>& P,          \
                      [[maybe_unused]] T extra, [[maybe_unused]] T g, [[maybe_unused]] GG<T>& d,    \
                      [[maybe_unused]] T* gc)

template <> struct Head<BL_IOU> : Traits<false> {  // 1 - IoU
  BL_HEAD_RUN {
    if constexpr (BWD) d.iou -= g;
    return T(1) - G.iou;
  }
};
template <> struct Head<BL_GIOU> : Traits<true> {  // 1 - GIoU
  BL_HEAD_RUN {
    if constexpr (BWD) { d.iou -= g; giou_q_back(G, P.eps, g, d); }
    return T(1) - (G.iou - giou_q(G, P.eps));
  }
};
template <> struct Head<BL_DIOU> : Traits<true> {  // 1 - DIoU
  BL_HEAD_RUN {
    if constexpr (BWD) { d.iou -= g; dist_q_back(G, P.eps, g, d); }
    return T(1) - (G.iou - dist_q(G, P.eps));
  }
};
// 1 - CIoU = 1 - ((IoU - rho^2/c^2) - alpha v), alpha a constant in backprop
template <> struct Head<BL_CIOU> : Traits<true, false, 1, BL_ALPHA_GATED | BL_PAPER_GRAD> {
  BL_HEAD_RUN {
    T dv;
    const T v = aspect_v(G, P.eps, dv);
    const T alpha = ciou_alpha<(FLAGS & BL_ALPHA_GATED) != 0>(G, v, P.eps);
    if constexpr (BWD) {
      d.iou -= g;
      dist_q_back(G, P.eps, g, d);
      aspect_v_back<(FLAGS & BL_PAPER_GRAD) != 0>(G, P.eps, dv, g * alpha, d);
    }
    return T(1) - ((G.iou - dist_q(G, P.eps)) - alpha * v);
  }
};
template <> struct Head<BL_IOU_SQUARE> : Traits<false> {  // 1 - IoU^2
  BL_HEAD_RUN {
    if constexpr (BWD) d.iou -= g * G.iou + g * G.iou;  // torch's mul backward, both factors
    return T(1) - G.iou * G.iou;
  }
};
template <> struct Head<BL_IOU_LOG> : Traits<false> {  // -log(max(IoU, eps))
  BL_HEAD_RUN {
    const T x = clampmin(G.iou, P.eps);
    if constexpr (BWD) d.iou -= G.iou > P.eps ? g / x : T(0);
    return -v_log(x);
  }
};
template <> struct Head<BL_EIOU> : Traits<true> {
  BL_HEAD_RUN {
    if constexpr (BWD) eiou_back(G, P.eps, g, d);
    return eiou_val(G, P.eps);
  }
};
template <> struct Head<BL_FOCAL_EIOU> : Traits<true, false, 3> {  // IoU^gamma L_EIoU, IoU^gamma detached
  BL_HEAD_RUN {
    const T f = spow<VAR>(G.iou, P.p0);
    if constexpr (BWD) eiou_back(G, P.eps, g * f, d);
    return f * eiou_val(G, P.eps);
  }
};
template <> struct Head<BL_SIOU> : Traits<true, false, 3> {  // p0 = theta
  BL_HEAD_RUN {
    if constexpr (BWD) siou_back<VAR>(G, P.eps, P.p0, g, d);
    return siou_val<VAR>(G, P.eps, P.p0);
  }
};

// Alpha-IoU (alpha_iou.alpha_iou_per_box): 1 - IoU^alpha + each penalty of the base to the power alpha
template <int BASE> struct AlphaHead : Traits<BASE != BL_IOU, false, 3> {
  BL_HEAD_RUN {
    const T eps = P.eps, a = P.p0;
    T loss = T(1) - spow<VAR>(G.iou, a);
    if constexpr (BWD) d.iou -= g * spow_d<VAR>(G.iou, a);
    if constexpr (BASE == BL_GIOU) {  // + max(IoU - GIoU, 0)^alpha, IoU - GIoU computed as the reference does
      const T value = G.iou - giou_q(G, eps);
      const T y = G.iou - value;
      // spow and spow_d are 0 for bases <= 0 already, so the clamp (and clamp_min's backward) are needed
      // only for the identity; a select around spow's log is what GCC cannot vectorise (vecmath.h)
      constexpr bool ONE = VAR == BL_VARIANT_ONE;
      loss = loss + spow<VAR>(ONE ? clamp0(y) : y, a);
      // d(iou - (iou - q)) / d iou = 1 - 1: nothing reaches the IoU (autograd's two parts cancel exactly)
      if constexpr (BWD) giou_q_back(G, eps, ONE ? (y > T(0) ? g : T(0)) : g * spow_d<VAR>(y, a), d);
    } else if constexpr (BASE == BL_DIOU || BASE == BL_CIOU) {  // + (rho^2/c^2)^alpha [+ (beta v)^alpha]
      const T q = dist_q(G, eps);
      loss = loss + spow<VAR>(q, a);
      if constexpr (BWD) dist_q_back(G, eps, g * spow_d<VAR>(q, a), d);
      if constexpr (BASE == BL_CIOU) {
        T dv;
        const T v = aspect_v(G, eps, dv);
        const T beta = ciou_alpha(G, v, eps);  // a constant in backprop
        const T bv = beta * v;
        loss = loss + spow<VAR>(bv, a);
        if constexpr (BWD) aspect_v_back(G, eps, dv, g * spow_d<VAR>(bv, a) * beta, d);
      }
    }
    return loss;
  }
};
template <> struct Head<BL_ALPHA_IOU> : AlphaHead<BL_IOU> {};
template <> struct Head<BL_ALPHA_GIOU> : AlphaHead<BL_GIOU> {};
template <> struct Head<BL_ALPHA_DIOU> : AlphaHead<BL_DIOU> {};
template <> struct Head<BL_ALPHA_CIOU> : AlphaHead<BL_CIOU> {};

// Wise-IoU v1: R (1 - IoU); v3: r R (1 - IoU), r = beta / (delta exp((beta - delta) log alpha)),
// beta = (1 - IoU)* / extra (extra: the running mean of 1 - IoU; p1 = log alpha, p2 = delta; r detached)
template <bool V3> struct WiseHead : Traits<true, V3> {
  BL_HEAD_RUN {
    const T l = T(1) - G.iou;
    T xr;
    const T R = wise_r(G, P.eps, xr);
    T f = T(1), loss;
    if constexpr (V3) {
      const T beta = l / extra, delta = P.p2;
      f = beta / (delta * v_exp((beta - delta) * P.p1));
      loss = f * R * l;
    } else {
      loss = R * l;
    }
    if constexpr (BWD) {
      d.iou -= g * (f * R);
      wise_r_back(G, P.eps, xr, R, V3 ? (g * l) * f : g * l, d);
    }
    return loss;
  }
};
template <> struct Head<BL_WIOU_V1> : WiseHead<false> {};
template <> struct Head<BL_WIOU_V3> : WiseHead<true> {};

template <> struct Head<BL_MPDIOU> : Traits<false, true> {  // 1 - IoU + corner distances / diag^2 (= extra)
  BL_HEAD_RUN {
    if constexpr (BWD) { d.iou -= g; corner_q_back(G, extra, g, gc); }
    return T(1) - G.iou + corner_q(G, extra);
  }
};

// Inner-IoU: L_base + IoU - IoU(inner boxes), inner boxes scaled by ratio about their centres (p0 = ratio / 2)
template <int BASE> struct InnerHead : Traits<Head<BASE>::ENCL> {
  BL_HEAD_RUN {
    const T eps = P.eps, hr = P.p0;
    // the base loss: SIoU with its theta = 4, CIoU with its plain alpha and exact gradient
    const Par<T> base_par{eps, T(4), P.p1, P.p2};
    constexpr int BASE_VAR = BASE == BL_SIOU ? BL_VARIANT_POW : BL_VARIANT_ONE;
    const T base = Head<BASE>::template run<BASE_VAR, 0, BWD>(G, base_par, extra, g, d, gc);
    Geo<T> I;
    inner_boxes(G, hr, I);
    geo_iou(I, eps);
    if constexpr (BWD) {
      d.iou += g;
      GG<T> di;
      di.iou = -g;
      T gi[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      iou_back(I, di, eps, gi);
      inner_boxes_back(hr, gi, d, gc);
    }
    return base + G.iou - I.iou;
  }
};
template <> struct Head<BL_INNER_IOU> : InnerHead<BL_IOU> {};
template <> struct Head<BL_INNER_GIOU> : InnerHead<BL_GIOU> {};
template <> struct Head<BL_INNER_DIOU> : InnerHead<BL_DIOU> {};
template <> struct Head<BL_INNER_CIOU> : InnerHead<BL_CIOU> {};
template <> struct Head<BL_INNER_EIOU> : InnerHead<BL_EIOU> {};
template <> struct Head<BL_INNER_SIOU> : InnerHead<BL_SIOU> {};

// Shape-IoU: p0 = scale (VAR of the scale; BL_VARIANT_SCALE0: scale 0, no power)
template <> struct Head<BL_SHAPE_IOU> : Traits<true, false, 4> {
  BL_HEAD_RUN {
    constexpr bool S0 = VAR == BL_VARIANT_SCALE0;
    constexpr int SV = S0 ? BL_VARIANT_ONE : VAR;
    ShapeCost<T> s;
    const T loss = shape_iou_val<S0, SV>(G, P.eps, P.p0, s);
    if constexpr (BWD) shape_iou_back<S0, SV>(G, P.eps, P.p0, s, g, d);
    return loss;
  }
};
#undef BL_HEAD_RUN

// One box pair of loss KIND: the loss; with GP / GT, writes g * d loss / d pred (target) to gp (gt).
// F: the box format, Fmt<T> (runtime coefficients) or FixedFmt<FMT> (geometry.h).
template <typename T, int KIND, int VAR, int FLAGS, bool GP, bool GT, typename F>
BL_INL T box(const T* pb, const T* tb, const Par<T>& P, const F& fm, T extra, T g, T* gp, T* gt) {
  using H = Head<KIND>;
  constexpr bool BWD = GP || GT;
  Geo<T> G;
  load_box(pb, fm, G.c);
  load_box(tb, fm, G.c + 4);
  geo_iou(G, P.eps);
  if constexpr (H::ENCL) geo_encl(G);
  GG<T> d;
  T gc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  const T loss = H::template run<VAR, FLAGS, BWD>(G, P, extra, g, d, gc);
  if constexpr (BWD) {
    if constexpr (H::ENCL) encl_back(G, d, gc);
    iou_back(G, d, P.eps, gc);
    if constexpr (GP) store_box(gc, fm, gp);
    if constexpr (GT) store_box(gc + 4, fm, gt);
  }
  return loss;
}

}  // namespace bl

#endif  // BOXLOSS_BOX_LOSSES_H
