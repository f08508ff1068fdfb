// Helpers for the GPU tests: skip without a device, run the same op on the CPU and CUDA backends
// from the same host inputs, and compare with a stated tolerance.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <memory>
#include <vector>

#include "cairn/backend.h"
#include "cairn/buffer.h"
#include "cuda/backend_cuda.h"
#include "test_util.h"

#define CAIRN_REQUIRE_GPU() \
  if (!::cairn::cuda_available()) GTEST_SKIP() << "no CUDA device (GPU tests run where one is present)"

namespace cairn::test {

// Buffers owned on one backend (DeviceArrays), freed with this object.
class DeviceBuffers {
 public:
  explicit DeviceBuffers(Backend& be) : be_(be) {}
  template <class T>
  T* upload(const std::vector<T>& h) {
    T* p = alloc<T>(h.size());
    be_.to_device(p, h.data(), h.size() * sizeof(T));
    return p;
  }
  template <class T>
  T* alloc(size_t n) {
    owned_.emplace_back(be_, n * sizeof(T));
    return reinterpret_cast<T*>(owned_.back().data());
  }
  // n floats of NaN: an output element the op forgets to write fails the comparison.
  float* poisoned(size_t n) { return upload(std::vector<float>(n, std::nanf(""))); }
  template <class T>
  std::vector<T> download(const T* p, size_t n) {
    std::vector<T> h(n);
    be_.to_host(h.data(), p, n * sizeof(T));
    return h;
  }
  Backend& backend() { return be_; }

 private:
  Backend& be_;
  std::vector<DeviceArray<std::byte>> owned_;
};

// ‖a − b‖₂ / ‖b‖₂ (b the reference); NaN anywhere gives +inf.
template <class A, class B>
double rel_l2(const A& a, const B& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = static_cast<double>(a[i]) - static_cast<double>(b[i]);
    if (!std::isfinite(static_cast<double>(a[i]))) return INFINITY;
    num += d * d, den += static_cast<double>(b[i]) * b[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

}  // namespace cairn::test
