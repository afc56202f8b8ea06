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
// Kernel versions, one idea each (v2 and up treat each op as the implicit GEMM
// C[M x N] = A[M x R] B[R x N] of conv2d_gemm.cuh, whose loaders gather A and B from the tensors):
//   v1  Direct port of the reference: one thread per output element, looping over its sum;
//       grad_input is a gather over the (k, ky, kx) whose window reaches the input cell.
//   v2  Shared-memory tiles: a block of 256 threads computes a 64 x 64 tile of C, staging slices
//       of 8 along R of A and B in shared memory, so each value read from global memory serves
//       64 outputs instead of one.
//   v3  Register blocking and vector loads: bigger tiles (128x128 or 64x128 in float, 64x64 in
//       double), each thread an 8x8 (4x8, 4x4) block of accumulators in registers, fed by
//       16-byte reads of shared memory: 4 to 8 times fewer shared-memory reads per FMA.
//   v4  Double buffering: the next slice travels from global memory in registers while the
//       current one is multiplied from the other of two shared buffers; one barrier per slice.
//   v5  Split-K: when the tiles alone cannot give two blocks per multiprocessor, R is cut into
//       chunks computed by separate blocks (v4's kernel) into a workspace whose parts a second
//       kernel adds in a fixed order, so results never depend on scheduling.
// No atomics, no TF32 (plain FMA). Row tiles beyond the grid's y limit (65535) are looped over
// by the blocks of each row.
//
// Dispatch (version 0): v5, except v1 for forward and grad_input when M < 16 (e.g. single-
// channel filters), where a GEMM tile would be mostly idle rows and one thread per output wins.
//
// Then: the v1 kernels, the GEMM kernels v2 to v5, the launchers, one dispatch.
#include <algorithm>
#include <type_traits>

#include "common.cuh"
#include "conv2d_gemm.cuh"
#include "window.cuh"

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
    const Axis ay = y_axis(s), ax = x_axis(s);
    T acc = 0;
    for (int c = 0; c < cg; ++c)
      for (int ky = 0; ky < s.kh; ++ky) {
        const int iy = ay.cell(oy, ky);
        if (!ay.inside(iy)) continue;
        for (int kx = 0; kx < s.kw; ++kx) {
          const int ix = ax.cell(ox, kx);
          if (!ax.inside(ix)) continue;
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
    const Axis ay = y_axis(s), ax = x_axis(s);
    T acc = 0;
    for (int k = g * kg; k < (g + 1) * kg; ++k)
      for (int ky = 0; ky < s.kh; ++ky) {
        const int oy = ay.output(iy, ky);  // the output row whose tap ky reads row iy
        if (oy < 0) continue;
        for (int kx = 0; kx < s.kw; ++kx) {
          const int ox = ax.output(ix, kx);
          if (ox < 0) continue;
          acc += gy[((n * s.k + k) * s.oh + oy) * s.ow + ox] * w[((k * cg + c) * s.kh + ky) * s.kw + kx];
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
    const Axis ay = y_axis(s), ax = x_axis(s);
    T acc = 0;
    for (int n = 0; n < s.n; ++n)
      for (int oy = 0; oy < s.oh; ++oy) {
        const int iy = ay.cell(oy, ky);
        if (!ay.inside(iy)) continue;
        for (int ox = 0; ox < s.ow; ++ox) {
          const int ix = ax.cell(ox, kx);
          if (!ax.inside(ix)) continue;
          acc += gy[((n * s.k + k) * s.oh + oy) * s.ow + ox] * x[((n * s.c + ci) * s.h + iy) * s.w + ix];
        }
      }
    gw[i] = acc;
  }
}

// Every GEMM block loops over the row tiles blockIdx.y, blockIdx.y + gridDim.y, ... (more than
// a grid's y dimension holds for very wide channel counts); blockIdx.x is the column tile and
// blockIdx.z the group (v5: the group and the split).

// ============================================================================ v2: shared-memory tiles

constexpr int TILE2 = 64;  // v2's tile: 256 threads, each 16 outputs spread 16 apart

// Thread (ty, tx) = (t / 16, t % 16) owns C[m0 + ty + 16i, n0 + tx + 16j], i, j < 4. Per slice each
// thread loads 2 elements of A and 2 of B (8 x 64 each), then reads every value it multiplies
// from shared memory: a warp reads 16 consecutive B columns (no bank conflicts) and 2 A rows
// (broadcasts).
template <typename T, class Op>
__global__ void gemm_v2(Conv2dShape s, const T* __restrict__ a_src, const T* __restrict__ b_src,
                        T* __restrict__ out) {
  __shared__ T As[BK][TILE2 + PAD];
  __shared__ T Bs[BK][TILE2 + PAD];
  const Gemm gm = Op::gemm(s);
  const int g = blockIdx.z, n0 = blockIdx.x * TILE2, tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
  for (int mt = blockIdx.y; mt < ceil_div(gm.M, TILE2); mt += gridDim.y) {
    const int m0 = mt * TILE2;
    typename Op::template A<T, TILE2> la(s, a_src, g, m0, gm.M);
    typename Op::template B<T, TILE2> lb(s, b_src, g, n0, gm.N);
    T acc[4][4] = {};
    for (int k0 = 0; k0 < gm.R; k0 += BK) {
      la.fetch(k0, gm.R);
      lb.fetch(k0, gm.R);
      la.stash(&As[0][0]);
      lb.stash(&Bs[0][0]);
      __syncthreads();  // the slice is in shared memory
      for (int kk = 0; kk < BK; ++kk)
        for (int i = 0; i < 4; ++i)
          for (int j = 0; j < 4; ++j) acc[i][j] += As[kk][ty + 16 * i] * Bs[kk][tx + 16 * j];
      __syncthreads();  // everyone has read it: the next slice may overwrite it
    }
    for (int i = 0; i < 4; ++i)
      for (int j = 0; j < 4; ++j) {
        const int m = m0 + ty + 16 * i, n = n0 + tx + 16 * j;
        if (m < gm.M && n < gm.N) out[Op::row(s, g, m) + Op::col(s, n)] = acc[i][j];
      }
  }
}

// ============================================================================ v3: register blocks

// 16-byte reads of shared memory (4 floats, or two pairs of doubles).
__device__ inline void load4(const float* p, float* r) {
  const float4 v = *reinterpret_cast<const float4*>(p);
  r[0] = v.x, r[1] = v.y, r[2] = v.z, r[3] = v.w;
}
__device__ inline void load4(const double* p, double* r) {
  const double2 u = reinterpret_cast<const double2*>(p)[0], v = reinterpret_cast<const double2*>(p)[1];
  r[0] = u.x, r[1] = u.y, r[2] = v.x, r[3] = v.y;
}

// Thread (ty, tx) = (t / 16, t % 16) of a BM x BN tile owns rows h*64 + ty*4 + i and columns
// h*64 + tx*4 + j, as 4-wide halves 64 apart, so its shared-memory reads are 16-byte vectors,
// broadcast or conflict-free. One slice: 8 outer products of a TM column and a TN row.
template <typename T, int BM, int BN>
__device__ inline void multiply_slice(const T (&As)[BK][BM + PAD], const T (&Bs)[BK][BN + PAD],
                                      T (&acc)[BM / 16][BN / 16]) {
  constexpr int TM = BM / 16, TN = BN / 16;
  const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
#pragma unroll
  for (int kk = 0; kk < BK; ++kk) {
    T a[TM], b[TN];
#pragma unroll
    for (int h = 0; h < TM / 4; ++h) load4(&As[kk][h * 64 + ty * 4], a + 4 * h);
#pragma unroll
    for (int h = 0; h < TN / 4; ++h) load4(&Bs[kk][h * 64 + tx * 4], b + 4 * h);
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
      for (int j = 0; j < TN; ++j) acc[i][j] += a[i] * b[j];
  }
}

// C[m, n] of group g where the tile's result goes: in place (v3, v4), or a split's part (v5).
struct InPlace {
  __device__ int group() const { return blockIdx.z; }
  __device__ int begin() const { return 0; }
  __device__ int end(int R) const { return R; }
  template <class Op, typename T>
  __device__ T* at(const Conv2dShape& s, const Gemm&, T* out, int g, int m, int n) const {
    return out + Op::row(s, g, m) + Op::col(s, n);
  }
};

// The thread's block of accumulators to C, within bounds.
template <class Op, typename T, int BM, int BN, class Part>
__device__ inline void store_block(const Conv2dShape& s, const Gemm& gm, const Part& part, T* out, int g, int m0,
                                   int n0, const T (&acc)[BM / 16][BN / 16]) {
  const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
#pragma unroll
  for (int i = 0; i < BM / 16; ++i) {
    const int m = m0 + (i / 4) * 64 + ty * 4 + (i % 4);
#pragma unroll
    for (int j = 0; j < BN / 16; ++j) {
      const int n = n0 + (j / 4) * 64 + tx * 4 + (j % 4);
      if (m < gm.M && n < gm.N) *part.template at<Op>(s, gm, out, g, m, n) = acc[i][j];
    }
  }
}

// Two 256-thread blocks per multiprocessor for the 128x128 float tile (registers capped at 128).
#define CONVLAB_GEMM_BOUNDS(T, BM, BN) __launch_bounds__(THREADS, BM * BN * sizeof(T) >= 128 * 128 * 4 ? 2 : 1)

template <typename T, int BM, int BN, class Op>
__global__ void CONVLAB_GEMM_BOUNDS(T, BM, BN)
    gemm_v3(Conv2dShape s, const T* __restrict__ a_src, const T* __restrict__ b_src, T* __restrict__ out) {
  __shared__ __align__(16) T As[BK][BM + PAD];
  __shared__ __align__(16) T Bs[BK][BN + PAD];
  const Gemm gm = Op::gemm(s);
  const int g = blockIdx.z, n0 = blockIdx.x * BN;
  for (int mt = blockIdx.y; mt < ceil_div(gm.M, BM); mt += gridDim.y) {
    const int m0 = mt * BM;
    typename Op::template A<T, BM> la(s, a_src, g, m0, gm.M);
    typename Op::template B<T, BN> lb(s, b_src, g, n0, gm.N);
    T acc[BM / 16][BN / 16] = {};
    for (int k0 = 0; k0 < gm.R; k0 += BK) {
      la.fetch(k0, gm.R);
      lb.fetch(k0, gm.R);
      la.stash(&As[0][0]);
      lb.stash(&Bs[0][0]);
      __syncthreads();  // the slice is in shared memory
      multiply_slice<T, BM, BN>(As, Bs, acc);
      __syncthreads();  // everyone has read it
    }
    store_block<Op, T, BM, BN>(s, gm, InPlace{}, out, g, m0, n0, acc);
  }
}

// ============================================================================ v4: double buffering

// `Part` says which reduction range a block sums and where its tile goes: InPlace (v4), or a
// split of R into a workspace (v5's SplitK).
template <typename T, int BM, int BN, class Op, class Part>
__global__ void CONVLAB_GEMM_BOUNDS(T, BM, BN)
    gemm_v4(Conv2dShape s, const T* __restrict__ a_src, const T* __restrict__ b_src, T* __restrict__ out, Part part) {
  __shared__ __align__(16) T As[2][BK][BM + PAD];
  __shared__ __align__(16) T Bs[2][BK][BN + PAD];
  const Gemm gm = Op::gemm(s);
  const int g = part.group(), n0 = blockIdx.x * BN;
  const int k_begin = part.begin(), k_end = part.end(gm.R);
  // No barrier between tiles: after the last slice's barrier no thread reads shared memory.
  for (int mt = blockIdx.y; mt < ceil_div(gm.M, BM); mt += gridDim.y) {
    const int m0 = mt * BM;
    typename Op::template A<T, BM> la(s, a_src, g, m0, gm.M);
    typename Op::template B<T, BN> lb(s, b_src, g, n0, gm.N);
    T acc[BM / 16][BN / 16] = {};
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
      multiply_slice<T, BM, BN>(As[cur], Bs[cur], acc);
      if (more) {  // the other buffer was last read before the previous barrier
        la.stash(&As[cur ^ 1][0][0]);
        lb.stash(&Bs[cur ^ 1][0][0]);
      }
      __syncthreads();
      cur ^= 1;
    }
    store_block<Op, T, BM, BN>(s, gm, part, out, g, m0, n0, acc);
  }
}

// ============================================================================ v5: split-K

// Split sp = blockIdx.z % splits of group g sums R over [sp*chunk, min(R, (sp+1)*chunk)) into the
// workspace laid out [splits][groups][M][N].
struct SplitK {
  int splits, chunk;
  __device__ int group() const { return blockIdx.z / splits; }
  __device__ int split() const { return blockIdx.z % splits; }
  __device__ int begin() const { return split() * chunk; }
  __device__ int end(int R) const { return (int)min((long long)R, (long long)begin() + chunk); }
  template <class Op, typename T>
  __device__ T* at(const Conv2dShape& s, const Gemm& gm, T* ws, int g, int m, int n) const {
    return ws + ((std::size_t)(split() * s.groups + g) * gm.M + m) * gm.N + n;
  }
};

// The second pass: out[row(g, m) + col(n)] = sum over splits of the parts, in split order.
template <typename T, class Op>
__global__ void split_sum_v5(Conv2dShape s, const T* __restrict__ ws, T* __restrict__ out, int splits) {
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

// How a GEMM version runs: its tile, split count and chunk, the grid's y extent, the workspace.
struct Plan {
  int bm, bn, splits, chunk, grid_y;
  std::size_t workspace;
};

// v2: 64x64 tiles. v3 and up: 128x128 (float, M > 64), 64x128 (float) or 64x64 (double). v5 also
// splits R when the tiles cannot give two blocks per multiprocessor, each split keeping at least
// 16 slices. Planned in 64 bits: R + chunk may pass 2**31.
template <typename T>
Plan plan(int version, const Gemm& gm, int groups, int sms, int grid_y_max) {
  Plan p;
  p.bm = version == 2 ? TILE2 : sizeof(T) == 8 || gm.M <= 64 ? 64 : 128;
  p.bn = version == 2 ? TILE2 : sizeof(T) == 8 ? 64 : 128;
  const long long R = gm.R, m_tiles = ceil_div((long long)gm.M, (long long)p.bm);
  const long long tiles = m_tiles * ceil_div((long long)gm.N, (long long)p.bn) * groups;
  const long long want = 2LL * sms;
  long long splits = 1;
  if (version == 5 && tiles < want)  // grid.z = groups * splits must stay within 65535
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
void launch_blocked(int version, const Conv2dShape& s, const Plan& p, const T* a, const T* b, T* out, T* ws,
                    cudaStream_t st) {
  const Gemm gm = Op::gemm(s);
  const dim3 grid(ceil_div(gm.N, BN), p.grid_y, s.groups * p.splits);
  if (version == 3) {
    gemm_v3<T, BM, BN, Op><<<grid, THREADS, 0, st>>>(s, a, b, out);
    check_launch("conv2d gemm_v3");
  } else if (p.splits == 1) {  // v4, and v5 when it does not split
    gemm_v4<T, BM, BN, Op, InPlace><<<grid, THREADS, 0, st>>>(s, a, b, out, InPlace{});
    check_launch("conv2d gemm_v4");
  } else {
    gemm_v4<T, BM, BN, Op, SplitK><<<grid, THREADS, 0, st>>>(s, a, b, ws, SplitK{p.splits, p.chunk});
    check_launch("conv2d gemm_v4 (split)");
    split_sum_v5<T, Op><<<grid_for((long long)s.groups * gm.M * gm.N, 256), 256, 0, st>>>(s, ws, out, p.splits);
    check_launch("conv2d split_sum_v5");
  }
}

template <typename T, class Op>
void launch_v1(const Conv2dShape& s, const T* in0, const T* in1, T* out, cudaStream_t st) {
  const Gemm gm = Op::gemm(s);
  const unsigned grid = grid_for((long long)s.groups * gm.M * gm.N, 256);
  if constexpr (std::is_same<Op, Forward>::value)
    forward_v1<T><<<grid, 256, 0, st>>>(s, in0, in1, out);
  else if constexpr (std::is_same<Op, GradInput>::value)
    grad_input_v1<T><<<grid, 256, 0, st>>>(s, in0, in1, out);
  else
    grad_weight_v1<T><<<grid, 256, 0, st>>>(s, in0, in1, out);
  check_launch("conv2d v1");
}

template <typename T, class Op>
void run(int version, const Conv2dShape& s, const T* in0, const T* in1, T* out, void* ws, std::size_t ws_bytes,
         const Launch& at) {
  cudaStream_t st = begin(at);
  if (version == 1) return launch_v1<T, Op>(s, in0, in1, out, st);
  const Gemm gm = Op::gemm(s);
  const Plan p = plan<T>(version, gm, s.groups, sm_count(at.device), max_grid_y(at.device));
  require(ws_bytes >= p.workspace, "conv2d: workspace of " + std::to_string(ws_bytes) + " bytes, " +
                                       std::to_string(p.workspace) + " needed (ask conv2d_workspace)");
  const T* a = Op::a_is_in0 ? in0 : in1;
  const T* b = Op::a_is_in0 ? in1 : in0;
  T* w = static_cast<T*>(ws);
  if (version == 2) {
    const dim3 grid(ceil_div(gm.N, TILE2), p.grid_y, s.groups);
    gemm_v2<T, Op><<<grid, THREADS, 0, st>>>(s, a, b, out);
    check_launch("conv2d gemm_v2");
  } else if constexpr (sizeof(T) == 8) {
    launch_blocked<T, 64, 64, Op>(version, s, p, a, b, out, w, st);
  } else if (p.bm == 128) {
    launch_blocked<T, 128, 128, Op>(version, s, p, a, b, out, w, st);
  } else {
    launch_blocked<T, 64, 128, Op>(version, s, p, a, b, out, w, st);
  }
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
  // The GEMM kernels compute indices up to a tile (128) past M and N and a slice (8) past R.
  const long long gemm_sizes[] = {(long long)s.n * s.oh * s.ow, (long long)s.n * s.h * s.w,
                                  (long long)(s.c / s.groups) * s.kh * s.kw, (long long)(s.k / s.groups) * s.kh * s.kw,
                                  (long long)s.c, (long long)s.k};
  for (long long v : gemm_sizes) require_int32(v + 128, "a GEMM size of the GEMM kernels (plus a tile)");
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

int conv2d_versions() { return 5; }

template <class Op>
int choose(int version, const Conv2dShape& s) {
  const bool narrow = Op::gemm(s).M < 16 && !std::is_same<Op, GradWeight>::value;
  return pick_version(version, conv2d_versions(), narrow ? 1 : 5, "conv2d");
}

std::size_t conv2d_workspace(const std::string& op, int version, const std::string& dtype, int device,
                             const Conv2dShape& s) {
  validate(s);
  std::size_t bytes = 0;
  dispatch_op(op, [&](auto o) {
    using Op = decltype(o);
    const int v = choose<Op>(version, s);
    if (v == 1) return;
    dispatch_dtype(dtype, [&](auto z) {
      bytes = plan<decltype(z)>(v, Op::gemm(s), s.groups, sm_count(device), max_grid_y(device)).workspace;
    });
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
