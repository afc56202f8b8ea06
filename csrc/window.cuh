// The sliding window along one spatial axis, as conv2d.cu, pool2d.cu and im2col.cu index it.
//
// Output o at tap t (t < taps) reads input cell  i = o*stride + t*dilation - pad  (the book's
// eq. 9.8 with stride, dilation and zero padding); cells outside [0, size) are padding. The
// backward passes and col2im run this map in reverse, as gathers: input cell i collects from
//   the output whose tap t reads it:  o = (i + pad - t*dilation) / stride, when that divides
//                                     exactly and 0 <= o < out (output());
//   every output whose window covers it:  o in [ceil((i + pad - (taps-1)*dilation) / stride),
//                                     floor((i + pad) / stride)] within [0, out) (covering()),
//                                     on a tap when dilation divides i + pad - o*stride (reads()).
#pragma once

#include "common.cuh"

namespace convlab {

struct Axis {
  int size, out, stride, pad, dilation;

  // The input cell that output o reads at tap t (may be padding).
  __host__ __device__ int cell(int o, int t) const { return o * stride + t * dilation - pad; }
  __host__ __device__ bool inside(int i) const { return (unsigned)i < (unsigned)size; }

  // The output whose tap t reads cell i, or -1 when none does.
  __device__ int output(int i, int t) const {
    const int d = i + pad - t * dilation;  // = o*stride when output o reads i at tap t
    if (d < 0) return -1;
    const int o = stride == 1 ? d : d / stride;
    return (o * stride == d && o < out) ? o : -1;
  }

  // The outputs [lo, hi] whose windows of `taps` taps span cell i (empty when lo > hi).
  __device__ void covering(int i, int taps, int& lo, int& hi) const {
    lo = max(0, ceil_div_signed(i + pad - (taps - 1) * dilation, stride));
    hi = min(out - 1, floor_div(i + pad, stride));
  }
  // Whether output o of covering() reads cell i at one of its taps (not between two).
  __device__ bool reads(int i, int o) const { return dilation == 1 || (i + pad - o * stride) % dilation == 0; }
};

// The rows (y) and columns (x) of a conv2d or window shape (both name their fields h, oh, sh, ph, dh, ...).
template <class Shape>
__host__ __device__ inline Axis y_axis(const Shape& s) {
  return {s.h, s.oh, s.sh, s.ph, s.dh};
}
template <class Shape>
__host__ __device__ inline Axis x_axis(const Shape& s) {
  return {s.w, s.ow, s.sw, s.pw, s.dw};
}

}  // namespace convlab
