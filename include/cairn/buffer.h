// DeviceArray<T>: n elements of T in one backend's memory, owned. Freed by that backend when the array
// is destroyed or reset; move-only. Every device buffer cairn keeps (parameters, gradients, moments,
// the activation arena, loss scratch) is one of these, so nothing is freed by hand.
#pragma once
#include <cstddef>
#include <utility>

#include "cairn/backend.h"

namespace cairn {

template <class T>
class DeviceArray {
 public:
  DeviceArray() = default;
  // Uninitialised storage for n elements (at least one is allocated, so data() is never null).
  DeviceArray(Backend& be, size_t n)
      : be_(&be), p_(static_cast<T*>(be.alloc_bytes((n ? n : 1) * sizeof(T)))), n_(n) {}
  ~DeviceArray() { reset(); }
  DeviceArray(DeviceArray&& o) noexcept : be_(o.be_), p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}
  DeviceArray& operator=(DeviceArray&& o) noexcept {
    if (this != &o) {
      reset();
      be_ = o.be_, p_ = std::exchange(o.p_, nullptr), n_ = std::exchange(o.n_, 0);
    }
    return *this;
  }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;

  T* data() { return p_; }
  const T* data() const { return p_; }
  size_t size() const { return n_; }
  bool empty() const { return p_ == nullptr; }
  void reset() {
    if (p_) be_->free_bytes(p_);
    p_ = nullptr, n_ = 0;
  }
  // Keeps the buffer when it already holds n elements; otherwise replaces it (contents not kept).
  void ensure(Backend& be, size_t n) {
    if (p_ && n <= n_) return;
    reset();
    *this = DeviceArray(be, n);
  }

 private:
  Backend* be_ = nullptr;
  T* p_ = nullptr;
  size_t n_ = 0;
};

}  // namespace cairn
