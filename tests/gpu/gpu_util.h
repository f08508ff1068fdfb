// Helpers for the GPU tests: skip without a device, run the same op on the CPU and CUDA backends
// from the same host inputs, and compare with a stated tolerance.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <vector>

#include "cairn/backend.h"
#include "cuda/backend_cuda.h"
#include "test_util.h"

#define CAIRN_REQUIRE_GPU() \
  if (!::cairn::cuda_available()) GTEST_SKIP() << "no CUDA device (GPU tests run where one is present)"

namespace cairn::test {

// Buffers owned on one backend, freed with it.
class DeviceBuffers {
 public:
  explicit DeviceBuffers(Backend& be) : be_(be) {}
  ~DeviceBuffers() {
    for (void* p : owned_) be_.free_bytes(p);
  }
  template <class T>
  T* upload(const std::vector<T>& h) {
    T* p = alloc<T>(h.size());
    be_.to_device(p, h.data(), h.size() * sizeof(T));
    return p;
  }
  template <class T>
  T* alloc(size_t n) {
    void* p = be_.alloc_bytes(std::max<size_t>(n, 1) * sizeof(T));
    owned_.push_back(p);
    return static_cast<T*>(p);
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
  std::vector<void*> owned_;
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
