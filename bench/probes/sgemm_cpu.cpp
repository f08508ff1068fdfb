// Measures the machine's GEMM throughput with the same GEMM path the CPU backend uses (the linear
// layer's forward: Eigen fp32 tiles, or oneDNN bf16 tiles for --cpu-math bf16, over the OpenMP threads
// of a ThreadScope): the ceiling against which model and attention FLOP rates are quoted.
#include <vector>

#include "bench/probes/probes.h"
#include "cpu/ops.h"
#include "util/threads.h"
#include "util/rng.h"
#include "util/timing.h"

namespace cairn {

double cpu_sgemm_gflops(int threads, int M, int K, int Nout, int repeats, bool bf16) {
  ThreadScope scope(threads);
  std::vector<float> a(static_cast<size_t>(M) * K), w(static_cast<size_t>(Nout) * K), c(static_cast<size_t>(M) * Nout);
  Rng r(1);
  for (auto& x : a) x = static_cast<float>(r.uniform() - 0.5);
  for (auto& x : w) x = static_cast<float>(r.uniform() - 0.5);
  const auto gemm = bf16 ? cpu::linear_forward_bf16 : cpu::linear_forward;
  gemm(c.data(), a.data(), w.data(), nullptr, M, K, Nout);  // warm-up
  std::vector<double> t;
  for (int i = 0; i < repeats; ++i) {
    const double t0 = now_seconds();
    gemm(c.data(), a.data(), w.data(), nullptr, M, K, Nout);
    t.push_back(now_seconds() - t0);
  }
  return 2.0 * M * K * Nout / median(t) / 1e9;
}

}  // namespace cairn
