// Per-region CPU thread counts. OpenMP's thread count (which Eigen's GEMMs read too) is an ICV of the
// calling thread; setting it once in a constructor would re-thread every other backend and kernel the
// process runs. Instead, each CPU backend op (and each parallel region outside it) runs inside a ThreadScope that sets the count for its
// duration and restores the caller's on exit, so backends with different counts coexist.
#pragma once
#include <omp.h>

namespace cairn {

class ThreadScope {
 public:
  // n ≤ 0: leave the caller's count.
  explicit ThreadScope(int n) : saved_(omp_get_max_threads()) {
    if (n > 0 && n != saved_) omp_set_num_threads(n);
  }
  ~ThreadScope() {
    if (omp_get_max_threads() != saved_) omp_set_num_threads(saved_);
  }
  ThreadScope(const ThreadScope&) = delete;
  ThreadScope& operator=(const ThreadScope&) = delete;

 private:
  int saved_;
};

// Threads a request resolves to: n > 0 as given, else the OpenMP default (all cores or OMP_NUM_THREADS).
inline int resolve_threads(int n) { return n > 0 ? n : omp_get_max_threads(); }

}  // namespace cairn
