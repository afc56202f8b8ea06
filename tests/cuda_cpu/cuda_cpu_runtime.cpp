// Controls of the CPU stand-in runtime (tests/cuda_cpu/include/cuda_runtime.h), linked into the
// CPU build of convlab._C and called from Python through ctypes, plus self-test kernels that
// show the barrier checks at work.
#include <cuda_runtime.h>

#include <cstring>
#include <string>

namespace {

std::string text;  // what cudacpu_log and cudacpu_selftest return (valid until the next call)

__global__ void uniform_barriers(int* out) {
  __shared__ int cell[64];
  cell[threadIdx.x] = threadIdx.x;
  __syncthreads();
  out[blockIdx.x * blockDim.x + threadIdx.x] = cell[(threadIdx.x + 1) % blockDim.x];
  __syncthreads();
}

__global__ void divergent_barriers(int* out) {
  if (threadIdx.x < 16) {
    __syncthreads();
  } else {
    __syncthreads();
  }
  out[threadIdx.x] = 1;
}

__global__ void early_return(int* out) {
  if (threadIdx.x >= 32) return;
  __syncthreads();
  out[threadIdx.x] = 1;
}

}  // namespace

extern "C" {

// "132,1,132:3": one device per item, its SM count and (after ':') its largest grid y.
// Takes effect before the first use of a device; returns 0, or -1 for a bad spec.
int cudacpu_set_devices(const char* spec) {
  auto devs = cudacpu::parse_devices(spec);
  if (devs.empty()) return -1;
  auto& s = cudacpu::state();
  std::lock_guard<std::mutex> g(s.lock);
  s.devices = devs;
  s.configured = true;
  return 0;
}

void cudacpu_set_dry_run(int on) {
  auto& s = cudacpu::state();
  std::lock_guard<std::mutex> g(s.lock);
  s.dry_run = on != 0;
}

// The launches since the last call, one per line ("name grid=(x,y,z) block=(x,y,z)").
const char* cudacpu_log() {
  auto& s = cudacpu::state();
  std::lock_guard<std::mutex> g(s.lock);
  text.clear();
  for (const auto& line : s.log) text += line + "\n";
  s.log.clear();
  return text.c_str();
}

// Runs self-test `name` with `threads` per block over `blocks` blocks and returns
// "<cudaError name>: <text>" of the launch ("cudaSuccess: ..." when it ran).
const char* cudacpu_selftest(const char* name, int blocks, int threads, int* out) {
  cudaGetLastError();
  const std::string n = name;
  if (n == "uniform")
    uniform_barriers<<<blocks, threads>>>(out);
  else if (n == "divergent")
    divergent_barriers<<<blocks, threads>>>(out);
  else if (n == "early_return")
    early_return<<<blocks, threads>>>(out);
  else
    return "unknown self-test";
  const cudaError_t e = cudaGetLastError();
  text = std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
  return text.c_str();
}

}  // extern "C"
