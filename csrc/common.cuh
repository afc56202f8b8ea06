// Helpers shared by the .cu files: CUDA error checks, device/stream selection, dtype dispatch,
// size checks and small integer helpers. Host code throws; Python sees RuntimeError (CUDA
// failures, with CUDA's own error text) or ValueError (bad arguments).
#pragma once

#include <cuda_runtime.h>

#include <climits>
#include <cstdint>
#include <mutex>
#include <stdexcept>
#include <string>
#include <unordered_map>

#include "convlab.h"

namespace convlab {

inline void check_cuda(cudaError_t err, const std::string& what) {
  if (err != cudaSuccess) {
    cudaGetLastError();  // clear a non-sticky error so later calls start clean
    throw std::runtime_error(what + " failed: " + cudaGetErrorName(err) + ": " + cudaGetErrorString(err));
  }
}

// Every launch is checked: a bad configuration is reported here, not by a later call.
inline void check_launch(const char* kernel) { check_cuda(cudaGetLastError(), std::string("launch of ") + kernel); }

// Make the arrays' device current and return the caller's stream.
inline cudaStream_t begin(const Launch& at) {
  check_cuda(cudaSetDevice(at.device), "cudaSetDevice(" + std::to_string(at.device) + ")");
  return reinterpret_cast<cudaStream_t>(at.stream);
}

// A device attribute, asked once per device (launch planning runs on every call).
inline int device_attribute(int device, cudaDeviceAttr attr) {
  static std::mutex lock;
  static std::unordered_map<long long, int> cache;
  std::lock_guard<std::mutex> guard(lock);
  const long long key = (long long)device << 32 | (unsigned)attr;
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  int n = 0;
  check_cuda(cudaDeviceGetAttribute(&n, attr, device), "cudaDeviceGetAttribute");
  cache[key] = n;
  return n;
}

inline int sm_count(int device) { return device_attribute(device, cudaDevAttrMultiProcessorCount); }
inline int max_grid_y(int device) { return device_attribute(device, cudaDevAttrMaxGridDimY); }

inline void require(bool ok, const std::string& msg) {
  if (!ok) throw std::invalid_argument(msg);
}

// Kernels index with 32-bit ints: every tensor must have fewer than 2**31 elements.
inline void require_int32(long long elements, const char* name) {
  require(elements < (long long)INT_MAX,
          std::string(name) + " has " + std::to_string(elements) +
              " elements; the CUDA kernels index with 32-bit ints (fewer than 2**31 elements)");
}

template <class F>
void dispatch_dtype(const std::string& dtype, F&& f) {
  if (dtype == "float32") {
    f(float{});
  } else if (dtype == "float64") {
    f(double{});
  } else {
    throw std::invalid_argument("dtype must be float32 or float64, got " + dtype);
  }
}

// Kernel versions are 1..newest; 0 asks the file's dispatch to choose (`chosen`).
inline int pick_version(int version, int newest, int chosen, const char* file) {
  require(version >= 0 && version <= newest, std::string(file) + ": version must be 1.." + std::to_string(newest) +
                                                 " (0: let the dispatch choose), got " + std::to_string(version));
  return version == 0 ? chosen : version;
}

// A 1-D grid of `threads`-wide blocks for n items, capped (kernels loop with a grid stride).
inline unsigned grid_for(long long n, int threads) {
  long long blocks = (n + threads - 1) / threads;
  if (blocks < 1) blocks = 1;
  return (unsigned)(blocks < 65535LL * 64 ? blocks : 65535LL * 64);
}

// Grid-stride loop over n items as int i (the 64-bit counter may pass 2**31 before the test).
#define CONVLAB_FOR(i, n) \
  for (long long i##_ = blockIdx.x * (long long)blockDim.x + threadIdx.x; i##_ < (n); \
       i##_ += (long long)gridDim.x * blockDim.x)                                       \
    if (const int i = (int)i##_; true)

__host__ __device__ inline int ceil_div(int a, int b) { return (a + b - 1) / b; }
inline long long ceil_div(long long a, long long b) { return (a + b - 1) / b; }

// Floor and ceiling of a / b for b > 0 and any sign of a (C++ division truncates).
__device__ inline int floor_div(int a, int b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }
__device__ inline int ceil_div_signed(int a, int b) { return -floor_div(-a, b); }

}  // namespace convlab
