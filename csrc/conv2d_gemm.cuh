// The three conv2d ops as implicit GEMMs, for the GEMM kernels of conv2d.cu (v2 and up).
//
// Per group g each op is a matrix product C[M x N] = A[M x R] B[R x N] whose operands are
// gathered from the tensors on the fly (no im2col buffer):
//   forward      M = K_g  N = N*OH*OW     R = C_g*KH*KW   A = w rows      B = windows of x
//   grad_input   M = C_g  N = N*H*W       R = K_g*KH*KW   A = w^T         B = grad_y gathered back
//   grad_weight  M = K_g  N = C_g*KH*KW   R = N*OH*OW     A = grad_y rows B = windows of x, transposed
// Here: the operand loaders, which move a BK x BO slice of A or B (BK along R, BO along M or N)
// from the tensors to shared memory, and, per op, the GEMM sizes, its loaders and where C[m, n]
// is stored. A loader pays its index math once per thread and slice: a thread owns a fixed set
// of tile rows or columns (decomposed once, at tile start) and one reduction index per slice.
#pragma once

#include "common.cuh"
#include "window.cuh"

namespace convlab {
namespace {

constexpr int BK = 8;             // reduction slice staged in shared memory
constexpr int THREADS = 256;      // threads of a GEMM block
constexpr int PAD = 4;            // shared rows padded by 4 values: conflict-free stores, 16-byte aligned reads
constexpr int FAR = INT_MIN / 2;  // a coordinate that fails every bounds check (masked tile lanes)

struct Gemm {
  int M, N, R;
};

// Which element of a BK x BO slice each of the 256 threads loads. Outer-major: 32 consecutive
// threads walk the outer index (for tensors contiguous along it); reduction-major: 8 consecutive
// threads walk the reduction index. Either way a thread owns one reduction row kk of the slice
// and the outer indices o0 + 32*j, j < BO/32, so loads are coalesced along the tensor's
// contiguous axis.
struct OuterMajor {
  __device__ static int kk() { return threadIdx.x >> 5; }
  __device__ static int o0() { return threadIdx.x & 31; }
};
struct ReductionMajor {
  __device__ static int kk() { return threadIdx.x & (BK - 1); }
  __device__ static int o0() { return threadIdx.x / BK; }
};

// The registers one thread carries from global to shared memory for one slice.
template <typename T, int BO, class Map>
struct Slice {
  static constexpr int L = BO / 32;
  T reg[L];
  int kk = Map::kk(), o0 = Map::o0();
  __device__ void stash(T* tile) const {  // tile: [BK][BO + PAD]
#pragma unroll
    for (int j = 0; j < L; ++j) tile[kk * (BO + PAD) + o0 + 32 * j] = reg[j];
  }
  __device__ void clear() {
#pragma unroll
    for (int j = 0; j < L; ++j) reg[j] = T(0);
  }
};

// forward A[m, r] = w[g*K_g + m, r]: rows of the weight, contiguous along r = (c, ky, kx).
template <typename T, int BO>
struct WeightRows : Slice<T, BO, ReductionMajor> {
  const T* w;
  int off, stride, rows;  // offset of row o0, 32 rows further, rows left in the tile
  __device__ WeightRows(const Conv2dShape& s, const T* w_, int g, int m0, int M) : w(w_) {
    const int r_len = (s.c / s.groups) * s.kh * s.kw, first = m0 + this->o0;
    off = (g * (s.k / s.groups) + first) * r_len;
    stride = 32 * r_len;
    rows = M - first;
  }
  __device__ void fetch(int k0, int k_end) {
    const int r = k0 + this->kk;
#pragma unroll
    for (int j = 0; j < this->L; ++j) this->reg[j] = (r < k_end && 32 * j < rows) ? w[off + j * stride + r] : T(0);
  }
};

// grad_input A[c, r] = w[g*K_g + k, c, t] with r = (k, t), t = ky*KW + kx: the weight transposed.
template <typename T, int BO>
struct WeightCols : Slice<T, BO, ReductionMajor> {
  const T* w;
  int c_first, M, taps, cg, k_base;
  __device__ WeightCols(const Conv2dShape& s, const T* w_, int g, int m0, int M_) : w(w_), M(M_) {
    c_first = m0 + this->o0;
    taps = s.kh * s.kw;
    cg = s.c / s.groups;
    k_base = g * (s.k / s.groups);
  }
  __device__ void fetch(int k0, int k_end) {
    const int r = k0 + this->kk, k = r / taps, t = r - k * taps;
    const int off = (k_base + k) * cg * taps + t;
#pragma unroll
    for (int j = 0; j < this->L; ++j) {
      const int c = c_first + 32 * j;
      this->reg[j] = (r < k_end && c < M) ? w[off + c * taps] : T(0);
    }
  }
};

// forward B[r, p] = x[n, g*C_g + c, cell(oy, ky), cell(ox, kx)], r = (c, ky, kx), p = (n, oy, ox):
// the windows of x, read along p (coalesced along ox for unit stride). cell(o, t) = cell(o, 0) + t*d.
template <typename T, int BO>
struct ImageWindows : Slice<T, BO, OuterMajor> {
  const T* x;
  Conv2dShape s;
  int base[BO / 32], iy0[BO / 32], ix0[BO / 32];
  __device__ ImageWindows(const Conv2dShape& s_, const T* x_, int g, int n0, int N) : x(x_), s(s_) {
    const int ohw = s.oh * s.ow;
#pragma unroll
    for (int j = 0; j < this->L; ++j) {
      const int p = n0 + this->o0 + 32 * j, n = p / ohw, oy = (p - n * ohw) / s.ow, ox = p - n * ohw - oy * s.ow;
      const bool ok = p < N;
      base[j] = ok ? (n * s.c + g * (s.c / s.groups)) * s.h * s.w : 0;
      iy0[j] = ok ? y_axis(s).cell(oy, 0) : FAR;
      ix0[j] = x_axis(s).cell(ox, 0);
    }
  }
  __device__ void fetch(int k0, int k_end) {
    const int r = k0 + this->kk;
    if (r >= k_end) return this->clear();
    const int taps = s.kh * s.kw, c = r / taps, t = r - c * taps, ky = t / s.kw, kx = t - ky * s.kw;
    const int off = c * s.h * s.w, dy = ky * s.dh, dx = kx * s.dw;
#pragma unroll
    for (int j = 0; j < this->L; ++j) {
      const int iy = iy0[j] + dy, ix = ix0[j] + dx;
      this->reg[j] = (y_axis(s).inside(iy) && x_axis(s).inside(ix)) ? x[base[j] + off + iy * s.w + ix] : T(0);
    }
  }
};

// grad_input B[r, q] = grad_y[n, g*K_g + k, oy, ox] for the output (oy, ox) whose tap (ky, kx)
// reads input cell (iy, ix), zero where none does; r = (k, ky, kx), q = (n, iy, ix).
template <typename T, int BO>
struct GradOutWindows : Slice<T, BO, OuterMajor> {
  const T* gy;
  Conv2dShape s;
  int base[BO / 32], iy[BO / 32], ix[BO / 32];
  __device__ GradOutWindows(const Conv2dShape& s_, const T* gy_, int g, int n0, int N) : gy(gy_), s(s_) {
    const int hw = s.h * s.w;
#pragma unroll
    for (int j = 0; j < this->L; ++j) {
      const int q = n0 + this->o0 + 32 * j, n = q / hw, y = (q - n * hw) / s.w, x = q - n * hw - y * s.w;
      const bool ok = q < N;
      base[j] = ok ? (n * s.k + g * (s.k / s.groups)) * s.oh * s.ow : 0;
      iy[j] = ok ? y : FAR;
      ix[j] = x;
    }
  }
  __device__ void fetch(int k0, int k_end) {
    const int r = k0 + this->kk;
    if (r >= k_end) return this->clear();
    const int taps = s.kh * s.kw, k = r / taps, t = r - k * taps, ky = t / s.kw, kx = t - ky * s.kw;
    const int off = k * s.oh * s.ow;
#pragma unroll
    for (int j = 0; j < this->L; ++j) {
      const int oy = y_axis(s).output(iy[j], ky), ox = x_axis(s).output(ix[j], kx);
      this->reg[j] = (oy >= 0 && ox >= 0) ? gy[base[j] + off + oy * s.ow + ox] : T(0);
    }
  }
};

// grad_weight A[k, p] = grad_y[n, g*K_g + k, oy, ox], p = (n, oy, ox): contiguous along p per sample.
template <typename T, int BO>
struct GradOutRows : Slice<T, BO, ReductionMajor> {
  const T* gy;
  int k_first, M, ohw, k_total, k_base;
  __device__ GradOutRows(const Conv2dShape& s, const T* gy_, int g, int m0, int M_) : gy(gy_), M(M_) {
    k_first = m0 + this->o0;
    ohw = s.oh * s.ow;
    k_total = s.k;
    k_base = g * (s.k / s.groups);
  }
  __device__ void fetch(int k0, int k_end) {
    const int p = k0 + this->kk, n = p / ohw;
    const int off = (n * k_total + k_base + k_first) * ohw + (p - n * ohw);
#pragma unroll
    for (int j = 0; j < this->L; ++j)
      this->reg[j] = (p < k_end && k_first + 32 * j < M) ? gy[off + 32 * j * ohw] : T(0);
  }
};

// grad_weight B[p, r] = x[n, g*C_g + c, cell(oy, ky), cell(ox, kx)]: the forward windows
// transposed, read along p = (n, oy, ox) for fixed columns r = (c, ky, kx).
// cell(o, t) = o*s + cell(0, t).
template <typename T, int BO>
struct ImageWindowsT : Slice<T, BO, ReductionMajor> {
  const T* x;
  Conv2dShape s;
  int off[BO / 32], dy[BO / 32], dx[BO / 32];
  int g;
  __device__ ImageWindowsT(const Conv2dShape& s_, const T* x_, int g_, int n0, int N) : x(x_), s(s_), g(g_) {
    const int taps = s.kh * s.kw;
#pragma unroll
    for (int j = 0; j < this->L; ++j) {
      const int r = n0 + this->o0 + 32 * j, c = r / taps, t = r - c * taps, ky = t / s.kw, kx = t - ky * s.kw;
      off[j] = c * s.h * s.w;
      dy[j] = r < N ? y_axis(s).cell(0, ky) : FAR;
      dx[j] = x_axis(s).cell(0, kx);
    }
  }
  __device__ void fetch(int k0, int k_end) {
    const int p = k0 + this->kk;
    if (p >= k_end) return this->clear();
    const int ohw = s.oh * s.ow, n = p / ohw, oy = (p - n * ohw) / s.ow, ox = p - n * ohw - oy * s.ow;
    const int base = (n * s.c + g * (s.c / s.groups)) * s.h * s.w, iyb = oy * s.sh, ixb = ox * s.sw;
#pragma unroll
    for (int j = 0; j < this->L; ++j) {
      const int iy = iyb + dy[j], ix = ixb + dx[j];
      this->reg[j] = (y_axis(s).inside(iy) && x_axis(s).inside(ix)) ? x[base + off[j] + iy * s.w + ix] : T(0);
    }
  }
};

// The three ops: GEMM sizes, operand loaders, and where C[m, n] of group g is stored
// (out[row(g, m) + col(n)]).
struct Forward {
  template <typename T, int BO> using A = WeightRows<T, BO>;
  template <typename T, int BO> using B = ImageWindows<T, BO>;
  static constexpr bool a_is_in0 = false;  // in0 = x, in1 = w
  __host__ __device__ static Gemm gemm(const Conv2dShape& s) {
    return {s.k / s.groups, s.n * s.oh * s.ow, (s.c / s.groups) * s.kh * s.kw};
  }
  __device__ static int row(const Conv2dShape& s, int g, int m) { return (g * (s.k / s.groups) + m) * s.oh * s.ow; }
  __device__ static int col(const Conv2dShape& s, int p) {
    const int ohw = s.oh * s.ow, n = p / ohw;
    return n * s.k * ohw + (p - n * ohw);
  }
};

struct GradInput {
  template <typename T, int BO> using A = WeightCols<T, BO>;
  template <typename T, int BO> using B = GradOutWindows<T, BO>;
  static constexpr bool a_is_in0 = false;  // in0 = grad_y, in1 = w
  __host__ __device__ static Gemm gemm(const Conv2dShape& s) {
    return {s.c / s.groups, s.n * s.h * s.w, (s.k / s.groups) * s.kh * s.kw};
  }
  __device__ static int row(const Conv2dShape& s, int g, int c) { return (g * (s.c / s.groups) + c) * s.h * s.w; }
  __device__ static int col(const Conv2dShape& s, int q) {
    const int hw = s.h * s.w, n = q / hw;
    return n * s.c * hw + (q - n * hw);
  }
};

struct GradWeight {
  template <typename T, int BO> using A = GradOutRows<T, BO>;
  template <typename T, int BO> using B = ImageWindowsT<T, BO>;
  static constexpr bool a_is_in0 = true;  // in0 = grad_y, in1 = x
  __host__ __device__ static Gemm gemm(const Conv2dShape& s) {
    return {s.k / s.groups, (s.c / s.groups) * s.kh * s.kw, s.n * s.oh * s.ow};
  }
  __device__ static int row(const Conv2dShape& s, int g, int k) {
    return (g * (s.k / s.groups) + k) * (s.c / s.groups) * s.kh * s.kw;
  }
  __device__ static int col(const Conv2dShape&, int r) { return r; }
};

}  // namespace
}  // namespace convlab
