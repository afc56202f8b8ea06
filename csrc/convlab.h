// The C++ interface of the kernels, as bindings.cpp sees it: raw device pointers (uintptr_t,
// from cupy's .data.ptr), shapes, the device and the stream. Everything here may throw
// std::invalid_argument (Python ValueError) for bad arguments and std::runtime_error
// (Python RuntimeError, carrying the CUDA error text) when CUDA fails.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace convlab {

// Where a kernel runs: the arrays' device and the caller's stream (cupy's current stream).
struct Launch {
  int device;
  std::uintptr_t stream;
};

// A 2-D convolution: x (n, c, h, w), w (k, c/groups, kh, kw), y (n, k, oh, ow).
// Output cell (oy, ox) at tap (ky, kx) reads input cell (oy*sh + ky*dh - ph, ox*sw + kx*dw - pw).
struct Conv2dShape {
  int n, c, h, w, k, kh, kw, oh, ow, sh, sw, ph, pw, dh, dw, groups;
};

// A sliding window over `planes` independent (h, w) planes (pooling, im2col). Padding is
// (ph, ph_hi) rows and (pw, pw_hi) columns; only the counts of avg pooling use the hi side.
struct Window2dShape {
  int planes, h, w, kh, kw, oh, ow, sh, sw, ph, ph_hi, pw, pw_hi, dh, dw;
};

// Pooling options. mode: "max", "avg" or "lp".
struct PoolOptions {
  std::string mode;
  bool count_include_pad = true;  // avg: padding cells count in the divisor
  long long divisor = 0;          // avg: when > 0, replaces the divisor
  double p = 2.0;                 // lp: the power
};

// conv2d.cu. op: "forward" (out = y, in0 = x, in1 = w), "grad_input" (out = grad_x,
// in0 = grad_y, in1 = w), "grad_weight" (out = grad_w, in0 = grad_y, in1 = x).
int conv2d_versions();
std::size_t conv2d_workspace(const std::string& op, int version, const std::string& dtype, int device,
                             const Conv2dShape& s);
void conv2d(const std::string& op, int version, const std::string& dtype, const Launch& at, std::uintptr_t out,
            std::uintptr_t in0, std::uintptr_t in1, std::uintptr_t workspace, std::size_t workspace_bytes,
            const Conv2dShape& s);

// pool2d.cu. Forward: y (planes, oh, ow) from x (planes, h, w); for max, `indices` (int64,
// flat h*w index of each maximum, or -1 for a window without input cells). Backward (a gather, no atomics): grad_x from
// grad_y plus what the mode needs: max reads `indices`, lp reads x and y.
int pool2d_versions();
void pool2d_forward(const PoolOptions& opt, int version, const std::string& dtype, const Launch& at,
                    std::uintptr_t y, std::uintptr_t x, std::uintptr_t indices, const Window2dShape& s);
void pool2d_backward(const PoolOptions& opt, int version, const std::string& dtype, const Launch& at,
                     std::uintptr_t grad_x, std::uintptr_t grad_y, std::uintptr_t x, std::uintptr_t y,
                     std::uintptr_t indices, const Window2dShape& s);

// im2col.cu. cols (planes, kh*kw, oh*ow) <-> x (planes, h, w); col2im is a gather.
int im2col_versions();
void im2col(int version, const std::string& dtype, const Launch& at, std::uintptr_t cols, std::uintptr_t x,
            const Window2dShape& s);
void col2im(int version, const std::string& dtype, const Launch& at, std::uintptr_t x, std::uintptr_t cols,
            const Window2dShape& s);

}  // namespace convlab
