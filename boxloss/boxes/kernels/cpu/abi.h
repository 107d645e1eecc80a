// The C ABI of the fused CPU kernels (libboxloss_kernels), and the codes it takes.
//
// The codes are those of boxloss/boxes/kernels/kinds.py; the Python side declares the same prototypes
// once, in cpu.py's ABI table, and tests/boxes/test_kernels_cpu.py checks that table and kinds.py
// against this file. Change the ABI here, there and in BL_ABI_VERSION together.
#ifndef BOXLOSS_ABI_H
#define BOXLOSS_ABI_H

#include <stdint.h>

#define BL_ABI_VERSION 2

// box-loss kinds (kinds.KINDS)
enum {
  BL_IOU = 0, BL_GIOU = 1, BL_DIOU = 2, BL_CIOU = 3, BL_IOU_SQUARE = 4, BL_IOU_LOG = 5,
  BL_EIOU = 6, BL_FOCAL_EIOU = 7, BL_SIOU = 8,
  BL_ALPHA_IOU = 9, BL_ALPHA_GIOU = 10, BL_ALPHA_DIOU = 11, BL_ALPHA_CIOU = 12,
  BL_WIOU_V1 = 13, BL_WIOU_V3 = 14, BL_MPDIOU = 15,
  BL_INNER_IOU = 16, BL_INNER_GIOU = 17, BL_INNER_DIOU = 18, BL_INNER_CIOU = 19, BL_INNER_EIOU = 20,
  BL_INNER_SIOU = 21,
  BL_SHAPE_IOU = 22,
  BL_NUM_KINDS = 23
};
// box formats (kinds.FMTS)
enum { BL_XYXY = 0, BL_XYWH = 1, BL_CXCYWH = 2 };
// flag bits (CIoU only)
enum { BL_ALPHA_GATED = 1, BL_PAPER_GRAD = 2 };
// how an exponent p0 is applied (kinds.VARIANT_*); exponent kinds take 0-2, Shape-IoU also 3, others 0
enum { BL_VARIANT_ONE = 0, BL_VARIANT_SQRT = 1, BL_VARIANT_POW = 2, BL_VARIANT_SCALE0 = 3 };
// what the forward writes to out (cpu.REDUCTIONS)
enum { BL_REDUCE_NONE = 0, BL_REDUCE_SUM = 1, BL_REDUCE_MEAN = 2 };
// return codes
enum {
  BL_OK = 0, BL_BAD_DTYPE = 1, BL_BAD_KIND = 2, BL_BAD_FMT = 3, BL_BAD_VARIANT = 4, BL_BAD_FLAGS = 5,
  BL_BAD_STRIDE = 6, BL_BAD_POINTER = 7, BL_BAD_SIZE = 8, BL_NO_MEMORY = 9, BL_BAD_REDUCE = 10
};

#ifdef __cplusplus
extern "C" {
#endif

// BL_ABI_VERSION; the loader refuses a library that returns anything else.
int bl_abi_version(void);

// IoU-family loss of n box pairs p, t ([n, 4] contiguous, in format fmt; dtype 0 float32, 1 float64, and
// every pointer of that dtype). extra: n values (extra_stride 1) or one (extra_stride 0), read only by the
// kinds that use it (Wise-IoU v3, MPDIoU; may be NULL for the others).
// The forward writes, where out != NULL, the loss of each pair, out[i] (reduce 0), or their sum (reduce 1) or
// mean (reduce 2; 0 for n = 0) in out[0], summed per chunk of boxes and the chunks in order in double (the
// same result for any thread count). The backward writes gp = gout * dloss/dp and gt = gout * dloss/dt where
// gp, gt != NULL (gout: n values with gstride 1, or one broadcast value with gstride 0). Given both out and
// a gradient, the box losses compute both in one pass over the boxes.
// Returns BL_OK, or one of the BL_BAD_* codes (nothing written) for a bad code or argument, or
// BL_NO_MEMORY (scratch: 4 n values for the target's gradient alone, n / 1024 for a sum or mean).
int bl_box_loss(int dtype, int kind, int fmt, int variant, int flags, double eps, double p0, double p1, double p2,
                int64_t n, const void* p, const void* t, const void* extra, int64_t extra_stride,
                const void* gout, int64_t gstride, void* out, int reduce, void* gp, void* gt, int nthreads);

// Smooth L1, element-wise over n values (beta = 0: L1); out, reduce, gp, gt as for bl_box_loss (both in one pass).
int bl_smooth_l1(int dtype, int64_t n, const void* p, const void* t, double beta, const void* gout, int64_t gstride,
                 void* out, int reduce, void* gp, void* gt, int nthreads);

#ifdef __cplusplus
}
#endif

#endif  // BOXLOSS_ABI_H
