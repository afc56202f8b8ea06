// conv2d.cu -- 2-D convolution: forward, backward-data (also conv_transpose2d), backward-filter.
//
// Layout (contiguous, float or double): x (N, C, H, W), w (K, C/G, KH, KW), y (N, K, OH, OW).
// With C_g = C/G input and K_g = K/G output channels per group g, the reference (the book's
// eq. 9.7/9.8 and 9.11-9.13, x zero outside the input) is, for k in group g:
//
//   y[n, k, oy, ox]              = sum_{c, ky, kx} x[n, g*C_g + c, oy*sh + ky*dh - ph, ox*sw + kx*dw - pw] w[k, c, ky, kx]
//   grad_x[n, g*C_g + c, iy, ix] = sum_{k in g, ky, kx : iy = oy*sh + ky*dh - ph, ix = ox*sw + kx*dw - pw}
//                                      grad_y[n, k, oy, ox] w[k, c, ky, kx]
//   grad_w[k, c, ky, kx]         = sum_{n, oy, ox} grad_y[n, k, oy, ox] x[n, g*C_g + c, oy*sh + ky*dh - ph, ox*sw + kx*dw - pw]
//
// Kernel versions, one idea each:
//   v1  Direct port of the reference: one thread per output element, looping over its sum;
//       grad_input is a gather over the (k, ky, kx) whose window reaches the input cell.
//   v2  Implicit GEMM with register blocking. Per group, each op is a matrix product
//       C[M x N] = A[M x R] B[R x N] whose operands are read straight from the tensors
//       (no im2col buffer):
//         forward      M = K_g  N = N*OH*OW     R = C_g*KH*KW   A = w     B = windows of x
//         grad_input   M = C_g  N = N*H*W       R = K_g*KH*KW   A = w^T   B = grad_y gathered
//         grad_weight  M = K_g  N = C_g*KH*KW   R = N*OH*OW     A = grad_y B = windows of x
//       A block of 256 threads computes a BM x BN tile of C (128x128 or 64x128 in float, 64x64
//       in double), each thread an 8x8 (4x8, 4x4) block held in registers. Slices of 8 along R
//       pass through double-buffered shared memory: the next slice is read from global memory
//       while the current one is multiplied. When the tiles alone cannot fill the GPU, R is
//       split over blocks (split-K) into a workspace whose parts a second kernel adds in a
//       fixed order, so results never depend on scheduling. No atomics, no TF32 (plain FMA).
//       Row tiles beyond the grid's y limit (65535) are looped over by the blocks of each row.
//
// Dispatch (version 0): v2, except v1 for forward and grad_input when M < 16 (e.g. single-
// channel filters), where a v2 tile would be mostly idle rows and one thread per output wins.
//
// Then: the v1 kernels, the v2 kernel with its operand loaders, the launchers, one dispatch.
#include <algorithm>
#include <type_traits>

#include "common.cuh"

namespace convlab {
namespace {

// ============================================================================ v1: direct

template <typename T>
__global__ void forward_v1(Conv2dShape s, const T* __restrict__ x, const T* __restrict__ w, T* __restrict__ y) {
  const int cg = s.c / s.groups, kg = s.k / s.groups;
  CONVLAB_FOR(i, (long long)s.n * s.k * s.oh * s.ow) {
    const int ox = i % s.ow, oy = (i / s.ow) % s.oh, k = (i / (s.ow * s.oh)) % s.k, n = i / (s.ow * s.oh * s.k);
    const T* xn = x + (n * s.c + (k / kg) * cg) * s.h * s.w;
    const T* wk = w + k * cg * s.kh * s.kw;
    T acc = 0;
    for (int c = 0; c < cg; ++c)
      for (int ky = 0; ky < s.kh; ++ky) {
        const int iy = oy * s.sh + ky * s.dh - s.ph;
        if (iy < 0 || iy >= s.h) continue;
        for (int kx = 0; kx < s.kw; ++kx) {
          const int ix = ox * s.sw + kx * s.dw - s.pw;
          if (ix < 0 || ix >= s.w) continue;
          acc += xn[(c * s.h + iy) * s.w + ix] * wk[(c * s.kh + ky) * s.kw + kx];
        }
      }
    y[i] = acc;
  }
}

template <typename T>
__global__ void grad_input_v1(Conv2dShape s, const T* __restrict__ gy, const T* __restrict__ w, T* __restrict__ gx) {
  const int cg = s.c / s.groups, kg = s.k / s.groups;
  CONVLAB_FOR(i, (long long)s.n * s.c * s.h * s.w) {
    const int ix = i % s.w, iy = (i / s.w) % s.h, ci = (i / (s.w * s.h)) % s.c, n = i / (s.w * s.h * s.c);
    const int g = ci / cg, c = ci % cg;
    T acc = 0;
    for (int k = g * kg; k < (g + 1) * kg; ++k)
      for (int ky = 0; ky < s.kh; ++ky) {
        const int ty = iy + s.ph - ky * s.dh;  // = oy*sh when tap ky of output row oy reads row iy
        if (ty < 0 || ty % s.sh || ty / s.sh >= s.oh) continue;
        for (int kx = 0; kx < s.kw; ++kx) {
          const int tx = ix + s.pw - kx * s.dw;
          if (tx < 0 || tx % s.sw || tx / s.sw >= s.ow) continue;
          acc += gy[((n * s.k + k) * s.oh + ty / s.sh) * s.ow + tx / s.sw] * w[((k * cg + c) * s.kh + ky) * s.kw + kx];
        }
      }
    gx[i] = acc;
  }
}

template <typename T>
__global__ void grad_weight_v1(Conv2dShape s, const T* __restrict__ gy, const T* __restrict__ x, T* __restrict__ gw) {
  const int cg = s.c / s.groups, kg = s.k / s.groups;
  CONVLAB_FOR(i, (long long)s.k * cg * s.kh * s.kw) {
    const int kx = i % s.kw, ky = (i / s.kw) % s.kh, c = (i / (s.kw * s.kh)) % cg, k = i / (s.kw * s.kh * cg);
    const int ci = (k / kg) * cg + c;
    T acc = 0;
    for (int n = 0; n < s.n; ++n)
      for (int oy = 0; oy < s.oh; ++oy) {
        const int iy = oy * s.sh + ky * s.dh - s.ph;
        if (iy < 0 || iy >= s.h) continue;
        for (int ox = 0; ox < s.ow; ++ox) {
          const int ix = ox * s.sw + kx * s.dw - s.pw;
          if (ix < 0 || ix >= s.w) continue;
          acc += gy[((n * s.k + k) * s.oh + oy) * s.ow + ox] * x[((n * s.c + ci) * s.h + iy) * s.w + ix];
        }
      }
    gw[i] = acc;
  }
}

// ============================================================================ v2: implicit GEMM

constexpr int BK = 8;         // reduction slice staged in shared memory
constexpr int THREADS = 256;  // 16 x 16 threads, each owning a (BM/16) x (BN/16) register block
constexpr int PAD = 4;        // shared rows padded by 4 values: conflict-free stores, 16-byte aligned reads
constexpr int FAR = INT_MIN / 2;  // a coordinate that fails every bounds check (masked tile lanes)

struct Gemm {
  int M, N, R;
};

// Which element of a BK x BO operand slice each thread loads. Outer-major: 32 consecutive
// threads walk the outer index (for tensors contiguous along it); reduction-major: 8 consecutive
// threads walk the reduction index. Either way a thread owns one reduction row kk of the slice
// and the outer indices o0 + 32*j, j < BO/32.
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

// forward B[r, p] = x[n, g*C_g + c, oy*sh + ky*dh - ph, ox*sw + kx*dw - pw], r = (c, ky, kx),
// p = (n, oy, ox): the windows of x, read along p (coalesced along ox for unit stride).
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
      iy0[j] = ok ? oy * s.sh - s.ph : FAR;
      ix0[j] = ox * s.sw - s.pw;
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
      this->reg[j] = ((unsigned)iy < (unsigned)s.h && (unsigned)ix < (unsigned)s.w) ? x[base[j] + off + iy * s.w + ix] : T(0);
    }
  }
};

// grad_input B[r, q] = grad_y[n, g*K_g + k, oy, ox] where iy = oy*sh + ky*dh - ph (and the same
// along x), zero where no such output exists; r = (k, ky, kx), q = (n, iy, ix).
template <typename T, int BO>
struct GradOutWindows : Slice<T, BO, OuterMajor> {
  const T* gy;
  Conv2dShape s;
  int base[BO / 32], ty0[BO / 32], tx0[BO / 32];
  __device__ GradOutWindows(const Conv2dShape& s_, const T* gy_, int g, int n0, int N) : gy(gy_), s(s_) {
    const int hw = s.h * s.w;
#pragma unroll
    for (int j = 0; j < this->L; ++j) {
      const int q = n0 + this->o0 + 32 * j, n = q / hw, iy = (q - n * hw) / s.w, ix = q - n * hw - iy * s.w;
      const bool ok = q < N;
      base[j] = ok ? (n * s.k + g * (s.k / s.groups)) * s.oh * s.ow : 0;
      ty0[j] = ok ? iy + s.ph : FAR;
      tx0[j] = ix + s.pw;
    }
  }
  __device__ void fetch(int k0, int k_end) {
    const int r = k0 + this->kk;
    if (r >= k_end) return this->clear();
    const int taps = s.kh * s.kw, k = r / taps, t = r - k * taps, ky = t / s.kw, kx = t - ky * s.kw;
    const int off = k * s.oh * s.ow, dy = ky * s.dh, dx = kx * s.dw;
    const bool unit = s.sh == 1 && s.sw == 1;
#pragma unroll
    for (int j = 0; j < this->L; ++j) {
      const int ty = ty0[j] - dy, tx = tx0[j] - dx;  // oy*sh and ox*sw if this tap reaches the cell
      int oy = ty, ox = tx;
      bool ok = ty >= 0 && tx >= 0;
      if (!unit) {
        oy = ty / s.sh;
        ox = tx / s.sw;
        ok = ok && oy * s.sh == ty && ox * s.sw == tx;
      }
      ok = ok && oy < s.oh && ox < s.ow;
      this->reg[j] = ok ? gy[base[j] + off + oy * s.ow + ox] : T(0);
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

// grad_weight B[p, r] = x[n, g*C_g + c, oy*sh + ky*dh - ph, ox*sw + kx*dw - pw]: the forward
// windows transposed, read along p = (n, oy, ox) for fixed columns r = (c, ky, kx).
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
      dy[j] = r < N ? ky * s.dh - s.ph : FAR;
      dx[j] = kx * s.dw - s.pw;
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
      this->reg[j] = ((unsigned)iy < (unsigned)s.h && (unsigned)ix < (unsigned)s.w) ? x[base + off[j] + iy * s.w + ix] : T(0);
    }
  }
};

// The three ops as GEMMs: sizes, operand loaders, where C[m, n] of group g is stored
// (out[row(g, m) + col(n)]), and the v1 kernel.
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
  template <typename T>
  static void v1(unsigned grid, cudaStream_t st, const Conv2dShape& s, const T* in0, const T* in1, T* out) {
    forward_v1<T><<<grid, 256, 0, st>>>(s, in0, in1, out);
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
  template <typename T>
  static void v1(unsigned grid, cudaStream_t st, const Conv2dShape& s, const T* in0, const T* in1, T* out) {
    grad_input_v1<T><<<grid, 256, 0, st>>>(s, in0, in1, out);
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
  template <typename T>
  static void v1(unsigned grid, cudaStream_t st, const Conv2dShape& s, const T* in0, const T* in1, T* out) {
    grad_weight_v1<T><<<grid, 256, 0, st>>>(s, in0, in1, out);
  }
};

__device__ inline void load4(const float* p, float* r) {
  const float4 v = *reinterpret_cast<const float4*>(p);
  r[0] = v.x, r[1] = v.y, r[2] = v.z, r[3] = v.w;
}
__device__ inline void load4(const double* p, double* r) {
  const double2 u = reinterpret_cast<const double2*>(p)[0], v = reinterpret_cast<const double2*>(p)[1];
  r[0] = u.x, r[1] = u.y, r[2] = v.x, r[3] = v.y;
}

// grid (N tiles, up to max_grid_y M tiles, groups * splits): a block computes M tiles blockIdx.y,
// blockIdx.y + gridDim.y, ...; blocks of split `sp` reduce over [sp*chunk, min(R, (sp+1)*chunk))
// and, when split, write their partial C to out = workspace laid out as [splits][groups][M][N].
template <typename T, int BM, int BN, class Op>
__global__ void __launch_bounds__(THREADS, BM * BN * sizeof(T) >= 128 * 128 * 4 ? 2 : 1) implicit_gemm_v2(Conv2dShape s, const T* __restrict__ a_src,
                                                            const T* __restrict__ b_src, T* __restrict__ out,
                                                            int splits, int chunk) {
  constexpr int TM = BM / 16, TN = BN / 16;
  __shared__ __align__(16) T As[2][BK][BM + PAD];
  __shared__ __align__(16) T Bs[2][BK][BN + PAD];

  const Gemm gm = Op::gemm(s);
  const int n0 = blockIdx.x * BN;
  const int g = blockIdx.z / splits, sp = blockIdx.z - g * splits;
  const int k_begin = sp * chunk, k_end = (int)min((long long)gm.R, (long long)k_begin + chunk);
  const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;

  // No barrier between tiles: after the last slice's barrier no thread reads shared memory.
  for (int mt = blockIdx.y; mt < ceil_div(gm.M, BM); mt += gridDim.y) {
    const int m0 = mt * BM;
    typename Op::template A<T, BM> la(s, a_src, g, m0, gm.M);
    typename Op::template B<T, BN> lb(s, b_src, g, n0, gm.N);
    T acc[TM][TN];
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
      for (int j = 0; j < TN; ++j) acc[i][j] = T(0);

    la.fetch(k_begin, k_end);
    lb.fetch(k_begin, k_end);
    la.stash(&As[0][0][0]);
    lb.stash(&Bs[0][0][0]);
    __syncthreads();

    int cur = 0;
    for (int k0 = k_begin; k0 < k_end; k0 += BK) {
      const bool more = k0 + BK < k_end;
      if (more) {  // the next slice travels in registers while this one is multiplied
        la.fetch(k0 + BK, k_end);
        lb.fetch(k0 + BK, k_end);
      }
#pragma unroll
      for (int kk = 0; kk < BK; ++kk) {
        T a[TM], b[TN];
#pragma unroll
        for (int h = 0; h < TM / 4; ++h) load4(&As[cur][kk][h * 64 + ty * 4], a + 4 * h);
#pragma unroll
        for (int h = 0; h < TN / 4; ++h) load4(&Bs[cur][kk][h * 64 + tx * 4], b + 4 * h);
#pragma unroll
        for (int i = 0; i < TM; ++i)
#pragma unroll
          for (int j = 0; j < TN; ++j) acc[i][j] += a[i] * b[j];
      }
      if (more) {  // the other buffer was last read before the previous barrier
        la.stash(&As[cur ^ 1][0][0]);
        lb.stash(&Bs[cur ^ 1][0][0]);
      }
      __syncthreads();
      cur ^= 1;
    }

    // Thread (ty, tx) owns rows h*64 + ty*4 + i and columns h*64 + tx*4 + j of the tile.
    int col[TN];
#pragma unroll
    for (int j = 0; j < TN; ++j) {
      const int n = n0 + (j / 4) * 64 + tx * 4 + (j % 4);
      col[j] = n < gm.N ? (splits == 1 ? Op::col(s, n) : n) : -1;
    }
#pragma unroll
    for (int i = 0; i < TM; ++i) {
      const int m = m0 + (i / 4) * 64 + ty * 4 + (i % 4);
      if (m >= gm.M) continue;
      T* dst = splits == 1 ? out + Op::row(s, g, m) : out + ((size_t)(sp * s.groups + g) * gm.M + m) * gm.N;
#pragma unroll
      for (int j = 0; j < TN; ++j)
        if (col[j] >= 0) dst[col[j]] = acc[i][j];
    }
  }
}

// Split-K second pass: out[row(g, m) + col(n)] = sum over splits, in split order.
template <typename T, class Op>
__global__ void split_sum_v2(Conv2dShape s, const T* __restrict__ ws, T* __restrict__ out, int splits) {
  const Gemm gm = Op::gemm(s);
  const long long part = (long long)s.groups * gm.M * gm.N;
  CONVLAB_FOR(i, part) {
    const int n = i % gm.N, m = (i / gm.N) % gm.M, g = i / (gm.N * gm.M);
    T acc = 0;
    for (int sp = 0; sp < splits; ++sp) acc += ws[sp * part + i];
    out[Op::row(s, g, m) + Op::col(s, n)] = acc;
  }
}

// ============================================================================ launchers

struct Plan {
  int bm, bn, splits, chunk, grid_y;
  std::size_t workspace;
};

// Tile shape and split count for v2: enough blocks for two per multiprocessor, each split
// keeping at least 16 slices of the reduction. Planned in 64 bits: R + chunk may pass 2**31.
template <typename T>
Plan plan_v2(const Gemm& gm, int groups, int sms, int grid_y_max) {
  Plan p;
  p.bm = sizeof(T) == 8 || gm.M <= 64 ? 64 : 128;
  p.bn = sizeof(T) == 8 ? 64 : 128;
  const long long R = gm.R, m_tiles = ceil_div((long long)gm.M, (long long)p.bm);
  const long long tiles = m_tiles * ceil_div((long long)gm.N, (long long)p.bn) * groups;
  const long long want = 2LL * sms;
  long long splits = 1;
  if (tiles < want)  // grid.z = groups * splits must stay within 65535
    splits = std::min<long long>({(want + tiles - 1) / tiles, R / (16 * BK), 256, 65535 / groups});
  splits = std::max(1LL, splits);
  const long long chunk = ceil_div(ceil_div(R, splits), (long long)BK) * BK;
  p.chunk = (int)chunk;
  p.splits = (int)ceil_div(R, chunk);
  p.grid_y = (int)std::min<long long>(m_tiles, grid_y_max);
  p.workspace = p.splits > 1 ? sizeof(T) * (std::size_t)p.splits * groups * gm.M * gm.N : 0;
  return p;
}

template <typename T, int BM, int BN, class Op>
void launch_v2(const Conv2dShape& s, const Plan& p, const T* a, const T* b, T* out, T* ws, cudaStream_t st) {
  const Gemm gm = Op::gemm(s);
  const dim3 grid(ceil_div(gm.N, BN), p.grid_y, s.groups * p.splits);
  implicit_gemm_v2<T, BM, BN, Op><<<grid, THREADS, 0, st>>>(s, a, b, p.splits > 1 ? ws : out, p.splits, p.chunk);
  check_launch("implicit_gemm_v2");
  if (p.splits > 1) {
    split_sum_v2<T, Op><<<grid_for((long long)s.groups * gm.M * gm.N, 256), 256, 0, st>>>(s, ws, out, p.splits);
    check_launch("split_sum_v2");
  }
}

template <typename T, class Op>
void run(int version, const Conv2dShape& s, const T* in0, const T* in1, T* out, void* ws, std::size_t ws_bytes,
         const Launch& at) {
  cudaStream_t st = begin(at);
  if (version == 1) {
    const Gemm gm = Op::gemm(s);
    Op::template v1<T>(grid_for((long long)s.groups * gm.M * gm.N, 256), st, s, in0, in1, out);
    check_launch("conv2d v1");
    return;
  }
  const Plan p = plan_v2<T>(Op::gemm(s), s.groups, sm_count(at.device), max_grid_y(at.device));
  require(ws_bytes >= p.workspace, "conv2d: workspace of " + std::to_string(ws_bytes) + " bytes, " +
                                       std::to_string(p.workspace) + " needed (ask conv2d_workspace)");
  const T* a = Op::a_is_in0 ? in0 : in1;
  const T* b = Op::a_is_in0 ? in1 : in0;
  T* w = static_cast<T*>(ws);
  if constexpr (sizeof(T) == 8)
    launch_v2<T, 64, 64, Op>(s, p, a, b, out, w, st);
  else if (p.bm == 128)
    launch_v2<T, 128, 128, Op>(s, p, a, b, out, w, st);
  else
    launch_v2<T, 64, 128, Op>(s, p, a, b, out, w, st);
}

void validate(const Conv2dShape& s) {
  for (int v : {s.n, s.c, s.h, s.w, s.k, s.kh, s.kw, s.oh, s.ow, s.sh, s.sw, s.dh, s.dw, s.groups})
    require(v >= 1, "conv2d: sizes, strides, dilations and groups must be >= 1");
  require(s.ph >= 0 && s.pw >= 0, "conv2d: padding must be >= 0");
  require(s.c % s.groups == 0 && s.k % s.groups == 0, "conv2d: groups must divide both channel counts");
  require(s.groups <= 65535, "conv2d: at most 65535 groups (one grid row of blocks each)");
  require_int32((long long)s.n * s.c * s.h * s.w, "x");
  require_int32((long long)s.n * s.k * s.oh * s.ow, "y");
  require_int32((long long)s.k * (s.c / s.groups) * s.kh * s.kw, "w");
  // v2 computes indices up to a tile (128) past M and N and a slice (8) past R.
  const long long gemm_sizes[] = {(long long)s.n * s.oh * s.ow, (long long)s.n * s.h * s.w,
                                  (long long)(s.c / s.groups) * s.kh * s.kw, (long long)(s.k / s.groups) * s.kh * s.kw,
                                  (long long)s.c, (long long)s.k};
  for (long long v : gemm_sizes) require_int32(v + 128, "a GEMM size of the v2 kernel (plus a tile)");
  // Every tap coordinate of the kernels must stay within int range too.
  require_int32((long long)(s.oh + s.ph) * s.sh + (long long)s.kh * s.dh + s.h, "the padded height");
  require_int32((long long)(s.ow + s.pw) * s.sw + (long long)s.kw * s.dw + s.w, "the padded width");
}

template <class F>
void dispatch_op(const std::string& op, F&& f) {
  if (op == "forward")
    f(Forward{});
  else if (op == "grad_input")
    f(GradInput{});
  else if (op == "grad_weight")
    f(GradWeight{});
  else
    throw std::invalid_argument("conv2d: op must be forward, grad_input or grad_weight, got " + op);
}

}  // namespace

// ============================================================================ dispatch

int conv2d_versions() { return 2; }

template <class Op>
int choose(int version, const Conv2dShape& s) {
  const bool narrow = Op::gemm(s).M < 16 && !std::is_same<Op, GradWeight>::value;
  return pick_version(version, conv2d_versions(), narrow ? 1 : 2, "conv2d");
}

std::size_t conv2d_workspace(const std::string& op, int version, const std::string& dtype, int device,
                             const Conv2dShape& s) {
  validate(s);
  std::size_t bytes = 0;
  dispatch_op(op, [&](auto o) {
    using Op = decltype(o);
    if (choose<Op>(version, s) == 1) return;
    dispatch_dtype(dtype, [&](auto z) { bytes = plan_v2<decltype(z)>(Op::gemm(s), s.groups, sm_count(device), max_grid_y(device)).workspace; });
  });
  return bytes;
}

void conv2d(const std::string& op, int version, const std::string& dtype, const Launch& at, std::uintptr_t out,
            std::uintptr_t in0, std::uintptr_t in1, std::uintptr_t ws, std::size_t ws_bytes, const Conv2dShape& s) {
  validate(s);
  dispatch_op(op, [&](auto o) {
    using Op = decltype(o);
    const int v = choose<Op>(version, s);
    dispatch_dtype(dtype, [&](auto z) {
      using T = decltype(z);
      run<T, Op>(v, s, reinterpret_cast<const T*>(in0), reinterpret_cast<const T*>(in1),
                 reinterpret_cast<T*>(out), reinterpret_cast<void*>(ws), ws_bytes, at);
    });
  });
}

}  // namespace convlab
