// im2col.cu -- patch matrices (the book's section 9.2 view of convolution as a matrix product).
//
// Over `planes` = N*C independent (H, W) planes, with cols laid out (planes, KH*KW, OH*OW),
// i.e. PyTorch's unfold layout (N, C*KH*KW, OH*OW):
//   im2col  cols[plane, ky*KW + kx, oy*OW + ox] = x[plane, oy*sh + ky*dh - ph, ox*sw + kx*dw - pw]
//           (zero in the padding)
//   col2im  its adjoint, written as a gather: x[plane, iy, ix] = sum of the cols entries that
//           read (iy, ix), so no two threads write one cell (no atomics).
//
// Kernel versions:
//   v1  one thread per output element (a cols entry for im2col, an image cell for col2im);
//       consecutive threads write consecutive addresses.
// Dispatch (version 0): v1.
//
// Then: the kernels, the launchers, one dispatch.
#include "common.cuh"
#include "window.cuh"

namespace convlab {
namespace {

// ============================================================================ v1

template <typename T>
__global__ void im2col_v1(Window2dShape s, const T* __restrict__ x, T* __restrict__ cols) {
  const int taps = s.kh * s.kw, l = s.oh * s.ow;
  CONVLAB_FOR(i, (long long)s.planes * taps * l) {
    const int j = i % l, t = (i / l) % taps, plane = i / (l * taps);
    const Axis ay = y_axis(s), ax = x_axis(s);
    const int iy = ay.cell(j / s.ow, t / s.kw), ix = ax.cell(j % s.ow, t % s.kw);
    cols[i] = (ay.inside(iy) && ax.inside(ix)) ? x[(plane * s.h + iy) * s.w + ix] : T(0);
  }
}

template <typename T>
__global__ void col2im_v1(Window2dShape s, const T* __restrict__ cols, T* __restrict__ x) {
  const int taps = s.kh * s.kw, l = s.oh * s.ow;
  CONVLAB_FOR(i, (long long)s.planes * s.h * s.w) {
    const int ix = i % s.w, iy = (i / s.w) % s.h, plane = i / (s.w * s.h);
    const T* cp = cols + plane * taps * l;
    const Axis ay = y_axis(s), ax = x_axis(s);
    T acc = 0;
    for (int ky = 0; ky < s.kh; ++ky) {
      const int oy = ay.output(iy, ky);
      if (oy < 0) continue;
      for (int kx = 0; kx < s.kw; ++kx) {
        const int ox = ax.output(ix, kx);
        if (ox >= 0) acc += cp[(ky * s.kw + kx) * l + oy * s.ow + ox];
      }
    }
    x[i] = acc;
  }
}

// ============================================================================ launchers

void validate(const Window2dShape& s) {
  for (int v : {s.planes, s.h, s.w, s.kh, s.kw, s.oh, s.ow, s.sh, s.sw, s.dh, s.dw})
    require(v >= 1, "im2col: sizes, strides and dilations must be >= 1");
  require(s.ph >= 0 && s.pw >= 0, "im2col: padding must be >= 0");
  require_int32((long long)s.planes * s.h * s.w, "x");
  require_int32((long long)s.planes * s.kh * s.kw * s.oh * s.ow, "cols");
  require_int32((long long)(s.oh + s.ph) * s.sh + (long long)s.kh * s.dh + s.h, "the padded height");
  require_int32((long long)(s.ow + s.pw) * s.sw + (long long)s.kw * s.dw + s.w, "the padded width");
}

}  // namespace

// ============================================================================ dispatch

int im2col_versions() { return 1; }

void im2col(int version, const std::string& dtype, const Launch& at, std::uintptr_t cols, std::uintptr_t x,
            const Window2dShape& s) {
  validate(s);
  version = pick_version(version, im2col_versions(), 1, "im2col");
  cudaStream_t st = begin(at);
  dispatch_dtype(dtype, [&](auto z) {
    using T = decltype(z);
    im2col_v1<T><<<grid_for((long long)s.planes * s.kh * s.kw * s.oh * s.ow, 256), 256, 0, st>>>(
        s, reinterpret_cast<const T*>(x), reinterpret_cast<T*>(cols));
    check_launch("im2col_v1");
  });
}

void col2im(int version, const std::string& dtype, const Launch& at, std::uintptr_t x, std::uintptr_t cols,
            const Window2dShape& s) {
  validate(s);
  version = pick_version(version, im2col_versions(), 1, "col2im");
  cudaStream_t st = begin(at);
  dispatch_dtype(dtype, [&](auto z) {
    using T = decltype(z);
    col2im_v1<T><<<grid_for((long long)s.planes * s.h * s.w, 256), 256, 0, st>>>(
        s, reinterpret_cast<const T*>(cols), reinterpret_cast<T*>(x));
    check_launch("col2im_v1");
  });
}

}  // namespace convlab
