// pool2d.cu -- 2-D pooling (the book's section 9.3) over `planes` = N*C independent (H, W)
// planes, forward and backward, for max, average and L^p pooling.
//
// Window (oy, ox) covers the cells (oy*sh - ph + ky*dh, ox*sw - pw + kx*dw), ky < KH, kx < KW
// (window.cuh maps windows to cells and back).
// Cells outside the input are padding: max ignores them, avg and lp count them as zeros.
//   max  y = the window's maximum (the first in row-major window order; a NaN wins), with
//        index = iy*W + ix of that cell (-1 for a window without input cells)
//   avg  y = sum / divisor, the divisor being `divisor` when nonzero, else the number of window
//        cells inside [-ph, H + ph_hi) x [-pw, W + pw_hi) (count_include_pad) or inside the input
//   lp   y = (sum |x|^p)^(1/p)
// The backward pass is a gather: input cell i sums over the windows o that cover it, so no
// two threads write one cell and nothing depends on scheduling:
//   max  grad_x[i] = sum_{o : index[o] = i} grad_y[o]
//   avg  grad_x[i] = sum_o grad_y[o] / divisor[o]
//   lp   grad_x[i] = sign(x[i]) |x[i]|^(p-1) sum_{o : y[o] != 0} grad_y[o] / y[o]^(p-1)
//
// Kernel versions, one idea each:
//   v1  Direct port of the reference: the forward pass runs one thread per output, looping
//       over its window; the backward pass one thread per input cell, testing every tap
//       (ky, kx) for a window that reaches the cell.
//   v2  Fewer instructions per byte. Forward: a thread computes 4 outputs down a column
//       (index math paid once, 4 windows in flight, warps still read consecutive columns).
//       Backward: the covering windows come from closed-form row and column ranges
//       (Axis::covering), with no per-tap division.
// Dispatch (version 0): v2.
//
// Then: the per-window math shared by both versions, the kernels, the launchers, one dispatch.
#include <cmath>

#include "common.cuh"
#include "window.cuh"

namespace convlab {
namespace {

enum Mode { MAX = 0, AVG = 1, LP = 2 };

struct Params {
  int divisor;       // avg: override when nonzero
  int include_pad;   // avg: count_include_pad
  double p;          // lp
};

// Taps t < k of a window starting at `start` (spacing d) whose cell lies in [lo, hi).
__device__ inline int taps_inside(int start, int k, int d, int lo, int hi) {
  const int first = max(0, ceil_div_signed(lo - start, d));
  const int last = min(k - 1, floor_div(hi - 1 - start, d));
  return max(0, last - first + 1);
}

__device__ inline int avg_divisor(const Window2dShape& s, const Params& a, int oy, int ox) {
  if (a.divisor != 0) return a.divisor;
  const int y0 = oy * s.sh - s.ph, x0 = ox * s.sw - s.pw;
  if (a.include_pad)
    return taps_inside(y0, s.kh, s.dh, -s.ph, s.h + s.ph_hi) * taps_inside(x0, s.kw, s.dw, -s.pw, s.w + s.pw_hi);
  return taps_inside(y0, s.kh, s.dh, 0, s.h) * taps_inside(x0, s.kw, s.dw, 0, s.w);
}

template <typename T>
__device__ inline T abs_pow(T v, T p) {
  return p == T(2) ? v * v : pow(fabs(v), p);
}

// Forward value of window (oy, ox) of one plane; `arg` gets the max's flat index.
template <typename T, int MODE>
__device__ inline T pool_window(const Window2dShape& s, const Params& a, const T* __restrict__ x, int oy, int ox,
                                int& arg) {
  const Axis ay = y_axis(s), ax = x_axis(s);
  T acc = MODE == MAX ? -INFINITY : T(0);
  arg = -1;
  for (int ky = 0; ky < s.kh; ++ky) {
    const int iy = ay.cell(oy, ky);
    if (!ay.inside(iy)) continue;
    for (int kx = 0; kx < s.kw; ++kx) {
      const int ix = ax.cell(ox, kx);
      if (!ax.inside(ix)) continue;
      const T v = x[iy * s.w + ix];
      if (MODE == MAX) {
        if (arg < 0 || v > acc || (isnan(v) && !isnan(acc))) acc = v, arg = iy * s.w + ix;
      } else if (MODE == AVG) {
        acc += v;
      } else {
        acc += abs_pow(v, T(a.p));
      }
    }
  }
  if (MODE == AVG) return acc / T(avg_divisor(s, a, oy, ox));
  if (MODE == LP) return pow(acc, T(1) / T(a.p));
  return acc;
}

// What window o = (oy, ox) of one plane passes back to its input cell `cell` = iy*W + ix
// (lp: before the factor sign(x)|x|^(p-1), applied once per cell by lp_finish).
template <typename T, int MODE>
__device__ inline T window_grad(const Window2dShape& s, const Params& a, const T* __restrict__ gy,
                                const T* __restrict__ y, const long long* __restrict__ index, int oy, int ox, int cell) {
  const int o = oy * s.ow + ox;
  if (MODE == MAX) return index[o] == cell ? gy[o] : T(0);
  if (MODE == AVG) return gy[o] / T(avg_divisor(s, a, oy, ox));
  return y[o] != T(0) ? gy[o] / pow(y[o], T(a.p) - T(1)) : T(0);
}

template <typename T, int MODE>
__device__ inline T finish(const Params& a, T acc, T xv) {
  if (MODE != LP || xv == T(0)) return MODE == LP ? T(0) : acc;
  return (xv > T(0) ? acc : -acc) * pow(fabs(xv), T(a.p) - T(1));
}

// ============================================================================ v1: direct

template <typename T, int MODE>
__global__ void forward_v1(Window2dShape s, Params a, const T* __restrict__ x, T* __restrict__ y,
                           long long* __restrict__ index) {
  CONVLAB_FOR(i, (long long)s.planes * s.oh * s.ow) {
    const int ox = i % s.ow, oy = (i / s.ow) % s.oh, plane = i / (s.ow * s.oh);
    int arg;
    y[i] = pool_window<T, MODE>(s, a, x + plane * s.h * s.w, oy, ox, arg);
    if (MODE == MAX && index) index[i] = arg;
  }
}

template <typename T, int MODE>
__global__ void backward_v1(Window2dShape s, Params a, const T* __restrict__ gy, const T* __restrict__ x,
                            const T* __restrict__ y, const long long* __restrict__ index, T* __restrict__ gx) {
  CONVLAB_FOR(i, (long long)s.planes * s.h * s.w) {
    const int ix = i % s.w, iy = (i / s.w) % s.h, plane = i / (s.w * s.h);
    const int po = plane * s.oh * s.ow;
    const Axis ay = y_axis(s), ax = x_axis(s);
    T acc = 0;
    for (int ky = 0; ky < s.kh; ++ky) {
      const int oy = ay.output(iy, ky);
      if (oy < 0) continue;
      for (int kx = 0; kx < s.kw; ++kx) {
        const int ox = ax.output(ix, kx);
        if (ox < 0) continue;
        acc += window_grad<T, MODE>(s, a, gy + po, y + po, index + po, oy, ox, iy * s.w + ix);
      }
    }
    gx[i] = finish<T, MODE>(a, acc, MODE == LP ? x[i] : T(0));
  }
}

// ============================================================================ v2: fewer instructions

constexpr int STRIP = 4;  // outputs per thread, down a column

template <typename T, int MODE>
__global__ void forward_v2(Window2dShape s, Params a, const T* __restrict__ x, T* __restrict__ y,
                           long long* __restrict__ index) {
  const int strips = ceil_div(s.oh, STRIP);
  CONVLAB_FOR(i, (long long)s.planes * strips * s.ow) {
    const int ox = i % s.ow, strip = (i / s.ow) % strips, plane = i / (s.ow * strips);
    const T* xp = x + plane * s.h * s.w;
    const int o0 = (plane * s.oh + strip * STRIP) * s.ow + ox;
#pragma unroll
    for (int u = 0; u < STRIP; ++u) {
      const int oy = strip * STRIP + u;
      if (oy >= s.oh) break;
      int arg;
      y[o0 + u * s.ow] = pool_window<T, MODE>(s, a, xp, oy, ox, arg);
      if (MODE == MAX && index) index[o0 + u * s.ow] = arg;
    }
  }
}

template <typename T, int MODE>
__global__ void backward_v2(Window2dShape s, Params a, const T* __restrict__ gy, const T* __restrict__ x,
                            const T* __restrict__ y, const long long* __restrict__ index, T* __restrict__ gx) {
  CONVLAB_FOR(i, (long long)s.planes * s.h * s.w) {
    const int ix = i % s.w, iy = (i / s.w) % s.h, plane = i / (s.w * s.h);
    const int po = plane * s.oh * s.ow;
    const Axis ay = y_axis(s), ax = x_axis(s);
    int oy_lo, oy_hi, ox_lo, ox_hi;
    ay.covering(iy, s.kh, oy_lo, oy_hi);
    ax.covering(ix, s.kw, ox_lo, ox_hi);
    T acc = 0;
    for (int oy = oy_lo; oy <= oy_hi; ++oy) {
      if (!ay.reads(iy, oy)) continue;
      for (int ox = ox_lo; ox <= ox_hi; ++ox) {
        if (!ax.reads(ix, ox)) continue;
        acc += window_grad<T, MODE>(s, a, gy + po, y + po, index + po, oy, ox, iy * s.w + ix);
      }
    }
    gx[i] = finish<T, MODE>(a, acc, MODE == LP ? x[i] : T(0));
  }
}

// ============================================================================ launchers

int mode_of(const PoolOptions& o) {
  if (o.mode == "max") return MAX;
  if (o.mode == "avg") return AVG;
  if (o.mode == "lp") return LP;
  throw std::invalid_argument("pool2d: mode must be max, avg or lp, got " + o.mode);
}

Params params_of(const PoolOptions& o) {
  require(o.divisor > INT_MIN && o.divisor < INT_MAX, "pool2d: divisor must fit an int (0: none)");
  require(o.mode != "lp" || (std::isfinite(o.p) && o.p > 0), "pool2d: lp needs a finite p > 0");
  return {(int)o.divisor, o.count_include_pad ? 1 : 0, o.p};
}

void validate(const Window2dShape& s) {
  for (int v : {s.planes, s.h, s.w, s.kh, s.kw, s.oh, s.ow, s.sh, s.sw, s.dh, s.dw})
    require(v >= 1, "pool2d: sizes, strides and dilations must be >= 1");
  require(s.ph >= 0 && s.pw >= 0 && s.ph_hi >= 0 && s.pw_hi >= 0, "pool2d: padding must be >= 0");
  require_int32((long long)s.planes * s.h * s.w, "x");
  require_int32((long long)s.planes * s.oh * s.ow, "y");
  require_int32((long long)(s.oh + s.ph) * s.sh + (long long)s.kh * s.dh + s.h, "the padded height");
  require_int32((long long)(s.ow + s.pw) * s.sw + (long long)s.kw * s.dw + s.w, "the padded width");
}

template <class F>
void dispatch_mode(int mode, F&& f) {
  if (mode == MAX)
    f(std::integral_constant<int, MAX>{});
  else if (mode == AVG)
    f(std::integral_constant<int, AVG>{});
  else
    f(std::integral_constant<int, LP>{});
}

}  // namespace

// ============================================================================ dispatch

int pool2d_versions() { return 2; }

void pool2d_forward(const PoolOptions& opt, int version, const std::string& dtype, const Launch& at, std::uintptr_t y,
                    std::uintptr_t x, std::uintptr_t indices, const Window2dShape& s) {
  validate(s);
  version = pick_version(version, pool2d_versions(), 2, "pool2d");
  const Params a = params_of(opt);
  const int mode = mode_of(opt);
  cudaStream_t st = begin(at);
  long long* idx = reinterpret_cast<long long*>(indices);
  dispatch_dtype(dtype, [&](auto z) {
    using T = decltype(z);
    const T* xp = reinterpret_cast<const T*>(x);
    T* yp = reinterpret_cast<T*>(y);
    dispatch_mode(mode, [&](auto m) {
      if (version == 1)
        forward_v1<T, decltype(m)::value><<<grid_for((long long)s.planes * s.oh * s.ow, 256), 256, 0, st>>>(s, a, xp, yp, idx);
      else
        forward_v2<T, decltype(m)::value><<<grid_for((long long)s.planes * ceil_div(s.oh, STRIP) * s.ow, 256), 256, 0, st>>>(
            s, a, xp, yp, idx);
      check_launch("pool2d forward");
    });
  });
}

void pool2d_backward(const PoolOptions& opt, int version, const std::string& dtype, const Launch& at,
                     std::uintptr_t grad_x, std::uintptr_t grad_y, std::uintptr_t x, std::uintptr_t y,
                     std::uintptr_t indices, const Window2dShape& s) {
  validate(s);
  version = pick_version(version, pool2d_versions(), 2, "pool2d");
  const Params a = params_of(opt);
  const int mode = mode_of(opt);
  require(mode != MAX || indices, "pool2d: max backward needs the forward indices");
  require(mode != LP || (x && y), "pool2d: lp backward needs x and the forward output y");
  cudaStream_t st = begin(at);
  const long long* idx = reinterpret_cast<const long long*>(indices);
  dispatch_dtype(dtype, [&](auto z) {
    using T = decltype(z);
    const T *gyp = reinterpret_cast<const T*>(grad_y), *xp = reinterpret_cast<const T*>(x),
            *yp = reinterpret_cast<const T*>(y);
    T* gxp = reinterpret_cast<T*>(grad_x);
    const unsigned grid = grid_for((long long)s.planes * s.h * s.w, 256);
    dispatch_mode(mode, [&](auto m) {
      if (version == 1)
        backward_v1<T, decltype(m)::value><<<grid, 256, 0, st>>>(s, a, gyp, xp, yp, idx, gxp);
      else
        backward_v2<T, decltype(m)::value><<<grid, 256, 0, st>>>(s, a, gyp, xp, yp, idx, gxp);
      check_launch("pool2d backward");
    });
  });
}

}  // namespace convlab
