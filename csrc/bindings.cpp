// The Python module convlab._C: thin bindings of the kernels in csrc/*.cu (see convlab.h).
// Arrays travel as raw device pointers (cupy's .data.ptr), shapes as tuples of ints. Every
// kernel call releases the GIL; C++ exceptions become ValueError (std::invalid_argument) or
// RuntimeError (std::runtime_error, with CUDA's error text).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <climits>
#include <stdexcept>
#include <string>
#include <vector>

#include "common.cuh"  // check_cuda, and convlab.h

namespace py = pybind11;
using namespace convlab;

#ifndef CONVLAB_CUDA_ARCHS
#define CONVLAB_CUDA_ARCHS ""
#endif

namespace {

std::vector<int> ints(const std::vector<long long>& v, std::size_t n, const char* what, const char* fields) {
  if (v.size() != n)
    throw std::invalid_argument(std::string(what) + " must hold " + std::to_string(n) + " ints (" + fields +
                                "), got " + std::to_string(v.size()));
  std::vector<int> out;
  for (long long x : v) {
    if (x < INT_MIN || x > INT_MAX) throw std::invalid_argument(std::string(what) + " values must fit in 32 bits");
    out.push_back((int)x);
  }
  return out;
}

constexpr const char* CONV_FIELDS = "n, c, h, w, k, kh, kw, oh, ow, sh, sw, ph, pw, dh, dw, groups";
constexpr const char* WINDOW_FIELDS = "planes, h, w, kh, kw, oh, ow, sh, sw, ph, ph_hi, pw, pw_hi, dh, dw";

Conv2dShape conv_shape(const std::vector<long long>& v) {
  const auto d = ints(v, 16, "conv2d shape", CONV_FIELDS);
  return {d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8], d[9], d[10], d[11], d[12], d[13], d[14], d[15]};
}

Window2dShape window_shape(const std::vector<long long>& v) {
  const auto d = ints(v, 15, "window shape", WINDOW_FIELDS);
  return {d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8], d[9], d[10], d[11], d[12], d[13], d[14]};
}

py::list devices() {
  int n = 0;
  check_cuda(cudaGetDeviceCount(&n), "cudaGetDeviceCount");
  py::list out;
  for (int i = 0; i < n; ++i) {
    cudaDeviceProp p;
    check_cuda(cudaGetDeviceProperties(&p, i), "cudaGetDeviceProperties");
    py::dict d;
    d["name"] = std::string(p.name);
    d["compute_capability"] = py::make_tuple(p.major, p.minor);
    d["multiprocessors"] = p.multiProcessorCount;
    d["memory_bytes"] = (unsigned long long)p.totalGlobalMem;
    out.append(d);
  }
  return out;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "convlab CUDA kernels: conv2d, pool2d, im2col/col2im (raw device pointers, the caller's stream)";
  using release = py::call_guard<py::gil_scoped_release>;

  m.def("versions", [] {
    py::dict d;
    d["conv2d"] = conv2d_versions();
    d["pool2d"] = pool2d_versions();
    d["im2col"] = im2col_versions();
    return d;
  }, "Newest kernel version of each .cu file (every version from 1 up is selectable).");
  m.def("build_info", [] {
    py::dict d;
    d["cuda_runtime"] = CUDART_VERSION;
    d["archs"] = std::string(CONVLAB_CUDA_ARCHS);
    d["conv2d_fields"] = CONV_FIELDS;
    d["window_fields"] = WINDOW_FIELDS;
    return d;
  }, "How the module was built: CUDA runtime version, architectures, shape tuple fields.");
  m.def("devices", &devices, "Name, compute capability, multiprocessors and memory of each CUDA device; "
                             "RuntimeError with CUDA's text when there is no driver or device.");

  m.def("conv2d_workspace",
        [](const std::string& op, int version, const std::string& dtype, int device, const std::vector<long long>& shape) {
          return conv2d_workspace(op, version, dtype, device, conv_shape(shape));
        },
        release(), py::arg("op"), py::arg("version"), py::arg("dtype"), py::arg("device"), py::arg("shape"),
        "Workspace bytes conv2d needs for this op, version, dtype, device and shape.");
  m.def("conv2d",
        [](const std::string& op, int version, const std::string& dtype, int device, std::uintptr_t stream,
           std::uintptr_t out, std::uintptr_t in0, std::uintptr_t in1, std::uintptr_t ws, std::size_t ws_bytes,
           const std::vector<long long>& shape) {
          conv2d(op, version, dtype, Launch{device, stream}, out, in0, in1, ws, ws_bytes, conv_shape(shape));
        },
        release(), py::arg("op"), py::arg("version"), py::arg("dtype"), py::arg("device"), py::arg("stream"),
        py::arg("out"), py::arg("in0"), py::arg("in1"), py::arg("workspace"), py::arg("workspace_bytes"),
        py::arg("shape"),
        "op 'forward' (out=y, in0=x, in1=w), 'grad_input' (out=grad_x, in0=grad_y, in1=w) or "
        "'grad_weight' (out=grad_w, in0=grad_y, in1=x); shape: (n, c, h, w, k, kh, kw, oh, ow, sh, sw, "
        "ph, pw, dh, dw, groups).");

  auto options = [](const std::string& mode, bool include_pad, long long divisor, double p) {
    PoolOptions o;
    o.mode = mode;
    o.count_include_pad = include_pad;
    o.divisor = divisor;
    o.p = p;
    return o;
  };
  m.def("pool2d_forward",
        [options](const std::string& mode, int version, const std::string& dtype, int device, std::uintptr_t stream,
                  std::uintptr_t y, std::uintptr_t x, std::uintptr_t indices, const std::vector<long long>& shape,
                  bool count_include_pad, long long divisor, double p) {
          pool2d_forward(options(mode, count_include_pad, divisor, p), version, dtype, Launch{device, stream}, y, x,
                         indices, window_shape(shape));
        },
        release(), py::arg("mode"), py::arg("version"), py::arg("dtype"), py::arg("device"), py::arg("stream"),
        py::arg("y"), py::arg("x"), py::arg("indices"), py::arg("shape"), py::arg("count_include_pad") = true,
        py::arg("divisor") = 0, py::arg("p") = 2.0,
        "mode 'max', 'avg' or 'lp'; indices: int64 pointer or 0; shape: (planes, h, w, kh, kw, oh, ow, sh, sw, "
        "ph, ph_hi, pw, pw_hi, dh, dw).");
  m.def("pool2d_backward",
        [options](const std::string& mode, int version, const std::string& dtype, int device, std::uintptr_t stream,
                  std::uintptr_t grad_x, std::uintptr_t grad_y, std::uintptr_t x, std::uintptr_t y,
                  std::uintptr_t indices, const std::vector<long long>& shape, bool count_include_pad,
                  long long divisor, double p) {
          pool2d_backward(options(mode, count_include_pad, divisor, p), version, dtype, Launch{device, stream},
                          grad_x, grad_y, x, y, indices, window_shape(shape));
        },
        release(), py::arg("mode"), py::arg("version"), py::arg("dtype"), py::arg("device"), py::arg("stream"),
        py::arg("grad_x"), py::arg("grad_y"), py::arg("x"), py::arg("y"), py::arg("indices"), py::arg("shape"),
        py::arg("count_include_pad") = true, py::arg("divisor") = 0, py::arg("p") = 2.0,
        "A gather over the windows covering each input cell; max reads indices, lp reads x and y.");

  m.def("im2col",
        [](int version, const std::string& dtype, int device, std::uintptr_t stream, std::uintptr_t cols,
           std::uintptr_t x, const std::vector<long long>& shape) {
          im2col(version, dtype, Launch{device, stream}, cols, x, window_shape(shape));
        },
        release(), py::arg("version"), py::arg("dtype"), py::arg("device"), py::arg("stream"), py::arg("cols"),
        py::arg("x"), py::arg("shape"));
  m.def("col2im",
        [](int version, const std::string& dtype, int device, std::uintptr_t stream, std::uintptr_t x,
           std::uintptr_t cols, const std::vector<long long>& shape) {
          col2im(version, dtype, Launch{device, stream}, x, cols, window_shape(shape));
        },
        release(), py::arg("version"), py::arg("dtype"), py::arg("device"), py::arg("stream"), py::arg("x"),
        py::arg("cols"), py::arg("shape"));
}
