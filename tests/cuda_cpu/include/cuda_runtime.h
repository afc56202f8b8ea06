// A CPU stand-in for the part of cuda_runtime.h that csrc/ uses, so that the kernels compile
// with a C++ compiler and run on the CPU (tests/cuda_cpu). Each CUDA thread of a block is one
// std::thread; blocks run one after another. The launch syntax kernel<<<grid, block, smem,
// stream>>>(args) is rewritten by tests/cuda_cpu/cuda_cpu_build.py into
// ::cudacpu::Launcher(kernel, "kernel", grid, block, smem, stream)(args).
//
// What it models, and why:
// - threadIdx, blockIdx, blockDim, gridDim: thread-local values set for each CUDA thread.
// - __shared__: one static copy per kernel instantiation; blocks never overlap in time (one
//   launch at a time, one block at a time), so the copy is the block's own while it runs.
// - __syncthreads: a barrier over the block's threads that records where each thread waits.
//   Threads waiting at different barriers, or some returning while others wait, is undefined
//   behaviour on a GPU; here the launch fails with cudaErrorLaunchFailure saying which threads
//   were where (instead of hanging or silently passing).
// - Launch limits: grid x <= 2^31 - 1, y and z <= the device's maximum (65535 by default),
//   a block <= 1024 threads (z <= 64): otherwise cudaErrorInvalidConfiguration.
// - Devices: their count, SM counts and grid-y limits come from cudacpu_set_devices("132,1,...")
//   or the environment variable CUDACPU_DEVICES (default "132", an H100/H200).
// - Dry runs (cudacpu_set_dry_run): launches are checked and logged but not executed, so the
//   planning of huge shapes can be tested without their memory.
// Streams are ignored: every launch runs to completion before it returns.
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#define CUDART_VERSION 0  // not a CUDA runtime: build_info() shows 0
#define CUDACPU 1

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(...)
#define __syncthreads() ::cudacpu::syncthreads(__FILE__, __LINE__)

struct uint3 {
  unsigned x, y, z;
};
struct dim3 {
  unsigned x, y, z;
  dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct __attribute__((aligned(16))) float4 {
  float x, y, z, w;
};
struct __attribute__((aligned(16))) double2 {
  double x, y;
};

inline thread_local uint3 threadIdx, blockIdx;
inline thread_local dim3 blockDim, gridDim;

// The math the kernels call unqualified, as CUDA provides it for float and double.
using std::fabs;
using std::isnan;
using std::isinf;
using std::isfinite;
using std::pow;
using std::sqrt;
using std::exp;
using std::log;
template <class A, class B>
inline std::common_type_t<A, B> min(A a, B b) {
  return b < a ? b : a;
}
template <class A, class B>
inline std::common_type_t<A, B> max(A a, B b) {
  return a < b ? b : a;
}

typedef struct CUstream_st* cudaStream_t;

enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorNoDevice = 100,
  cudaErrorInvalidDevice = 101,
  cudaErrorLaunchFailure = 719,
};
typedef cudaError_t cudaError;

enum cudaDeviceAttr {
  cudaDevAttrMaxThreadsPerBlock = 1,
  cudaDevAttrMaxGridDimX = 5,
  cudaDevAttrMaxGridDimY = 6,
  cudaDevAttrMaxGridDimZ = 7,
  cudaDevAttrMultiProcessorCount = 16,
};

struct cudaDeviceProp {
  char name[256];
  int major, minor;
  int multiProcessorCount;
  std::size_t totalGlobalMem;
  int maxGridSize[3];
  int maxThreadsPerBlock;
};

namespace cudacpu {

struct Device {
  int sms;
  int max_grid_y;
};

// Everything below is shared by all translation units of the module (inline variables).
struct State {
  std::mutex lock;  // guards the fields below
  std::vector<Device> devices;
  bool configured = false;
  bool dry_run = false;
  std::vector<std::string> log;  // "name grid=(x,y,z) block=(x,y,z)" of each launch
};
inline State& state() {
  static State s;
  return s;
}

inline std::vector<Device> parse_devices(const char* spec) {
  std::vector<Device> out;
  std::stringstream in(spec ? spec : "");
  std::string item;
  while (std::getline(in, item, ',')) {
    if (item.empty()) continue;
    Device d{0, 65535};
    const auto colon = item.find(':');
    d.sms = std::atoi(item.substr(0, colon).c_str());
    if (colon != std::string::npos) d.max_grid_y = std::atoi(item.substr(colon + 1).c_str());
    if (d.sms < 1 || d.max_grid_y < 1) return {};
    out.push_back(d);
  }
  return out;
}

inline std::vector<Device> devices() {
  State& s = state();
  std::lock_guard<std::mutex> g(s.lock);
  if (!s.configured) {
    const char* env = std::getenv("CUDACPU_DEVICES");
    s.devices = parse_devices(env ? env : "132");
    s.configured = true;
  }
  return s.devices;
}

// The calling host thread's current device and last error, as in CUDA.
inline thread_local int current_device = 0;
inline thread_local cudaError_t last_error = cudaSuccess;
inline thread_local std::string last_detail;

inline cudaError_t fail(cudaError_t err, const std::string& detail) {
  last_error = err;
  last_detail = detail;
  return err;
}

// ---------------------------------------------------------------------------- block execution

struct Abort {};  // unwinds the threads of a block whose barrier failed

struct Site {  // where a thread waits: a __syncthreads call, or nowhere (returned)
  const char* file = nullptr;
  int line = 0;
  bool operator==(const Site& o) const {
    return line == o.line && (file == o.file || (file && o.file && !std::strcmp(file, o.file)));
  }
};

class Block;
inline thread_local Block* running_block = nullptr;

// The threads of one block: created once for each block size, reused by every later block of that size.
// Synchronisation is by atomics with futex waits (C++20 wait/notify): the thread that completes
// a phase (all arrived or returned) checks where everyone waits and starts the next phase.
class Block {
 public:
  explicit Block(unsigned threads) : n_(threads), where_(threads) {}

  unsigned threads() const { return n_; }

  // The shape of the launch whose blocks run next.
  void shape(dim3 grid, dim3 block) {
    grid_ = grid;
    block_ = block;
  }

  // Runs `body` as every thread of block `b`; returns "" or what went wrong.
  std::string run(uint3 b, const std::function<void()>& body) {
    block_idx_ = b;
    body_ = &body;
    count_.store(0, std::memory_order_relaxed);
    failed_.store(false, std::memory_order_relaxed);
    done_.store(0, std::memory_order_relaxed);
    error_.clear();
    if (workers_.empty())
      for (unsigned t = 0; t < n_; ++t) workers_.emplace_back([this, t] { work(t); });
    epoch_.fetch_add(1, std::memory_order_release);
    epoch_.notify_all();
    done_.wait(0, std::memory_order_acquire);
    return error_;
  }

  ~Block() {
    stop_ = true;
    epoch_.fetch_add(1, std::memory_order_release);
    epoch_.notify_all();
    for (auto& w : workers_) w.join();
  }

  // __syncthreads of thread t at `site`.
  void sync(unsigned t, Site site) {
    if (failed_.load(std::memory_order_acquire)) throw Abort{};
    where_[t] = site;
    const unsigned phase = phase_.load(std::memory_order_relaxed);
    const unsigned long long c = count_.fetch_add(1, std::memory_order_acq_rel) + 1;
    if (complete(c))
      release(c);
    else
      while (phase_.load(std::memory_order_acquire) == phase) phase_.wait(phase, std::memory_order_acquire);
    if (failed_.load(std::memory_order_acquire)) throw Abort{};
  }

 private:
  static constexpr unsigned long long EXIT = 1ULL << 32;  // count_: arrivals low, returns high

  bool complete(unsigned long long c) const { return (c & (EXIT - 1)) + (c >> 32) == n_; }

  void work(unsigned t) {
    unsigned seen = 0;
    for (;;) {
      epoch_.wait(seen, std::memory_order_acquire);
      seen = epoch_.load(std::memory_order_acquire);
      if (stop_) return;
      threadIdx = uint3{t % block_.x, (t / block_.x) % block_.y, t / (block_.x * block_.y)};
      blockDim = block_;
      gridDim = grid_;
      blockIdx = block_idx_;
      running_block = this;
      try {
        (*body_)();
      } catch (const Abort&) {
      }
      where_[t] = Site{};
      const unsigned long long c = count_.fetch_add(EXIT, std::memory_order_acq_rel) + EXIT;
      if ((c & (EXIT - 1)) > 0 && complete(c)) release(c);
      if ((c >> 32) == n_) {
        done_.store(1, std::memory_order_release);
        done_.notify_one();
      }
    }
  }

  // Every thread has arrived at a barrier or returned (count c): either all wait at one
  // barrier and the next phase starts, or the block has diverged.
  void release(unsigned long long c) {
    bool same = (c >> 32) == 0;
    for (unsigned t = 1; same && t < n_; ++t) same = where_[t] == where_[0];
    if (same) {
      count_.fetch_sub(c, std::memory_order_relaxed);  // nobody else touches it until the phase moves
    } else {
      error_ = describe();
      failed_.store(true, std::memory_order_release);
    }
    phase_.fetch_add(1, std::memory_order_release);
    phase_.notify_all();
  }

  std::string describe() const {
    std::ostringstream out;
    out << "__syncthreads divergence in block (" << block_idx_.x << "," << block_idx_.y << "," << block_idx_.z
        << "):";
    for (unsigned t = 0; t < n_;) {
      unsigned e = t;
      while (e + 1 < n_ && where_[e + 1] == where_[t]) ++e;
      out << " threads " << t << "-" << e;
      if (where_[t].file)
        out << " wait at " << where_[t].file << ":" << where_[t].line << ";";
      else
        out << " returned;";
      t = e + 1;
    }
    return out.str();
  }

  const unsigned n_;
  dim3 grid_, block_;
  std::vector<std::thread> workers_;
  std::vector<Site> where_;
  uint3 block_idx_{0, 0, 0};
  const std::function<void()>* body_ = nullptr;
  std::atomic<unsigned long long> count_{0};
  std::atomic<unsigned> epoch_{0}, phase_{0};  // 32-bit: waits are plain futex waits
  std::atomic<int> done_{0};
  std::atomic<bool> failed_{false};
  bool stop_ = false;
  std::string error_;
};

inline void syncthreads(const char* file, int line) {
  const unsigned t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  running_block->sync(t, Site{file, line});
}

// The threads for blocks of `threads` threads (launch_lock held); they live as long as the process.
inline Block& block_of(unsigned threads) {
  static std::vector<Block*> blocks;
  for (Block* b : blocks)
    if (b->threads() == threads) return *b;
  blocks.push_back(new Block(threads));
  return *blocks.back();
}

inline std::mutex& launch_lock() {  // one launch at a time: __shared__ storage is static
  static std::mutex m;
  return m;
}

inline std::string dims(const dim3& d) {
  return "(" + std::to_string(d.x) + "," + std::to_string(d.y) + "," + std::to_string(d.z) + ")";
}

// kernel<<<grid, block, smem, stream>>>(args...) becomes Launcher(kernel, "kernel", grid, block, smem, stream)(args...).
template <class Kernel>
class Launcher {
 public:
  Launcher(Kernel kernel, const char* name, dim3 grid, dim3 block, std::size_t = 0, cudaStream_t = nullptr)
      : kernel_(kernel), name_(name), grid_(grid), block_(block) {}

  template <class... Args>
  void operator()(Args&&... args) const {
    const std::vector<Device> devs = devices();
    if (current_device < 0 || current_device >= (int)devs.size()) {
      fail(cudaErrorInvalidDevice, "no device " + std::to_string(current_device));
      return;
    }
    const Device& dev = devs[current_device];
    const unsigned long long threads = (unsigned long long)block_.x * block_.y * block_.z;
    const bool ok = grid_.x >= 1 && grid_.y >= 1 && grid_.z >= 1 && grid_.x <= 2147483647u &&
                    grid_.y <= (unsigned)dev.max_grid_y && grid_.z <= 65535u && block_.x >= 1 && block_.y >= 1 &&
                    block_.z >= 1 && block_.x <= 1024 && block_.y <= 1024 && block_.z <= 64 && threads <= 1024;
    const std::string what = std::string(name_) + " grid=" + dims(grid_) + " block=" + dims(block_);
    {
      State& s = state();
      std::lock_guard<std::mutex> g(s.lock);
      s.log.push_back(what);
      if (!ok) {
        fail(cudaErrorInvalidConfiguration, "launch of " + what + " exceeds the limits (grid y max " +
                                                std::to_string(dev.max_grid_y) + ")");
        return;
      }
      if (s.dry_run) return;
    }
    Kernel kernel = kernel_;
    const std::function<void()> body = [&] { kernel(args...); };  // each thread gets its own copies
    std::lock_guard<std::mutex> one_at_a_time(launch_lock());
    Block& block = block_of((unsigned)threads);
    block.shape(grid_, block_);
    for (unsigned z = 0; z < grid_.z; ++z)
      for (unsigned y = 0; y < grid_.y; ++y)
        for (unsigned x = 0; x < grid_.x; ++x) {
          const std::string err = block.run(uint3{x, y, z}, body);
          if (!err.empty()) {
            fail(cudaErrorLaunchFailure, what + ": " + err);
            return;
          }
        }
  }

 private:
  Kernel kernel_;
  const char* name_;
  dim3 grid_, block_;
};

template <class Kernel>
Launcher(Kernel, const char*, dim3, dim3, std::size_t, cudaStream_t) -> Launcher<Kernel>;

}  // namespace cudacpu

// ---------------------------------------------------------------------------- runtime API

inline cudaError_t cudaGetLastError() {
  const cudaError_t e = cudacpu::last_error;
  cudacpu::last_error = cudaSuccess;
  return e;
}
inline cudaError_t cudaPeekAtLastError() { return cudacpu::last_error; }

inline const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
  }
  return "cudaErrorUnknown";
}

// CUDA's text, followed by what the CPU runtime knows of the last failure on this thread.
inline const char* cudaGetErrorString(cudaError_t e) {
  static thread_local std::string text;
  switch (e) {
    case cudaSuccess: text = "no error"; break;
    case cudaErrorInvalidValue: text = "invalid argument"; break;
    case cudaErrorInvalidConfiguration: text = "invalid configuration argument"; break;
    case cudaErrorNoDevice: text = "no CUDA-capable device is detected"; break;
    case cudaErrorInvalidDevice: text = "invalid device ordinal"; break;
    case cudaErrorLaunchFailure: text = "unspecified launch failure"; break;
    default: text = "unknown error";
  }
  if (e != cudaSuccess && !cudacpu::last_detail.empty()) text += " (cuda_cpu: " + cudacpu::last_detail + ")";
  return text.c_str();
}

inline cudaError_t cudaGetDeviceCount(int* n) {
  *n = (int)cudacpu::devices().size();
  return *n ? cudaSuccess : cudacpu::fail(cudaErrorNoDevice, "CUDACPU_DEVICES lists no device");
}

inline cudaError_t cudaSetDevice(int d) {
  if (d < 0 || d >= (int)cudacpu::devices().size()) return cudacpu::fail(cudaErrorInvalidDevice, "no device " + std::to_string(d));
  cudacpu::current_device = d;
  return cudaSuccess;
}

inline cudaError_t cudaGetDevice(int* d) {
  *d = cudacpu::current_device;
  return cudaSuccess;
}

inline cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int d) {
  const auto devs = cudacpu::devices();
  if (d < 0 || d >= (int)devs.size()) return cudacpu::fail(cudaErrorInvalidDevice, "no device " + std::to_string(d));
  switch (attr) {
    case cudaDevAttrMultiProcessorCount: *value = devs[d].sms; return cudaSuccess;
    case cudaDevAttrMaxGridDimX: *value = 2147483647; return cudaSuccess;
    case cudaDevAttrMaxGridDimY: *value = devs[d].max_grid_y; return cudaSuccess;
    case cudaDevAttrMaxGridDimZ: *value = 65535; return cudaSuccess;
    case cudaDevAttrMaxThreadsPerBlock: *value = 1024; return cudaSuccess;
  }
  return cudacpu::fail(cudaErrorInvalidValue, "attribute not modelled");
}

inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int d) {
  const auto devs = cudacpu::devices();
  if (d < 0 || d >= (int)devs.size()) return cudacpu::fail(cudaErrorInvalidDevice, "no device " + std::to_string(d));
  std::memset(p, 0, sizeof(*p));
  std::snprintf(p->name, sizeof(p->name), "cuda_cpu device %d (%d SMs)", d, devs[d].sms);
  p->major = 9;
  p->minor = 0;
  p->multiProcessorCount = devs[d].sms;
  p->totalGlobalMem = std::size_t(1) << 34;
  p->maxGridSize[0] = 2147483647;
  p->maxGridSize[1] = devs[d].max_grid_y;
  p->maxGridSize[2] = 65535;
  p->maxThreadsPerBlock = 1024;
  return cudaSuccess;
}
