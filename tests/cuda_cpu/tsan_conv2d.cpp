// A standalone driver of conv2d.cu's GEMM kernels (v2 to v5) for ThreadSanitizer: forward,
// grad_input and grad_weight on shapes that split the reduction (v5 on 132 SMs) and that do not
// (1 SM), each checked against v1. A missing or misplaced __syncthreads shows up as a data race on the shared tiles
// (ThreadSanitizer's report and exit code), a wrong result as exit code 1.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "convlab.h"

extern "C" int cudacpu_set_devices(const char* spec);

namespace {

using convlab::Conv2dShape;

template <typename T>
std::vector<T> filled(std::size_t n, unsigned seed) {
  std::vector<T> v(n);
  for (auto& e : v) {
    seed = seed * 1664525u + 1013904223u;
    e = T((seed >> 8) % 2001) / T(1000) - T(1);
  }
  return v;
}

std::size_t count(const std::string& op, const Conv2dShape& s) {
  if (op == "forward") return (std::size_t)s.n * s.k * s.oh * s.ow;
  if (op == "grad_input") return (std::size_t)s.n * s.c * s.h * s.w;
  return (std::size_t)s.k * (s.c / s.groups) * s.kh * s.kw;
}

template <typename T>
std::vector<T> run(const std::string& op, int version, int device, const Conv2dShape& s, const std::vector<T>& in0,
                   const std::vector<T>& in1, bool& split) {
  const std::string dtype = sizeof(T) == 4 ? "float32" : "float64";
  std::vector<T> out(count(op, s), T(NAN));
  const std::size_t bytes = convlab::conv2d_workspace(op, version, dtype, device, s);
  std::vector<T> ws(bytes / sizeof(T) + 1, T(NAN));
  split = split || bytes > 0;
  convlab::conv2d(op, version, dtype, convlab::Launch{device, 0}, (std::uintptr_t)out.data(),
                  (std::uintptr_t)in0.data(), (std::uintptr_t)in1.data(), (std::uintptr_t)ws.data(), bytes, s);
  return out;
}

template <typename T>
int check(const Conv2dShape& s, const char* name) {
  const auto x = filled<T>((std::size_t)s.n * s.c * s.h * s.w, 1);
  const auto w = filled<T>((std::size_t)s.k * (s.c / s.groups) * s.kh * s.kw, 2);
  const auto gy = filled<T>((std::size_t)s.n * s.k * s.oh * s.ow, 3);
  int bad = 0;
  for (const std::string op : {"forward", "grad_input", "grad_weight"}) {
    const auto& in0 = op == "forward" ? x : gy;
    const auto& in1 = op == "grad_weight" ? x : w;
    bool split = false;
    const auto want = run<T>(op, 1, 0, s, in0, in1, split);
    // every GEMM version on the 132-SM device; v5, whose plan follows the SM count, on both
    for (const auto [version, device] : {std::pair{2, 0}, {3, 0}, {4, 0}, {5, 0}, {5, 1}}) {
      const auto got = run<T>(op, version, device, s, in0, in1, split);
      double worst = 0;
      for (std::size_t i = 0; i < got.size(); ++i)
        worst = std::isnan((double)got[i]) ? INFINITY : std::fmax(worst, std::fabs((double)got[i] - (double)want[i]));
      const double tol = sizeof(T) == 4 ? 1e-3 : 1e-10;
      std::printf("%s %s %s v%d device %d: max |v%d - v1| = %g%s\n", name, sizeof(T) == 4 ? "f32" : "f64",
                  op.c_str(), version, device, version, worst, worst <= tol ? "" : "  FAILED");
      bad += worst > tol;
    }
    std::printf("%s %s: %s\n", name, op.c_str(), split ? "split-K planned" : "unsplit");
  }
  return bad;
}

}  // namespace

int main() {
  if (cudacpu_set_devices("132,1") != 0) return 2;
  // n, c, h, w, k, kh, kw, oh, ow, sh, sw, ph, pw, dh, dw, groups
  const Conv2dShape split_groups{2, 32, 7, 6, 12, 3, 3, 7, 6, 1, 1, 1, 1, 1, 1, 2};
  const Conv2dShape tiles_strided{1, 3, 20, 19, 70, 3, 2, 10, 9, 2, 2, 1, 0, 1, 2, 1};
  int bad = check<float>(split_groups, "split_groups") + check<double>(split_groups, "split_groups") +
            check<float>(tiles_strided, "tiles_strided");
  std::printf(bad ? "%d FAILED\n" : "all match\n", bad);
  return bad ? 1 : 0;
}
